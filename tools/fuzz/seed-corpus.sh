#!/usr/bin/env bash
# Copies the committed scikit-learn and LightGBM pickles and the shipped models into the
# read_pickle corpus, and the LightGBM text fixtures into the read_lightgbm corpus.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
corpus="$here/corpus/read_pickle"
mkdir -p "$corpus"
find "$here/../tests/data/fixtures" "$here/../tests/data/fixtures-lightgbm" \
    "$here/../tests/data/hostile" "$here/../../models" \
    -type f \( -name '*.pkl' -o -name '*.joblib' \) -size -300k |
while read -r file; do
    cp "$file" "$corpus/$(basename "$(dirname "$file")")__$(basename "$file")"
done
echo "seeded $(ls "$corpus" | wc -l) files into $corpus"

corpus="$here/corpus/read_lightgbm"
mkdir -p "$corpus"
find "$here/../tests/data/fixtures-lightgbm" -type f -name '*.txt' |
while read -r file; do
    cp "$file" "$corpus/$(basename "$(dirname "$file")")__$(basename "$file")"
done
echo "seeded $(ls "$corpus" | wc -l) files into $corpus"

corpus="$here/corpus/read_xgboost"
mkdir -p "$corpus"
find "$here/../tests/data/fixtures-xgboost" -type f \( -name '*.json' -o -name '*.ubj' \) \
    ! -name '*.expected.json' ! -name 'rows-*' ! -name 'manifest.json' -size -300k |
while read -r file; do
    cp "$file" "$corpus/$(basename "$(dirname "$file")")__$(basename "$file")"
done
echo "seeded $(ls "$corpus" | wc -l) files into $corpus"
