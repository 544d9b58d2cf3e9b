"""The layers drawn in DESIGN.md, kept by a test: no upward import, no import cycle, no SQL in adapters.

Read from the source with `ast` (nothing is imported), so the test sees every import: at module level,
inside functions and under `TYPE_CHECKING` alike — code written against a higher layer's type depends on it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "faceindex"

# Rank of each layer, lowest first. A module may import its own layer or any lower one.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("ground", ("faceindex.config", "faceindex.errors", "faceindex.events")),
    ("pipeline", ("faceindex.pipeline",)),
    ("store", ("faceindex.store",)),
    ("domain", ("faceindex.ingest", "faceindex.matching", "faceindex.fusion", "faceindex.evaluation",
                "faceindex.people", "faceindex.video")),
    ("privacy", ("faceindex.privacy",)),
    ("engine", ("faceindex.engine",)),
    ("adapters", ("faceindex.cli", "faceindex.service", "faceindex.__main__", "faceindex")),
]

# Adapter modules that own their tables through the catalog (the service's keys, sessions and jobs): the
# only adapter modules allowed to hold SQL. Everything else in cli/service calls the Engine or the store.
ADAPTER_STORAGE = {"faceindex.service.storage", "faceindex.service.schema"}

SQL = re.compile(r"\b(SELECT\s+.+\s+FROM|INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|"
                 r"CREATE\s+(TABLE|INDEX|TRIGGER)|PRAGMA\s+\w+)\b", re.S)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in (SRC / PACKAGE).rglob("*.py")}


def layer_of(module: str) -> int:
    """Index in LAYERS of the most specific prefix that names `module`; fails for a module no layer claims."""
    best, best_len = None, -1
    for rank, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = rank, len(prefix)
    if best is None:
        raise AssertionError(f"{module} belongs to no layer: add it to LAYERS in tests/test_architecture.py")
    return best


def imported_modules(module: str, path: Path, known: set[str]) -> set[str]:
    """The faceindex modules `module` imports anywhere in its source, resolved to known module names."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import name` imports pkg.name when that is a module, else pkg itself.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import faceindex.store.catalog` -> that module
                target = target.rpartition(".")[0]
            if target.startswith(PACKAGE) and target != module:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    known = set(modules)
    return {m: imported_modules(m, p, known) for m, p in modules.items()}


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; returns the components with more than one module (the cycles)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            advanced = False
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
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
                    cycles.append(sorted(component))
    return cycles


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            if layer_of(target) > layer_of(module):
                found.append(f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} "
                             f"({LAYERS[layer_of(target)][0]})")
    return found


def database_access(path: Path) -> list[str]:
    """Why a module touches the database directly: a `.conn` attribute, sqlite3, or SQL text."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    reasons = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "conn":
            reasons.add(".conn")
        elif isinstance(node, ast.Import | ast.ImportFrom) and any(
                (getattr(node, "module", None) or a.name) == "sqlite3" for a in node.names):
            reasons.add("imports sqlite3")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value):
            reasons.add(f"SQL text {node.value.strip()[:40]!r}")
    return sorted(reasons)


def adapters_with_sql() -> list[str]:
    adapter_rank = len(LAYERS) - 1
    found = []
    for module, path in sorted(all_modules().items()):
        if layer_of(module) == adapter_rank and module not in ADAPTER_STORAGE:
            reasons = database_access(path)
            if reasons:
                found.append(f"{module}: {', '.join(reasons)}")
    return found


def test_every_module_has_a_layer():
    for module in all_modules():
        layer_of(module)  # raises for a module no layer claims


def test_no_import_cycles():
    cycles = strongly_connected(import_graph())
    assert not cycles, "import cycles among faceindex modules:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_no_upward_imports():
    upward = upward_imports(import_graph())
    assert not upward, "modules importing a higher layer:\n" + "\n".join(upward)


def test_adapters_never_touch_the_database():
    offenders = adapters_with_sql()
    assert not offenders, "CLI/service modules with SQL (use the Engine or a store read):\n" + "\n".join(offenders)


# -- the checker itself, on made-up modules: a test that cannot fail would prove nothing ---------------------

def write_package(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


@pytest.fixture()
def fake_src(tmp_path, monkeypatch):
    monkeypatch.setitem(globals(), "SRC", tmp_path)
    return tmp_path


def test_checker_finds_a_cycle_an_upward_import_and_sql(fake_src):
    write_package(fake_src, {
        "faceindex/__init__.py": "",
        "faceindex/errors.py": "",
        "faceindex/store/__init__.py": "",
        "faceindex/store/catalog.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                      "    from faceindex.engine import Engine\n",
        "faceindex/engine.py": "from faceindex.store import catalog\n",
        "faceindex/cli.py": "def f(e):\n    return e.catalog.conn.execute('SELECT id FROM images')\n",
        "faceindex/service/__init__.py": "",
        "faceindex/service/routes.py": "from . import other\n",
        "faceindex/service/other.py": "from .routes import x\n",
    })
    graph = import_graph()
    assert graph["faceindex.engine"] == {"faceindex.store.catalog"}
    assert sorted(map(sorted, strongly_connected(graph))) == [
        ["faceindex.engine", "faceindex.store.catalog"], ["faceindex.service.other", "faceindex.service.routes"]]
    assert upward_imports(graph) == ["faceindex.store.catalog (store) imports faceindex.engine (engine)"]
    assert adapters_with_sql() == ["faceindex.cli: .conn, SQL text 'SELECT id FROM images'"]


def test_checker_accepts_downward_imports(fake_src):
    write_package(fake_src, {
        "faceindex/__init__.py": "",
        "faceindex/errors.py": "",
        "faceindex/pipeline/__init__.py": "",
        "faceindex/pipeline/decode.py": "from faceindex.errors import X\n",
        "faceindex/engine.py": "from faceindex.pipeline.decode import load\nimport faceindex.errors\n",
    })
    graph = import_graph()
    assert graph["faceindex.engine"] == {"faceindex.pipeline.decode", "faceindex.errors"}
    assert strongly_connected(graph) == [] and upward_imports(graph) == [] and adapters_with_sql() == []


def test_a_module_without_a_layer_is_reported():
    with pytest.raises(AssertionError, match="belongs to no layer"):
        layer_of("elsewhere.thing")
