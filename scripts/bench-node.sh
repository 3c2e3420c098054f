#!/usr/bin/env bash
# Benchmarks the inference node in one run, side by side with its two baselines:
#   - the HTTP ceiling: a minimal axum server that parses the same JSON and answers a constant
#     (inference-node/examples/http_ceiling.rs);
#   - the seed-style Python service ($SHARED_DIR/bench/seed_service.py: FastAPI + pandas +
#     scikit-learn, one uvicorn worker).
# Measures single-row POST /predict for LinearRegression and RandomForest at concurrency 1, 16
# and 64 with wrk, the node with dynamic batching off, 1000-row batch throughput, resident
# memory with all models loaded, and the time to the first 200 from /health. The single-row
# runs are repeated in BENCH_ROUNDS rounds, each round running every server in turn, and each
# configuration is reported by its median round (scripts/bench_stats.py). Writes
# benchmarks/node.json and benchmarks/node.md (table + ratios against the targets).
#
# Usage: scripts/bench-node.sh   (BENCH_SECONDS=4 per run, BENCH_ROUNDS=3 by default)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

source "$ROOT/scripts/bench-lib.sh"
SECONDS_PER_RUN="${BENCH_SECONDS:-4}"
ROUNDS="${BENCH_ROUNDS:-3}"
bench_prepare

say "building release binaries"
cargo build --release --locked -p inference-node --bin inference-node --example http_ceiling >&2
NODE_BIN="$TARGET_DIR/release/inference-node"
CEILING_BIN="$TARGET_DIR/release/examples/http_ceiling"

# start_node PORT [FLAGS...]: starts the release node; echoes its PID.
start_node() {
  local port="$1"; shift
  PORT="$port" HOST=127.0.0.1 MODELS_DIR="$MODELS_DIR" RUST_LOG=warn \
    "$NODE_BIN" "$@" >"$WORK/node-$port.log" 2>&1 &
  echo $!
}

body_single="$WORK/single.json"
echo '{"gdp_per_capita": 39199.98, "unemployment_rate": 4.1, "gdp_growth_rate_lag": 5.18, "gdp_growth_rate_ma": 4.77}' >"$body_single"
body_batch="$WORK/batch.json"
python3 - "$MODELS_DIR/golden.json" "$body_batch" <<'PY'
import json, sys
golden = json.load(open(sys.argv[1]))
names = golden["feature_names"]
rows = golden["holdout"]["rows"]
batch = [dict(zip(names, rows[i % len(rows)])) for i in range(1000)]
json.dump(batch, open(sys.argv[2], "w"))
PY

RESULTS="$WORK/results.jsonl"
: >"$RESULTS"
ROUND=1
# run_wrk SERVER MODEL CONCURRENCY URL BODY
run_wrk() {
  local server="$1" model="$2" conc="$3" url="$4" body="$5" threads=2 line
  ((conc < threads)) && threads="$conc"
  say "round $ROUND: wrk $server $model c=$conc (${SECONDS_PER_RUN}s)"
  line="$(wrk_json "$body" "$threads" "$conc" "$SECONDS_PER_RUN" "$url")"
  tag_json "$line" server="$server" model="$model" concurrency="$conc" round="$ROUND" >>"$RESULTS"
}

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"

# --- the node: ready time and memory -------------------------------------------------------
node_port="$(free_port)"
t0="$(date +%s%N)"
node_pid="$(start_node "$node_port")"
PIDS+=("$node_pid")
wait_ok "http://127.0.0.1:$node_port/health"
t1="$(date +%s%N)"
ready_ms="$(( (t1 - t0) / 1000000 ))"
n_models="$(curl -fsS "http://127.0.0.1:$node_port/models" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["models"]))')"
rss_idle_kb="$(awk '/^VmRSS/ {print $2}' "/proc/$node_pid/status")"
say "node ready in ${ready_ms} ms with $n_models models, RSS ${rss_idle_kb} kB"

# --- baselines -------------------------------------------------------------------------------
ceiling_port="$(free_port)"
"$CEILING_BIN" "127.0.0.1:$ceiling_port" >"$WORK/ceiling.log" 2>&1 &
PIDS+=("$!")
wait_ok "http://127.0.0.1:$ceiling_port/health"

start_python() { # start_python MODEL PORT
  MODEL_PATH="$MODELS_DIR/$1.pkl" "$ROOT/.venv-bench/bin/uvicorn" --app-dir "$SHARED_DIR/bench" \
    seed_service:app --host 127.0.0.1 --port "$2" --log-level warning >"$WORK/py-$1.log" 2>&1 &
  PIDS+=("$!")
}
py_lr_port="$(free_port)"; start_python LinearRegression "$py_lr_port"; py_lr_pid="${PIDS[-1]}"
py_rf_port="$(free_port)"; start_python RandomForest "$py_rf_port"
t0="$(date +%s%N)"
wait_ok "http://127.0.0.1:$py_lr_port/health"
py_ready_ms="$(( ($(date +%s%N) - t0) / 1000000 ))"
wait_ok "http://127.0.0.1:$py_rf_port/health"
py_rss_kb="$(awk '/^VmRSS/ {print $2}' "/proc/$py_lr_pid/status")"

# The same node started with batching off, for the default's decision.
nobatch_port="$(free_port)"
nobatch_pid="$(start_node "$nobatch_port" --batch-max-rows 1)"
PIDS+=("$nobatch_pid")
wait_ok "http://127.0.0.1:$nobatch_port/health"

# --- single-row runs, in rounds --------------------------------------------------------------
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
  for c in 1 16 64; do
    run_wrk ceiling - "$c" "http://127.0.0.1:$ceiling_port/predict" "$body_single"
    run_wrk node LinearRegression "$c" "http://127.0.0.1:$node_port/predict" "$body_single"
    run_wrk node RandomForest "$c" "http://127.0.0.1:$node_port/predict?model=RandomForest" "$body_single"
    run_wrk python LinearRegression "$c" "http://127.0.0.1:$py_lr_port/predict" "$body_single"
    run_wrk python RandomForest "$c" "http://127.0.0.1:$py_rf_port/predict" "$body_single"
    if ((c > 1)); then
      run_wrk node-nobatch LinearRegression "$c" "http://127.0.0.1:$nobatch_port/predict" "$body_single"
      run_wrk node-nobatch RandomForest "$c" "http://127.0.0.1:$nobatch_port/predict?model=RandomForest" "$body_single"
    fi
  done
done
ROUND=1

# --- 1000-row batches ----------------------------------------------------------------------
run_wrk node-batch1000 LinearRegression 2 "http://127.0.0.1:$node_port/predict" "$body_batch"
run_wrk node-batch1000 LinearRegression 4 "http://127.0.0.1:$node_port/predict" "$body_batch"
rss_after_kb="$(awk '/^VmRSS/ {print $2}' "/proc/$node_pid/status")"
rss_peak_kb="$(awk '/^VmHWM/ {print $2}' "/proc/$node_pid/status")"

mkdir -p "$OUT_DIR"
LOAD_BEFORE="$LOAD_BEFORE" LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)" \
SECONDS_PER_RUN="$SECONDS_PER_RUN" ROUNDS="$ROUNDS" READY_MS="$ready_ms" PY_READY_MS="$py_ready_ms" N_MODELS="$n_models" \
RSS_IDLE_KB="$rss_idle_kb" RSS_AFTER_KB="$rss_after_kb" RSS_PEAK_KB="$rss_peak_kb" PY_RSS_KB="$py_rss_kb" \
  python3 - "$RESULTS" "$OUT_DIR" "$ROOT/scripts" <<'PY'
import json, sys, datetime, platform, os
sys.path.insert(0, sys.argv[3])
from bench_stats import median_runs, spread
results = [json.loads(l) for l in open(sys.argv[1])]
out = sys.argv[2]
meta = {
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "seconds_per_run": int(os.environ["SECONDS_PER_RUN"]),
    "rounds": int(os.environ["ROUNDS"]),
    "cpus": os.cpu_count(),
    "kernel": platform.release(),
    "wrk": "wrk -t2 (-t1 at c1) --latency, loopback, same machine",
    "node_ready_ms": int(os.environ["READY_MS"]),
    "python_ready_ms": int(os.environ["PY_READY_MS"]),
    "models_loaded": int(os.environ["N_MODELS"]),
    "node_rss_kb_idle": int(os.environ["RSS_IDLE_KB"]),
    "node_rss_kb_after_load": int(os.environ["RSS_AFTER_KB"]),
    "node_rss_kb_peak": int(os.environ["RSS_PEAK_KB"]),
    "python_rss_kb": int(os.environ["PY_RSS_KB"] or 0),
    "load_average_before": os.environ["LOAD_BEFORE"],
    "load_average_after": os.environ["LOAD_AFTER"],
}
medians = median_runs(results, ("server", "model", "concurrency"))
def get(server, model, c):
    return medians.get((server, model, c))
ratios = []
rows = []
for model in ["LinearRegression", "RandomForest"]:
    for c in [1, 16, 64]:
        n, ce, py, nb = get("node", model, c), get("ceiling", "-", c), get("python", model, c), get("node-nobatch", model, c)
        ratio_ceiling = n["rps"] / ce["rps"]
        ratio_python = n["rps"] / py["rps"] if py and py["rps"] > 0 else None
        p99_ratio = n["lat_p99_us"] / ce["lat_p99_us"] if ce["lat_p99_us"] else None
        rows.append((model, c, n, ce, py, nb, ratio_ceiling, ratio_python, p99_ratio))
        ratios.append({"model": model, "concurrency": c, "node_rps": n["rps"], "ceiling_rps": ce["rps"],
                       "python_rps": py["rps"] if py else None, "nobatch_rps": nb["rps"] if nb else None,
                       "node_rps_rounds": n["rps_rounds"], "ceiling_rps_rounds": ce["rps_rounds"],
                       "python_rps_rounds": py["rps_rounds"] if py else None,
                       "vs_ceiling": ratio_ceiling, "vs_python": ratio_python, "p99_vs_ceiling": p99_ratio,
                       "ceiling_vs_python": ce["rps"] / py["rps"] if py and py["rps"] > 0 else None})
batch = [r for r in results if r["server"] == "node-batch1000"]
best_batch = max(batch, key=lambda r: r["rps"])
rows_per_s = best_batch["rps"] * 1000
errors = sum(m["errors_total"] for k, m in medians.items() if k[0].startswith("node"))
loaded = [x for x in ratios if x["concurrency"] > 1]
c1 = [x for x in ratios if x["concurrency"] == 1]
c64 = [x for x in ratios if x["concurrency"] == 64]
targets = [
    ("throughput >= 60% of the HTTP ceiling (every model, every concurrency)", min(x["vs_ceiling"] for x in ratios), 0.60, ">="),
    ("throughput >= 50x the Python service (every model, c16 and c64)", min(x["vs_python"] for x in loaded if x["vs_python"]), 50.0, ">="),
    ("p99 at c64 <= 2x the ceiling's (worst model)", max(x["p99_vs_ceiling"] for x in c64), 2.0, "<="),
    ("1000-row batches >= 2M rows/s (LinearRegression)", rows_per_s, 2_000_000, ">="),
    ("RSS <= 60 MB with all models loaded (after the load runs)", meta["node_rss_kb_after_load"] / 1024, 60.0, "<="),
    ("ready (first 200 from /health) <= 500 ms", meta["node_ready_ms"], 500, "<="),
]
summary = []
for name, value, target, op in targets:
    ok = value >= target if op == ">=" else value <= target
    summary.append({"target": name, "value": value, "limit": target, "met": ok})
c1_note = {"node_vs_python_min": min(x["vs_python"] for x in c1 if x["vs_python"]),
           "ceiling_vs_python_LinearRegression": next(x["ceiling_vs_python"] for x in c1 if x["model"] == "LinearRegression")}
json.dump({"meta": meta, "runs": results, "ratios": ratios, "batch_rows_per_s": rows_per_s,
           "node_errors": errors, "targets": summary, "c1_vs_python": c1_note},
          open(f"{out}/node.json", "w"), indent=1)

def fmt(x, d=0):
    return "-" if x is None else f"{x:,.{d}f}"
md = []
md.append("# Inference node benchmark\n")
md.append("Written by `scripts/bench-node.sh` (do not edit by hand). "
          f"{meta['date']}, {meta['cpus']} CPUs, wrk on the same machine over loopback, "
          f"{meta['seconds_per_run']} s per run, {meta['rounds']} rounds. Each round runs every server in turn, and each "
          "configuration is reported by its median round (the req/s range shows all rounds), so a change in machine load "
          "during the run hits every server alike. The node, the HTTP ceiling, the Python services and wrk all share "
          "the same CPUs, so absolute numbers are machine- and load-dependent; the ratios come from one run.\n")
md.append(f"Load average (1/5/15 min) at the start: {meta['load_average_before']}; at the end: {meta['load_average_after']}.\n")
py_c16 = get("python", "LinearRegression", 16)
if py_c16 and py_c16["rps"] < 800:
    md.append(f"**Noisy run:** the Python baseline reached {py_c16['rps']:,.0f} req/s for LinearRegression at c16, "
              "against 1,025 req/s measured on an idle machine (shared/bench/README.md): other work was competing for the "
              "2 CPUs, so treat the ratios below as indicative and rerun on an idle machine for target numbers.\n")
md.append("## Targets\n")
md.append("| target | measured | limit | met |\n|---|---|---|---|")
for s in summary:
    v = s["value"]
    shown = f"{v:.2f}" if isinstance(v, float) and v < 1000 else fmt(v)
    md.append(f"| {s['target']} | {shown} | {fmt(s['limit'], 2) if s['limit'] < 1000 else fmt(s['limit'])} | {'yes' if s['met'] else '**no**'} |")
md.append(f"\nThe 50x target is checked at c16 and c64, where the issue's reference numbers were taken (ceiling ~86k req/s, "
          f"Python ~1,000 req/s: 86x apart). At c1 a server is bound by one request's round trip, not by its CPU cost: "
          f"there the node reaches {c1_note['node_vs_python_min']:.1f}x the Python service (worst model) while the "
          f"HTTP ceiling itself reaches only {c1_note['ceiling_vs_python_LinearRegression']:.1f}x (LinearRegression).\n")
md.append("## Single-row POST /predict\n")
md.append("| model | conc | node req/s | (rounds range) | ceiling req/s | Python req/s | node / ceiling | node / Python | node p50 | node p99 | ceiling p99 | Python p99 | node, batching off req/s |")
md.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for model, c, n, ce, py, nb, rc, rp, p99 in rows:
    md.append(f"| {model} | {c} | {fmt(n['rps'])} | {spread(n)} | {fmt(ce['rps'])} | {fmt(py['rps'] if py else None)} | {rc:.2f} | "
              f"{fmt(rp, 1)}x | {n['lat_p50_us']/1000:.2f} ms | {n['lat_p99_us']/1000:.2f} ms | {ce['lat_p99_us']/1000:.2f} ms | "
              f"{(py['lat_p99_us']/1000 if py else 0):.1f} ms | {fmt(nb['rps']) if nb else '-'} |")
md.append("\n## Other measurements\n")
md.append(f"- 1000-row batches, LinearRegression: {fmt(best_batch['rps'])} req/s = **{fmt(rows_per_s)} rows/s** "
          f"(c={best_batch['concurrency']}, p99 {best_batch['lat_p99_us']/1000:.1f} ms).")
md.append(f"- Ready (process start to first 200 from /health) with {meta['models_loaded']} models: **{meta['node_ready_ms']} ms** "
          f"(the Python service: {meta['python_ready_ms']} ms, one model).")
md.append(f"- Resident memory with all {meta['models_loaded']} models: {meta['node_rss_kb_idle']/1024:.1f} MB after startup, "
          f"**{meta['node_rss_kb_after_load']/1024:.1f} MB** after the load runs (peak {meta['node_rss_kb_peak']/1024:.1f} MB); "
          f"the Python service with one model: {meta['python_rss_kb']/1024:.1f} MB.")
md.append(f"- Non-2xx or socket errors in the node's runs (all rounds): {errors}.")
md.append("\nBatching: the node merges concurrent single-row requests into one ONNX Runtime call "
          "(`INFERENCE_NODE_BATCH_MAX_ROWS`, default 64; `INFERENCE_NODE_BATCH_MAX_WAIT`, default 0 = take what is queued, add no delay). "
          "The last column is the same node started with `--batch-max-rows 1`.")
open(f"{out}/node.md", "w").write("\n".join(md) + "\n")
print("\n".join(md))
PY
say "wrote $OUT_DIR/node.md and $OUT_DIR/node.json"
