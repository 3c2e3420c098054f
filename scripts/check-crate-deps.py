#!/usr/bin/env python3
"""Fails when a crate of the workspace depends on one it may not (README: "Crates and what
each may depend on"), or when `convert-models` would compile a web server.

Reads `cargo metadata` (normal and build dependencies; dev-dependencies are the tests' own
business) and `cargo tree -p tools`. Prints one line per crate; exits 1 on any breach.

Usage: scripts/check-crate-deps.py   (from anywhere inside the repository)
"""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The workspace crates each crate may use (README's table). A crate missing here is a breach:
# a new crate gets its row in the README and here.
ALLOWED = {
    "node-contract": set(),
    "onnx-model": set(),
    "http-serve": set(),
    "test-support": set(),
    "consul": {"http-serve"},
    "inference-node": {"onnx-model", "node-contract", "consul", "http-serve"},
    "gateway": {"node-contract", "consul", "http-serve"},
    "tools": {"onnx-model"},
}
# What the model contract may pull in from outside: nothing that serves or fetches (rayon is
# the tree kernel's pool of helper threads).
ONNX_MODEL_EXTERNAL = {"ort", "ndarray", "rayon", "serde", "serde_json", "thiserror"}
# What the converter must not compile.
NOT_IN_TOOLS = ("axum", "hyper", "tokio", "reqwest", "consul")


def main() -> int:
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--no-deps", "--locked"],
            cwd=ROOT, check=True, capture_output=True, text=True,
        ).stdout
    )
    members = {p["name"]: p for p in meta["packages"]}
    problems = []
    for name, package in sorted(members.items()):
        deps = [d for d in package["dependencies"] if d["kind"] in (None, "build")]
        internal = {d["name"] for d in deps if d["name"] in members}
        if name not in ALLOWED:
            problems.append(f"{name}: not in the allowed-dependency table (README and {__file__})")
            continue
        extra = internal - ALLOWED[name]
        if extra:
            problems.append(f"{name} depends on {sorted(extra)}, which it may not")
        if name == "onnx-model":
            outside = {d["name"] for d in deps} - ONNX_MODEL_EXTERNAL
            if outside:
                problems.append(f"onnx-model depends on {sorted(outside)} (allowed: {sorted(ONNX_MODEL_EXTERNAL)})")
        print(f"{name} -> {', '.join(sorted(internal)) or 'nothing of the workspace'}")
    tree = subprocess.run(
        ["cargo", "tree", "-p", "tools", "-e", "normal,build", "--prefix", "none", "--locked"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    crates = {line.split()[0] for line in tree.splitlines() if line.strip()}
    bad = sorted(c for c in crates if c in NOT_IN_TOOLS)
    if bad:
        problems.append(f"cargo tree -p tools has {bad}")
    print(f"cargo tree -p tools: {len(crates)} crates, none of {', '.join(NOT_IN_TOOLS)}" if not bad else "")
    for problem in problems:
        print("BREACH", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
