"""tether's modules import each other without cycles, counting imports inside functions too.

Every ``import`` / ``from ... import`` in every module under src/tether (module level and inside
functions, relative imports resolved; not those under ``if TYPE_CHECKING:``, which never run) is an edge; ``from pkg import name`` points at ``pkg.name``
when that is a module and at the package (its ``__init__``) otherwise.
"""
from __future__ import annotations

import ast
from pathlib import Path

import tether

ROOT = Path(tether.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = ("tether",) + path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:`` blocks: read by type checkers only, never run."""
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(), str(path))
        typing_only = {id(n) for block in ast.walk(tree) if _is_type_checking(block) for n in ast.walk(block)}
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in files else source
                           for alias in node.names]
            for target in targets:
                while target and target not in files and target.startswith("tether"):
                    target = target.rpartition(".")[0]  # `import tether.models.x as y` names a module
                if target in files and target != name:
                    graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_graph_sees_function_level_and_relative_imports():
    graph = import_graph()
    assert "tether.checkpoints" in graph["tether"]  # inside tether.load()
    assert "tether.models.aligned" in graph["tether.checkpoints.tether_format"]  # inside load()
    assert "tether.config" in graph["tether.models.aligned"]  # from ..config import ModelConfig


def test_no_import_cycles():
    graph = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_models_never_import_checkpoints_or_train():
    graph = import_graph()
    bad = sorted(f"{a} -> {b}" for a, targets in graph.items() if a.startswith("tether.models")
                 for b in targets if b.startswith(("tether.checkpoints", "tether.train")))
    assert not bad, bad


def test_packaged_imports_nothing_from_tether():
    assert import_graph()["tether.packaged"] == set()
