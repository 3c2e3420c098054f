#!/usr/bin/env bash
# A Docker Swarm of several real Docker Engines on this one machine, running the cluster's
# stack (stack.yaml): the host's engine is the manager, and each worker is a second dockerd in
# a network namespace of its own, reached over a veth pair.
#
#   scripts/swarm-lab.sh up [--workers N]   # default 2 workers; prints the gateway URL
#   scripts/swarm-lab.sh down               # removes everything `up` made; safe to repeat
#   scripts/swarm-lab.sh status             # swarm nodes, stack services, tasks
#   scripts/swarm-lab.sh link-down K | link-up K    # cut worker K off / reconnect it
#   scripts/swarm-lab.sh worker-kill K      # kill worker K's engine and all it runs (host lost)
#   scripts/swarm-lab.sh worker-start K     # start worker K's engine again (it rejoins)
#
# What `up` makes, and `down` removes: the bridge gdplab0 (10.77.0.1/24) with iptables FORWARD
# accept rules for it; per worker K the namespace gdp-lab-wK, the veth gdplab-hK (host end, on
# the bridge) / gdplab-wK (10.77.0.(10+K)), a dockerd (own data root /var/lib/gdplab/wK, exec
# root, socket /run/gdplab/wK/docker.sock, empty config file, no iptables, no bridge, its own
# hostname gdp-lab-wK); the swarm (the host engine's, advertised on 10.77.0.1; `down` leaves it
# only when `up` created it); the images, loaded into each worker with `docker save | load`
# (no registry); the stack `gdplab`. Needs root, a running Docker Engine not in a swarm, and
# the images (built with scripts/compose-offline.sh build when missing; LAB_BUILD=1 rebuilds).
#
# Ports on the manager (published in host mode): gateway LAB_GATEWAY_PORT (18000), Consul
# LAB_CONSUL_PORT (18500); Consul's token is in /run/gdplab/consul-token (mode 0600).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

STACK=gdplab
STATE=/run/gdplab
DATA=/var/lib/gdplab
BRIDGE=gdplab0
SUBNET_PREFIX=10.77.0
MANAGER_ADDR=$SUBNET_PREFIX.1
GATEWAY_PORT="${LAB_GATEWAY_PORT:-18000}"
CONSUL_PORT="${LAB_CONSUL_PORT:-18500}"
NODE_REPLICAS="${LAB_NODE_REPLICAS:-4}"
SERVICE=gdp-growth-model
NODE_SERVICE="${STACK}_$SERVICE"
WAIT_SECS="${LAB_WAIT_SECS:-180}"

# shellcheck source=/dev/null
IMAGE_PREFIX="$( [[ -f .env ]] && (set -a; source .env; echo "${COMPOSE_PROJECT_NAME:-microservices}") || echo microservices)"
IMAGES=("$IMAGE_PREFIX-gateway:latest" "$IMAGE_PREFIX-gdp-growth-model:latest" "$IMAGE_PREFIX-consul-dev:latest")
NODE_IMAGE="$IMAGE_PREFIX-gdp-growth-model:latest"

worker_ns() { echo "gdp-lab-w$1"; }
worker_addr() { echo "$SUBNET_PREFIX.$((10 + $1))"; }
worker_sock() { echo "unix://$STATE/w$1/docker.sock"; }
wdocker() { local k="$1"; shift; docker -H "$(worker_sock "$k")" "$@"; }
workers() { # the K of every worker namespace that exists
  ip netns list 2>/dev/null | awk '{print $1}' | sed -n 's/^gdp-lab-w\([0-9]\+\)$/\1/p' | sort -n
}

# wait_for SECS WHAT CMD...: polls CMD every second until it succeeds.
wait_for() {
  local secs="$1" what="$2" t0=$SECONDS; shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS - t0 < secs)) || { say "timed out after ${secs}s waiting for $what"; return 1; }
    sleep 1
  done
}

# === workers ===

# start_engine K: starts worker K's dockerd inside its namespace (and its own UTS namespace, so
# the swarm sees its own hostname) and waits until it answers.
start_engine() {
  local k="$1" ns dir
  ns="$(worker_ns "$k")"
  dir="$STATE/w$k"
  mkdir -p "$dir" "$DATA/w$k"
  [[ -f "$STATE/empty.json" ]] || echo '{}' >"$STATE/empty.json"
  # NOTE: nsenter --net, not `ip netns exec` (which remounts /sys and hides the cgroups); an
  # empty config file, because the machine's daemon.json sets data-root.
  setsid nsenter --net="/var/run/netns/$ns" unshare --uts -- sh -c \
    "hostname $ns && exec dockerd --config-file $STATE/empty.json --data-root $DATA/w$k \
      --exec-root $dir/exec --pidfile $dir/docker.pid -H $(worker_sock "$k") \
      --iptables=false --ip-masq=false --bridge=none --storage-driver $STORAGE_DRIVER \
      --log-driver json-file --log-opt max-size=10m" \
    >>"$dir/dockerd.log" 2>&1 </dev/null &
  wait_for 60 "worker $k's dockerd" wdocker "$k" info || { tail -20 "$dir/dockerd.log" >&2; return 1; }
}

# engine_pids K: dockerd, containerd and the shims of worker K (every process in its network
# namespace) and all their descendants (the containers).
engine_pids() {
  local ns pids all p
  ns="$(worker_ns "$1")"
  pids="$(ip netns pids "$ns" 2>/dev/null || true)"
  all="$pids"
  while [[ -n "$pids" ]]; do
    pids="$(for p in $pids; do ps -o pid= --ppid "$p"; done | tr -s ' \n' ' ')"
    pids="$(echo "$pids" | xargs -r echo)"
    all="$all $pids"
  done
  echo "$all" | xargs -r -n1 | sort -un | xargs -r echo
}

# kill_engine K [graceful]: stops worker K's engine (SIGTERM first when graceful) and kills
# everything it ran.
kill_engine() {
  local k="$1" pid pids
  pid="$(cat "$STATE/w$k/docker.pid" 2>/dev/null || true)"
  if [[ "${2:-}" == graceful && -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  fi
  pids="$(engine_pids "$k")"
  # shellcheck disable=SC2086
  [[ -z "$pids" ]] || kill -KILL $pids 2>/dev/null || true
  rm -f "$STATE/w$k/docker.pid"
}

# unmount_under DIR: lazily unmounts everything mounted below DIR (deepest first).
unmount_under() {
  awk -v d="$1/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
}

# === up ===

ensure_images() {
  local missing=()
  for image in "${IMAGES[@]}"; do
    docker image inspect "$image" >/dev/null 2>&1 || missing+=("$image")
  done
  if ((${#missing[@]} > 0)) || [[ "${LAB_BUILD:-0}" == 1 ]]; then
    say "building the images (scripts/compose-offline.sh build): ${missing[*]:-LAB_BUILD=1}"
    "$ROOT/scripts/compose-offline.sh" build
  fi
}

consul_passing() { # number of passing node instances in Consul
  curl -sS -m 5 -H @<(printf 'X-Consul-Token: %s\n' "$(cat "$STATE/consul-token")") \
    "http://127.0.0.1:$CONSUL_PORT/v1/health/service/$SERVICE?passing" | jq length
}
passing_is() { [[ "$(consul_passing)" == "$1" ]]; }
gateway_lists() {
  curl -sf -m 5 "http://127.0.0.1:$GATEWAY_PORT/api/predict/services" | jq -e ".\"Services:\" | length == $1"
}

all_running() { # every service of the stack has all its replicas running
  local r
  r="$(docker service ls --filter "label=com.docker.stack.namespace=$STACK" --format '{{.Replicas}}' | awk '{print $1}')"
  [[ -n "$r" ]] && ! echo "$r" | awk -F/ '$1 != $2 { bad = 1 } END { exit !bad }'
}

up() {
  local n=2
  while (($# > 0)); do
    case "$1" in
      --workers) n="${2:?--workers needs a number}"; shift 2 ;;
      *) die "unknown option $1 (usage: swarm-lab.sh up [--workers N])" ;;
    esac
  done
  [[ "$n" =~ ^[1-9]$ ]] || die "--workers must be 1..9"
  [[ -z "$(workers)" && ! -e "$STATE" ]] || die "a lab exists already; run scripts/swarm-lab.sh down first"
  [[ "$(docker info --format '{{.Swarm.LocalNodeState}}')" == inactive ]] ||
    die "this Docker Engine is in a swarm already (docker swarm leave --force, if it is not in use)"
  for port in "$GATEWAY_PORT" "$CONSUL_PORT"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then die "port $port is in use"; fi
  done
  ensure_images
  STORAGE_DRIVER="$(docker info --format '{{.Driver}}')"
  mkdir -p "$STATE" "$DATA"
  echo '{}' >"$STATE/empty.json"

  say "network: bridge $BRIDGE ($MANAGER_ADDR/24) and $n worker namespaces"
  ip link add "$BRIDGE" type bridge
  ip addr add "$MANAGER_ADDR/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  # Docker's FORWARD policy is DROP, and bridged frames pass it (br_netfilter).
  iptables -I FORWARD -i "$BRIDGE" -j ACCEPT
  iptables -I FORWARD -o "$BRIDGE" -j ACCEPT
  for ((k = 1; k <= n; k++)); do
    local ns
    ns="$(worker_ns "$k")"
    ip netns add "$ns"
    ip link add "gdplab-h$k" type veth peer name "gdplab-w$k" netns "$ns"
    ip link set "gdplab-h$k" master "$BRIDGE" up
    ip -n "$ns" addr add "$(worker_addr "$k")/24" dev "gdplab-w$k"
    ip -n "$ns" link set "gdplab-w$k" up
    ip -n "$ns" link set lo up
  done

  say "starting $n worker engines (dockerd in gdp-lab-w1..$n, storage driver $STORAGE_DRIVER)"
  for ((k = 1; k <= n; k++)); do start_engine "$k"; done

  say "swarm: manager = this host's engine on $MANAGER_ADDR; joining the workers"
  # Marked first: the engine was not in a swarm (checked above), so `down` may leave it.
  touch "$STATE/created-swarm"
  docker swarm init --advertise-addr "$MANAGER_ADDR" --listen-addr "$MANAGER_ADDR:2377" \
    --default-addr-pool 10.232.0.0/16 >/dev/null
  local token
  token="$(docker swarm join-token -q worker)"
  for ((k = 1; k <= n; k++)); do
    wdocker "$k" swarm join --token "$token" --advertise-addr "$(worker_addr "$k")" \
      --listen-addr "$(worker_addr "$k"):2377" "$MANAGER_ADDR:2377" >/dev/null
  done
  wait_for 60 "$((n + 1)) ready swarm nodes" bash -c \
    "[[ \$(docker node ls --format '{{.Status}}' | grep -c Ready) == $((n + 1)) ]]"

  say "loading $NODE_IMAGE into the workers (docker save | docker load; no registry)"
  docker save "$NODE_IMAGE" -o "$STATE/node-image.tar"
  for ((k = 1; k <= n; k++)); do wdocker "$k" load -q -i "$STATE/node-image.tar" >/dev/null; done
  rm -f "$STATE/node-image.tar"

  say "deploying the stack $STACK (stack.yaml, $NODE_REPLICAS node replicas)"
  random_token >"$STATE/consul-token"
  chmod 600 "$STATE/consul-token"
  CONSUL_HTTP_TOKEN="$(cat "$STATE/consul-token")" STACK_NAME="$STACK" IMAGE_PREFIX="$IMAGE_PREFIX" \
    GATEWAY_PORT="$GATEWAY_PORT" CONSUL_PORT="$CONSUL_PORT" NODE_REPLICAS="$NODE_REPLICAS" \
    docker stack deploy --resolve-image never -c stack.yaml "$STACK" >/dev/null
  wait_for "$WAIT_SECS" "$NODE_REPLICAS nodes passing in Consul" passing_is "$NODE_REPLICAS" || {
    status >&2
    return 1
  }
  wait_for 60 "the gateway to list $NODE_REPLICAS nodes" gateway_lists "$NODE_REPLICAS"
  # Swarm calls a task running once its health check passes, which may be after Consul's.
  wait_for 60 "every task of the stack running" all_running
  echo
  echo "The swarm lab is up: $((n + 1)) engines, $NODE_REPLICAS node replicas, all passing in Consul."
  echo "  Gateway  http://127.0.0.1:$GATEWAY_PORT"
  echo "  Consul   http://127.0.0.1:$CONSUL_PORT   (token in $STATE/consul-token)"
  echo "  Workers  docker -H $(worker_sock 1) ...   (scripts/swarm-lab.sh status)"
}

# === down ===

down() {
  local k
  if [[ -f "$STATE/created-swarm" ]] || docker stack ls --format '{{.Name}}' 2>/dev/null | grep -qx "$STACK"; then
    say "removing the stack $STACK and the services the gateway launched"
    docker stack rm "$STACK" >/dev/null 2>&1 || true
    docker service ls -q --filter "label=gdp-serving.cluster=$STACK" | xargs -r docker service rm >/dev/null 2>&1 || true
    wait_for 60 "the stack's containers to stop" bash -c \
      "[[ -z \$(docker ps -aq --filter label=com.docker.stack.namespace=$STACK) ]]" || true
  fi
  for k in $(workers); do
    say "stopping worker $k"
    if [[ -S "$STATE/w$k/docker.sock" ]]; then
      timeout 20 docker -H "$(worker_sock "$k")" swarm leave --force >/dev/null 2>&1 || true
    fi
    kill_engine "$k" graceful
    unmount_under "$DATA/w$k"
    unmount_under "$STATE/w$k"
    ip netns del "$(worker_ns "$k")" 2>/dev/null || true
    ip link del "gdplab-h$k" 2>/dev/null || true
  done
  if [[ -f "$STATE/created-swarm" ]]; then
    say "leaving the swarm (this host's engine)"
    docker swarm leave --force >/dev/null 2>&1 || true
  fi
  ip link del "$BRIDGE" 2>/dev/null || true
  while iptables -D FORWARD -i "$BRIDGE" -j ACCEPT 2>/dev/null; do :; done
  while iptables -D FORWARD -o "$BRIDGE" -j ACCEPT 2>/dev/null; do :; done
  unmount_under "$DATA"
  unmount_under "$STATE"
  rm -rf "$DATA" "$STATE"
  say "the swarm lab is down"
}

status() {
  docker node ls || true
  docker stack services "$STACK" 2>/dev/null || true
  docker service ps --filter desired-state=running --format '{{.Name}} {{.Node}} {{.CurrentState}} {{.Error}}' \
    $(docker service ls -q --filter "label=gdp-serving.cluster=$STACK" 2>/dev/null) "$STACK"_gateway 2>/dev/null || true
}

[[ "$(id -u)" == 0 ]] || die "the swarm lab needs root (network namespaces, veth pairs, dockerd)"
for tool in docker dockerd ip nsenter unshare iptables curl jq; do
  require_tool "$tool" "The swarm lab needs it."
done
cmd="${1:-}"
shift || true
case "$cmd" in
  up) up "$@" ;;
  down) down ;;
  status) status ;;
  link-down) ip link set "gdplab-h${1:?worker number}" down ;;
  link-up) ip link set "gdplab-h${1:?worker number}" up ;;
  worker-kill) kill_engine "${1:?worker number}" ;;
  worker-start)
    STORAGE_DRIVER="$(docker info --format '{{.Driver}}')"
    start_engine "${1:?worker number}"
    ;;
  *) die "usage: scripts/swarm-lab.sh up [--workers N] | down | status | link-down K | link-up K | worker-kill K | worker-start K" ;;
esac
