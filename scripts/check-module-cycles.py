#!/usr/bin/env python3
"""Fails when the modules of a crate import each other in a circle.

For every crate of the workspace (a directory with Cargo.toml and src/), each source file is
mapped to its module path (src/pickle/machine.rs -> pickle::machine; src/lib.rs and
src/main.rs -> the root). Every path a file names (`use crate::a::{b, c::d}`, `super::x`,
`crate::a::f(...)` in code) is resolved to the deepest module it names. A reference from
module S to module T is an edge between the two sibling modules under their closest common
parent (pickle::machine -> pickle::numpy is the edge machine -> numpy inside pickle;
http::predict -> proxy is http -> proxy at the root). Unit-test modules (`#[cfg(test)]` and
what follows it) are left out: a test may reach anywhere. Prints each circle found and exits 1;
exits 0 and prints one line per crate otherwise.

Usage: scripts/check-module-cycles.py [ROOT]   (ROOT defaults to the repository root)
"""

import re
import sys
from pathlib import Path

ROOT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent

USE_RE = re.compile(r"\buse\s+([^;]+);", re.S)
PATH_RE = re.compile(r"\b((?:crate|super|self)(?:::(?:super|\w+))+)")


def module_path(src: Path, file: Path) -> tuple:
    parts = list(file.relative_to(src).with_suffix("").parts)
    if parts[-1] == "mod":
        parts.pop()
    if parts in (["lib"], ["main"]) or (len(parts) == 2 and parts[0] == "bin"):
        return ()
    return tuple(parts)


def expand(tree: str) -> list:
    """`a::{b, c::{d, e}}` -> ['a::b', 'a::c::d', 'a::c::e']."""
    tree = re.sub(r"\s+", "", tree)
    depth, i = 0, tree.find("{")
    if i < 0:
        return [tree]
    prefix, inner = tree[:i], tree[i + 1 : tree.rindex("}")]
    items, start = [], 0
    for j, ch in enumerate(inner):
        depth += ch == "{"
        depth -= ch == "}"
        if ch == "," and depth == 0:
            items.append(inner[start:j])
            start = j + 1
    items.append(inner[start:])
    return [p for item in items if item for p in expand(prefix + item)]


def resolve(current: tuple, path: str, modules: set):
    """The deepest module `path` names, seen from module `current`; None if outside."""
    parts = [p for p in path.split("::") if p and p != "*"]
    parts = [p.split(" as ")[0] for p in parts]
    if not parts:
        return None
    if parts[0] == "crate":
        base, rest = (), parts[1:]
    elif parts[0] in ("super", "self"):
        base = current
        while parts and parts[0] in ("super", "self"):
            if parts.pop(0) == "super":
                base = base[:-1]
        rest = parts
    else:
        return None
    target = base
    for part in rest:
        if target + (part,) in modules:
            target = target + (part,)
        else:
            break
    return target


def cycles(edges: dict) -> list:
    found, state = [], {}

    def visit(node, stack):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                found.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [])
    return found


def check_crate(src: Path) -> list:
    files = {module_path(src, f): f for f in src.rglob("*.rs")}
    modules = set(files)
    edges = {}  # (parent) -> {child: {child2, ...}}
    for current, file in files.items():
        text = file.read_text()
        cut = re.search(r"^\s*#\[cfg\(test\)\]", text, re.M)
        if cut:
            text = text[: cut.start()]
        text = re.sub(r"//[^\n]*", "", text)
        paths = [p for tree in USE_RE.findall(text) for p in expand(tree)]
        paths += PATH_RE.findall(USE_RE.sub("", text))
        for path in paths:
            target = resolve(current, path, modules)
            if target is None:
                continue
            common = 0
            while common < min(len(current), len(target)) and current[common] == target[common]:
                common += 1
            if common == len(current) or common == len(target):
                continue  # a module and its own ancestor or descendant
            parent = current[:common]
            edges.setdefault(parent, {}).setdefault(current[common], set()).add(target[common])
    problems = []
    for parent, graph in sorted(edges.items()):
        for circle in cycles(graph):
            where = "::".join(parent) or "crate root"
            problems.append(f"{src.parent.name} ({where}): " + " -> ".join(circle))
    return problems


def main() -> int:
    problems = []
    crates = sorted(p.parent for p in ROOT.glob("*/Cargo.toml") if (p.parent / "src").is_dir())
    for crate in crates:
        found = check_crate(crate / "src")
        problems += found
        print(f"{crate.name}: {'import circles: ' + str(len(found)) if found else 'no import circles'}")
    for problem in problems:
        print("CIRCLE", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
