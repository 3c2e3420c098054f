#!/usr/bin/env bash
# Runs every test of the project: formatting and lints, Rust unit and integration tests, the
# independent Python-client tests, the newcomer test (scripts/run.sh from a clean clone, unless
# ports 8000/8500 are busy), the dashboard's browser tests (headless Chromium, installed when
# missing) and the Docker end-to-end test when a daemon is reachable (then the gateway's
# real-engine test, which needs the images that test builds, and the Swarm end-to-end test on
# a lab swarm of three engines, as root).
# Installs what the tests need first (ONNX Runtime library, a Python venv). Ends with a
# summary line and exits non-zero if anything failed.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

started=$SECONDS
passed=0 failed=0 skipped=0
results=()

stage() { # stage NAME COMMAND...
  local name="$1"; shift
  say "$name"
  local t0=$SECONDS
  if "$@"; then
    passed=$((passed + 1)); results+=("PASS  $name ($((SECONDS - t0))s)")
  else
    failed=$((failed + 1)); results+=("FAIL  $name ($((SECONDS - t0))s)")
  fi
}
skip() { # skip NAME WHY
  skipped=$((skipped + 1)); results+=("SKIP  $1: $2"); say "skipping $1: $2"
}

# ensure_browser: Debian's chromium and chromium-driver, installed when missing (as root, with
# apt-get); says why and fails when that cannot be done.
ensure_browser() {
  if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    return 0
  fi
  if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    say "installing chromium and chromium-driver (apt-get) for the browser tests"
    if DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >&2 &&
      command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
      return 0
    fi
  fi
  say "ERROR: the browser tests need Chromium and chromedriver (apt-get install -y chromium chromium-driver, as root); they are missing and could not be installed"
  return 1
}

# Free disk in MB where the build goes; a full disk fails builds with errors far from the cause.
free_mb() { df -Pm "$ROOT" | awk 'NR == 2 { print $4 }'; }
NEEDED_MB=7000
# Incremental build data only speeds up the next build; CI has none (and it is a gigabyte).
[[ "${CI:-}" == true ]] && export CARGO_INCREMENTAL=0
say "free disk: $(free_mb) MB (a full run needs about $NEEDED_MB MB: debug and release builds, images)"
if (($(free_mb) < NEEDED_MB)); then
  say "WARNING: less than $NEEDED_MB MB free; builds may fail with 'No space left on device'"
fi

require_tool cargo "Install Rust (rustup) first."
require_tool python3 "Install Python 3.11+ first."
ensure_ort
python_venv "$ROOT/.venv-test" "$ROOT/scripts/requirements-test.txt"
export TEST_PYTHON="$ROOT/.venv-test/bin/python"
# Tests that cannot run here append their reason to this file; the summary lists them.
export TEST_SKIP_LOG="$ROOT/target/test-skips.log"
mkdir -p "$ROOT/target" && : >"$TEST_SKIP_LOG"

stage "cargo fmt --check" cargo fmt --all -- --check
# The architecture: which crate may use which (README), and no module circles inside a crate.
stage "crate dependencies as the README allows" python3 scripts/check-crate-deps.py
stage "no import circles between modules" python3 scripts/check-module-cycles.py
stage "cargo clippy" cargo clippy --workspace --all-targets --locked -- -D warnings
# The binaries first: some integration tests (and the Python clients) run other crates' binaries.
# `consul/standin`: consul-dev, the stand-in, is built only with it (cargo test turns it on
# too, through the tests' dev-dependencies, so both builds compile the same consul).
stage "cargo build (binaries)" cargo build --workspace --bins --locked --features consul/standin
# The gateway's real-engine tests need the node image; with a Docker daemon they run after the
# Docker end-to-end test has built the images (nothing can be pulled here).
DOCKER_TESTS=(launch_list_delete_and_guardrails_on_the_real_engine
  a_node_container_that_exits_at_once_is_a_502_and_is_removed)
docker_up=false
if [[ -x tests/e2e/docker.sh ]] && docker info >/dev/null 2>&1; then docker_up=true; fi
if $docker_up; then
  stage "cargo test (unit + integration)" cargo test --workspace --locked -- \
    "${DOCKER_TESTS[@]/#/--skip=}"
else
  stage "cargo test (unit + integration)" cargo test --workspace --locked
fi
if compgen -G "tests/python/test_*.py" >/dev/null; then
  stage "Python-client tests (pytest)" "$TEST_PYTHON" -m pytest -q tests/python
fi
# One release build for both end-to-end tests: the newcomer test seeds its build from it and
# the Docker test packs its binaries.
stage "cargo build --release (for the end-to-end tests)" \
  cargo build --release --workspace --bins --locked --features consul/standin
if [[ -x tests/e2e/newcomer.sh ]]; then
  busy=""
  for port in 8000 8500; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then busy+=" $port"; fi
  done
  if [[ -n "$busy" ]]; then
    skip "newcomer test (scripts/run.sh from a clean clone)" "port(s)$busy in use on 127.0.0.1 (a cluster already running?)"
  else
    stage "newcomer test (scripts/run.sh from a clean clone)" tests/e2e/newcomer.sh
  fi
fi
# The dashboard in headless Chromium against scripts/run.sh's cluster (its default ports; the
# test fails, saying so, when they are taken). Without a browser that can be installed, it fails.
if compgen -G "tests/browser/test_*.py" >/dev/null; then
  if ensure_browser; then
    stage "dashboard browser tests (headless Chromium, scripts/run.sh)" "$TEST_PYTHON" -m pytest -q tests/browser
  else
    failed=$((failed + 1)); results+=("FAIL  dashboard browser tests: no Chromium/chromedriver, and they could not be installed")
  fi
fi
if [[ -x tests/e2e/docker.sh ]]; then
  if $docker_up; then
    stage "Docker end-to-end test" tests/e2e/docker.sh
    stage "gateway Docker runtime on the real engine (cargo test, with the images just built)" \
      cargo test -p gateway --test lifecycle_docker --locked -- --exact "${DOCKER_TESTS[@]}"
    # A swarm of 3 engines on this machine (scripts/swarm-lab.sh), with the images just built.
    if [[ -x tests/e2e/swarm.sh ]]; then
      if [[ "$(id -u)" -eq 0 ]]; then
        stage "Swarm end-to-end test (3 engines, faults under load)" tests/e2e/swarm.sh
      else
        skip "Swarm end-to-end test" "needs root (network namespaces, veth pairs, a dockerd per worker)"
      fi
    fi
  else
    skip "Docker end-to-end test" "no Docker daemon reachable (docker info failed)"
  fi
fi

while IFS= read -r line; do
  [[ -n "$line" ]] && skip "a test inside cargo test" "$line"
done <"$TEST_SKIP_LOG"

echo
echo "== test summary ($((SECONDS - started))s) =="
printf '%s\n' "${results[@]}"
echo "free disk at the end: $(free_mb) MB"
echo "stages: $passed passed, $failed failed, $skipped skipped"
((failed == 0))
