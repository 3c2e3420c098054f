#!/usr/bin/env bash
# Regenerate the LightGBM fixtures in tools/tests/data/fixtures-lightgbm/<lightgbm version>/.
#
# Usage: scripts/make-fixtures-lightgbm.sh [GENERATION ...]     (default: old new)
#
# Each generation has pinned requirements in scripts/requirements-fixtures-lightgbm-<gen>.txt
# (old: LightGBM 3.3.5, new: the newest 4.x) and its own venv
# ($FIXTURES_VENV_PREFIX<gen>, default .venv-lightgbm-<gen> in the repo root), in which
# scripts/make_fixtures_lightgbm.py rewrites its directory. Needs python3 3.11 (the old
# generation's scikit-learn 1.2.2 has no wheels for newer Pythons).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_tool python3 "Install Python 3.11 (e.g. apt-get install python3.11 python3.11-venv)."
python_minor="$(python3 -c 'import sys; print(sys.version_info[1])')"

generations=("$@")
[[ ${#generations[@]} -gt 0 ]] || generations=(old new)

for gen in "${generations[@]}"; do
  req="$ROOT/scripts/requirements-fixtures-lightgbm-$gen.txt"
  [[ -f "$req" ]] || die "unknown generation '$gen': $req does not exist"
  if [[ "$gen" == old && "$python_minor" -gt 11 ]]; then
    die "generation 'old' needs python3 <= 3.11 (found 3.$python_minor): scikit-learn 1.2.2 has no wheels for it"
  fi
  venv="${FIXTURES_VENV_PREFIX:-$ROOT/.venv-lightgbm-}$gen"
  python_venv "$venv" "$req"
  say "LightGBM generation $gen"
  "$venv/bin/python" "$ROOT/scripts/make_fixtures_lightgbm.py"
done

say "fixtures: $(du -sh "$ROOT/tools/tests/data/fixtures-lightgbm" | cut -f1) in $ROOT/tools/tests/data/fixtures-lightgbm"
