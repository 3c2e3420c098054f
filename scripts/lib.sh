# Shared helpers for the project's scripts. Source it; do not run it.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROOT

say() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# require_tool NAME HINT: fail clearly when a command is missing.
require_tool() {
  command -v "$1" >/dev/null 2>&1 || die "'$1' is not installed. $2"
}

# python_venv DIR REQUIREMENTS: create/refresh a venv when the requirements file changed.
python_venv() {
  local dir="$1" req="$2" stamp
  stamp="$dir/.requirements.sha256"
  if [[ -x "$dir/bin/python" ]] && [[ -f "$stamp" ]] && sha256sum --quiet -c "$stamp" >/dev/null 2>&1; then
    return 0
  fi
  say "setting up Python environment $dir from $(basename "$req") (first run only)"
  python3 -m venv "$dir"
  "$dir/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
  "$dir/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" >&2
  sha256sum "$req" >"$stamp"
}

# ensure_ort: make libonnxruntime.so available and export ORT_DYLIB_PATH.
ensure_ort() {
  if [[ -z "${ORT_DYLIB_PATH:-}" ]]; then
    ORT_DYLIB_PATH="$("$ROOT/scripts/setup-ort.sh" | tail -n1)"
  fi
  [[ -f "$ORT_DYLIB_PATH" ]] || die "ORT_DYLIB_PATH=$ORT_DYLIB_PATH does not exist"
  export ORT_DYLIB_PATH
}
