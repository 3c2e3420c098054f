#!/usr/bin/env bash
# Benchmarks XGBoost and LightGBM models on the inference node (issue 19), side by side, in the
# same run, with the usual Python way of serving any pickle ($SHARED_DIR/bench/
# any_model_service.py: FastAPI + pandas + the library's sklearn wrapper, one uvicorn worker,
# one model per process):
#   - BoostXGB: xgboost.XGBRegressor, 200 trees (max_depth 6), served in float32 as XGBoost;
#   - BoostLGBM: lightgbm.LGBMRegressor, 200 trees (31 leaves), served in double as LightGBM.
# Both are trained by scripts/train_boosted_bench.py (statsmodels' `fair` data, 10 % of the
# cells missing) into a scratch folder, pickled, and converted there by convert-models.
# Single-row POST /predict at concurrency 16 with wrk, and 1000-row batches of each model at
# c=4 (rows/s; beside LinearRegression's as a reference for the machine's load; the node's
# own metrics give the ONNX Runtime time per batch), as JSON rows to POST /predict and as Open
# Inference Protocol binary tensors (scripts/bench-post-v2.lua), each on the node as it ships
# (the compiled TreeEnsemble kernel, with the settings its image and scripts/run.sh start it
# with: IMAGE_SETTINGS below), on a second node with ONNX Runtime's kernel
# (INFERENCE_NODE_TREE_KERNEL=onnxruntime, the same settings) and on a third with the compiled
# kernel and no settings at all (the binary's defaults), in BENCH_ROUNDS rounds, each running
# every configuration in turn, each reported by its median round.
# Writes benchmarks/boosted.json and benchmarks/boosted.md. Bounded: about
# 19 * BENCH_ROUNDS * BENCH_SECONDS seconds of load plus training, builds and startup.
#
# Usage: scripts/bench-boosted.sh   (BENCH_SECONDS=4 per run, BENCH_ROUNDS=3 by default)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

source "$ROOT/scripts/bench-lib.sh"
SECONDS_PER_RUN="${BENCH_SECONDS:-4}"
ROUNDS="${BENCH_ROUNDS:-3}"
MODELS=(BoostXGB BoostLGBM)
bench_prepare_tools
[[ -f "$SHARED_DIR/bench/any_model_service.py" ]] || die "$SHARED_DIR/bench/any_model_service.py not found; set SHARED_DIR"
[[ -f "$MODELS_DIR/LinearRegression.onnx" ]] || die "no $MODELS_DIR/LinearRegression.onnx (the reference); run convert-models first"
VENV="$ROOT/.venv-bench-boosted"
python_venv "$VENV" "$ROOT/scripts/requirements-bench-boosted.txt"

say "building the release node and convert-models"
cargo build --release --locked -p inference-node --bin inference-node -p tools --bin convert-models >&2
NODE_BIN="$TARGET_DIR/release/inference-node"
# The settings the node image (inference-node/Dockerfile) and scripts/run.sh start nodes with:
# the node shares its CPUs (here with wrk). Checked against the Dockerfile, so they cannot drift.
IMAGE_SETTINGS=(INFERENCE_NODE_WORKER_THREADS=1 INFERENCE_NODE_BATCH_IDLE_SPIN=0s INFERENCE_NODE_SCHED_POLICY=batch)
for setting in "${IMAGE_SETTINGS[@]}"; do
  grep -q "^ *$setting" "$ROOT/inference-node/Dockerfile" || die "inference-node/Dockerfile no longer sets $setting"
done

# The models, their bodies (one row; 1000 held-out rows) and the libraries' own predictions.
BOOSTED="$WORK/models"
say "training the 200-tree models (scripts/train_boosted_bench.py)"
nice "$VENV/bin/python" "$ROOT/scripts/train_boosted_bench.py" --out-dir "$WORK/train" >/dev/null
mkdir -p "$BOOSTED"
for model in "${MODELS[@]}"; do
  cp "$WORK/train/$model.pkl" "$BOOSTED/"
done
"$TARGET_DIR/release/convert-models" "$BOOSTED" >&2
cp "$MODELS_DIR/LinearRegression.onnx" "$BOOSTED/"
# The reference in the same run: 1000 rows of the GDP hold-out for LinearRegression (what
# benchmarks/node.md measures), to tell the trees' cost from the machine's load.
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
# infer_totals PORT MODEL: the node's ONNX Runtime seconds and calls so far for MODEL ("sum count").
infer_totals() {
  curl -fsS "http://127.0.0.1:$1/metrics" | awk -v m="model=\"$2\"" '
    index($0, "nv_inference_compute_infer_duration_seconds_sum{") == 1 && index($0, m) { s = $2 }
    index($0, "nv_inference_compute_infer_duration_seconds_count{") == 1 && index($0, m) { c = $2 }
    END { print s + 0, c + 0 }'
}
# run_batches MODEL BODY [KERNEL [FORMAT [SETTINGS]]]: wrk with 1000-row bodies at c=4 on the
# node whose TreeEnsemble kernel is KERNEL (compiled, the default, or onnxruntime) and whose
# settings are SETTINGS (image, the default, or default) as FORMAT (json: rows to POST /predict,
# the default; v2: a binary V2 infer request), tagged with the node's mean ONNX Runtime time per
# call during the run (each 1000-row request is one call: larger than the batcher's merge
# limit, it runs alone).
run_batches() {
  local model="$1" body="$2" kernel="${3:-compiled}" format="${4:-json}" settings="${5:-image}"
  local before after line port url
  port="${NODE_PORT[$kernel/$settings]}"
  url="http://127.0.0.1:$port/predict?model=$model"
  [[ "$format" == v2 ]] && url="http://127.0.0.1:$port/v2/models/$model/infer"
  before="$(infer_totals "$port" "$model")"
  say "round $ROUND: wrk node-batch1000 $model $kernel $settings $format c=4 (${SECONDS_PER_RUN}s)"
  if [[ "$format" == v2 ]]; then
    line="$(WRK_SCRIPT="$ROOT/scripts/bench-post-v2.lua" SHARED_POST_LUA="$SHARED_DIR/bench/post.lua" \
      WRK_HEADER_LEN="$(cat "$body.header-length")" wrk_json "$body" 2 4 "$SECONDS_PER_RUN" "$url")"
  else
    line="$(wrk_json "$body" 2 4 "$SECONDS_PER_RUN" "$url")"
  fi
  after="$(infer_totals "$port" "$model")"
  line="$(tag_json "$line" server=node-batch1000 model="$model" concurrency=4 round="$ROUND" \
    kernel="$kernel" format="$format" settings="$settings")"
  python3 -c '
import json, sys
run = json.loads(sys.argv[1])
(s0, c0), (s1, c1) = (map(float, a.split()) for a in sys.argv[2:4])
run["onnx_ms_per_call"] = (s1 - s0) / (c1 - c0) * 1000 if c1 > c0 else None
print(json.dumps(run))' "$line" "$before" "$after" >>"$RESULTS"
}

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"

# The node as it ships (compiled kernel, the image's settings), one running trees on ONNX
# Runtime's own kernel, and the node with the binary's default settings.
declare -A NODE_PORT
NODES=(compiled/image onnxruntime/image compiled/default)
for node in "${NODES[@]}"; do
  kernel="${node%/*}" settings=()
  [[ "${node#*/}" == image ]] && settings=("${IMAGE_SETTINGS[@]}")
  NODE_PORT[$node]="$(free_port)"
  env "${settings[@]}" GDP_MODEL_NAME=LinearRegression PORT="${NODE_PORT[$node]}" HOST=127.0.0.1 \
    MODELS_DIR="$BOOSTED" RUST_LOG=warn INFERENCE_NODE_TREE_KERNEL="$kernel" "$NODE_BIN" \
    >"$WORK/node-${node/\//-}.log" 2>&1 &
  PIDS+=("$!")
  wait_ok "http://127.0.0.1:${NODE_PORT[$node]}/health"
done
node_port="${NODE_PORT[compiled/image]}"

# The 1000 rows as V2 binary requests (FP64 in the model's feature order, NaN for missing; the
# answer as binary FP64 too), checked against every node's JSON answers: the same bits.
for model in "${MODELS[@]}"; do
  python3 "$ROOT/scripts/bench_v2_body.py" "$WORK/train/$model-1000.json" "$WORK/$model-1000.v2" "$model" \
    "http://127.0.0.1:${NODE_PORT[compiled/image]}" "http://127.0.0.1:${NODE_PORT[onnxruntime/image]}" \
    "http://127.0.0.1:${NODE_PORT[compiled/default]}" ||
    die "$model: the V2 body or the kernels' answers are wrong"
done

declare -A PY_PORT
for model in "${MODELS[@]}"; do
  PY_PORT[$model]="$(free_port)"
  MODEL_PATH="$BOOSTED/$model.pkl" "$VENV/bin/uvicorn" --app-dir "$SHARED_DIR/bench" \
    any_model_service:app --host 127.0.0.1 --port "${PY_PORT[$model]}" --log-level warning >"$WORK/py-$model.log" 2>&1 &
  PIDS+=("$!")
done
# Both servers answer the libraries' own prediction for the single row: a check that both
# serve the same model (XGBoost's float32 value exactly; LightGBM's within 1e-12 relative).
for model in "${MODELS[@]}"; do
  wait_ok "http://127.0.0.1:${PY_PORT[$model]}/health"
  for url in "http://127.0.0.1:$node_port/predict?model=$model" "http://127.0.0.1:${PY_PORT[$model]}/predict"; do
    curl -fsS -H 'content-type: application/json' --data-binary @"$WORK/train/$model.json" "$url" |
      python3 -c '
import json, sys
got = json.load(sys.stdin)["prediction"][0]
want = json.load(open(sys.argv[1]))["models"][sys.argv[2]]["prediction"]
if abs(got - want) > 1e-12 * abs(want):
    sys.exit(f"{sys.argv[3]} answers {got!r} for {sys.argv[2]}, the library predicts {want!r}")' \
        "$WORK/train/expected.json" "$model" "$url" || die "$model: the servers disagree with the library"
  done
done

for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
  for model in "${MODELS[@]}"; do
    run_wrk node "$model" 16 "http://127.0.0.1:$node_port/predict?model=$model" "$WORK/train/$model.json"
    run_wrk node-default "$model" 16 "http://127.0.0.1:${NODE_PORT[compiled/default]}/predict?model=$model" \
      "$WORK/train/$model.json"
    run_wrk python "$model" 16 "http://127.0.0.1:${PY_PORT[$model]}/predict" "$WORK/train/$model.json"
  done
  for model in "${MODELS[@]}"; do
    for node in "${NODES[@]}"; do
      run_batches "$model" "$WORK/train/$model-1000.json" "${node%/*}" json "${node#*/}"
      run_batches "$model" "$WORK/$model-1000.v2" "${node%/*}" v2 "${node#*/}"
    done
  done
  # the reference as benchmarks/node.md measures it: the binary's default settings
  run_batches LinearRegression "$WORK/LinearRegression-1000.json" compiled json default
done

LOAD_BEFORE="$LOAD_BEFORE" LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)" SECONDS_PER_RUN="$SECONDS_PER_RUN" \
IMAGE_SETTINGS="${IMAGE_SETTINGS[*]}" \
ROUNDS="$ROUNDS" python3 - "$RESULTS" "$OUT_DIR" "$ROOT/scripts" "$WORK/train/expected.json" <<'PY'
import datetime, json, os, sys
sys.path.insert(0, sys.argv[3])
from bench_stats import median_runs, spread
results = [json.loads(l) for l in open(sys.argv[1])]
out = sys.argv[2]
expected = json.load(open(sys.argv[4]))
meta = {
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "seconds_per_run": int(os.environ["SECONDS_PER_RUN"]), "rounds": int(os.environ["ROUNDS"]),
    "cpus": os.cpu_count(), "load_average_before": os.environ["LOAD_BEFORE"],
    "load_average_after": os.environ["LOAD_AFTER"], "versions": expected["versions"],
    "models": expected["models"], "train_rows": expected["train_rows"],
}
settings_of = lambda server: "default" if server == "node-default" else "image"
for r in results:  # the single-row runs: the node (image settings or default) or Python, JSON
    r.setdefault("kernel", "compiled")
    r.setdefault("format", "json")
    r.setdefault("settings", settings_of(r["server"]))
medians = median_runs(results, ("server", "model", "concurrency", "kernel", "format", "settings"))
single = lambda server, model: medians[(server, model, 16, "compiled", "json", settings_of(server))]
batch = lambda model, kernel="compiled", form="json", settings="image": \
    medians[("node-batch1000", model, 4, kernel, form, settings)]
what = {"BoostXGB": "XGBRegressor, 200 trees, max_depth 6 (float32)",
        "BoostLGBM": "LGBMRegressor, 200 trees, 31 leaves (double)"}
rows, batches, targets = [], [], []
for model in ("BoostXGB", "BoostLGBM"):
    n, d, p = single("node", model), single("node-default", model), single("python", model)
    ratio = n["rps"] / p["rps"]
    rows.append((model, n, d, p, ratio))
    targets.append((f"{model} ({what[model]}) at c16: >= 50x the Python service", ratio, 50.0))
forms = {"json": "JSON rows to POST /predict", "v2": "V2 binary tensor"}
for model in ("BoostXGB", "BoostLGBM"):
    for form in forms:
        for kernel, settings in (("compiled", "image"), ("onnxruntime", "image"), ("compiled", "default")):
            batches.append((model, kernel, settings, form, batch(model, kernel, form, settings)))
        targets.append((f"{model}, 1000-row batches as {forms[form]}: >= 500k rows/s",
                        batch(model, "compiled", form)["rps"] * 1000, 500_000))
reference = batch("LinearRegression", settings="default")
errors = sum(m["errors_total"] for k, m in medians.items() if k[0].startswith("node"))
summary = [{"target": t, "value": v, "limit": l, "met": v >= l} for t, v, l in targets]
json.dump({"meta": meta, "runs": results, "node_errors": errors, "targets": summary},
          open(f"{out}/boosted.json", "w"), indent=1)

def fmt(x, d=0):
    return f"{x:,.{d}f}"
v = meta["versions"]
md = ["# XGBoost and LightGBM benchmark (issue 19)\n",
      "Written by `scripts/bench-boosted.sh` (do not edit by hand). "
      f"{meta['date']}, {meta['cpus']} CPUs, wrk on the same machine over loopback, {meta['seconds_per_run']} s per run, "
      f"{meta['rounds']} rounds (each round runs every server in turn; each configuration is reported by its median "
      "round). The node (release build, started with the settings of its image and `scripts/run.sh`: "
      + ", ".join(f"`{s}`" for s in os.environ["IMAGE_SETTINGS"].split()) + ", "
      "for a node that shares its CPUs; a second node with no settings, the binary's defaults, in the same "
      "rounds) and the Python baseline "
      "(`shared/bench/any_model_service.py`: FastAPI + pandas + the library's scikit-learn wrapper, one uvicorn "
      "worker, the same pickle) share the CPUs with wrk, so absolute numbers depend on the machine's load; the "
      "ratios come from one run.\n",
      f"Models: trained by `scripts/train_boosted_bench.py` (xgboost {v['xgboost']}, lightgbm {v['lightgbm']}, "
      f"scikit-learn {v['scikit-learn']}) on statsmodels' `fair` data ({meta['train_rows']:,} rows, eight numeric "
      "features, 10 % of the cells missing), regressors so that the trees themselves are measured (a classifier "
      "adds a sigmoid and a label to the same trees), pickled and converted by `convert-models`; both servers "
      "answer the libraries' own prediction for the benchmark's row.\n",
      f"Load average (1/5/15 min) at the start: {meta['load_average_before']}; at the end: {meta['load_average_after']}.\n",
      "## Targets\n", "| target | measured | limit | met |", "|---|---|---|---|"]
for s in summary:
    val = s["value"]
    md.append(f"| {s['target']} | {fmt(val, 1) if val < 1000 else fmt(val)} | {fmt(s['limit'])} | {'yes' if s['met'] else '**no**'} |")
if not all(s["met"] for s in summary):
    md.append("\nA target marked **no** is missed in this run. What limits 1000-row batches of these trees (the "
              "`TreeEnsemble`, and the request's own work) and what was measured about it: "
              "[decisions.md](decisions.md), \"XGBoost and LightGBM in 1000-row batches\".")
md += ["\n## Single-row POST /predict, concurrency 16\n",
       "`node` runs with the image's settings, `node (defaults)` with none.\n",
       "| model | estimator | leaves | node req/s | (rounds) | Python req/s | (rounds) | node / Python | node p50 | node p99 | Python p99 | node (defaults) req/s | (rounds) | node (defaults) / Python |",
       "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
for model, n, d, p, ratio in rows:
    m = meta["models"][model]
    md.append(f"| {model} | {what[model]} | {m['leaves_total']:,} | {fmt(n['rps'])} | {spread(n)} | {fmt(p['rps'])} | {spread(p)} | "
              f"**{ratio:.0f}x** | {n['lat_p50_us']/1000:.2f} ms | {n['lat_p99_us']/1000:.2f} ms | {p['lat_p99_us']/1000:.1f} ms | "
              f"{fmt(d['rps'])} | {spread(d)} | {d['rps'] / p['rps']:.0f}x |")
md += ["\n## 1000-row batches, concurrency 4\n",
       "Each 1000-row request is one ONNX Runtime call on the model's inference thread (ONNX Runtime with one "
       "intra-op thread). `compiled` with `image` settings is the node as it ships: its own `TreeEnsemble` "
       "kernel, which shares a call's rows among two threads here (`INFERENCE_NODE_TREE_THREADS`, default: the "
       "CPUs); `onnxruntime` is a second node started with `INFERENCE_NODE_TREE_KERNEL=onnxruntime` (ONNX "
       "Runtime's kernel), and `default` a third with the compiled kernel and the binary's default settings, in "
       "the same rounds. Bodies: the 1000 rows as JSON objects to `POST /predict` (answer: JSON), or as one FP64 tensor in "
       "an Open Inference Protocol binary request (`scripts/bench-post-v2.lua`; answer: binary FP64); the three "
       "nodes' answers were checked equal, bit for bit, to each other and across the two forms before the runs. "
       "`ms per call` is the node's own mean inference time over the median round "
       "(`nv_inference_compute_infer_duration_seconds` in `/metrics`).\n",
       "| model | kernel | settings | body | node req/s | (rounds) | rows/s | ms per call | p99 |",
       "|---|---|---|---|---|---|---|---|---|"]
for model, kernel, settings, form, b in batches + [("LinearRegression (reference, 4 features)", "-", "default", "json", reference)]:
    onnx_ms = b.get("onnx_ms_per_call")
    md.append(f"| {model} | {kernel} | {settings} | {form} | {fmt(b['rps'])} | {spread(b)} | **{fmt(b['rps'] * 1000)}** | "
              f"{'-' if onnx_ms is None else f'{onnx_ms:.2f}'} | {b['lat_p99_us']/1000:.1f} ms |")
md += ["", f"Non-2xx or socket errors in the node's runs: {errors}."]
open(f"{out}/boosted.md", "w").write("\n".join(md) + "\n")
print("\n".join(md))
PY
say "wrote $OUT_DIR/boosted.md and $OUT_DIR/boosted.json"
