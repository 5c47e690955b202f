#!/usr/bin/env bash
# Installs what the interop tests need, once: Debian's chromium and prometheus (for promtool, Prometheus's
# own parser of /metrics), npm's playwright-core (in interop/node_modules) and PyPI's aioquic and cbor2
# (in a virtual environment under .interop/).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v promtool >/dev/null || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "interop setup: ${missing[*]} missing; install with: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ ! -d interop/node_modules/playwright-core ]; then
  npm install --prefix interop --no-audit --no-fund --silent
fi
if [ ! -x .interop/venv/bin/python ]; then
  python3 -m venv .interop/venv
fi
.interop/venv/bin/pip install --quiet --disable-pip-version-check -r interop/requirements.txt
