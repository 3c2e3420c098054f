#!/usr/bin/env bash
# Run the cluster with docker-compose on a host with no image registry. Takes docker-compose's
# own arguments and runs them against compose.yaml + compose.offline.yaml: images built from
# host-built binaries (the Dockerfiles' `prebuilt` stage), the Consul stand-in (consul-dev) in
# place of the official Consul image.
#
#   scripts/compose-offline.sh up -d
#   scripts/compose-offline.sh up -d --scale gdp-growth-model=5
#   scripts/compose-offline.sh ps
#   scripts/compose-offline.sh down
#
# Creates .env from .env.example when missing, and sets a random CONSUL_HTTP_TOKEN (Consul's
# ACL token, which compose requires) in it when it has none. Before commands that create containers
# (up, build, create, run) it builds the release binaries, packs them with their shared
# libraries into docker/prebuilt/ (docker/rootfs.sh) and builds the images; all incremental,
# seconds when nothing changed; SKIP_BUILD=1 skips this and uses the images as they are.
# Uses docker-compose, or `docker compose` (Compose v2) when that is what is installed.
# Honours CARGO_TARGET_DIR and ORT_DYLIB_PATH.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

compose() {
  if command -v docker-compose >/dev/null 2>&1; then
    docker-compose -f compose.yaml -f compose.offline.yaml "$@"
  elif docker compose version >/dev/null 2>&1; then
    docker compose -f compose.yaml -f compose.offline.yaml "$@"
  else
    die "neither docker-compose nor the docker compose plugin is installed"
  fi
}

# Fill docker/prebuilt/<component>/ with host-built binaries and their libraries.
prepare_prebuilt() {
  require_tool cargo "Install Rust (rustup) first."
  ensure_ort
  say "building release binaries (gateway, inference-node, consul-dev)"
  cargo build --release --locked --bin gateway --bin inference-node --bin consul-dev \
    --features consul/standin
  local bin ort_lib
  bin="${CARGO_TARGET_DIR:-$ROOT/target}/release"
  ort_lib="$(readlink -f "$ORT_DYLIB_PATH")"
  say "packing binaries and their shared libraries into docker/prebuilt/"
  docker/rootfs.sh docker/prebuilt/gateway "$bin/gateway:/usr/local/bin/gateway"
  docker/rootfs.sh docker/prebuilt/consul-dev "$bin/consul-dev:/usr/local/bin/consul-dev"
  docker/rootfs.sh docker/prebuilt/inference-node \
    "$bin/inference-node:/usr/local/bin/inference-node" \
    "$ort_lib:/usr/local/lib/libonnxruntime.so.1.31.1"
}

require_tool docker "Install Docker Engine first."
[[ -f .env ]] || { say "creating .env from .env.example"; cp .env.example .env; }
ensure_env_consul_token .env

# The compose command is the first argument that is neither an option nor an option's value.
command=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    -f | --file | -p | --project-name | --env-file | --project-directory | -H | --host | \
      --context | -c | --log-level | --profile | --ansi) i=$((i + 1)) ;;
    -*) ;;
    *) command="${args[i]}"; break ;;
  esac
done

[[ "${SKIP_BUILD:-0}" == 1 ]] && command="(skip build)"
case "$command" in
  build) prepare_prebuilt ;;
  up | create | run)
    prepare_prebuilt
    say "building images (target prebuilt)"
    compose build
    ;;
esac
compose "$@"
