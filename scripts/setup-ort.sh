#!/usr/bin/env bash
# Provide libonnxruntime.so for the `ort` crate (load-dynamic) from the PyPI onnxruntime wheel.
#
# The version is pinned to match ort's `api-31` feature (ONNX Runtime >= 1.31). The library is
# unpacked to .ort/lib/ in the repository; the crates look there by default, or wherever
# ORT_DYLIB_PATH points. Idempotent: does nothing when the library is already in place.
# Prints the library path on stdout as its last line.
set -euo pipefail

ORT_VERSION="${ORT_VERSION:-1.31.1}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/.ort/lib"
lib="$dest/libonnxruntime.so.$ORT_VERSION"

if [[ ! -s "$lib" ]]; then
  echo "setup-ort: fetching onnxruntime==$ORT_VERSION wheel from PyPI" >&2
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --disable-pip-version-check --no-deps \
    --only-binary=:all: -d "$tmp" "onnxruntime==$ORT_VERSION" >&2
  wheel="$(ls "$tmp"/onnxruntime-*.whl)"
  mkdir -p "$dest"
  python3 - "$wheel" "$dest" "$ORT_VERSION" <<'PY'
import sys, zipfile, os
wheel, dest, ver = sys.argv[1:]
name = f"onnxruntime/capi/libonnxruntime.so.{ver}"
with zipfile.ZipFile(wheel) as z:
    data = z.read(name)
tmp = os.path.join(dest, f".libonnxruntime.so.{ver}.part")
with open(tmp, "wb") as f:
    f.write(data)
os.replace(tmp, os.path.join(dest, f"libonnxruntime.so.{ver}"))
PY
fi
ln -sfn "libonnxruntime.so.$ORT_VERSION" "$dest/libonnxruntime.so"
echo "$dest/libonnxruntime.so"
