#!/usr/bin/env python3
"""Fails when Cargo.toml's `rust-version` is lower than what a locked
dependency of the library declares.

Walks the resolved graph (`cargo metadata --locked`, all features) from
keyward along normal and build edges: the dependencies a user's build
compiles. Dev-dependencies are not the user's concern and are reported
separately (they bound the compiler the test suite needs).
"""
import json
import subprocess
import sys


def version_key(v):
    parts = [int(x) for x in v.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def main():
    meta = json.loads(
        subprocess.check_output(
            ["cargo", "metadata", "--format-version", "1", "--locked", "--all-features"]
        )
    )
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    root = meta["resolve"]["root"]
    declared = packages[root].get("rust_version")
    if not declared:
        sys.exit("check-msrv: Cargo.toml declares no rust-version")

    def walk(start_edges):
        seen, stack = set(), list(start_edges)
        while stack:
            pid = stack.pop()
            if pid in seen:
                continue
            seen.add(pid)
            for dep in nodes[pid]["deps"]:
                if any(k["kind"] in (None, "build") for k in dep["dep_kinds"]):
                    stack.append(dep["pkg"])
        return seen

    def edges(kinds):
        return [
            d["pkg"]
            for d in nodes[root]["deps"]
            if any(k["kind"] in kinds for k in d["dep_kinds"])
        ]

    def highest(ids):
        best = ("0", None)
        for pid in ids:
            rv = packages[pid].get("rust_version")
            if rv and version_key(rv) > version_key(best[0]):
                best = (rv, packages[pid])
        return best

    lib_rv, lib_pkg = highest(walk(edges((None, "build"))))
    dev_rv, dev_pkg = highest(walk(edges(("dev",))))
    print(f"check-msrv: declared rust-version {declared}")
    if lib_pkg:
        print(f"check-msrv: library dependencies need {lib_rv} ({lib_pkg['name']} {lib_pkg['version']})")
    if dev_pkg:
        print(f"check-msrv: dev-dependencies need {dev_rv} ({dev_pkg['name']} {dev_pkg['version']})")
    if version_key(lib_rv) > version_key(declared):
        sys.exit(
            f"check-msrv: rust-version {declared} is lower than {lib_rv}, which "
            f"{lib_pkg['name']} {lib_pkg['version']} needs: raise rust-version or "
            "pin the dependency lower"
        )


if __name__ == "__main__":
    main()
