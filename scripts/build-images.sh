#!/usr/bin/env bash
# Build the cluster's images with no image registry (scripts/compose-offline.sh build) and
# write their sizes as a Markdown table to benchmarks/images.md (or the given file).
#
# Usage: scripts/build-images.sh [REPORT_FILE]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

report="${1:-benchmarks/images.md}"
"$ROOT/scripts/compose-offline.sh" build
# shellcheck source=/dev/null
project="$(set -a; source .env; echo "${COMPOSE_PROJECT_NAME:-microservices}")"

say "writing image sizes to $report"
mkdir -p "$(dirname "$report")"
{
  echo "# Image sizes"
  echo
  echo "Written by \`scripts/build-images.sh\` on $(date -u +%Y-%m-%d) with"
  echo "$(docker version --format 'Docker Engine {{.Server.Version}}'): the offline images"
  echo "(\`prebuilt\` target: host-built release binaries and their shared libraries on"
  echo "\`scratch\`). The default \`runtime\` target has the same layout, built from source."
  echo "Budgets: node image <= 150 MB, gateway <= 60 MB."
  echo
  echo "| image | size (MB) | contents |"
  echo "|---|---:|---|"
  for spec in \
    "gateway:gateway binary, glibc" \
    "gdp-growth-model:inference-node binary, libonnxruntime, ONNX models, glibc, libstdc++" \
    "consul-dev:Consul stand-in (consul-dev binary), glibc"; do
    name="$project-${spec%%:*}:latest"
    bytes="$(docker image inspect --format '{{.Size}}' "$name")"
    mb="$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1e6 }')"
    printf '| `%s` | %s | %s |\n' "$name" "$mb" "${spec#*:}"
  done
} >"$report"
cat "$report"
