"""Layers point down (core ← aggregates ← projections ← gateways) and no module imports itself
back through others — read from the source, not from what happens to be imported at run time.

Every ``import`` and ``from … import`` statement counts, wherever it is: at module level,
inside a function (a "lazy" import only hides a cycle), under ``if TYPE_CHECKING:`` (a type
that names a higher layer is a dependency on it all the same). benchmarks/, tools/ and tests/
may import anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Each layer and the layers it may import (itself included).
LAYERS: dict[str, frozenset[str]] = {
    "core": frozenset({"core"}),
    "aggregates": frozenset({"core", "aggregates"}),
    "projections": frozenset({"core", "aggregates", "projections"}),
    "gateways": frozenset({"core", "aggregates", "projections", "gateways"}),
}

Graph = dict[str, dict[str, int]]  # module → {imported module: line of the first import}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(
    node: ast.Import | ast.ImportFrom, module: str, is_package: bool, modules: set[str]
) -> set[str]:
    """Our modules an import statement runs: ``from a import b`` is ``a.b`` when that is a
    module, else ``a``; each with the package ``__init__`` files above it that the importing
    module's own packages have not already run."""
    if isinstance(node, ast.ImportFrom):
        if node.level:
            package = module.split(".") if is_package else module.split(".")[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join([*package, *([node.module] if node.module else [])])
        else:
            base = node.module or ""
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                 for a in node.names]
    else:
        names = [alias.name for alias in node.names]
    own = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 2)}
    found: set[str] = set()
    for name in names:
        while name:
            if name in modules and name not in own:
                found.add(name)
            name = name.rpartition(".")[0]
    return found


def import_graph(root: Path, packages: tuple[str, ...]) -> Graph:
    """Modules of ``packages`` under ``root`` and the modules of those packages they import."""
    files = {module_name(p, root): p for pkg in packages for p in (root / pkg).rglob("*.py")}
    modules = set(files)
    graph: Graph = {}
    for module, path in files.items():
        edges: dict[str, int] = {}
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):  # every statement: functions and TYPE_CHECKING included
            if isinstance(node, ast.Import | ast.ImportFrom):
                is_package = path.name == "__init__.py"
                for target in imported_modules(node, module, is_package, modules):
                    edges[target] = min(edges.get(target, node.lineno), node.lineno)
        graph[module] = edges
    return graph


def layer_violations(graph: Graph) -> list[str]:
    out = []
    for module, edges in sorted(graph.items()):
        layer = module.split(".")[0]
        for target, line in sorted(edges.items()):
            if target.split(".")[0] not in LAYERS[layer]:
                out.append(f"{module} (line {line}) imports {target}")
    return out


def cycles(graph: Graph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, {})))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
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


def describe(graph: Graph, component: list[str]) -> str:
    members = set(component)
    links = [
        f"  {a} -> {b} (line {line})"
        for a in component
        for b, line in sorted(graph[a].items())
        if b in members
    ]
    return "cycle among " + ", ".join(component) + ":\n" + "\n".join(links)


@pytest.fixture(scope="module")
def graph() -> Graph:
    return import_graph(ROOT, tuple(LAYERS))


def test_lower_layers_never_import_higher_ones(graph: Graph) -> None:
    assert len(graph) > 50  # the packages were found
    assert layer_violations(graph) == []


def test_no_import_cycles(graph: Graph) -> None:
    found = cycles(graph)
    assert not found, "\n".join(describe(graph, c) for c in found)


def test_the_checks_see_lazy_and_type_checking_imports(tmp_path: Path) -> None:
    """The checks themselves: a function-local import that closes a cycle and a
    TYPE_CHECKING import of a higher layer are both caught."""
    for pkg in LAYERS:
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "core" / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from projections import p\n"
    )
    (tmp_path / "projections" / "p.py").write_text("from core import a\n")
    (tmp_path / "gateways" / "x.py").write_text("from gateways.y import f\n")
    (tmp_path / "gateways" / "y.py").write_text(
        "def f():\n    from . import x\n    return x\n"
    )
    fake = import_graph(tmp_path, tuple(LAYERS))
    assert layer_violations(fake) == [
        "core.a (line 3) imports projections",  # the package's __init__ runs too
        "core.a (line 3) imports projections.p",
    ]
    assert sorted(cycles(fake)) == [["core.a", "projections.p"], ["gateways.x", "gateways.y"]]
