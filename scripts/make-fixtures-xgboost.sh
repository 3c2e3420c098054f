#!/usr/bin/env bash
# Regenerate the XGBoost fixtures in tools/tests/data/fixtures-xgboost/.
#
# Usage: scripts/make-fixtures-xgboost.sh [GENERATION ...]     (default: old new)
#
# Each generation has pinned requirements in scripts/requirements-fixtures-xgboost-<gen>.txt
# (old: XGBoost 1.7.6; new: the newest XGBoost for Python 3.11) and its own venv
# ($FIXTURES_VENV_PREFIX<gen>, default .venv-fixtures-xgboost-<gen> in the repo root), in which
# scripts/make_fixtures_xgboost.py rewrites tools/tests/data/fixtures-xgboost/<xgboost version>/.
# Both need python3 3.11 (scikit-learn 1.2.2 has no newer wheels; XGBoost 3.3+ needs 3.12).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_tool python3 "Install Python 3.11 (e.g. apt-get install python3.11 python3.11-venv)."
python_minor="$(python3 -c 'import sys; print(sys.version_info[1])')"
[[ "$python_minor" -eq 11 ]] || die "the XGBoost fixtures need python3 3.11 (found 3.$python_minor)"

generations=("$@")
[[ ${#generations[@]} -gt 0 ]] || generations=(old new)

for gen in "${generations[@]}"; do
  req="$ROOT/scripts/requirements-fixtures-xgboost-$gen.txt"
  [[ -f "$req" ]] || die "unknown generation '$gen': $req does not exist"
  venv="${FIXTURES_VENV_PREFIX:-$ROOT/.venv-fixtures-xgboost-}$gen"
  python_venv "$venv" "$req"
  say "generation $gen"
  "$venv/bin/python" "$ROOT/scripts/make_fixtures_xgboost.py"
done

say "fixtures: $(du -sh "$ROOT/tools/tests/data/fixtures-xgboost" | cut -f1) in $ROOT/tools/tests/data/fixtures-xgboost"
