#!/usr/bin/env bash
# Checks the deployment files where the tools exist: the systemd unit with `systemd-analyze verify`
# (pointed at the binary built here), the container image with a build where an engine answers.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v systemd-analyze >/dev/null; then
    cargo build --quiet --bin zajel-signal
    target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    sed "s|/usr/local/bin/zajel-signal|$target_dir/debug/zajel-signal|" deploy/zajel-signal.service \
        >"$scratch/zajel-signal.service"
    (cd "$scratch" && systemd-analyze verify ./zajel-signal.service)
    echo "deploy: the systemd unit verifies"
else
    echo "deploy: no systemd-analyze here; the unit is not checked"
fi

engine=""
for candidate in docker podman; do
    if command -v "$candidate" >/dev/null && "$candidate" info >/dev/null 2>&1; then
        engine=$candidate
        break
    fi
done
if [ -n "$engine" ]; then
    "$engine" build --quiet -t zajel-signal:ci .
    echo "deploy: the image builds ($engine)"
else
    echo "deploy: no container engine answers here; the image is not built"
fi
