#!/usr/bin/env bash
# Runs the whole cluster on this machine, without Docker: Consul (a real `consul agent -dev`
# when `consul` is on PATH, otherwise the project's stand-in, consul-dev), two inference nodes
# and the gateway, each a local process. Stays in the foreground; Ctrl-C (or SIGTERM) stops
# everything in order (gateway and the nodes it launched, the nodes, Consul) and exits.
#
# First it installs what is missing: libonnxruntime (scripts/setup-ort.sh), the release build
# (cargo, incremental: seconds when nothing changed) and the ONNX files of the models
# (convert-models, "up to date" when nothing changed). It refuses to start, and leaves nothing
# running, when a port it needs is taken or a component does not become healthy.
#
# Settings (environment):
#   GATEWAY_PORT=8000         gateway port (Swagger UI at /docs)
#   CONSUL_PORT=8500          Consul HTTP port (UI at /ui)
#   NODE_PORTS="5001 5002"    one inference node per port
#   GDP_MODEL_NAME=LinearRegression   default model of the nodes
#   INFERENCE_NODE_CHECK_INTERVAL=2s  how often Consul probes each node's /health
#   INFERENCE_NODE_WORKER_THREADS=1   HTTP threads per node (the nodes share this machine's CPUs)
#   INFERENCE_NODE_BATCH_IDLE_SPIN=0s an idle inference thread sleeps at once (same reason)
#   INFERENCE_NODE_SCHED_POLICY=batch the nodes' threads run under SCHED_BATCH (same reason)
#   INFERENCE_NODE_MODEL_POLL=5s      every node polls models/gdp_growth_rate for new, changed
#                                     and removed models (live updates; "off" turns it off)
#   RUN_WAIT_SECS=60          how long to wait for each component to become healthy
# Logs go to .run/logs/. The binaries are built into ${CARGO_TARGET_DIR:-target}/release.
#
# Consul runs with ACLs on (deny by default) and a fresh random token per run, which only the
# nodes and the gateway get (CONSUL_HTTP_TOKEN, in their environment, never on a command
# line); it is never printed, and kept in .run/consul-token (mode 0600) for the user.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

export GATEWAY_PORT="${GATEWAY_PORT:-8000}"
CONSUL_PORT="${CONSUL_PORT:-8500}"
read -r -a NODE_PORT_LIST <<<"${NODE_PORTS:-5001 5002}"
WAIT_SECS="${RUN_WAIT_SECS:-60}"
STOP_SECS=15
LOG_DIR="$ROOT/.run/logs"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
[[ "$TARGET_DIR" == /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR" # cargo reads it relative to $ROOT
BIN="$TARGET_DIR/release"

export SERVICE_NAME="${SERVICE_NAME:-gdp-growth-model}"
export GDP_MODEL_NAME="${GDP_MODEL_NAME:-LinearRegression}"
export INFERENCE_NODE_CHECK_INTERVAL="${INFERENCE_NODE_CHECK_INTERVAL:-2s}"
export INFERENCE_NODE_WORKER_THREADS="${INFERENCE_NODE_WORKER_THREADS:-1}"
export INFERENCE_NODE_BATCH_IDLE_SPIN="${INFERENCE_NODE_BATCH_IDLE_SPIN:-0s}"
export INFERENCE_NODE_SCHED_POLICY="${INFERENCE_NODE_SCHED_POLICY:-batch}"
export INFERENCE_NODE_MODEL_POLL="${INFERENCE_NODE_MODEL_POLL:-5s}"
[[ "$INFERENCE_NODE_MODEL_POLL" != off ]] || unset INFERENCE_NODE_MODEL_POLL
export SERVICE_DISCOVERY_URL="http://127.0.0.1:$CONSUL_PORT"
export MODELS_DIR="$ROOT/models/gdp_growth_rate"

# === helpers ===

# Names and PIDs of the components started so far, in start order.
NAMES=()
PIDS=()

# port_busy PORT: succeeds when something listens on PORT (or it cannot be bound).
port_busy() {
  python3 - "$1" <<'PY'
import socket, sys
port = int(sys.argv[1])
for family, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET, "127.0.0.1")):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((addr, port))
    except OSError:
        sys.exit(0)
    finally:
        s.close()
sys.exit(1)
PY
}

# who_listens PORT: the process listening on PORT, when ss can tell.
who_listens() {
  command -v ss >/dev/null 2>&1 || return 0
  ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'users:(([^)]*))' | head -n1 || true
}

# start NAME LOG COMMAND...: starts COMMAND in its own session (so a terminal Ctrl-C reaches
# only this script, which then stops the components in order), output to LOG.
start() {
  local name="$1" log="$2"; shift 2
  : >"$log"
  NO_COLOR=1 setsid "$@" >>"$log" 2>&1 </dev/null &
  NAMES+=("$name")
  PIDS+=("$!")
}

log_tail() { # log_tail LOG
  printf '  --- last lines of %s ---\n' "${1#"$ROOT"/}" >&2
  tail -n 20 "$1" | sed 's/^/  | /' >&2
}

# wait_for NAME PID LOG WHAT COMMAND...: polls COMMAND until it succeeds; dies with the log
# tail when the process exits or WAIT_SECS pass.
wait_for() {
  local name="$1" pid="$2" log="$3" what="$4"; shift 4
  local deadline=$((SECONDS + WAIT_SECS))
  until "$@" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log_tail "$log"
      die "$name exited before $what (log: ${log#"$ROOT"/})"
    fi
    if ((SECONDS >= deadline)); then
      log_tail "$log"
      die "$name: no $what after ${WAIT_SECS}s (log: ${log#"$ROOT"/}; RUN_WAIT_SECS raises the limit)"
    fi
    sleep 0.2
  done
}

http_ok() { curl -fsS -m 2 -o /dev/null "$1"; }
# consul_get PATH: GET on Consul with the ACL token (handed to curl on a file descriptor, so
# that `ps` does not show it).
consul_get() {
  curl -fsS -m 2 -H @<(printf 'X-Consul-Token: %s\n' "$CONSUL_HTTP_TOKEN") "http://127.0.0.1:$CONSUL_PORT$1"
}
consul_has_leader() { consul_get /v1/status/leader | grep -q '"[^"]'; }
# passing_nodes: prints how many instances of the service pass their checks.
passing_nodes() {
  consul_get "/v1/health/service/$SERVICE_NAME?passing" | grep -o '"ServiceID"' | wc -l
}

# write_private FILE: writes stdin to FILE, readable by this user only (0600).
write_private() {
  rm -f "$1"
  (umask 077 && cat >"$1")
}
all_nodes_passing() { (($(passing_nodes) >= ${#NODE_PORT_LIST[@]})); }
gateway_sees_nodes() {
  local services
  services="$(curl -fsS -m 2 "http://127.0.0.1:$GATEWAY_PORT/api/predict/services")" || return 1
  local port
  for port in "${NODE_PORT_LIST[@]}"; do
    grep -q "127.0.0.1:$port\"" <<<"$services" || return 1
  done
}

# stop_one NAME PID: SIGTERM, wait up to STOP_SECS, then SIGKILL. Afterwards kills anything
# left in the component's process group (e.g. a node the gateway launched and failed to stop).
stop_one() {
  local name="$1" pid="$2" deadline
  if kill -0 "$pid" 2>/dev/null; then
    say "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + STOP_SECS))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      say "$name did not stop within ${STOP_SECS}s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
  if kill -0 -- "-$pid" 2>/dev/null; then
    say "killing processes $name left behind"
    kill -TERM -- "-$pid" 2>/dev/null || true
    sleep 1
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
}

# cleanup: stops a build in progress, then the components in reverse start order (gateway,
# nodes, Consul).
cleanup() {
  local status=$?
  trap '' INT TERM
  set +e
  if [[ -n "$BUILD_PID" ]]; then
    kill -TERM -- "-$BUILD_PID" 2>/dev/null
    wait "$BUILD_PID" 2>/dev/null
  fi
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    stop_one "${NAMES[i]}" "${PIDS[i]}"
  done
  ((${#PIDS[@]} == 0)) || say "stopped; logs are in ${LOG_DIR#"$ROOT"/}/"
  exit "$status"
}

# on_signal: Ctrl-C or SIGTERM. Once the cluster runs that is how it is stopped (exit 0);
# before, it interrupts the start (exit 130). The EXIT trap stops whatever was started.
on_signal() {
  if ((READY)); then exit 0; fi
  say "interrupted"
  exit 130
}

# === prerequisites ===

READY=0
BUILD_PID=""
trap cleanup EXIT
trap on_signal INT TERM

require_tool cargo "Install Rust with rustup: https://rustup.rs (then open a new shell)."
require_tool python3 "Install Python 3 (e.g. apt-get install python3 python3-venv); it is used to fetch ONNX Runtime."
require_tool curl "Install curl (e.g. apt-get install curl)."
require_tool setsid "Install util-linux (it provides setsid)."

for port in "$CONSUL_PORT" "$GATEWAY_PORT" "${NODE_PORT_LIST[@]}"; do
  [[ "$port" =~ ^[0-9]+$ ]] && ((port > 0 && port < 65536)) || die "invalid port '$port' (check GATEWAY_PORT, CONSUL_PORT, NODE_PORTS)"
done
((${#NODE_PORT_LIST[@]} > 0)) || die "NODE_PORTS is empty; give at least one port"
busy=()
for port in "$CONSUL_PORT" "$GATEWAY_PORT" "${NODE_PORT_LIST[@]}"; do
  if port_busy "$port"; then busy+=("$port $(who_listens "$port")"); fi
done
if ((${#busy[@]})); then
  printf '  port in use: %s\n' "${busy[@]}" >&2
  die "ports needed by the cluster are taken (another scripts/run.sh or docker-compose up?). Stop that, or pick others: GATEWAY_PORT, CONSUL_PORT, NODE_PORTS"
fi

ensure_ort

if [[ -x "$BIN/gateway" ]]; then
  say "building release binaries (cargo build --release; quick when nothing changed)"
else
  say "building release binaries for the first time: several minutes, progress below"
fi
# In the background and its own process group, so that a signal can stop it (see cleanup).
# `consul/standin`: consul-dev, the stand-in, is built only with it.
setsid cargo build --release --locked --workspace --bins --features consul/standin &
BUILD_PID=$!
wait "$BUILD_PID" || die "the build failed (see cargo's messages above)"
BUILD_PID=""

say "converting models (convert-models models/)"
converted="$("$BIN/convert-models" models/)" || {
  printf '%s\n' "$converted" | sed 's/^/  /' >&2
  die "convert-models failed for a model (see above)"
}
if grep -qv '^up to date' <<<"$converted"; then
  printf '%s\n' "$converted" | sed 's/^/  /' >&2
else
  say "all $(wc -l <<<"$converted") models up to date"
fi
[[ -f "$MODELS_DIR/$GDP_MODEL_NAME.onnx" ]] ||
  die "no model $GDP_MODEL_NAME in ${MODELS_DIR#"$ROOT"/} (check GDP_MODEL_NAME)"


# === start ===

mkdir -p "$LOG_DIR"
[[ -f "$ROOT/.run/.gitignore" ]] || echo '*' >"$ROOT/.run/.gitignore"

# A fresh ACL token for this run: Consul's management token, and the one the nodes and the
# gateway present (they read CONSUL_HTTP_TOKEN; so does consul-dev).
TOKEN_FILE="$ROOT/.run/consul-token"
CONSUL_HTTP_TOKEN="$(random_token)"
export CONSUL_HTTP_TOKEN
printf '%s\n' "$CONSUL_HTTP_TOKEN" | write_private "$TOKEN_FILE"
acl="ACLs on, default deny; token in ${TOKEN_FILE#"$ROOT"/}"

if command -v consul >/dev/null 2>&1; then
  consul_kind="$(consul version 2>/dev/null | head -n1 | awk '{print "Consul " $2}'), consul agent -dev"
  say "starting Consul on :$CONSUL_PORT ($consul_kind; $acl)"
  # The agent token is the management token too, so that the agent may update its own node.
  write_private "$ROOT/.run/consul-acl.hcl" <<HCL
acl {
  enabled        = true
  default_policy = "deny"
  tokens {
    initial_management = "$CONSUL_HTTP_TOKEN"
    agent              = "$CONSUL_HTTP_TOKEN"
  }
}
HCL
  start consul "$LOG_DIR/consul.log" \
    consul agent -dev -client 127.0.0.1 -bind 127.0.0.1 -http-port "$CONSUL_PORT" \
    -config-file "$ROOT/.run/consul-acl.hcl"
else
  consul_kind="consul-dev, the project's Consul stand-in; no consul on PATH"
  say "starting Consul on :$CONSUL_PORT ($consul_kind; $acl)"
  start consul "$LOG_DIR/consul.log" "$BIN/consul-dev" --bind "127.0.0.1:$CONSUL_PORT"
fi
wait_for consul "${PIDS[-1]}" "$LOG_DIR/consul.log" "leader" consul_has_leader

for port in "${NODE_PORT_LIST[@]}"; do
  say "starting inference node on :$port (model $GDP_MODEL_NAME)"
  HOST=127.0.0.1 PORT="$port" ADVERTISE_ADDRESS=127.0.0.1 \
    start "node-$port" "$LOG_DIR/node-$port.log" "$BIN/inference-node"
done
for ((i = 1; i < ${#PIDS[@]}; i++)); do
  wait_for "${NAMES[i]}" "${PIDS[i]}" "$LOG_DIR/${NAMES[i]}.log" "healthy /health" \
    http_ok "http://127.0.0.1:${NAMES[i]#node-}/health"
done
say "waiting for Consul to report the nodes healthy"
wait_for consul "${PIDS[0]}" "$LOG_DIR/consul.log" "passing check for every node" all_nodes_passing

say "starting gateway on :$GATEWAY_PORT (lifecycle API launches inference-node processes)"
GATEWAY_HOST="${GATEWAY_HOST:-127.0.0.1}" RUNTIME=process NODE_BINARY="$BIN/inference-node" \
  start gateway "$LOG_DIR/gateway.log" "$BIN/gateway"
wait_for gateway "${PIDS[-1]}" "$LOG_DIR/gateway.log" "healthy /health" \
  http_ok "http://127.0.0.1:$GATEWAY_PORT/health"
wait_for gateway "${PIDS[-1]}" "$LOG_DIR/gateway.log" "nodes discovered" gateway_sees_nodes

# === ready ===

G="http://localhost:$GATEWAY_PORT"
cat <<EOF

The cluster is running (ready in ${SECONDS}s). Ctrl-C stops it.

  Gateway      $G
  Dashboard    $G/ui
  Swagger UI   $G/docs
  Consul UI    http://localhost:$CONSUL_PORT/ui   ($consul_kind)
  Consul token ${TOKEN_FILE#"$ROOT"/} (ACLs on: without it Consul refuses writes, reads show nothing, the UI asks for it)
  Nodes        $(printf 'http://localhost:%s ' "${NODE_PORT_LIST[@]}" | sed 's/ $//')
  Logs         ${LOG_DIR#"$ROOT"/}/ (consul.log, gateway.log, node-<port>.log)

Try it:

curl $G/api/models/available

curl -X POST "$G/api/predict/gdp_growth_rate" \\
  -H "Content-Type: application/json" \\
  -d '{
    "gdp_per_capita": 50000,
    "unemployment_rate": 5.2,
    "gdp_growth_rate_lag": 2.1,
    "gdp_growth_rate_ma": 2.3
  }'

curl $G/api/predict/services

curl -X POST "$G/api/models/launch/LinearRegression"

curl $G/api/models/instances/LinearRegression

curl -X DELETE "$G/api/models/instances/<id from launch or instances>"

curl -H "X-Consul-Token: \$(cat ${TOKEN_FILE#"$ROOT"/})" "http://localhost:$CONSUL_PORT/v1/health/service/$SERVICE_NAME?passing"

EOF

READY=1
# Run until a signal arrives (on_signal exits 0, the EXIT trap stops everything) or a
# component exits on its own (then report it, stop the rest and fail).
while true; do
  wait -n "${PIDS[@]}" || true
  for i in "${!PIDS[@]}"; do
    if ! kill -0 "${PIDS[i]}" 2>/dev/null; then
      log_tail "$LOG_DIR/${NAMES[i]}.log"
      die "${NAMES[i]} exited unexpectedly; stopping the cluster"
    fi
  done
done
