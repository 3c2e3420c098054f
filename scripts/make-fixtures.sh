#!/usr/bin/env bash
# Regenerate the cross-version scikit-learn fixtures in tools/tests/data/fixtures/.
#
# Usage: scripts/make-fixtures.sh [GENERATION ...]     (default: old mid new)
#
# Each generation has pinned requirements in scripts/requirements-fixtures-<gen>.txt and its
# own venv ($FIXTURES_VENV_PREFIX<gen>, default .venv-fixtures-<gen> in the repo root), in
# which scripts/make_fixtures.py rewrites tools/tests/data/fixtures/<sklearn>-np<numpy>/.
# The old generation needs python3 <= 3.11 (scikit-learn 1.2.2 has no newer wheels).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_tool python3 "Install Python 3.11 (e.g. apt-get install python3.11 python3.11-venv)."
python_minor="$(python3 -c 'import sys; print(sys.version_info[1])')"

generations=("$@")
[[ ${#generations[@]} -gt 0 ]] || generations=(old mid new)

for gen in "${generations[@]}"; do
  req="$ROOT/scripts/requirements-fixtures-$gen.txt"
  [[ -f "$req" ]] || die "unknown generation '$gen': $req does not exist"
  if [[ "$gen" == old && "$python_minor" -gt 11 ]]; then
    die "generation 'old' needs python3 <= 3.11 (found 3.$python_minor): scikit-learn 1.2.2 has no wheels for it"
  fi
  venv="${FIXTURES_VENV_PREFIX:-$ROOT/.venv-fixtures-}$gen"
  python_venv "$venv" "$req"
  say "generation $gen"
  "$venv/bin/python" "$ROOT/scripts/make_fixtures.py"
done

say "fixtures: $(du -sh "$ROOT/tools/tests/data/fixtures" | cut -f1) in $ROOT/tools/tests/data/fixtures"
