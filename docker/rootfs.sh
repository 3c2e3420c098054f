#!/usr/bin/env bash
# Assemble a minimal root filesystem for a `FROM scratch` image: the given files plus every
# shared library they load (their `ldd` closure, dynamic loader included), a passwd/group with
# `root` and `nonroot` (65532), and a world-writable /tmp. Nothing else: no shell, no package
# manager. Used by the Dockerfiles' builder stages and, on hosts with no registry, by
# scripts/compose-offline.sh with host-built binaries (so both paths give the same layout).
#
# Usage: docker/rootfs.sh OUT_DIR SRC:DEST [SRC:DEST ...]
#   SRC   a file on this machine (binary or shared library)
#   DEST  its absolute path inside the image
# Executables are stripped of debug info (symbols stay, for readable panics); OUT_DIR's
# contents are replaced. Libraries come from this machine: build the binaries here too.
set -euo pipefail

die() { printf 'rootfs.sh: %s\n' "$*" >&2; exit 1; }

(($# >= 2)) || die "usage: rootfs.sh OUT_DIR SRC:DEST [SRC:DEST ...]"
out="$1"; shift
command -v ldd >/dev/null || die "ldd is missing (package libc-bin)"

# Replace OUT_DIR's contents but keep a .gitignore that marks it as a generated folder.
mkdir -p "$out"
find "$out" -mindepth 1 -maxdepth 1 ! -name .gitignore -exec rm -rf {} +
mkdir -p "$out/etc" "$out/tmp"
chmod 1777 "$out/tmp"

# copy_to SRC DEST: copy SRC (following symlinks) to OUT_DIR/DEST.
copy_to() {
  mkdir -p "$out$(dirname "$2")"
  cp -L "$1" "$out$2"
}

libs=()
for spec in "$@"; do
  src="${spec%%:*}" dest="${spec#*:}"
  [[ "$src" != "$spec" && "$dest" == /* ]] || die "bad argument '$spec' (want SRC:/absolute/DEST)"
  [[ -f "$src" ]] || die "$src does not exist"
  copy_to "$src" "$dest"
  if [[ -x "$src" && "$dest" != *.so* ]] && command -v objcopy >/dev/null; then
    objcopy --strip-debug "$out$dest"
  fi
  # ldd lines look like "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
  # "/lib64/ld-linux-x86-64.so.2 (0x...)"; "not found" means the image would not start.
  deps="$(ldd "$src" 2>&1)" || true
  if grep -q 'not found' <<<"$deps"; then
    die "$src needs libraries this machine lacks: $(grep 'not found' <<<"$deps" | tr -s ' \t\n' ' ')"
  fi
  while read -r lib; do libs+=("$lib"); done < <(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$deps")
done

for lib in $(printf '%s\n' "${libs[@]}" | sort -u); do
  copy_to "$lib" "$lib"
done

cat >"$out/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
cat >"$out/etc/group" <<'EOF'
root:x:0:
nonroot:x:65532:
EOF
