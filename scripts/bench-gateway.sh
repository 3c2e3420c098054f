#!/usr/bin/env bash
# Benchmarks the gateway in one run, side by side with its baselines, then under a node failure:
#   - gateway -> 2 inference nodes (discovered through the consul-dev stand-in), each with one
#     HTTP worker thread as the node image and scripts/run.sh start them (replicas share the
#     CPUs);
#   - a direct hit on one node (the gateway's hop costs at most this);
#   - the seed system's path: the seed-style Python gateway ($SHARED_DIR/bench/seed_gateway.py,
#     FastAPI + httpx) in front of two seed-style Python services (seed_service.py), the setup
#     of the issue's ~300 req/s reference;
#   - the same Python gateway in front of the two Rust nodes, to show the gateway alone;
#   - a second instance of this gateway in front of two HTTP ceilings (the node benchmark's
#     minimal axum server: parse the JSON, answer a constant), the gateway's own limit here.
# Single-row POST predictions at concurrency 16 and 64 with wrk ($SHARED_DIR/bench/post.lua),
# in BENCH_ROUNDS rounds that each run every server in turn; each configuration is reported by
# its median round (scripts/bench_stats.py).
# Fault run: 20 s at c16 through the gateway, `kill -9` of one node at 10 s; counts failed
# requests overall and after the gateway's healthy set dropped the dead node.
# Writes benchmarks/gateway.json and benchmarks/gateway.md.
#
# Usage: scripts/bench-gateway.sh
#   (BENCH_SECONDS=5 per load run, BENCH_ROUNDS=3, BENCH_FAULT_SECONDS=20)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

source "$ROOT/scripts/bench-lib.sh"
SECONDS_PER_RUN="${BENCH_SECONDS:-5}"
ROUNDS="${BENCH_ROUNDS:-3}"
FAULT_SECONDS="${BENCH_FAULT_SECONDS:-20}"
bench_prepare
[[ -f "$SHARED_DIR/bench/seed_gateway.py" ]] || die "$SHARED_DIR/bench/seed_gateway.py not found; set SHARED_DIR"

say "building release binaries"
cargo build --release --locked -p gateway --bin gateway -p inference-node --bin inference-node \
  --example http_ceiling -p consul --bin consul-dev --features consul/standin >&2
GATEWAY_BIN="$TARGET_DIR/release/gateway"
NODE_BIN="$TARGET_DIR/release/inference-node"
CONSUL_BIN="$TARGET_DIR/release/consul-dev"
CEILING_BIN="$TARGET_DIR/release/examples/http_ceiling"

# healthy_count [PORT]: how many nodes the gateway (on PORT, default the main one) lists.
healthy_count() {
  curl -fsS "http://127.0.0.1:${1:-$gateway_port}/api/predict/services" 2>/dev/null |
    python3 -c 'import json,sys; print(len(json.load(sys.stdin)["services"]))' 2>/dev/null || echo 0
}

# wait_both_listed PORT WHAT: waits up to 30 s for the gateway on PORT to list 2 instances.
wait_both_listed() {
  local deadline=$((SECONDS + 30))
  until [[ "$(healthy_count "$1")" == 2 ]]; do
    ((SECONDS < deadline)) || die "the gateway on :$1 did not see $2 within 30 s"
    sleep 0.1
  done
}

# gateway_failures: predictions the gateway answered with a non-200 status so far.
gateway_failures() {
  curl -fsS "http://127.0.0.1:$gateway_port/metrics" | python3 -c '
import sys
total = 0
for line in sys.stdin:
    if line.startswith("gateway_http_requests_total{") and "route=\"/api/predict/gdp_growth_rate\"" in line \
            and "status=\"200\"" not in line:
        total += float(line.rsplit(" ", 1)[1])
print(int(total))'
}

# --- the cluster: consul-dev, two nodes, the gateway ------------------------------------------
consul_port="$(free_port)"
RUST_LOG=warn "$CONSUL_BIN" --bind "127.0.0.1:$consul_port" >"$WORK/consul.log" 2>&1 &
PIDS+=("$!")
wait_ok "http://127.0.0.1:$consul_port/v1/status/leader"
CONSUL_URL="http://127.0.0.1:$consul_port"

node_ports=()
node_pids=()
for _ in 1 2; do
  port="$(free_port)"
  PORT="$port" HOST=127.0.0.1 MODELS_DIR="$MODELS_DIR" SERVICE_DISCOVERY_URL="$CONSUL_URL" \
    ADVERTISE_ADDRESS=127.0.0.1 RUST_LOG=warn \
    "$NODE_BIN" --check-interval 1s --check-timeout 1s --worker-threads 1 \
    --batch-idle-spin 0s --sched-policy batch >"$WORK/node-$port.log" 2>&1 &
  PIDS+=("$!")
  node_pids+=("$!")
  node_ports+=("$port")
done
for port in "${node_ports[@]}"; do wait_ok "http://127.0.0.1:$port/health"; done

gateway_port="$(free_port)"
GATEWAY_HOST=127.0.0.1 GATEWAY_PORT="$gateway_port" SERVICE_DISCOVERY_URL="$CONSUL_URL" RUST_LOG=warn \
  "$GATEWAY_BIN" >"$WORK/gateway.log" 2>&1 &
gateway_pid="$!"
PIDS+=("$gateway_pid")
wait_ok "http://127.0.0.1:$gateway_port/health"
wait_both_listed "$gateway_port" "both nodes"
say "cluster up: consul-dev :$consul_port, nodes :${node_ports[0]} :${node_ports[1]}, gateway :$gateway_port"

# A second gateway in front of two HTTP ceilings, registered in consul-dev by hand under their
# own service name (with an HTTP check on their /health, as the nodes register).
for _ in 1 2; do
  port="$(free_port)"
  "$CEILING_BIN" "127.0.0.1:$port" >"$WORK/ceiling-$port.log" 2>&1 &
  PIDS+=("$!")
  wait_ok "http://127.0.0.1:$port/health"
  curl -fsS -X PUT "$CONSUL_URL/v1/agent/service/register" -d "{\"ID\": \"http-ceiling-$port\",
    \"Name\": \"http-ceiling\", \"Address\": \"127.0.0.1\", \"Port\": $port, \"Check\": {
    \"HTTP\": \"http://127.0.0.1:$port/health\", \"Interval\": \"1s\", \"Timeout\": \"1s\"}}" >/dev/null
done
ceilings_gateway_port="$(free_port)"
GATEWAY_HOST=127.0.0.1 GATEWAY_PORT="$ceilings_gateway_port" SERVICE_DISCOVERY_URL="$CONSUL_URL" \
  SERVICE_NAME=http-ceiling RUST_LOG=warn "$GATEWAY_BIN" >"$WORK/gateway-ceilings.log" 2>&1 &
PIDS+=("$!")
wait_both_listed "$ceilings_gateway_port" "both HTTP ceilings"

# start_python_gateway PORT BACKENDS: the seed-style gateway with a static backend list.
start_python_gateway() {
  BACKENDS="$2" "$ROOT/.venv-bench/bin/uvicorn" --app-dir "$SHARED_DIR/bench" seed_gateway:app \
    --host 127.0.0.1 --port "$1" --log-level warning >"$WORK/py-gateway-$1.log" 2>&1 &
  PIDS+=("$!")
  wait_ok "http://127.0.0.1:$1/api/predict/services"
}
py_port="$(free_port)"
start_python_gateway "$py_port" "http://127.0.0.1:${node_ports[0]},http://127.0.0.1:${node_ports[1]}"

# The seed system: the Python gateway in front of two seed-style Python services.
seed_backends=""
for _ in 1 2; do
  port="$(free_port)"
  MODEL_PATH="$MODELS_DIR/LinearRegression.pkl" "$ROOT/.venv-bench/bin/uvicorn" \
    --app-dir "$SHARED_DIR/bench" seed_service:app --host 127.0.0.1 --port "$port" \
    --log-level warning >"$WORK/py-service-$port.log" 2>&1 &
  PIDS+=("$!")
  wait_ok "http://127.0.0.1:$port/health"
  seed_backends="${seed_backends:+$seed_backends,}http://127.0.0.1:$port"
done
seed_port="$(free_port)"
start_python_gateway "$seed_port" "$seed_backends"

body="$WORK/single.json"
echo '{"gdp_per_capita": 50000, "unemployment_rate": 5.2, "gdp_growth_rate_lag": 2.1, "gdp_growth_rate_ma": 2.3}' >"$body"

RESULTS="$WORK/results.jsonl"
: >"$RESULTS"
ROUND=1
# run_wrk NAME CONCURRENCY SECONDS URL
run_wrk() {
  local name="$1" conc="$2" secs="$3" url="$4" line
  say "round $ROUND: wrk $name c=$conc (${secs}s)"
  line="$(wrk_json "$body" 2 "$conc" "$secs" "$url")"
  tag_json "$line" server="$name" concurrency="$conc" round="$ROUND" >>"$RESULTS"
}

# --- throughput and latency -------------------------------------------------------------------
load_start="$(cut -d' ' -f1-3 /proc/loadavg)"
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
  for c in 16 64; do
    run_wrk gateway "$c" "$SECONDS_PER_RUN" "http://127.0.0.1:$gateway_port/api/predict/gdp_growth_rate"
    run_wrk direct-node "$c" "$SECONDS_PER_RUN" "http://127.0.0.1:${node_ports[0]}/predict"
    run_wrk seed-system "$c" "$SECONDS_PER_RUN" "http://127.0.0.1:$seed_port/api/predict/gdp_growth_rate"
    run_wrk python-gateway "$c" "$SECONDS_PER_RUN" "http://127.0.0.1:$py_port/api/predict/gdp_growth_rate"
    run_wrk gateway-ceilings "$c" "$SECONDS_PER_RUN" "http://127.0.0.1:$ceilings_gateway_port/api/predict/gdp_growth_rate"
  done
done
ROUND=1
gateway_rss_kb="$(awk '/^VmRSS/ {print $2}' "/proc/$gateway_pid/status")"

# --- fault run: kill -9 one node halfway through ---------------------------------------------
failures_before="$(gateway_failures)"
say "wrk gateway-fault c=16 (${FAULT_SECONDS}s), kill -9 of one node at $((FAULT_SECONDS / 2))s"
WRK_BODY_FILE="$body" wrk -s "$SHARED_DIR/bench/post.lua" -t2 -c16 -d"${FAULT_SECONDS}s" \
  --latency --timeout 10s "http://127.0.0.1:$gateway_port/api/predict/gdp_growth_rate" \
  >"$WORK/fault.out" 2>&1 </dev/null &
wrk_pid="$!"
PIDS+=("$wrk_pid")
sleep $((FAULT_SECONDS / 2))
kill -9 "${node_pids[0]}"
t_kill="$(date +%s%N)"
say "killed the node on :${node_ports[0]}"
refresh_ms=""
failures_at_refresh=""
deadline=$((SECONDS + FAULT_SECONDS))
while ((SECONDS < deadline)); do
  if [[ "$(healthy_count)" == 1 ]]; then
    refresh_ms="$(( ($(date +%s%N) - t_kill) / 1000000 ))"
    failures_at_refresh="$(gateway_failures)"
    break
  fi
  sleep 0.05
done
wait "$wrk_pid" || true
failures_after="$(gateway_failures)"
load_end="$(cut -d' ' -f1-3 /proc/loadavg)"
line="$(grep '^JSON:' "$WORK/fault.out" | sed 's/^JSON://')" || true
[[ -n "$line" ]] || die "wrk printed no summary for the fault run: $(cat "$WORK/fault.out")"
tag_json "$line" server=gateway-fault concurrency=16 >>"$RESULTS"
[[ -n "$refresh_ms" ]] || die "the gateway never dropped the killed node from its healthy set"
say "healthy set refreshed ${refresh_ms} ms after the kill"

mkdir -p "$OUT_DIR"
SECONDS_PER_RUN="$SECONDS_PER_RUN" ROUNDS="$ROUNDS" GATEWAY_RSS_KB="$gateway_rss_kb" FAULT_SECONDS="$FAULT_SECONDS" \
  FAILURES_BEFORE="$failures_before" FAILURES_AT_REFRESH="$failures_at_refresh" \
  FAILURES_AFTER="$failures_after" REFRESH_MS="$refresh_ms" \
  LOAD_START="$load_start" LOAD_END="$load_end" \
  python3 - "$RESULTS" "$OUT_DIR" "$ROOT/scripts" <<'PY'
import json, sys, datetime, platform, os
sys.path.insert(0, sys.argv[3])
from bench_stats import errors, median_runs, spread
env = os.environ
results = [json.loads(l) for l in open(sys.argv[1])]
out = sys.argv[2]
medians = median_runs([r for r in results if r["server"] != "gateway-fault"], ("server", "concurrency"))
def get(server, c):
    return medians[(server, c)]
meta = {
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "seconds_per_run": int(env["SECONDS_PER_RUN"]),
    "rounds": int(env["ROUNDS"]),
    "cpus": os.cpu_count(),
    "kernel": platform.release(),
    "wrk": "wrk -t2 --latency --timeout 10s, loopback, same machine",
    "setup": "consul-dev stand-in, 2 inference nodes (release), gateway (release); seed system = seed_gateway.py "
             "(1 uvicorn worker) in front of 2 seed_service.py (1 uvicorn worker each, LinearRegression.pkl); "
             "python-gateway = the same seed_gateway.py in front of the 2 Rust nodes; gateway-ceilings = a second "
             "gateway in front of 2 http_ceiling servers (parse the JSON, answer a constant)",
    "gateway_rss_kb": int(env["GATEWAY_RSS_KB"]),
    "loadavg_start": env["LOAD_START"],
    "loadavg_end": env["LOAD_END"],
}
ratios = []
for c in (16, 64):
    g, d, seed, p = get("gateway", c), get("direct-node", c), get("seed-system", c), get("python-gateway", c)
    gc = get("gateway-ceilings", c)
    ratios.append({"concurrency": c, "gateway_rps": g["rps"], "direct_rps": d["rps"], "seed_rps": seed["rps"],
                   "python_gateway_rps": p["rps"], "gateway_ceilings_rps": gc["rps"],
                   "gateway_ceilings_rps_rounds": gc["rps_rounds"],
                   "gateway_ceilings_vs_seed": gc["rps"] / seed["rps"] if seed["rps"] else None,
                   "gateway_rps_rounds": g["rps_rounds"], "direct_rps_rounds": d["rps_rounds"],
                   "seed_rps_rounds": seed["rps_rounds"], "python_gateway_rps_rounds": p["rps_rounds"],
                   "vs_direct": g["rps"] / d["rps"], "vs_seed": g["rps"] / seed["rps"] if seed["rps"] else None,
                   "vs_python_gateway": g["rps"] / p["rps"] if p["rps"] else None,
                   "gateway_p50_ms": g["lat_p50_us"] / 1000, "gateway_p99_ms": g["lat_p99_us"] / 1000,
                   "direct_p99_ms": d["lat_p99_us"] / 1000, "seed_p99_ms": seed["lat_p99_us"] / 1000,
                   "python_gateway_p99_ms": p["lat_p99_us"] / 1000, "gateway_errors": g["errors_total"]})
f = next(r for r in results if r["server"] == "gateway-fault")
fault = {
    "seconds": int(env["FAULT_SECONDS"]), "concurrency": 16, "requests": f["requests"], "rps": f["rps"],
    "wrk_errors": errors(f),
    "gateway_non_200": int(env["FAILURES_AFTER"]) - int(env["FAILURES_BEFORE"]),
    "gateway_non_200_after_refresh": int(env["FAILURES_AFTER"]) - int(env["FAILURES_AT_REFRESH"]),
    "refresh_ms_after_kill": int(env["REFRESH_MS"]),
    "p99_ms": f["lat_p99_us"] / 1000, "max_ms": f["lat_max_us"] / 1000,
}
failed = max(fault["wrk_errors"], fault["gateway_non_200"])
fault["failed_fraction"] = failed / max(f["requests"], 1)
targets = [
    ("gateway throughput >= 30% of a direct hit on one node (c16 and c64)", min(r["vs_direct"] for r in ratios), 0.30, ">="),
    ("gateway throughput >= 50x the seed system's Python gateway (c16 and c64)", min(r["vs_seed"] for r in ratios), 50.0, ">="),
    ("failed requests in the kill run <= 0.1%", fault["failed_fraction"] * 100, 0.1, "<="),
    ("failed requests after the healthy set refreshed == 0", fault["gateway_non_200_after_refresh"], 0, "<="),
]
summary = [{"target": n, "value": v, "limit": t, "met": (v >= t if op == ">=" else v <= t)} for n, v, t, op in targets]
json.dump({"meta": meta, "runs": results, "ratios": ratios, "fault": fault, "targets": summary},
          open(f"{out}/gateway.json", "w"), indent=1)

def fmt(x, d=0):
    return "-" if x is None else f"{x:,.{d}f}"
md = ["# Gateway benchmark\n",
      "Written by `scripts/bench-gateway.sh` (do not edit by hand). "
      f"{meta['date']}, {meta['cpus']} CPUs shared by wrk, the gateway, both nodes, consul-dev and the Python "
      f"baselines (and by other work on the machine), loopback, {meta['seconds_per_run']} s per load run, "
      f"{meta['rounds']} rounds. Each round runs every server in turn and each configuration is reported by its "
      "median round (the range shows all rounds). Absolute numbers depend on the machine; the ratios come from one run. "
      f"Load average (1/5/15 min) at the start of the load runs: {meta['loadavg_start']}, at the end: "
      f"{meta['loadavg_end']}.\n",
      "## Targets\n", "| target | measured | limit | met |", "|---|---|---|---|"]
for s in summary:
    md.append(f"| {s['target']} | {s['value']:.3g} | {s['limit']} | {'yes' if s['met'] else '**no**'} |")
md += ["\n## Single-row POST, LinearRegression (default model)\n",
       "- **gateway**: this gateway in front of 2 inference nodes found through consul-dev, each started as the node image and `scripts/run.sh` start replicas (`INFERENCE_NODE_WORKER_THREADS=1`: one HTTP worker thread; `INFERENCE_NODE_BATCH_IDLE_SPIN=0s`: an idle inference thread sleeps at once; `INFERENCE_NODE_SCHED_POLICY=batch`: their threads run under `SCHED_BATCH`, so a woken thread does not preempt the running one; all since the replicas share the CPUs).",
       "- **direct node**: one of those nodes hit directly (the hop's cost shows against it).",
       "- **seed system**: the seed-style Python gateway in front of 2 seed-style Python services "
       "(`../shared/bench/`, the setup of the issue's ~300 req/s reference). The 50x target compares against this.",
       "- **Python gateway → Rust nodes**: the same Python gateway in front of this project's 2 nodes, "
       "which isolates the gateway itself.",
       "- **gateway → 2 HTTP ceilings**: a second instance of this gateway in front of 2 minimal axum servers that "
       "parse the JSON and answer a constant (the node benchmark's HTTP ceiling): what the gateway reaches on this "
       "machine when the nodes cost almost nothing. `../shared/bench/README.md` measured a minimal hand-written axum "
       "proxy in front of 2 such servers at 24,852 req/s (c16) and 25,573 (c64) on its machine.\n",
       "| conc | gateway req/s | (rounds range) | direct node req/s | seed system req/s | Python gateway → Rust nodes req/s | "
       "gateway → 2 HTTP ceilings req/s | gateway / direct | gateway / seed system | gateway / Python gateway | "
       "gateway → 2 HTTP ceilings / seed system | gateway p50 | gateway p99 | direct p99 | seed system p99 |",
       "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
for r in ratios:
    c = r["concurrency"]
    md.append(f"| {c} | {fmt(r['gateway_rps'])} | {spread(get('gateway', c))} | {fmt(r['direct_rps'])} | {fmt(r['seed_rps'])} | "
              f"{fmt(r['python_gateway_rps'])} | {fmt(r['gateway_ceilings_rps'])} | {r['vs_direct']:.2f} | {fmt(r['vs_seed'], 1)}x | "
              f"{fmt(r['vs_python_gateway'], 1)}x | {fmt(r['gateway_ceilings_vs_seed'], 1)}x | "
              f"{r['gateway_p50_ms']:.2f} ms | {r['gateway_p99_ms']:.2f} ms | {r['direct_p99_ms']:.2f} ms | {r['seed_p99_ms']:.1f} ms |")
md += ["\n## Node killed mid-run\n",
       f"{fault['seconds']} s at c16 through the gateway; `kill -9` of one of the two nodes at {fault['seconds']//2} s. "
       f"The gateway retries a failed attempt once on the other node and ejects the dead one; Consul's HTTP check "
       f"(interval 1 s) marks it critical and the gateway's blocking query drops it.\n",
       f"- requests: {fmt(fault['requests'])} ({fmt(fault['rps'])} req/s), p99 {fault['p99_ms']:.2f} ms, max {fault['max_ms']:.1f} ms",
       f"- failed (wrk errors / gateway non-200): {fault['wrk_errors']} / {fault['gateway_non_200']} = {fault['failed_fraction']*100:.3f}%",
       f"- healthy set refreshed {fault['refresh_ms_after_kill']} ms after the kill; failed requests after that: {fault['gateway_non_200_after_refresh']}",
       f"\nGateway resident memory after the load runs: {meta['gateway_rss_kb']/1024:.1f} MB."]
open(f"{out}/gateway.md", "w").write("\n".join(md) + "\n")
print("\n".join(md))
PY
say "wrote $OUT_DIR/gateway.md and $OUT_DIR/gateway.json"
