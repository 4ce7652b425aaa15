"""The layers hold: bench.py and cli/ -> reports/ -> benchmarks/ -> implementations/, no arrow back up, no circle.

Read from the source (``ast``), not by importing: every import counts, those inside functions too (they are still
dependencies, only later ones). Imports under ``if TYPE_CHECKING:`` are for type checkers alone and do not count.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"bench": 0, "cli": 0, "reports": 1, "benchmarks": 2, "implementations": 3}  # 0 imports 1, never back


def project_modules() -> dict[str, Path]:
    found = {"bench": ROOT / "bench.py"}
    for package in ("cli", "reports", "benchmarks", "implementations"):
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = project_modules()


def _module(name: str) -> str | None:
    """The project module ``name`` names, or the package it is in (``pkg.func`` -> ``pkg``); None outside."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _type_checking_only(tree: ast.Module) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            ids |= {id(inner) for statement in node.body for inner in ast.walk(statement)}
    return ids


def imports_of(name: str) -> set[str]:
    """The project modules ``name`` imports, anywhere in it."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = _type_checking_only(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {_module(alias.name) for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([base] if base else [])])
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in MODULES else _module(base))
    return found - {None, name}


GRAPH = {name: imports_of(name) for name in MODULES}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each a set of modules in a circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_the_graph_is_read_with_function_level_imports():
    assert "benchmarks.process" in GRAPH["benchmarks.address_exchange"]  # imported at module level
    assert "benchmarks.frameworks.pytorch_cell" in GRAPH["benchmarks.frameworks.pytorch"]  # inside a method
    assert "cli.app" in GRAPH["bench"] and len(MODULES) > 60


def test_no_module_imports_itself_back_through_others():
    assert cycles(GRAPH) == []


def test_a_circle_would_be_found():
    assert cycles({**GRAPH, "benchmarks.process": GRAPH["benchmarks.process"] | {"benchmarks.runner"}})


def test_no_import_runs_back_up_the_layers():
    upward = [
        f"{name} imports {target}"
        for name, targets in GRAPH.items()
        for target in targets
        if LAYERS[target.partition(".")[0]] < LAYERS[name.partition(".")[0]]
    ]
    assert upward == []
