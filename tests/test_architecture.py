"""The house's shape: no import circle (function-local imports included), small modules, adapters that
never reach up."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "otel_asgi_kit"
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(tree: ast.AST) -> list[tuple[str, list[str]]]:
    """(module, imported names) of every import, at any depth, except under ``if TYPE_CHECKING:``."""
    found: list[tuple[str, list[str]]] = []

    def visit(node: ast.AST) -> None:
        if _type_checking_only(node):
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [alias.name for alias in node.names]))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for module, names in _imports(ast.parse(path.read_text())):
            if not module.startswith("otel_asgi_kit"):
                continue
            targets = [f"{module}.{n}" for n in names if f"{module}.{n}" in modules] or [module]
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_no_import_circle() -> None:
    """No two modules of the package import each other, directly or around a circle, at any depth
    (the package's own ``__init__`` is the public API and may import anything; nothing imports it back)."""
    graph = import_graph()
    assert not any("otel_asgi_kit" in targets for name, targets in graph.items() if name != "otel_asgi_kit")
    assert _cycles(graph) == []


def test_the_check_finds_a_circle() -> None:
    """The cycle check is not vacuous: a made-up circle is found."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_adapters_and_core_never_reach_up() -> None:
    """The request core and the adapters import neither bootstrap nor the providers: data flows one way."""
    graph = import_graph()
    upper = {"otel_asgi_kit.bootstrap", "otel_asgi_kit.providers", "otel_asgi_kit.configurator", "otel_asgi_kit.cli"}
    lower = [m for m in graph if m.startswith(("otel_asgi_kit.core", "otel_asgi_kit.asgi", "otel_asgi_kit.aiohttp"))]
    assert lower
    reached = {m: sorted(graph[m] & upper) for m in lower if graph[m] & upper}
    assert reached == {}


def test_modules_stay_small() -> None:
    """No module of the package passes 400 lines: past that it is probably two things."""
    sizes = {name: len(path.read_text().splitlines()) for name, path in _modules().items()}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}
