"""Fail on any import cycle among our modules, across packages too (``make lint``).

import-linter's ``acyclic_siblings`` contract checks cycles inside each package; this checks the whole
graph of ``reviews_mtl``, ``consumer`` and ``producer`` module by module, lazy (in-function) imports included.
"""

from __future__ import annotations

import sys

import grimp

ROOTS = ("reviews_mtl", "consumer", "producer")


def cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    modules = sorted(m for m in graph.modules if m.split(".")[0] in ROOTS)
    edges = {m: sorted(n for n in graph.find_modules_directly_imported_by(m) if n.split(".")[0] in ROOTS)
             for m in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in modules:
        if root in index:
            continue
        work = [(root, iter(edges[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def main() -> int:
    found = cycles(grimp.build_graph(*ROOTS))
    for component in found:
        print("import cycle among: " + ", ".join(component), file=sys.stderr)
    if found:
        print(f"{len(found)} import cycle(s): break each by moving the shared part into a module both import",
              file=sys.stderr)
        return 1
    print("no import cycles among", ", ".join(ROOTS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
