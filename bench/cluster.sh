#!/usr/bin/env bash
# Single node (registries in memory, daily points on disk) against two nodes on one Redis, with the
# in-repo load generator: requests per second, latency and server CPU per request for a rendezvous
# registration with dead drops and for a signal delivered to a partner (on the other node in the
# cluster runs). Needs redis-server and a release build:
#
#     cargo build --release --bins --examples && bench/cluster.sh [SESSIONS] [REQUESTS]
#
# BINARY=path/to/zajel-signal measures another build (an older one, say) on the single-node rows.
set -euo pipefail
cd "$(dirname "$0")/.."
sessions=${1:-200}
requests=${2:-200}
binary=${BINARY:-target/release/zajel-signal}
load=target/release/examples/load
work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
# Budgets lifted: one address (the load generator) plays every client.
lifted=(--max-sessions-per-ip 20000 --max-handshakes-per-ip 4096 --rate-limit-burst 1000000
        --messages-per-minute-per-ip 100000000
        --rendezvous-entries-per-minute-per-ip 100000000 --max-rendezvous-entries-per-ip 5000000)

start_node() { # port, data dir, extra args...
  local port=$1 dir=$2; shift 2
  "$binary" --ws-listen "127.0.0.1:$port" --quic-listen "127.0.0.1:$((port + 1))" --data-dir "$dir" \
    "${lifted[@]}" "$@" >"$dir.log" 2>&1 &
  pids+=($!)
  until grep -q "serving WebSocket" "$dir.log"; do sleep 0.1; done
}

run() { # label, load args...
  local label=$1; shift
  echo "== $label"
  "$load" --sessions "$sessions" --requests "$requests" "$@" | sed 's/^/   /'
}

start_node 18401 "$work/single"
single=${pids[-1]}
run "single node: register_rendezvous (3 daily points with a dead drop, 3 hourly tokens)" \
  --addr 127.0.0.1:18401 --server-pid "$single" --workload rendezvous
run "single node: signal to a partner" --addr 127.0.0.1:18401 --server-pid "$single" --workload signal
kill "$single"

redis-server --port 18499 --bind 127.0.0.1 --save "" --appendonly no >"$work/redis.log" 2>&1 &
pids+=($!)
until redis-cli -p 18499 ping >/dev/null 2>&1; do sleep 0.1; done
start_node 18411 "$work/node1" --redis-url redis://127.0.0.1:18499
first=${pids[-1]}
start_node 18421 "$work/node2" --redis-url redis://127.0.0.1:18499
second=${pids[-1]}
redis=$(pgrep -f "redis-server 127.0.0.1:18499")
cluster=(--addr 127.0.0.1:18411 --peer-addr 127.0.0.1:18421 --server-pid "$first" --server-pid "$second")
run "two nodes: register_rendezvous, partners on different nodes (CPU: both nodes)" "${cluster[@]}" \
  --workload rendezvous
run "two nodes: signal to a partner on the other node (CPU: both nodes)" "${cluster[@]}" --workload signal
run "two nodes: signal, Redis's CPU per delivery" --addr 127.0.0.1:18411 --peer-addr 127.0.0.1:18421 \
  --server-pid "$redis" --workload signal
