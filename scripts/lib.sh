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

# random_token: a random token in the form of a UUID (the form of Consul's SecretIDs).
random_token() {
  local hex
  hex="$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
  ((${#hex} == 32)) || die "cannot read /dev/urandom for a token"
  printf '%s-%s-%s-%s-%s' "${hex:0:8}" "${hex:8:4}" "${hex:12:4}" "${hex:16:4}" "${hex:20:12}"
}

# ensure_env_consul_token FILE: compose refuses to start without CONSUL_HTTP_TOKEN; when FILE
# (.env) sets none (and the environment has none), write a random one into it and make FILE
# readable by this user only.
ensure_env_consul_token() {
  local file="$1"
  [[ -z "${CONSUL_HTTP_TOKEN:-}" ]] || return 0
  grep -qE '^CONSUL_HTTP_TOKEN=.' "$file" && return 0
  local token
  token="$(random_token)"
  if grep -q '^CONSUL_HTTP_TOKEN=' "$file"; then
    sed -i "s/^CONSUL_HTTP_TOKEN=.*/CONSUL_HTTP_TOKEN=$token/" "$file"
  else
    printf 'CONSUL_HTTP_TOKEN=%s\n' "$token" >>"$file"
  fi
  chmod 600 "$file"
  say "set a random CONSUL_HTTP_TOKEN (Consul's ACL token) in ${file#"$ROOT"/}"
}

# ensure_ort: make libonnxruntime.so available and export ORT_DYLIB_PATH.
ensure_ort() {
  if [[ -z "${ORT_DYLIB_PATH:-}" ]]; then
    ORT_DYLIB_PATH="$("$ROOT/scripts/setup-ort.sh" | tail -n1)"
  fi
  [[ -f "$ORT_DYLIB_PATH" ]] || die "ORT_DYLIB_PATH=$ORT_DYLIB_PATH does not exist"
  export ORT_DYLIB_PATH
}
