# Shared setup and helpers of the benchmark scripts (bench-node.sh, bench-gateway.sh).
# Source it after lib.sh; do not run it.
# shellcheck shell=bash

SHARED_DIR="${SHARED_DIR:-$ROOT/../shared}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT_DIR="${BENCH_OUT_DIR:-$ROOT/benchmarks}"
MODELS_DIR="$ROOT/models/gdp_growth_rate"
WORK="$(mktemp -d)"
PIDS=()

# Stops every process in PIDS and removes the scratch folder (installed as the EXIT trap).
bench_cleanup() {
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap bench_cleanup EXIT

# bench_prepare: bench_prepare_tools, then the seed-style Python baseline's venv
# (.venv-bench), and checks the converted models.
bench_prepare() {
  bench_prepare_tools
  [[ -f "$MODELS_DIR/LinearRegression.onnx" ]] || die "no converted models in $MODELS_DIR; run convert-models first"
  python_venv "$ROOT/.venv-bench" "$SHARED_DIR/bench/requirements.txt"
}

# bench_prepare_tools: checks the tools, installs wrk when missing, checks the shared wrk
# script, provides ONNX Runtime and makes the output folder.
bench_prepare_tools() {
  require_tool cargo "Install Rust (rustup) first."
  require_tool python3 "Install Python 3.11+ first."
  require_tool curl "Install curl (apt-get install -y curl)."
  if ! command -v wrk >/dev/null 2>&1; then
    say "installing wrk"
    if command -v apt-get >/dev/null 2>&1; then
      apt-get install -y wrk >/dev/null || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
    fi
    require_tool wrk "Install wrk (apt-get install -y wrk)."
  fi
  [[ -f "$SHARED_DIR/bench/post.lua" ]] || die "$SHARED_DIR/bench/post.lua not found; set SHARED_DIR"
  ensure_ort
  mkdir -p "$OUT_DIR"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_ok URL: poll until URL answers 200 (at most 30 s).
wait_ok() {
  local url="$1" deadline=$((SECONDS + 30))
  until curl -fsS -o /dev/null "$url" 2>/dev/null; do
    ((SECONDS < deadline)) || die "$url did not answer within 30 s"
    sleep 0.02
  done
}

# tag_json JSON KEY=VALUE...: prints the JSON object with the given fields added (values made
# of digits become numbers), e.g. to label a wrk summary with its server and concurrency.
tag_json() {
  python3 -c '
import json, sys
d = json.loads(sys.argv[1])
for pair in sys.argv[2:]:
    key, value = pair.split("=", 1)
    d[key] = int(value) if value.isdigit() else value
print(json.dumps(d))' "$@"
}

# wrk_json BODY_FILE THREADS CONCURRENCY SECONDS URL: one wrk run with the shared post.lua (or
# the script WRK_SCRIPT names); prints its one-line JSON summary.
wrk_json() {
  local body="$1" threads="$2" conc="$3" secs="$4" url="$5" line
  line="$(WRK_BODY_FILE="$body" wrk -s "${WRK_SCRIPT:-$SHARED_DIR/bench/post.lua}" -t"$threads" -c"$conc" \
    -d"${secs}s" --latency --timeout 10s "$url" | grep '^JSON:' | sed 's/^JSON://')"
  [[ -n "$line" ]] || die "wrk printed no summary for $url at c=$conc"
  printf '%s\n' "$line"
}
