#!/usr/bin/env bash
# End-to-end test of the cluster on a real multi-engine Docker Swarm (scripts/swarm-lab.sh: the
# host's engine as manager plus 2 worker engines in network namespaces):
#   1. the node replicas run on at least two engines; predictions through the gateway are
#      answered by nodes on every engine that runs one
#   2. `docker service scale` of the node service shows in /api/predict/services within one
#      check interval of the new tasks running
#   3. launch through the gateway (RUNTIME=swarm) lands on the swarm and serves; instances lists
#      it with its host; deleting a stack replica is a 409, a foreign task a 404; delete removes it
#   4. under a steady load, worker 1's veth goes down: <= 0.1% failed while Consul notices, none
#      once its nodes are critical; Swarm reschedules on the other engines and the gateway uses
#      them; the link comes back and the worker is Ready again
#   5. the same with worker 2's engine killed (dockerd, containerd and its containers); it is
#      started again and rejoins
#   6. `down` leaves no namespace, link, engine, data dir, iptables rule, service or swarm
# Needs root and a Docker daemon that is not in a swarm; without root it says why and skips
# (recorded in TEST_SKIP_LOG). Uses ports 18000/18500 on the host.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
cd "$ROOT"

skip() {
  say "skipping the swarm end-to-end test: $1"
  [[ -z "${TEST_SKIP_LOG:-}" ]] || echo "swarm end-to-end test (tests/e2e/swarm.sh): $1" >>"$TEST_SKIP_LOG"
  exit 0
}
[[ "$(id -u)" == 0 ]] || skip "needs root (network namespaces, veth pairs, a dockerd per worker)"
docker info >/dev/null 2>&1 || skip "no Docker daemon reachable (docker info failed)"
require_tool jq "Install jq first (apt-get install jq)."

LAB="$ROOT/scripts/swarm-lab.sh"
STACK=gdplab
NODE_SERVICE="${STACK}_gdp-growth-model"
SERVICE=gdp-growth-model
MODEL=LinearRegression
GW=http://127.0.0.1:18000
CONSUL=http://127.0.0.1:18500
CHECK_INTERVAL=2 # INFERENCE_NODE_CHECK_INTERVAL in stack.yaml
PREDICT_BODY='{"gdp_per_capita": 50000, "unemployment_rate": 5.2, "gdp_growth_rate_lag": 2.1, "gdp_growth_rate_ma": 2.3}'
TMP="$(mktemp -d)"
LOAD_PID=""
FOREIGN="gdplab-foreign-$$"
STARTED=$SECONDS
E2E_NAME=swarm
E2E_POLL=0.5
source "$ROOT/tests/e2e/lib.sh"
SUMMARY=()

call() {
  local method="$1" path="$2"; shift 2
  curl -sS -m 90 -o "$TMP/body" -w '%{http_code}' -X "$method" "$@" "$GW$path" || echo 000
}
expect() {
  local want="$1" got; shift
  got="$(call "$@")"
  [[ "$got" == "$want" ]] || fail "$1 $2: want $want, got $got: $(head -c 400 "$TMP/body")"
}
consul_curl() { curl -H @<(printf 'X-Consul-Token: %s\n' "$(cat /run/gdplab/consul-token)") "$@"; }
# Addresses (ip) of the node instances whose checks pass in Consul.
consul_addrs() {
  consul_curl -sS -m 5 "$CONSUL/v1/health/service/$SERVICE?passing" | jq -r '.[].Service.Address' | sort
}
# Addresses of every node instance registered in Consul, passing or not.
registered_addrs() {
  consul_curl -sS -m 5 "$CONSUL/v1/health/service/$SERVICE" | jq -r '.[].Service.Address' | sort
}
deregistered() { registered_addrs >"$TMP/registered" && ! grep -qx "$1" "$TMP/registered"; }
passing_is() { [[ "$(consul_addrs | wc -l)" == "$1" ]]; }
gateway_lists() { curl -sf -m 5 "$GW/api/predict/services" | jq -e ".\"Services:\" | length == $1"; }

# "ip hostname" of every running task of the cluster's node services.
task_hosts() {
  local ids
  ids="$(docker service ls -q --filter "label=gdp-serving.cluster=$STACK")"
  [[ -n "$ids" ]] || return 0
  # shellcheck disable=SC2086
  docker service ps -q --filter desired-state=running $ids | xargs -r docker inspect |
    jq -r '.[] | select(.Status.State == "running") | "\(.NodeID) \(.NetworksAttachments[] |
      .Addresses[] | select(startswith("10.231.")) | split("/")[0])"' |
    while read -r node ip; do
      echo "$ip $(docker node inspect --format '{{.Description.Hostname}}' "$node")"
    done | sort
}
hosts_of() { task_hosts | awk '{print $2}' | sort -u; }
running_tasks() { docker service ps -q --filter desired-state=running "$NODE_SERVICE" | xargs -r docker inspect | jq '[.[] | select(.Status.State == "running")] | length'; }
export STACK NODE_SERVICE
export -f task_hosts running_tasks

# predictions_from_all_hosts N: N predictions (all must succeed); then every host running a
# node must have one that answered some (the gateway's per-node request series).
predictions_from_all_hosts() {
  local n="$1" code i
  for ((i = 0; i < n; i++)); do
    code="$(call POST /api/predict/gdp_growth_rate -H 'Content-Type: application/json' -d "$PREDICT_BODY")"
    [[ "$code" == 200 ]] || fail "prediction $i: status $code: $(head -c 300 "$TMP/body")"
  done
  sleep 2 # let the gateway's current stats bucket complete
  curl -sf -m 5 "$GW/api/cluster" |
    jq -r '.nodes[] | select((.stats.history.requests_per_sec | add) > 0) | .addr | split(":")[0]' |
    sort >"$TMP/served"
  local host missing=""
  while read -r host; do
    task_hosts | awk -v h="$host" '$2 == h {print $1}' | grep -qxFf - "$TMP/served" || missing+=" $host"
  done < <(hosts_of)
  [[ -z "$missing" ]] || fail "no node on$missing answered any of $n predictions (served: $(tr '\n' ' ' <"$TMP/served"))"
  ok "$n predictions, none failed, answered by nodes on every engine: $(hosts_of | tr '\n' ' ')"
}

# === steady load: 4 clients, bounded in time ===
load_start() {
  : >"$TMP/load.codes"
  rm -f "$TMP/load.stop"
  for _ in 1 2 3 4; do
    (
      while [[ ! -f "$TMP/load.stop" ]] && ((SECONDS < STARTED + 600)); do
        curl -s -o /dev/null -m 10 -w '%{http_code}\n' -X POST -H 'Content-Type: application/json' \
          -d "$PREDICT_BODY" "$GW/api/predict/gdp_growth_rate" >>"$TMP/load.codes" || true
        sleep 0.05
      done
    ) &
    LOAD_PID+=" $!"
  done
}
load_total() { wc -l <"$TMP/load.codes"; }
load_failed() { tail -n "+$((${1:-0} + 1))" "$TMP/load.codes" | grep -cv '^200$' || true; }
load_stop() {
  [[ -n "${LOAD_PID// /}" ]] || return 0
  touch "$TMP/load.stop"
  # shellcheck disable=SC2086
  wait $LOAD_PID 2>/dev/null || true
  LOAD_PID=""
}

cleanup() {
  local rc=$?
  load_stop
  if ((rc != 0)); then
    step "failed; lab state and gateway log"
    "$LAB" status >&2 || true
    docker service logs --tail 30 "${STACK}_gateway" >&2 2>&1 || true
  fi
  docker service rm "$FOREIGN" >/dev/null 2>&1 || true
  step "cleanup: swarm-lab.sh down"
  "$LAB" down >&2 || true
  rm -rf "$TMP"
  printf '\n[swarm] %s after %ss\n' "$( ((rc == 0)) && echo PASSED || echo FAILED)" "$((SECONDS - STARTED))" >&2
  exit "$rc"
}
trap cleanup EXIT

# === 1. up, spread, every engine answers ===
step "1. scripts/swarm-lab.sh up --workers 2"
"$LAB" up --workers 2
t_up=$((SECONDS - STARTED))
engines="$(hosts_of | wc -l)"
((engines >= 2)) || fail "the node replicas run on $engines engine(s): $(hosts_of | tr '\n' ' ')"
ok "4 replicas on $engines engines: $(task_hosts | awk '{print $2}' | sort | uniq -c | tr -s ' \n' ' ')"
predictions_from_all_hosts 200

# === 2. docker service scale ===
step "2. docker service scale $NODE_SERVICE=6"
docker service scale -d "$NODE_SERVICE=6" >/dev/null
wait_until 120 "6 tasks running" bash -c '[[ $(running_tasks) == 6 ]]'
t0=$SECONDS
wait_until 30 "the gateway lists 6 nodes" gateway_lists 6
lag=$((SECONDS - t0))
((lag <= CHECK_INTERVAL + 1)) || fail "the gateway listed the 6 nodes ${lag}s after their tasks ran (check interval ${CHECK_INTERVAL}s)"
SUMMARY+=("scale 4 -> 6: gateway lists 6 nodes ${lag}s after the tasks run (check interval ${CHECK_INTERVAL}s)")
docker service scale -d "$NODE_SERVICE=4" >/dev/null
wait_until 60 "back to 4 nodes in the gateway" gateway_lists 4

# === 3. lifecycle API on the swarm ===
step "3. launch, list and delete through the gateway (RUNTIME=swarm)"
expect 200 POST "/api/models/launch/$MODEL"
launched="$(jq -r .container_id "$TMP/body")"
name="$(jq -r .container_name "$TMP/body")"
[[ "$launched" =~ ^[0-9a-z]{25}$ ]] || fail "launch id '$launched' is not a task id: $(cat "$TMP/body")"
service="${name%.*}"
docker service inspect "$service" --format '{{index .Spec.Labels "gdp-serving.launched-by"}}' | grep -qx gateway ||
  fail "launched service $service is not in the swarm with the launched-by label"
ok "launched $name (task $launched)"
wait_until 60 "5 nodes passing in Consul" passing_is 5
wait_until 30 "the gateway lists 5 nodes" gateway_lists 5
expect 200 GET "/api/models/instances/$MODEL"
jq -e --arg id "$launched" '.instances | length == 5 and any(.[]; .id == $id and .status == "running"
  and (.host | type == "string"))' "$TMP/body" >/dev/null || fail "instances: $(cat "$TMP/body")"
launched_host="$(jq -r --arg id "$launched" '.instances[] | select(.id == $id) | .host' "$TMP/body")"
ok "instances lists 5, the launched one on $launched_host"
predictions_from_all_hosts 150
launched_ip="$(docker inspect "$launched" | jq -r '.[0].NetworksAttachments[].Addresses[] | select(startswith("10.231.")) | split("/")[0]')"
grep -qx "$launched_ip" "$TMP/served" || fail "the launched node ($launched_ip) answered no prediction"
ok "the launched node answered predictions"
replica="$(docker service ps -q --filter desired-state=running "$NODE_SERVICE" | head -1)"
expect 409 DELETE "/api/models/instances/$replica"
ok "deleting a stack replica: 409 $(jq -r .detail "$TMP/body")"
# An unlabelled service from an image the manager has (no registry), on the manager.
docker service create -d --name "$FOREIGN" --constraint node.role==manager \
  "$(docker service inspect "${STACK}_service-discovery" --format '{{.Spec.TaskTemplate.ContainerSpec.Image}}' | cut -d@ -f1)" >/dev/null
wait_until 60 "the foreign service has a task" bash -c "[[ -n \$(docker service ps -q $FOREIGN) ]]"
foreign_task="$(docker service ps -q "$FOREIGN" | head -1)"
expect 404 DELETE "/api/models/instances/$foreign_task"
docker service inspect "$FOREIGN" >/dev/null || fail "the foreign service is gone"
docker service rm "$FOREIGN" >/dev/null
ok "a foreign task: 404, its service untouched"
expect 200 DELETE "/api/models/instances/$launched"
wait_until 30 "the launched service removed" bash -c "! docker service inspect $service >/dev/null 2>&1"
wait_until 30 "the launched node ($launched_ip) deregistered itself from Consul" deregistered "$launched_ip"
wait_until 30 "4 nodes passing in Consul" passing_is 4
wait_until 30 "the gateway lists 4 nodes" gateway_lists 4

# === 4./5. faults under load ===
# fault K NAME CUT RESTORE: cuts worker K off with CUT under load and checks the failures.
fault() {
  local k="$1" what="$2" cut="$3" restore="$4" host t0 at_cut at_critical ips total failed after
  host="gdp-lab-w$k"
  mapfile -t ips < <(task_hosts | awk -v h="$host" '$2 == h {print $1}')
  ((${#ips[@]} > 0)) || fail "no node runs on $host before the fault"
  load_start
  sleep 3
  at_cut="$(load_total)"
  t0=$SECONDS
  "$LAB" "$cut" "$k"
  ok "$what: $host cut off (its nodes: ${ips[*]})"
  none_passing() { local ip; for ip in "${ips[@]}"; do ! consul_addrs | grep -qx "$ip" || return 1; done; }
  wait_until 60 "Consul marks the nodes on $host critical" none_passing
  local t_critical=$((SECONDS - t0))
  at_critical="$(load_total)"
  wait_until 90 "Swarm reschedules: 4 tasks running, none on $host" bash -c \
    "t=\$(task_hosts); [[ \$(echo \"\$t\" | grep -c .) == 4 ]] && ! echo \"\$t\" | grep -q ' $host\$'"
  local t_resched=$((SECONDS - t0))
  wait_until 60 "4 nodes passing in Consul" passing_is 4
  sleep 3
  load_stop
  total=$(($(load_total) - at_cut))
  failed="$(load_failed "$at_cut")"
  after="$(load_failed "$at_critical")"
  ok "$what: $total requests during the fault, $failed failed; $after failed after Consul marked $host's nodes critical (${t_critical}s); rescheduled in ${t_resched}s"
  ((failed * 1000 <= total)) || fail "$what: $failed of $total requests failed (more than 0.1%)"
  ((after == 0)) || fail "$what: $after requests failed after Consul marked the nodes critical"
  predictions_from_all_hosts 100
  SUMMARY+=("$what ($host): $total requests, $failed failed, $after after critical; critical in ${t_critical}s, rescheduled in ${t_resched}s")
  "$LAB" "$restore" "$k"
  wait_until 90 "$host Ready in the swarm again" bash -c \
    "docker node ls --format '{{.Hostname}} {{.Status}}' | grep -qx '$host Ready'"
}

step "4. worker 1's veth down under a steady load"
fault 1 "veth down" link-down link-up
step "5. worker 2's engine killed under a steady load"
fault 2 "dockerd killed" worker-kill worker-start

# === 6. down ===
step "6. scripts/swarm-lab.sh down leaves nothing behind"
trap - EXIT
"$LAB" down
"$LAB" down >/dev/null 2>&1 || fail "a second down failed"
left=""
ip netns list | grep -q '^gdp-lab-' && left+=" namespaces"
ip -o link | grep -q 'gdplab' && left+=" links"
[[ -e /run/gdplab || -e /var/lib/gdplab ]] && left+=" dirs"
iptables -S FORWARD | grep -q gdplab && left+=" iptables-rules"
[[ "$(docker info --format '{{.Swarm.LocalNodeState}}')" == inactive ]] || left+=" swarm"
pgrep -f 'dockerd --config-file /run/gdplab' >/dev/null && left+=" dockerd"
[[ -z "$(docker ps -aq --filter label=com.docker.stack.namespace=$STACK)" ]] || left+=" containers"
grep -q gdplab /proc/mounts && left+=" mounts"
[[ -z "$left" ]] || fail "down left:$left"
ok "nothing left (namespaces, links, dirs, iptables rules, swarm, engines, containers, mounts)"
rm -rf "$TMP"
echo
echo "== swarm lab summary (up in ${t_up}s, whole test $((SECONDS - STARTED))s) =="
printf '%s\n' "${SUMMARY[@]}"
printf '\n[swarm] PASSED after %ss\n' "$((SECONDS - STARTED))" >&2
