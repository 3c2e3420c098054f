#!/usr/bin/env bash
# The newcomer's path, end to end, without Docker:
#   1. `git clone` of the committed HEAD into a temporary directory
#   2. `scripts/run.sh` from the clone, in the background, until it prints that the cluster runs
#   3. the seed README's six curl examples, verbatim, against the gateway on :8000 (launch,
#      list and delete go through the gateway's process runtime); JSON shapes checked
#   4. an attacker without the Consul token: registering a service named like the nodes that
#      points at a listener of the attacker's, and deregistering a real node, are both refused
#      (403); a series of predictions through the gateway are all answered by real nodes and
#      the listener receives nothing; the token is in .run/consul-token (0600) and in no log
#      and no command line
#   5. SIGTERM to run.sh: it exits 0, no process of the run is left, ports 8000, 8500, 5001,
#      5002 and the launched node's port are free
#   6. a second run.sh: ready without compiling anything, stops cleanly again
# Builds in <target>/newcomer (<target> is CARGO_TARGET_DIR, default <repo>/target), seeded
# once from <target>/release, so only the workspace's own crates are recompiled; a separate
# directory because a build from the clone's sources must never stand in for this checkout's
# release binaries; kept for the next run, except under CI (CI=true), where it is removed at
# the end. Reuses this checkout's ONNX Runtime library (ORT_DYLIB_PATH). Needs ports 8000,
# 8500, 5001 and 5002 free. Run by scripts/test.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
cd "$ROOT"

require_tool git "Install git first."
require_tool curl "Install curl first."
require_tool jq "Install jq first (apt-get install jq)."
ensure_ort
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
[[ "$TARGET" == /* ]] || TARGET="$ROOT/$TARGET"
export CARGO_TARGET_DIR="$TARGET/newcomer"
# How long the first run.sh may take to be ready (it may compile the workspace in release).
READY_SECS="${NEWCOMER_READY_SECS:-1800}"
PORTS=(8000 8500 5001 5002)
PREDICT_BODY='{"gdp_per_capita": 50000, "unemployment_rate": 5.2, "gdp_growth_rate_lag": 2.1, "gdp_growth_rate_ma": 2.3}'
STARTED=$SECONDS
TMP="$(mktemp -d)"
CLONE="$TMP/clone"
RUN_PID=""
SEEN_PIDS=()
LISTENER_PID=""
E2E_NAME=newcomer
source "$ROOT/tests/e2e/lib.sh"

curl_failed() { fail "curl failed: $(tail -n 3 "$TMP/curl.err")"; }
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
alive() { kill -0 "$1" 2>/dev/null; }

# descendants PID: PID's children, grandchildren, ...
descendants() {
  local child
  for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
    echo "$child"
    descendants "$child"
  done
}

# run_processes: processes of this run still alive: those seen in run.sh's process tree, and
# any process working in the clone (what a double fork would hide from the tree).
run_processes() {
  local pid
  for pid in "${SEEN_PIDS[@]}"; do
    alive "$pid" && ps -o pid=,args= -p "$pid"
  done
  for pid in $(ls /proc | grep -E '^[0-9]+$'); do
    [[ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" == "$CLONE"* ]] && ps -o pid=,args= -p "$pid"
  done
  return 0
}

# start_run LOG: starts the clone's scripts/run.sh as the seed's user would, default settings.
start_run() {
  env -u GATEWAY_PORT -u CONSUL_PORT -u NODE_PORTS -u GATEWAY_ADMIN_TOKEN -u GDP_MODEL_NAME \
    "$CLONE/scripts/run.sh" >"$1" 2>&1 &
  RUN_PID=$!
}

# wait_ready LOG LIMIT: streams run.sh's output until it reports the cluster running.
wait_ready() {
  local log="$1" limit="$2" shown=0 total deadline=$((SECONDS + $2))
  while ! grep -q 'The cluster is running' "$log"; do
    total=$(wc -l <"$log")
    if ((total > shown)); then
      sed -n "$((shown + 1)),${total}p" "$log" | sed 's/^/  run.sh| /' >&2
      shown=$total
    fi
    if ! alive "$RUN_PID"; then
      local status=0
      wait "$RUN_PID" || status=$?
      RUN_PID=""
      fail "run.sh exited (status $status) before the cluster ran"
    fi
    ((SECONDS < deadline)) || fail "run.sh not ready after ${limit}s"
    sleep 0.5
  done
  sed -n "$((shown + 1)),\$p" "$log" | sed 's/^/  run.sh| /' >&2
}

# stop_run: SIGTERM to run.sh; it must exit 0 within 60s and leave nothing behind.
stop_run() {
  local pid
  for pid in $(descendants "$RUN_PID"); do SEEN_PIDS+=("$pid"); done
  kill -TERM "$RUN_PID"
  local deadline=$((SECONDS + 60)) status=0
  while alive "$RUN_PID" && ((SECONDS < deadline)); do sleep 0.2; done
  alive "$RUN_PID" && fail "run.sh still running 60s after SIGTERM"
  wait "$RUN_PID" || status=$?
  RUN_PID=""
  ((status == 0)) || fail "run.sh exited with status $status after SIGTERM"
  ok "run.sh stopped (status 0) after $((SECONDS - deadline + 60))s"
  local left
  left="$(run_processes)"
  [[ -z "$left" ]] || fail "processes left behind:"$'\n'"$left"
  ok "no process of the run left (${#SEEN_PIDS[@]} seen in its tree)"
  for port in "${PORTS[@]}" "$@"; do
    port_free "$port" || fail "port $port still taken after run.sh stopped"
  done
  ok "ports ${PORTS[*]}${*:+ $*} free"
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  set +e
  if [[ -n "$RUN_PID" ]] && alive "$RUN_PID"; then
    for pid in $(descendants "$RUN_PID"); do SEEN_PIDS+=("$pid"); done
    kill -TERM "$RUN_PID"
    local deadline=$((SECONDS + 60))
    while alive "$RUN_PID" && ((SECONDS < deadline)); do sleep 0.2; done
    alive "$RUN_PID" && kill -KILL "$RUN_PID"
  fi
  for pid in "${SEEN_PIDS[@]}"; do alive "$pid" && kill -KILL "$pid"; done
  [[ -n "$LISTENER_PID" ]] && alive "$LISTENER_PID" && kill -TERM "$LISTENER_PID"
  rm -rf "$TMP"
  # The build dir only saves a developer's next run a rebuild; CI never has a next run, and
  # its disk is short (a copy of the release build is gigabytes).
  [[ "${CI:-}" == true ]] && rm -rf "$CARGO_TARGET_DIR"
  if ((status == 0)); then
    printf '\n\033[32mnewcomer test passed in %ss\033[0m\n' "$((SECONDS - STARTED))" >&2
  else
    printf '\n\033[31mnewcomer test FAILED (status %s) after %ss\033[0m\n' "$status" "$((SECONDS - STARTED))" >&2
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for port in "${PORTS[@]}"; do
  port_free "$port" || fail "port $port is taken; stop what listens there (a running cluster?) first"
done

# === 1. clone ===

step "git clone of the committed HEAD ($(git rev-parse --short HEAD)) into $CLONE"
git clone --quiet --no-hardlinks "$ROOT" "$CLONE"
if [[ ! -d "$CARGO_TARGET_DIR/release" && -d "$TARGET/release" ]]; then
  mkdir -p "$CARGO_TARGET_DIR"
  cp -a "$TARGET/release" "$CARGO_TARGET_DIR/release"
  ok "seeded the build dir from $TARGET/release"
fi
ok "cloned; build dir $CARGO_TARGET_DIR, ONNX Runtime $ORT_DYLIB_PATH"

# === 2. scripts/run.sh ===

step "scripts/run.sh (in the background, up to ${READY_SECS}s to be ready)"
t0=$SECONDS
start_run "$TMP/run1.log"
wait_ready "$TMP/run1.log" "$READY_SECS"
ok "cluster running after $((SECONDS - t0))s"

# === 3. the seed's curl examples, verbatim ===

step "curl http://localhost:8000/api/models/available"
out="$(curl http://localhost:8000/api/models/available 2>"$TMP/curl.err")" || curl_failed
echo "$out" | jq -e '
  (.services | length) == 2
  and (.services | sort) == ["127.0.0.1:5001", "127.0.0.1:5002"]
  and (.models_by_service | keys | sort) == (.services | sort)
  and all(.models_by_service[]; index("LinearRegression") != null and all(.[]; type == "string"))
' >/dev/null || fail "unexpected body: $out"
ok "$out"

step "curl -X POST http://localhost:8000/api/predict/gdp_growth_rate (the seed's body)"
out="$(curl -X POST "http://localhost:8000/api/predict/gdp_growth_rate" \
  -H "Content-Type: application/json" \
  -d '{
    "gdp_per_capita": 50000,
    "unemployment_rate": 5.2,
    "gdp_growth_rate_lag": 2.1,
    "gdp_growth_rate_ma": 2.3
  }' 2>"$TMP/curl.err")" || curl_failed
echo "$out" | jq -e '
  .message == "GDP growth prediction endpoint"
  and .model == "LinearRegression"
  and .input == {"gdp_per_capita": 50000, "unemployment_rate": 5.2, "gdp_growth_rate_lag": 2.1, "gdp_growth_rate_ma": 2.3}
  and (.prediction | length) == 1 and (.prediction[0] | type) == "number"
' >/dev/null || fail "unexpected body: $out"
ok "$out"

step "curl http://localhost:8000/api/predict/services"
out="$(curl http://localhost:8000/api/predict/services 2>"$TMP/curl.err")" || curl_failed
echo "$out" | jq -e '(."Services:" | sort) == ["127.0.0.1:5001", "127.0.0.1:5002"]' >/dev/null ||
  fail "unexpected body: $out"
ok "$out"

step "curl -X POST http://localhost:8000/api/models/launch/LinearRegression"
out="$(curl -X POST "http://localhost:8000/api/models/launch/LinearRegression" 2>"$TMP/curl.err")" || curl_failed
echo "$out" | jq -e '
  .status == "success"
  and .message == "Launched new instance for model: LinearRegression"
  and (.container_id | type == "string" and length > 0)
  and (.container_name | type == "string" and length > 0)
' >/dev/null || fail "unexpected body: $out"
ok "$out"
id="$(jq -r .container_id <<<"$out")"

# The launched node registers in Consul and the gateway starts routing to it.
new_service() {
  curl -sS -m 5 http://localhost:8000/api/predict/services |
    jq -r '."Services:"[] | select(. != "127.0.0.1:5001" and . != "127.0.0.1:5002")'
}
has_new_service() { [[ -n "$(new_service)" ]]; }
no_new_service() { ! has_new_service; }
wait_until 60 "the launched instance is in /api/predict/services" has_new_service
launched="$(new_service)"
launched_port="${launched##*:}"
curl -fsS -m 5 "http://$launched/health" | jq -e '.status == "ok"' >/dev/null ||
  fail "the launched instance at $launched does not answer /health"
ok "launched instance $id serves at $launched"

step "curl http://localhost:8000/api/models/instances/LinearRegression"
out="$(curl http://localhost:8000/api/models/instances/LinearRegression 2>"$TMP/curl.err")" || curl_failed
echo "$out" | jq -e --arg id "$id" '
  .model == "LinearRegression"
  and (.instances | type) == "array"
  and all(.instances[]; (.id | type) == "string" and (.name | type) == "string"
                        and (.status | type) == "string" and (.image | type) == "array")
  and any(.instances[]; .id == $id and .status == "running")
' >/dev/null || fail "unexpected body (want instance $id running): $out"
ok "$out"

step "curl -X DELETE http://localhost:8000/api/models/instances/$id (the seed's abc123)"
out="$(curl -X DELETE "http://localhost:8000/api/models/instances/$id" 2>"$TMP/curl.err")" || curl_failed
echo "$out" | jq -e --arg id "$id" '
  .status == "success" and .message == "Shutdown container: \($id)"
' >/dev/null || fail "unexpected body: $out"
ok "$out"
wait_until 30 "the deleted instance is gone from /api/predict/services" no_new_service
wait_until 30 "its port $launched_port is free" port_free "$launched_port"
out="$(curl -sS http://localhost:8000/api/models/instances/LinearRegression)"
jq -e --arg id "$id" 'all(.instances[]; .id != $id)' >/dev/null <<<"$out" ||
  fail "instance $id still listed: $out"
ok "instance $id no longer listed"

# A launched instance that is still running when run.sh stops must be stopped too.
out="$(curl -sS -X POST http://localhost:8000/api/models/launch/LinearRegression)"
jq -e '.status == "success"' >/dev/null <<<"$out" || fail "second launch failed: $out"
wait_until 60 "a second launched instance is in /api/predict/services" has_new_service
second_port="$(new_service)"
second_port="${second_port##*:}"
ok "second launched instance left running on :$second_port for the shutdown check"

# === 4. an attacker without the Consul token ===

step "an attacker without the Consul token tries to take over the traffic"
# The attacker's server: answers anything with a fake prediction and records every request.
python3 - "$TMP/attacker.log" "$TMP/attacker.port" <<'PY' &
import http.server, json, sys
log = open(sys.argv[1], "ab", buffering=0)
fake = json.dumps({"message": "GDP growth prediction endpoint", "model": "LinearRegression",
                   "prediction": [666.0], "status": "ok"}).encode()
class Handler(http.server.BaseHTTPRequestHandler):
    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        log.write(f"{self.command} {self.path} ".encode() + body + b"\n")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(fake)))
        self.end_headers()
        self.wfile.write(fake)
    do_GET = do_POST = do_PUT = answer
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
open(sys.argv[2], "w").write(str(server.server_port))
server.serve_forever()
PY
LISTENER_PID=$!
: >"$TMP/attacker.log"
wait_until 10 "the attacker's listener is up" test -s "$TMP/attacker.port"
evil_port="$(cat "$TMP/attacker.port")"
curl -fsS -m 5 "http://127.0.0.1:$evil_port/health" >/dev/null || fail "the attacker's listener does not answer"
: >"$TMP/attacker.log"
ok "listener on 127.0.0.1:$evil_port"

# consul_put PATH [BODY]: an unauthenticated PUT on Consul; prints the status, body in $TMP/body.
consul_put() {
  curl -sS -m 5 -o "$TMP/body" -w '%{http_code}' -X PUT "http://127.0.0.1:8500$1" ${2:+-d "$2"}
}
registration='{"ID": "intruder", "Name": "gdp-growth-model", "Address": "127.0.0.1", "Port": '"$evil_port"',
  "Check": {"HTTP": "http://127.0.0.1:'"$evil_port"'/health", "Interval": "1s"}}'
code="$(consul_put /v1/agent/service/register "$registration")"
[[ "$code" == 403 ]] || fail "PUT /v1/agent/service/register without a token: want 403, got $code: $(cat "$TMP/body")"
ok "register of gdp-growth-model at :$evil_port without a token: 403 $(head -c 100 "$TMP/body")"
code="$(curl -sS -m 5 -o "$TMP/body" -w '%{http_code}' -X PUT -H 'X-Consul-Token: guess' \
  -d "$registration" http://127.0.0.1:8500/v1/agent/service/register)"
[[ "$code" == 403 ]] || fail "register with a made-up token: want 403, got $code: $(cat "$TMP/body")"
ok "register with a made-up token: 403 $(cat "$TMP/body")"
for node in 127.0.0.1:5001 127.0.0.1:5002; do
  code="$(consul_put "/v1/agent/service/deregister/$node")"
  [[ "$code" == 403 ]] || fail "PUT /v1/agent/service/deregister/$node without a token: want 403, got $code: $(cat "$TMP/body")"
done
ok "deregister of the real nodes without a token: 403"
out="$(curl -sS -m 5 http://127.0.0.1:8500/v1/health/service/gdp-growth-model)"
[[ "$out" == "[]" ]] || fail "Consul shows the nodes to a caller without a token: $out"
ok "Consul shows a caller without a token no nodes"

# Had either write gone through, the gateway would have followed within a second (blocking
# query); give it that second, then check that only real nodes answer.
sleep 2
real="$(curl -fsS -m 5 -X POST http://127.0.0.1:5001/predict -H 'Content-Type: application/json' \
  -d "$PREDICT_BODY" | jq -c .prediction)" || fail "node :5001 does not predict"
for ((i = 0; i < 40; i++)); do
  out="$(curl -sS -m 5 -X POST http://localhost:8000/api/predict/gdp_growth_rate \
    -H 'Content-Type: application/json' -d "$PREDICT_BODY")" || fail "prediction $i failed"
  [[ "$(jq -c .prediction <<<"$out")" == "$real" ]] || fail "prediction $i is not a real node's ($real): $out"
done
ok "40 predictions through the gateway, each the real nodes' answer $real"
out="$(curl -sS -m 5 http://localhost:8000/api/predict/services)"
jq -e --arg evil "127.0.0.1:$evil_port" 'all(."Services:"[]; . != $evil)
  and (."Services:" | index("127.0.0.1:5001") != null and index("127.0.0.1:5002") != null)' \
  >/dev/null <<<"$out" || fail "the gateway's nodes changed: $out"
[[ ! -s "$TMP/attacker.log" ]] || fail "the attacker's listener got requests: $(head -c 400 "$TMP/attacker.log")"
ok "the attacker's listener got nothing"
kill -TERM "$LISTENER_PID"
wait "$LISTENER_PID" 2>/dev/null || true
LISTENER_PID=""

token_file="$CLONE/.run/consul-token"
[[ -f "$token_file" ]] || fail "no .run/consul-token"
[[ "$(stat -c %a "$token_file")" == 600 ]] || fail ".run/consul-token has mode $(stat -c %a "$token_file"), not 600"
token="$(cat "$token_file")"
((${#token} >= 32)) || fail "the Consul token is short: ${#token} characters"
code="$(curl -sS -m 5 -o "$TMP/body" -w '%{http_code}' -H @<(printf 'X-Consul-Token: %s\n' "$token") \
  http://127.0.0.1:8500/v1/health/service/gdp-growth-model)"
[[ "$code" == 200 ]] && (($(jq length "$TMP/body") >= 2)) ||
  fail "the token in .run/consul-token does not read the nodes: $code $(head -c 200 "$TMP/body")"
! grep -rqF "$token" "$TMP/run1.log" "$CLONE/.run/logs" || fail "the Consul token appears in run.sh's output or a log"
for pid in $(descendants "$RUN_PID"); do
  ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$token" ||
    fail "the Consul token is on the command line of process $pid"
done
ok "token in .run/consul-token (0600, ${#token} characters), in no log and no command line"

# === 5. SIGTERM ===

step "SIGTERM to run.sh"
stop_run "$second_port"

# === 6. a second run ===

step "scripts/run.sh again: no rebuild, ready quickly, stops cleanly"
t0=$SECONDS
start_run "$TMP/run2.log"
wait_ready "$TMP/run2.log" 120
! grep -q 'Compiling' "$TMP/run2.log" || fail "the second run recompiled something"
ok "second run ready after $((SECONDS - t0))s, nothing recompiled"
curl -fsS -m 10 -X POST "http://localhost:8000/api/predict/gdp_growth_rate" \
  -H "Content-Type: application/json" \
  -d '{"gdp_per_capita": 50000, "unemployment_rate": 5.2, "gdp_growth_rate_lag": 2.1, "gdp_growth_rate_ma": 2.3}' |
  jq -e '.prediction | length == 1' >/dev/null || fail "the second run does not predict"
ok "the second run predicts"
stop_run
