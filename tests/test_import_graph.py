"""The imports among the ``workflows`` modules go one way (docs/architecture.md, "Imports among the task modules"),
and so do the imports among the ``podisteps`` subpackages (docs/architecture.md, "podisteps, by what it does").

Module-level imports form no cycle; a function-local import that closes one is allowed only where the DAG
itself recurses.
"""

from __future__ import annotations

import ast
from pathlib import Path

import podisteps
import workflows

#: Function-local imports that close a cycle, each documented where it is: the DAG's own recursions.
RECURSIONS = {("detrend", "masters"), ("focalplane", "astrometry")}


def _imports() -> dict:
    """``(module, imported module) -> {"top", "deferred"}`` for the relative imports of ``workflows/*.py``."""
    edges: dict = {}
    for path in sorted(Path(workflows.__file__).parent.glob("*.py")):
        tree = ast.parse(path.read_text())
        top = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                targets = [node.module.split(".")[0]] if node.module else [a.name for a in node.names]
                for target in targets:
                    edges.setdefault((path.stem, target), set()).add("top" if id(node) in top else "deferred")
    return edges


def _cycle(edges) -> list:
    """One cycle of the directed graph ``edges`` (a list of modules), or [] when there is none."""
    graph: dict = {}
    for a, b in edges:
        graph.setdefault(a, []).append(b)
    state: dict = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in graph.get(node, ()):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt, path + [nxt])):
                return found
        state[node] = "done"
        return []

    for start in list(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return []


def test_module_level_imports_form_no_cycle():
    edges = _imports()
    top = [e for e, kinds in edges.items() if "top" in kinds]
    assert _cycle(top) == []


def test_only_the_dag_recursions_are_deferred_imports_in_a_cycle():
    edges = _imports()
    assert RECURSIONS <= set(edges)
    assert _cycle([e for e in edges if e not in RECURSIONS]) == []


def test_the_cycle_finder_sees_a_cycle():
    assert _cycle([("a", "b"), ("b", "c"), ("c", "a")]) == ["a", "b", "c", "a"]


def _domain(module: str) -> str:
    """The subpackage (or top-level module) of ``podisteps`` that dotted ``module`` belongs to."""
    return module.split(".")[1] if module.count(".") else module


def _podisteps_imports() -> set:
    """``(domain, imported domain)`` for every import between different domains of ``podisteps``."""
    root = Path(podisteps.__file__).parent
    edges = set()
    for path in root.rglob("*.py"):
        module = ".".join(("podisteps", *path.relative_to(root).with_suffix("").parts))
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        package = package.removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or node.level == 0:
                continue
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            names = [node.module] if node.module else [a.name for a in node.names]
            targets = [".".join(base + [name]) for name in names]
            for target in targets:
                if target.count(".") and not _domain(target).startswith("__") and _domain(target) != _domain(module):
                    edges.add((_domain(module), _domain(target)))
    return edges


def test_podisteps_domains_import_one_way():
    edges = _podisteps_imports()
    assert ("catalog", "astrometry") in edges  # the scan sees the subpackages' relative imports
    assert _cycle(sorted(edges)) == []
