#!/usr/bin/env bash
# End-to-end test of the whole cluster on this machine's Docker Engine, through the offline
# compose path (scripts/compose-offline.sh: local images, the Consul stand-in):
#   1. compose up: the seed's curl examples work through :8000, both replicas serve traffic;
#      Consul (ACLs on, port on loopback only) refuses registrations without the token
#   2. --scale gdp-growth-model=5: 5 passing instances in Consul, all receiving traffic
#   3. launch through the API: it registers and serves, `instances` lists it; delete: gone from
#      Docker and Consul; no failed prediction meanwhile under a light steady load
#   4. docker kill of a replica under load: <= 0.1% failed, none once Consul has noticed
#   5. guardrails: foreign container -> 404 and still running; bad/unknown model name -> 4xx
#      and nothing created; with GATEWAY_ADMIN_TOKEN set, no token -> 401
#   6. `down` leaves no container and no network behind, launched instances included
# Cleans up on any exit (trap). Needs ports 8000 and 8500 free and no running cluster of the
# same project. Run by scripts/test.sh when a Docker daemon is reachable.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
cd "$ROOT"

require_tool docker "Install Docker Engine first."
require_tool curl "Install curl first."
require_tool jq "Install jq first (apt-get install jq)."
docker info >/dev/null 2>&1 || die "no Docker daemon reachable (docker info failed)"

[[ -f .env ]] || cp .env.example .env
ensure_env_consul_token .env
# shellcheck source=/dev/null
CONSUL_TOKEN="${CONSUL_HTTP_TOKEN:-$(set -a; source .env; echo "${CONSUL_HTTP_TOKEN:-}")}"
# shellcheck source=/dev/null
PROJECT="$(set -a; source .env; echo "${COMPOSE_PROJECT_NAME:-microservices}")"
# shellcheck source=/dev/null
[[ -z "$(set -a; source .env; echo "${GATEWAY_ADMIN_TOKEN:-}")" ]] ||
  die ".env sets GATEWAY_ADMIN_TOKEN; unset it for this test (step 5 sets its own)"
MODEL=LinearRegression
SERVICE=gdp-growth-model
GW=http://127.0.0.1:8000
CONSUL=http://127.0.0.1:8500
PREDICT_BODY='{"gdp_per_capita": 50000, "unemployment_rate": 5.2, "gdp_growth_rate_lag": 2.1, "gdp_growth_rate_ma": 2.3}'
TMP="$(mktemp -d)"
FOREIGN="$PROJECT-e2e-foreign-$$"
LOAD_PID=""
STARTED=$SECONDS

# === output and checks ===

E2E_NAME=e2e
E2E_POLL=1
source "$ROOT/tests/e2e/lib.sh"

# call METHOD PATH [CURL_ARGS...]: requests the gateway; body in $TMP/body, status echoed.
call() {
  local method="$1" path="$2"; shift 2
  curl -sS -m 30 -o "$TMP/body" -w '%{http_code}' -X "$method" "$@" "$GW$path" || echo 000
}

# expect STATUS METHOD PATH [CURL_ARGS...]: fails unless the gateway answers STATUS.
expect() {
  local want="$1" got; shift
  got="$(call "$@")"
  [[ "$got" == "$want" ]] || fail "$1 $2: want $want, got $got: $(head -c 400 "$TMP/body")"
}

predict() { call POST /api/predict/gdp_growth_rate -H 'Content-Type: application/json' -d "$PREDICT_BODY"; }

# === cluster state ===

# Node containers of this cluster serving $MODEL (compose replicas and launched ones).
node_ids() {
  docker ps -q --no-trunc --filter "label=gdp-serving.cluster=$PROJECT" \
    --filter "label=gdp-serving.model=$MODEL" --filter status=running
}
cluster_containers() { docker ps -aq --filter "label=gdp-serving.cluster=$PROJECT" | wc -l; }
project_containers() { docker ps -aq --filter "label=com.docker.compose.project=$PROJECT" | wc -l; }

# consul_curl ARGS...: curl to Consul with the ACL token (on a file descriptor, not in argv).
consul_curl() { curl -H @<(printf 'X-Consul-Token: %s\n' "$CONSUL_TOKEN") "$@"; }

# Consul addresses (host part) of the instances whose checks pass; `all` for every instance.
consul_addresses() {
  local filter='?passing'
  [[ "${1:-}" == all ]] && filter=''
  consul_curl -sS -m 5 "$CONSUL/v1/health/service/$SERVICE$filter" | jq -r '.[].Service.Address' | sort
}
passing_count_is() { [[ "$(consul_addresses | wc -l)" == "$1" ]]; }
# Nodes register their hostname, which Docker sets to the container's short id.
in_consul() { consul_addresses "${2:-}" | grep -qx "${1:0:12}"; }
not_in_consul() { ! consul_addresses all | grep -qx "${1:0:12}"; }
not_passing() { ! consul_addresses | grep -qx "${1:0:12}"; }
container_gone() { ! docker inspect "$1" >/dev/null 2>&1; }

# predictions_served ID: prediction requests the node has answered (its /metrics, read over
# the compose network, which the host can route to).
predictions_served() {
  local ip
  ip="$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$1")"
  curl -sS -m 5 "http://$ip:5000/metrics" |
    awk '/^node_http_requests_total\{/ && /route="[^"]*predict/ { n += $NF } END { print n + 0 }'
}

# all_serve N: sends N predictions through the gateway (all must succeed) and checks that
# every running node answered some of them.
all_serve() {
  local n="$1" ids id code
  mapfile -t ids < <(node_ids)
  declare -A before
  for id in "${ids[@]}"; do before[$id]="$(predictions_served "$id")"; done
  for ((i = 0; i < n; i++)); do
    code="$(predict)"
    [[ "$code" == 200 ]] || fail "prediction $i: status $code: $(head -c 400 "$TMP/body")"
  done
  for id in "${ids[@]}"; do
    local prev="${before[$id]}" served
    served=$(($(predictions_served "$id") - prev))
    ((served > 0)) || fail "node ${id:0:12} served none of $n predictions"
    printf '  node %s served %s\n' "${id:0:12}" "$served" >&2
  done
  ok "all ${#ids[@]} nodes served some of $n predictions, none failed"
}

# === light steady load: one client, one request at a time, bounded in count and time ===

load_start() {
  : >"$TMP/load.codes"
  rm -f "$TMP/load.stop"
  (
    for ((n = 0; n < 20000 && SECONDS < STARTED + 900; n++)); do
      [[ -f "$TMP/load.stop" ]] && break
      curl -s -o /dev/null -m 10 -w '%{http_code}\n' -X POST -H 'Content-Type: application/json' \
        -d "$PREDICT_BODY" "$GW/api/predict/gdp_growth_rate" >>"$TMP/load.codes" || true
      sleep 0.02
    done
  ) &
  LOAD_PID=$!
}
load_total() { wc -l <"$TMP/load.codes"; }
load_failed() { tail -n "+$((${1:-0} + 1))" "$TMP/load.codes" | grep -cv '^200$' || true; }
load_stop() {
  [[ -n "$LOAD_PID" ]] || return 0
  touch "$TMP/load.stop"
  wait "$LOAD_PID" || true
  LOAD_PID=""
}
load_at_least() { (($(load_total) >= $1)); }

# === setup and cleanup ===

compose() { "$ROOT/scripts/compose-offline.sh" "$@"; }

cleanup() {
  local rc=$?
  load_stop
  if ((rc != 0)); then
    step "failed; recent logs"
    compose ps >&2 || true
    compose logs --tail=25 gateway >&2 || true
  fi
  step "cleanup"
  docker rm -f "$FOREIGN" >/dev/null 2>&1 || true
  # Launched nodes first: compose does not know them all.
  docker ps -aq --filter "label=gdp-serving.cluster=$PROJECT" | xargs -r docker rm -f >/dev/null 2>&1 || true
  compose down --remove-orphans --timeout 5 >/dev/null 2>&1 || true
  rm -rf "$TMP"
  printf '\n[e2e] %s after %ss\n' "$( ((rc == 0)) && echo PASSED || echo FAILED)" "$((SECONDS - STARTED))" >&2
  exit "$rc"
}

for port in 8000 8500; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port $port is in use; the cluster maps it on the host (stop whatever listens there)"
  fi
done
(($(project_containers) == 0)) ||
  die "containers of compose project '$PROJECT' exist already; run scripts/compose-offline.sh down first"
trap cleanup EXIT

# === 1. compose up ===

step "1. compose up (offline images, Consul stand-in)"
compose up -d
export SKIP_BUILD=1 # build once: a rebuilt image would make compose recreate the replicas
wait_until 120 "2 nodes passing in Consul" passing_count_is 2
wait_until 60 "gateway answers /api/predict/services" bash -c "curl -sf -m 5 $GW/api/predict/services | jq -e '.\"Services:\" | length == 2'"

expect 200 POST /api/predict/gdp_growth_rate -H 'Content-Type: application/json' -d "$PREDICT_BODY"
jq -e --argjson input "$PREDICT_BODY" '.message == "GDP growth prediction endpoint" and .model == "LinearRegression"
  and .input == $input and (.prediction | length == 1) and (.prediction[0] | type == "number")' \
  "$TMP/body" >/dev/null || fail "predict response has the wrong shape: $(cat "$TMP/body")"
ok "predict: $(jq -c .prediction "$TMP/body")"
expect 200 GET /api/models/available
jq -e '(.services | length == 2) and (.models_by_service | length == 2)
  and ([.models_by_service[] | index("LinearRegression")] | all(. != null))' "$TMP/body" >/dev/null ||
  fail "available has the wrong shape: $(cat "$TMP/body")"
ok "available: $(jq -c .services "$TMP/body")"
expect 200 GET /api/predict/services
ok "services: $(jq -c '."Services:"' "$TMP/body")"
consul_curl -sf -m 5 "$CONSUL/ui/" >/dev/null || fail "Consul UI at $CONSUL/ui/ does not answer"
ok "Consul UI answers"
consul_container="$(docker ps -q --filter "label=com.docker.compose.project=$PROJECT" \
  --filter "label=com.docker.compose.service=service-discovery")"
published="$(docker port "$consul_container" 8500/tcp)"
[[ "$published" == 127.0.0.1:8500 ]] || fail "Consul's port is published on '$published', not the host's loopback only"
ok "Consul's port is published on $published only"
code="$(curl -sS -o "$TMP/body" -w '%{http_code}' -m 5 -X PUT "$CONSUL/v1/agent/service/register" \
  -d '{"ID": "intruder", "Name": "'"$SERVICE"'", "Address": "127.0.0.1", "Port": 9}')"
[[ "$code" == 403 ]] || fail "registration without the Consul token: want 403, got $code: $(cat "$TMP/body")"
victim="$(consul_curl -sS -m 5 "$CONSUL/v1/health/service/$SERVICE" | jq -r '.[0].Service.ID')"
code="$(curl -sS -o "$TMP/body" -w '%{http_code}' -m 5 -X PUT "$CONSUL/v1/agent/service/deregister/$victim")"
[[ "$code" == 403 ]] || fail "deregistration without the Consul token: want 403, got $code: $(cat "$TMP/body")"
passing_count_is 2 || fail "the nodes changed in Consul after refused writes"
ok "Consul without the token: register and deregister of $victim refused (403)"
all_serve 40

# === 2. scale to 5 ===

step "2. --scale $SERVICE=5"
compose up -d --scale "$SERVICE=5"
wait_until 120 "5 nodes passing in Consul" passing_count_is 5
wait_until 30 "gateway lists 5 services" bash -c "curl -sf -m 5 $GW/api/predict/services | jq -e '.\"Services:\" | length == 5'"
all_serve 100

# === 3. launch and delete through the API under load ===

step "3. launch and delete through the lifecycle API under a light steady load"
load_start
expect 200 POST "/api/models/launch/$MODEL"
jq -e --arg m "$MODEL" '.status == "success" and .message == "Launched new instance for model: \($m)"
  and (.container_id | type == "string") and (.container_name | type == "string")' "$TMP/body" >/dev/null ||
  fail "launch response has the wrong shape: $(cat "$TMP/body")"
launched="$(jq -r .container_id "$TMP/body")"
launched_name="$(jq -r .container_name "$TMP/body")"
[[ "$launched_name" =~ ^$PROJECT-$SERVICE-[0-9]+$ ]] || fail "launched container name '$launched_name'"
launched="$(docker inspect -f '{{.Id}}' "$launched")" || fail "launched container $launched not in Docker"
ok "launched $launched_name (${launched:0:12})"
wait_until 90 "launched node passing in Consul" in_consul "$launched"
wait_until 30 "6 nodes passing in Consul" passing_count_is 6
expect 200 GET "/api/models/instances/$MODEL"
jq -e --arg id "$launched" --arg name "$launched_name" --arg m "$MODEL" '.model == $m
  and any(.instances[]; .id as $short | ($id | startswith($short)) and .name == $name and .status == "running"
          and (.image | type == "array"))' "$TMP/body" >/dev/null ||
  fail "instances does not list the launched container: $(cat "$TMP/body")"
listed="$(jq '.instances | length' "$TMP/body")"
running="$(node_ids | wc -l)"
((listed == running)) || fail "instances lists $listed containers, $running are running"
ok "instances lists the launched container among $listed"
all_serve 120
expect 200 DELETE "/api/models/instances/$launched"
jq -e --arg id "$launched" '.status == "success" and .message == "Shutdown container: \($id)"' "$TMP/body" >/dev/null ||
  fail "delete response has the wrong shape: $(cat "$TMP/body")"
wait_until 30 "deleted container gone from Docker" container_gone "$launched"
wait_until 30 "deleted node gone from Consul" not_in_consul "$launched"
sleep 2 # keep the load going a little after the removal
load_stop
total="$(load_total)" failed="$(load_failed)"
((total > 50)) || fail "the load generator sent only $total requests"
((failed == 0)) || fail "$failed of $total predictions failed during launch/delete: $(sort "$TMP/load.codes" | uniq -c | tr '\n' ' ')"
ok "0 of $total predictions failed during launch and delete"

# === 4. docker kill under load ===

step "4. docker kill of a replica under load"
load_start
wait_until 30 "load running" load_at_least 100
victim="$(node_ids | head -n1)"
docker kill "$victim" >/dev/null
ok "killed ${victim:0:12}"
wait_until 60 "killed node no longer passing in Consul" not_passing "$victim"
sleep 2 # the gateway's blocking query returns at once; allow for one round trip
mark="$(load_total)"
wait_until 120 "1000 requests in this step and 300 after the refresh" \
  bash -c "(( \$(wc -l <'$TMP/load.codes') >= (1000 > $mark + 300 ? 1000 : $mark + 300) ))"
load_stop
total="$(load_total)" failed="$(load_failed)" after="$(load_failed "$mark")"
printf '  %s requests, %s failed (%s after the refresh): %s\n' "$total" "$failed" "$after" \
  "$(sort "$TMP/load.codes" | uniq -c | tr -s ' \n' ' ')" >&2
((failed * 1000 <= total)) || fail "$failed of $total requests failed (> 0.1%)"
((after == 0)) || fail "$after requests failed after Consul dropped the killed node"
ok "gateway routed around the killed node"

# === 5. guardrails ===

step "5. guardrails"
docker run -d --name "$FOREIGN" --network none "$PROJECT-consul-dev:latest" >/dev/null
foreign="$(docker inspect -f '{{.Id}}' "$FOREIGN")"
expect 404 DELETE "/api/models/instances/$foreign"
[[ "$(docker inspect -f '{{.State.Running}}' "$foreign")" == true ]] || fail "foreign container stopped"
ok "foreign container: 404 and still running"
expect 404 DELETE "/api/models/instances/$consul_container"
[[ "$(docker inspect -f '{{.State.Running}}' "$consul_container")" == true ]] || fail "Consul container stopped"
ok "the cluster's own Consul container (no node label): 404 and still running"
expect 404 DELETE "/api/models/instances/0123456789ab"
ok "unknown container id: 404"
existing="$(cluster_containers)"
code="$(call POST "/api/models/launch/bad%20name%21")"
[[ "$code" == 4?? ]] || fail "launch with a bad name: want 4xx, got $code"
ok "launch 'bad name!': $code"
code="$(call POST "/api/models/launch/..%2F..%2Fetc")"
[[ "$code" == 4?? ]] || fail "launch with a path-like name: want 4xx, got $code"
ok "launch '../../etc': $code"
expect 404 POST "/api/models/launch/NoSuchModel"
ok "launch of an unknown model: 404"
(($(cluster_containers) == existing)) || fail "a rejected launch created a container"
ok "nothing created"
docker rm -f "$FOREIGN" >/dev/null

token="e2e-$RANDOM$RANDOM"
cat >"$TMP/token.yaml" <<EOF
services:
  gateway:
    environment:
      GATEWAY_ADMIN_TOKEN: "$token"
EOF
compose -f "$TMP/token.yaml" up -d --no-deps gateway
wait_until 60 "gateway back with an admin token" bash -c "curl -sf -m 5 $GW/api/predict/services >/dev/null"
expect 401 GET "/api/models/instances/$MODEL"
expect 401 POST "/api/models/launch/$MODEL"
code="$(call GET "/api/models/instances/$MODEL" -H "Authorization: Bearer wrong")"
[[ "$code" == 401 || "$code" == 403 ]] || fail "wrong token: want 401/403, got $code"
expect 200 GET "/api/models/instances/$MODEL" -H "Authorization: Bearer $token"
(($(cluster_containers) == existing)) || fail "an unauthorized launch created a container"
ok "no token: 401; wrong token: $code; right token: 200"

# === 6. down ===

step "6. compose down (with a launched instance still running)"
expect 200 POST "/api/models/launch/$MODEL" -H "Authorization: Bearer $token"
left="$(jq -r .container_id "$TMP/body")"
ok "launched $(jq -r .container_name "$TMP/body") (${left:0:12}) and left it running"
compose down ||
  fail "down failed; containers left: $(docker ps -a --filter "label=gdp-serving.cluster=$PROJECT" --format '{{.Names}}' | tr '\n' ' ')(a launched node needs compose's labels for down to remove it)"
(($(project_containers) == 0)) || fail "containers left after down: $(docker ps -a --filter "label=com.docker.compose.project=$PROJECT" --format '{{.Names}}')"
(($(cluster_containers) == 0)) || fail "node containers left after down"
[[ -z "$(docker network ls -q --filter "name=^${PROJECT}_compute-network$")" ]] || fail "network ${PROJECT}_compute-network left after down"
ok "no container and no network left"
