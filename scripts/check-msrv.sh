#!/usr/bin/env bash
# Checks that every workspace crate's `rust-version` is honest: at least the highest
# `rust-version` declared by any crate in its normal and build dependency graph (all
# features on, as resolved by `cargo metadata` for this host; for the unpublished
# examples and benches, whose code is all examples and tests, dev-dependencies too). Fails (exit 1) and names
# the dependency that needs more when a crate claims too old a compiler.
#   bash scripts/check-msrv.sh
set -euo pipefail
cd "$(dirname "$0")/.."
host=$(rustc -vV | sed -n 's/^host: //p')
cargo metadata --format-version 1 --all-features --filter-platform "$host" | python3 -c "$(cat <<'PY'
import json, sys

meta = json.load(sys.stdin)
packages = {p["id"]: p for p in meta["packages"]}
nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}

def version(text):
    parts = [int(x) for x in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))

def shown(v):
    return ".".join(str(x) for x in v)

def closure(root, with_dev):
    """Every package a crate needs to build (normal and build edges; dev edges of the root if asked)."""
    seen, todo = set(), [root]
    while todo:
        current = todo.pop()
        wanted = {None, "build", "dev"} if with_dev and current == root else {None, "build"}
        for dep in nodes[current]["deps"]:
            kinds = {k["kind"] for k in dep["dep_kinds"]}
            if kinds & wanted and dep["pkg"] not in seen:
                seen.add(dep["pkg"])
                todo.append(dep["pkg"])
    return seen

failures = 0
for member in meta["workspace_members"]:
    package = packages[member]
    claimed = package.get("rust_version")
    needed, by = (0, 0, 0), "nothing"
    unpublished = package.get("publish") == []
    for dep in closure(member, unpublished):
        declared = packages[dep].get("rust_version")
        if declared and version(declared) > needed:
            needed, by = version(declared), packages[dep]["name"] + " " + packages[dep]["version"]
    if claimed is None:
        print(f"{package['name']}: no rust-version (dependencies need {shown(needed)}, {by})")
        failures += 1
    elif version(claimed) < needed:
        print(f"{package['name']}: rust-version {claimed} is too old: {by} needs {shown(needed)}")
        failures += 1
    else:
        print(f"{package['name']}: rust-version {claimed} ok (dependencies need {shown(needed)}, {by})")
sys.exit(1 if failures else 0)
PY
)"
