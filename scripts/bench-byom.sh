#!/usr/bin/env bash
# Benchmarks the shipped classifier and mixed-type pipeline (issue 18) on the inference node,
# side by side, in the same run, with the usual Python way of serving any pickle
# ($SHARED_DIR/bench/any_model_service.py: FastAPI + pandas + scikit-learn, one uvicorn
# worker, one model per process):
#   - SlowGrowth: RandomForestClassifier, 100 trees, four numeric features;
#   - VoteChoice: Pipeline(ColumnTransformer(SimpleImputer + StandardScaler,
#     SimpleImputer + OneHotEncoder), LogisticRegression), five numbers and two strings.
# Single-row POST /predict at concurrency 16 with wrk and 1000-row batches of VoteChoice
# (rows/s; beside LinearRegression's as a reference for the machine's load) in BENCH_ROUNDS
# rounds, each running every configuration in turn, each reported by its median round; and
# the node's resident memory with every shipped model loaded.
# Writes benchmarks/byom.json and benchmarks/byom.md. Bounded: about
# 6 * BENCH_ROUNDS * BENCH_SECONDS seconds of load plus startup.
#
# Usage: scripts/bench-byom.sh   (BENCH_SECONDS=4 per run, BENCH_ROUNDS=3 by default)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

source "$ROOT/scripts/bench-lib.sh"
SECONDS_PER_RUN="${BENCH_SECONDS:-4}"
ROUNDS="${BENCH_ROUNDS:-3}"
bench_prepare
[[ -f "$SHARED_DIR/bench/any_model_service.py" ]] || die "$SHARED_DIR/bench/any_model_service.py not found; set SHARED_DIR"
for model in SlowGrowth VoteChoice; do
  [[ -f "$MODELS_DIR/$model.onnx" ]] || die "no $MODELS_DIR/$model.onnx; run convert-models first"
done

say "building the release node"
cargo build --release --locked -p inference-node --bin inference-node >&2
NODE_BIN="$TARGET_DIR/release/inference-node"

# Bodies: the README's first row of each model, and 1000 VoteChoice rows (every 7th with
# missing values) made from it.
python3 - "$MODELS_DIR/classifiers-golden.json" "$WORK" <<'PY'
import json, sys
golden = json.load(open(sys.argv[1]))["models"]
out = sys.argv[2]
for name in ("SlowGrowth", "VoteChoice"):
    json.dump(json.loads(golden[name]["body"])[0], open(f"{out}/{name}.json", "w"))
first, second = json.loads(golden["VoteChoice"]["body"])
parties = ["strong Democrat", "weak Democrat", "independent", "weak Republican", "strong Republican"]
rows = []
for i in range(1000):
    row = dict(second if i % 7 == 0 else first)
    row["age"] = 18 + i % 70
    row["party"] = parties[i % len(parties)]
    rows.append(row)
json.dump(rows, open(f"{out}/VoteChoice-1000.json", "w"))
PY
# A reference in the same run: 1000 rows of the GDP hold-out for LinearRegression (what
# benchmarks/node.md measures), to tell the pipeline's cost from the machine's load.
python3 - "$MODELS_DIR/golden.json" "$WORK/LinearRegression-1000.json" <<'PY'
import json, sys
golden = json.load(open(sys.argv[1]))
rows = golden["holdout"]["rows"]
json.dump([dict(zip(golden["feature_names"], rows[i % len(rows)])) for i in range(1000)], open(sys.argv[2], "w"))
PY

RESULTS="$WORK/results.jsonl"
: >"$RESULTS"
ROUND=1
run_wrk() { # run_wrk SERVER MODEL CONCURRENCY URL BODY
  local server="$1" model="$2" conc="$3" url="$4" body="$5" line
  say "round $ROUND: wrk $server $model c=$conc (${SECONDS_PER_RUN}s)"
  line="$(wrk_json "$body" 2 "$conc" "$SECONDS_PER_RUN" "$url")"
  tag_json "$line" server="$server" model="$model" concurrency="$conc" round="$ROUND" >>"$RESULTS"
}

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"

node_port="$(free_port)"
PORT="$node_port" HOST=127.0.0.1 MODELS_DIR="$MODELS_DIR" RUST_LOG=warn "$NODE_BIN" >"$WORK/node.log" 2>&1 &
node_pid=$!
PIDS+=("$node_pid")
wait_ok "http://127.0.0.1:$node_port/health"
n_models="$(curl -fsS "http://127.0.0.1:$node_port/models" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["models"]))')"

declare -A PY_PORT
for model in SlowGrowth VoteChoice; do
  PY_PORT[$model]="$(free_port)"
  MODEL_PATH="$MODELS_DIR/$model.pkl" "$ROOT/.venv-bench/bin/uvicorn" --app-dir "$SHARED_DIR/bench" \
    any_model_service:app --host 127.0.0.1 --port "${PY_PORT[$model]}" --log-level warning >"$WORK/py-$model.log" 2>&1 &
  PIDS+=("$!")
done
for model in SlowGrowth VoteChoice; do
  wait_ok "http://127.0.0.1:${PY_PORT[$model]}/health"
  # The baseline answers the same labels: a sanity check that both serve the same model.
  node_labels="$(curl -fsS -H 'content-type: application/json' --data-binary @"$WORK/$model.json" \
    "http://127.0.0.1:$node_port/predict?model=$model" | python3 -c 'import json,sys; print(json.load(sys.stdin)["prediction"])')"
  py_labels="$(curl -fsS -H 'content-type: application/json' --data-binary @"$WORK/$model.json" \
    "http://127.0.0.1:${PY_PORT[$model]}/predict" | python3 -c 'import json,sys; print(json.load(sys.stdin)["prediction"])')"
  [[ "$node_labels" == "$py_labels" ]] || die "$model: the node answers $node_labels, the Python service $py_labels"
done

for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
  for model in SlowGrowth VoteChoice; do
    run_wrk node "$model" 16 "http://127.0.0.1:$node_port/predict?model=$model" "$WORK/$model.json"
    run_wrk python "$model" 16 "http://127.0.0.1:${PY_PORT[$model]}/predict" "$WORK/$model.json"
  done
  run_wrk node-batch1000 VoteChoice 4 "http://127.0.0.1:$node_port/predict?model=VoteChoice" "$WORK/VoteChoice-1000.json"
  run_wrk node-batch1000-reference LinearRegression 4 "http://127.0.0.1:$node_port/predict" "$WORK/LinearRegression-1000.json"
done
rss_after_kb="$(awk '/^VmRSS/ {print $2}' "/proc/$node_pid/status")"
rss_peak_kb="$(awk '/^VmHWM/ {print $2}' "/proc/$node_pid/status")"

LOAD_BEFORE="$LOAD_BEFORE" LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)" SECONDS_PER_RUN="$SECONDS_PER_RUN" \
ROUNDS="$ROUNDS" N_MODELS="$n_models" RSS_AFTER_KB="$rss_after_kb" RSS_PEAK_KB="$rss_peak_kb" \
  python3 - "$RESULTS" "$OUT_DIR" "$ROOT/scripts" <<'PY'
import datetime, json, os, sys
sys.path.insert(0, sys.argv[3])
from bench_stats import median_runs, spread
results = [json.loads(l) for l in open(sys.argv[1])]
out = sys.argv[2]
meta = {
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "seconds_per_run": int(os.environ["SECONDS_PER_RUN"]), "rounds": int(os.environ["ROUNDS"]),
    "cpus": os.cpu_count(), "models_loaded": int(os.environ["N_MODELS"]),
    "node_rss_kb_after_load": int(os.environ["RSS_AFTER_KB"]), "node_rss_kb_peak": int(os.environ["RSS_PEAK_KB"]),
    "load_average_before": os.environ["LOAD_BEFORE"], "load_average_after": os.environ["LOAD_AFTER"],
}
medians = median_runs(results, ("server", "model", "concurrency"))
rows, targets = [], []
for model, what in [("SlowGrowth", "RandomForestClassifier, 100 trees"),
                    ("VoteChoice", "ColumnTransformer(imputer + scaler, OneHotEncoder) + LogisticRegression")]:
    n, p = medians[("node", model, 16)], medians[("python", model, 16)]
    ratio = n["rps"] / p["rps"]
    rows.append((model, what, n, p, ratio))
    targets.append((f"{model} ({what}) at c16: >= 100x the Python service", ratio, 100.0, ">="))
best = medians[("node-batch1000", "VoteChoice", 4)]
rows_per_s = best["rps"] * 1000
reference = medians[("node-batch1000-reference", "LinearRegression", 4)]
targets.append(("VoteChoice, 1000-row batches: >= 1M rows/s", rows_per_s, 1_000_000, ">="))
targets.append((f"node RSS with all {meta['models_loaded']} shipped models, after the runs: <= 80 MB",
                meta["node_rss_kb_after_load"] / 1024, 80.0, "<="))
errors = sum(m["errors_total"] for k, m in medians.items() if k[0].startswith("node"))
summary = [{"target": t, "value": v, "limit": l, "met": v >= l if op == ">=" else v <= l} for t, v, l, op in targets]
json.dump({"meta": meta, "runs": results, "batch_rows_per_s": rows_per_s, "node_errors": errors, "targets": summary},
          open(f"{out}/byom.json", "w"), indent=1)

def fmt(x, d=0):
    return f"{x:,.{d}f}"
md = ["# Classifier and pipeline benchmark (issue 18)\n",
      "Written by `scripts/bench-byom.sh` (do not edit by hand). "
      f"{meta['date']}, {meta['cpus']} CPUs, wrk on the same machine over loopback, {meta['seconds_per_run']} s per run, "
      f"{meta['rounds']} rounds (each round runs every server in turn; each configuration is reported by its median "
      "round). The node (release build, default settings, every shipped model loaded) and the Python baseline "
      "(`shared/bench/any_model_service.py`: FastAPI + pandas + scikit-learn, one uvicorn worker, the same pickle) "
      "share the CPUs with wrk, so absolute numbers depend on the machine's load; the ratios come from one run.\n",
      f"Load average (1/5/15 min) at the start: {meta['load_average_before']}; at the end: {meta['load_average_after']}.\n",
      "## Targets\n", "| target | measured | limit | met |", "|---|---|---|---|"]
for s in summary:
    v = s["value"]
    md.append(f"| {s['target']} | {fmt(v, 1) if v < 1000 else fmt(v)} | {fmt(s['limit'])} | {'yes' if s['met'] else '**no**'} |")
md += ["\n## Single-row POST /predict, concurrency 16\n",
       "| model | estimator | node req/s | (rounds) | Python req/s | (rounds) | node / Python | node p50 | node p99 | Python p99 |",
       "|---|---|---|---|---|---|---|---|---|---|"]
for model, what, n, p, ratio in rows:
    md.append(f"| {model} | {what} | {fmt(n['rps'])} | {spread(n)} | {fmt(p['rps'])} | {spread(p)} | **{ratio:.0f}x** | "
              f"{n['lat_p50_us']/1000:.2f} ms | {n['lat_p99_us']/1000:.2f} ms | {p['lat_p99_us']/1000:.1f} ms |")
md += ["\n## Other measurements\n",
       f"- VoteChoice, 1000-row batches at c=4 (every 7th row with missing values): {fmt(best['rps'])} req/s = "
       f"**{fmt(rows_per_s)} rows/s** (median round; rounds {spread(best)} req/s; p99 {best['lat_p99_us']/1000:.1f} ms).",
       f"- Reference, same rounds: LinearRegression (4 numeric features) in 1000-row batches at c=4: "
       f"{fmt(reference['rps'] * 1000)} rows/s (rounds {spread(reference)} req/s); benchmarks/node.md has its number on a "
       "quieter machine.",
       f"- Node resident memory with all {meta['models_loaded']} shipped models after the runs: "
       f"**{meta['node_rss_kb_after_load']/1024:.1f} MB** (peak {meta['node_rss_kb_peak']/1024:.1f} MB).",
       f"- Non-2xx or socket errors in the node's runs: {errors}."]
open(f"{out}/byom.md", "w").write("\n".join(md) + "\n")
print("\n".join(md))
PY
say "wrote $OUT_DIR/byom.md and $OUT_DIR/byom.json"
