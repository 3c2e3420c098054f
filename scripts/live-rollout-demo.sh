#!/usr/bin/env bash
# The README's rollout with scripts/run.sh, on a copy of models/: the stand-in Consul, two
# nodes polling the copy every 5 s and a gateway, all on loopback ports 18531-18534; converts
# Lasso.pkl (as a "retrained" Ridge.pkl) with --out-dir into the served directory and prints
# how long until both nodes serve Ridge version 2, and the gateway's answers before and after.
# Needs the debug binaries: cargo build --workspace --bins --features consul/standin
set -u
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
B="$TARGET_DIR/debug"
W=$(mktemp -d /tmp/live-demo.XXXX)
mkdir -p $W/models/gdp_growth_rate $W/retrained
cp "$ROOT"/models/gdp_growth_rate/* $W/models/gdp_growth_rate/
cp "$ROOT"/models/gdp_growth_rate/Lasso.pkl $W/retrained/Ridge.pkl
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$ROOT/.ort/lib/libonnxruntime.so}"
$B/consul-dev --bind 127.0.0.1:18531 > $W/consul.log 2>&1 & PIDS="$!"
sleep 0.5
for p in 18532 18533; do
  PORT=$p HOST=127.0.0.1 ADVERTISE_ADDRESS=127.0.0.1 MODELS_DIR=$W/models/gdp_growth_rate \
  SERVICE_DISCOVERY_URL=http://127.0.0.1:18531 INFERENCE_NODE_MODEL_POLL=5s INFERENCE_NODE_CHECK_INTERVAL=2s \
  $B/inference-node > $W/node-$p.log 2>&1 & PIDS="$PIDS $!"
done
RUNTIME=process NODE_BINARY=$B/inference-node GATEWAY_PORT=18534 GATEWAY_HOST=127.0.0.1 SERVICE_DISCOVERY_URL=http://127.0.0.1:18531 $B/gateway > $W/gw.log 2>&1 & PIDS="$PIDS $!"
q() { curl -s -D - -o $W/body -X POST "http://127.0.0.1:18534/api/predict/gdp_growth_rate?model=Ridge" -H 'Content-Type: application/json' -d '{"gdp_per_capita": 50000, "unemployment_rate": 5.2, "gdp_growth_rate_lag": 2.1, "gdp_growth_rate_ma": 2.3}' | grep -i '^model-version' | tr -d '\r'; cat $W/body; echo; }
for i in $(seq 40); do curl -sf http://127.0.0.1:18534/api/predict/services | grep -q 18533 && curl -sf http://127.0.0.1:18534/api/predict/services | grep -q 18532 && break; sleep 0.5; done
echo "--- before"; q
echo "--- convert"; (cd $W && $B/convert-models --out-dir models/gdp_growth_rate retrained/ 2>&1)
t0=$(date +%s.%N)
for i in $(seq 200); do
  v1=$(curl -s http://127.0.0.1:18532/models | python3 -c 'import json,sys; print([m["version"] for m in json.load(sys.stdin)["models"] if m["name"]=="Ridge"][0])')
  v2=$(curl -s http://127.0.0.1:18533/models | python3 -c 'import json,sys; print([m["version"] for m in json.load(sys.stdin)["models"] if m["name"]=="Ridge"][0])')
  [[ $v1 == 2 && $v2 == 2 ]] && break; sleep 0.1
done
echo "both nodes serve Ridge version 2 after $(python3 -c "print(round($(date +%s.%N)-$t0,1))") s"
echo "--- after"; q; q
kill $PIDS; wait
grep -h "loaded model version\|not loaded" $W/node-*.log | tail -4
rm -rf $W
