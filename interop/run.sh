#!/usr/bin/env bash
# The interop tests: headless Chromium (WebTransport and WebSocket, and the status page, whose screenshot
# is kept in .interop/artifacts/) and aioquic (raw QUIC and WebTransport) against a freshly started
# zajel-signal on loopback, then its /metrics through promtool; then headless Chromium sees a server of
# its own drain (its WebTransport session's close). Run interop/setup.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "interop: FAILED: $*" >&2; exit 1; }
[ -x /usr/bin/chromium ] || fail "chromium is missing (run interop/setup.sh)"
command -v node >/dev/null || fail "node is missing"
[ -d interop/node_modules/playwright-core ] || fail "playwright-core is missing (run interop/setup.sh)"
[ -x .interop/venv/bin/python ] || fail "the aioquic virtual environment is missing (run interop/setup.sh)"
command -v promtool >/dev/null || fail "promtool is missing (run interop/setup.sh)"

node --test clients/js/

cargo build --quiet --bin zajel-signal
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
log=$(mktemp)
"$target_dir/debug/zajel-signal" --ws-listen 127.0.0.1:0 --quic-listen 127.0.0.1:0 --server-id interop >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -f "$log"' EXIT

for _ in $(seq 1 100); do
  grep -q "quic_addr=" "$log" && break
  kill -0 $server 2>/dev/null || { cat "$log" >&2; fail "the server exited"; }
  sleep 0.1
done
ws_addr=$(grep -o 'addr=127\.0\.0\.1:[0-9]*' "$log" | head -n 1 | cut -d= -f2)
quic_addr=$(grep -o 'quic_addr=127\.0\.0\.1:[0-9]*' "$log" | head -n 1 | cut -d= -f2)
[ -n "$ws_addr" ] && [ -n "$quic_addr" ] || { cat "$log" >&2; fail "the server did not report its addresses"; }
echo "interop: server on ws://$ws_addr and quic://$quic_addr"

# First, while the server has no sessions: the page must show exactly the one its test client opens.
node interop/status.mjs --http "http://$ws_addr" --ws "ws://$ws_addr/" --artifacts .interop/artifacts
node interop/browser.mjs --http "http://$ws_addr" --wt "https://$quic_addr/" --ws "ws://$ws_addr/"
.interop/venv/bin/python interop/aioquic_client.py --http "http://$ws_addr" --quic "$quic_addr"
# Last, to see what the clients above did.
python3 interop/metrics_check.py --http "http://$ws_addr"
# A server of its own, which it stops.
node interop/drain.mjs --server "$target_dir/debug/zajel-signal"
echo "interop: 9 passed, 0 failed"
