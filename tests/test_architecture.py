"""The shape of the code: no import cycles, SQLAlchemy behind the storage door, small modules, no shared-self mixins."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "overnight"
MAX_LINES = 400
# Where SQLAlchemy may be imported: the local ledger's storage package and the hub's own store.
STORAGE = ("overnight.storage", "overnight.hub.store", "overnight.hub.db", "overnight.hub.models",
           "overnight.hub.migrations")


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = list(p.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(path: Path, modules: dict[str, Path], name: str) -> set[str]:
    """Every overnight module `path` imports, at any depth, except under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    is_pkg = path.name == "__init__.py"

    def visit(node: ast.AST) -> None:
        if _type_checking(node):
            return
        if isinstance(node, ast.Import):
            for a in node.names:
                found.add(a.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join([*pkg, base] if base else pkg)
            for a in node.names:
                found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {m for m in found if m in modules and m != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {name: _imports(path, modules, name) for name, path in modules.items()}
    # Importing `a.b.c` runs `a/__init__` and `a/b/__init__` first: a package's own __init__ is not an edge.
    return {n: {m for m in deps if not n.startswith(m + ".")} for n, deps in graph.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (c := dfs(m)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (c := dfs(n)):
            return c
    return None


def test_no_import_cycles():
    cycle = _cycle(_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_sqlalchemy_only_behind_the_storage_door():
    offenders = []
    for name, path in _modules().items():
        if name.startswith(STORAGE):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            mods = ([a.name for a in node.names] if isinstance(node, ast.Import)
                    else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(m == "sqlalchemy" or m.startswith("sqlalchemy.") for m in mods):
                offenders.append(name)
    assert not offenders, f"SQLAlchemy imported outside storage: {sorted(set(offenders))}"


def test_modules_are_small():
    big = {n: len(p.read_text().splitlines()) for n, p in _modules().items()}
    assert not {n: c for n, c in big.items() if c > MAX_LINES}


def test_no_shared_self_mixins():
    hits = [n for n, p in _modules().items() if "self: Loop" in p.read_text()]
    assert not hits, hits
