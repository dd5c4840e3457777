"""The import graph between kvs_sentinel's packages, and its cycles: `python scripts/import_graph.py`.

A node is a subpackage (sinks, sources, detectors, state) or one module directly under kvs_sentinel/.
Imports inside functions count too: a lazy import still ties the two together.
Exit status 1 when there is a cycle, so CI can hold the line.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "kvs_sentinel"


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "kvs_sentinel"


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = defaultdict(set)
    for path in ROOT.rglob("*.py"):
        module = ".".join(("kvs_sentinel", *path.relative_to(ROOT).with_suffix("").parts))
        source = package_of(module)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kvs_sentinel"):
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
                target = package_of(max(names, key=lambda n: (ROOT / "/".join(n.split(".")[1:])).exists()))
            elif isinstance(node, ast.Import):
                found = [a.name for a in node.names if a.name.startswith("kvs_sentinel.")]
                if not found:
                    continue
                target = package_of(found[0])
            else:
                continue
            if target != source:
                edges[source].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    nodes = sorted(set(edges) | {t for targets in edges.values() for t in targets})
    for start in nodes:
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in sorted(edges.get(node, ())):
                if nxt == start and len(path) > 1 and min(path) == start:
                    found.append([*path, start])
                elif nxt not in path:
                    stack.append((nxt, [*path, nxt]))
    return found


if __name__ == "__main__":
    edges = graph()
    for source in sorted(edges):
        print(f"{source} -> {', '.join(sorted(edges[source]))}")
    loops = cycles(edges)
    print(f"cycles: {len(loops)}")
    for loop in loops[:20]:
        print("  " + " -> ".join(loop))
    sys.exit(1 if loops else 0)
