#!/usr/bin/env bash
# What slow request bodies cost the inference node and the gateway (benchmarks/slow-bodies.md):
#   - memory: 4 connections each declare a 1,000,000-byte body (limit 1 MiB) and then send
#     200,000 body bytes in all, one byte per TCP segment; prints the server's VmRSS before,
#     at the peak, and 2 s after the clients left (node /predict, node /v2 infer, gateway);
#   - trickle: one body byte per second to each of the three; prints when the 408 came (the
#     body timeout is left at its default), or that none came within 90 s.
# One JSON line per measurement on stdout.
#
# Usage: scripts/slow-bodies.sh [BIN_DIR]
#   BIN_DIR holds inference-node and gateway binaries (default: builds target/release).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
ensure_ort
require_tool python3 "Install Python 3 first."
require_tool curl "Install curl (apt-get install -y curl)."

BIN_DIR="${1:-}"
if [[ -z "$BIN_DIR" ]]; then
  say "building release binaries"
  cargo build --release --locked -p inference-node -p gateway --bins >&2
  BIN_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/release"
fi
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ok() {
  local deadline=$((SECONDS + 30))
  until curl -fsS -o /dev/null "$1" 2>/dev/null; do
    ((SECONDS < deadline)) || die "$1 did not answer within 30 s"
    sleep 0.05
  done
}

# One node per path measured, so that each starts fresh.
start_node() {
  PORT="$1" HOST=127.0.0.1 MODELS_DIR="$ROOT/models/gdp_growth_rate" \
    INFERENCE_NODE_MAX_BODY_BYTES=1048576 RUST_LOG=warn "$BIN_DIR/inference-node" >/dev/null 2>&1 &
  PIDS+=("$!")
}
node_port="$(free_port)"
start_node "$node_port"
node_pid="${PIDS[-1]}"
v2_port="$(free_port)"
start_node "$v2_port"
v2_pid="${PIDS[-1]}"
gateway_port="$(free_port)"
closed_port="$(free_port)"
GATEWAY_HOST=127.0.0.1 GATEWAY_PORT="$gateway_port" GATEWAY_BODY_LIMIT=1048576 \
  SERVICE_DISCOVERY_URL="http://127.0.0.1:$closed_port" RUNTIME=process RUST_LOG=error \
  "$BIN_DIR/gateway" >/dev/null 2>&1 &
gateway_pid=$!
PIDS+=("$gateway_pid")
wait_ok "http://127.0.0.1:$node_port/health"
wait_ok "http://127.0.0.1:$v2_port/health"
wait_ok "http://127.0.0.1:$gateway_port/health"

say "memory: 200,000 body bytes, one per segment, over 4 connections"
python3 scripts/slow_bodies.py memory "$node_pid" "127.0.0.1:$node_port" /predict
python3 scripts/slow_bodies.py memory "$v2_pid" "127.0.0.1:$v2_port" /v2/models/LinearRegression/infer
python3 scripts/slow_bodies.py memory "$gateway_pid" "127.0.0.1:$gateway_port" /api/predict/gdp_growth_rate

say "trickle: one body byte per second (at most 90 s)"
trickles=()
for target in "$node_port /predict" "$node_port /v2/models/LinearRegression/infer" \
  "$gateway_port /api/predict/gdp_growth_rate"; do
  read -r port path <<<"$target"
  python3 scripts/slow_bodies.py trickle "127.0.0.1:$port" "$path" 1 90 &
  trickles+=($!)
done
wait "${trickles[@]}"
