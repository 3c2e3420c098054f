# Output and polling helpers of the end-to-end tests (newcomer.sh, docker.sh).
# Source it after setting E2E_NAME (the log prefix) and STARTED=$SECONDS; E2E_POLL is how
# often wait_until polls (seconds, default 0.2). Do not run it.
# shellcheck shell=bash

step() { printf '\n\033[1m[%s %3ss] %s\033[0m\n' "$E2E_NAME" "$((SECONDS - STARTED))" "$*" >&2; }
ok() { printf '  ok: %s\n' "$*" >&2; }
fail() { printf '\033[31m  FAIL: %s\033[0m\n' "$*" >&2; exit 1; }

# wait_until SECONDS DESCRIPTION COMMAND...: polls COMMAND until it succeeds.
wait_until() {
  local limit="$1" what="$2"; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "timed out after ${limit}s waiting for: $what"
    sleep "${E2E_POLL:-0.2}"
  done
  ok "$what ($((limit - deadline + SECONDS))s)"
}
