"""The privacy layer's shape and its one deletion primitive: no import of the Engine (TYPE_CHECKING included), no
cycle among its modules, collaborators passed explicitly, and id lists chunked for collections of any size."""

from __future__ import annotations

import ast
import sqlite3
from pathlib import Path

import pytest

import faceindex.privacy as privacy_pkg
from faceindex.engine import Engine
from faceindex.privacy.actions import Erased

PRIVACY = Path(privacy_pkg.__file__).parent
USUAL_SQLITE_VARIABLES = 32766
"""SQLITE_MAX_VARIABLE_NUMBER of a default SQLite build (>= 3.32); Debian's is higher, so tests set this one."""


def _imports(path: Path) -> set[str]:
    """Every module a file imports, wherever the import statement is (TYPE_CHECKING blocks, functions)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def test_no_privacy_module_imports_a_higher_layer():
    above = ("faceindex.engine", "faceindex.cli", "faceindex.service", "faceindex.evaluation")
    offenders = {p.name: sorted(m for m in _imports(p) if m.startswith(above)) for p in PRIVACY.glob("*.py")}
    assert {name: mods for name, mods in offenders.items() if mods} == {}


def test_privacy_modules_form_no_import_cycle():
    modules = {f"faceindex.privacy.{p.stem}": p for p in PRIVACY.glob("*.py") if p.stem != "__init__"}
    graph = {m: {i for i in _imports(p) if i in modules and i != m} for m, p in modules.items()}
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for nxt in sorted(graph[module]):
            assert state.get(nxt) != 1, "import cycle: " + " -> ".join([*path, module, nxt])
            if nxt not in state:
                visit(nxt, [*path, module])
        state[module] = 2

    for module in sorted(modules):
        if module not in state:
            visit(module, [])


def _synthetic_collection(engine: Engine, name: str, images: int) -> int:
    """A collection of `images` image rows, each with one face row (a rejected face: no faceprint), written
    straight into the catalog: no model runs, and the sizes are those a real archive reaches."""
    catalog = engine.catalog
    with catalog.transaction() as conn:
        collection = catalog.create_collection(name, "contract", "archive")
        conn.executemany("INSERT INTO images (collection_id, uri, sha256, ingested_at, status, n_faces)"
                         " VALUES (?, ?, ?, '2024-01-01T00:00:00', 'indexed', 0)",
                         [(collection.id, f"/archive/{name}/{n}.jpg", f"{name}{n:060d}") for n in range(images)])
        conn.execute("INSERT INTO faces (image_id, box_left, box_top, box_right, box_bottom, landmarks, detector,"
                     " det_score, size_px, blur, rejected, model_id, embedding, created_at)"
                     " SELECT id, 0, 0, 10, 10, '[]', 'test', 0.9, 10, 0.0, 'too small', 'test', NULL,"
                     " '2024-01-01T00:00:00' FROM images WHERE collection_id = ?", (collection.id,))
    return collection.id


@pytest.mark.parametrize("how", ["remove", "forget"])
def test_a_collection_of_40000_images_can_be_deleted(tmp_path, how):
    with Engine.open(tmp_path / "store", mode="write") as engine:
        # Every catalog connection holds SQLite to its usual limit (store.connections.MAX_VARIABLES).
        assert engine.catalog.conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) <= USUAL_SQLITE_VARIABLES
        _synthetic_collection(engine, "big", 40_000)
        _synthetic_collection(engine, "kept", 3)
        if how == "remove":
            assert engine.remove_collection("big") == 40_000
        else:
            result = engine.privacy.erase(engine.privacy.plan_erasure(collection="big", case="retired archive"))
            assert (result.images, result.faces, result.collections, result.complete) == (40_000, 40_000, 1, True)
        assert engine.catalog.find_collection("big") is None
        assert engine.catalog.count("SELECT count(*) FROM images") == 3
        assert engine.catalog.count("SELECT count(*) FROM faces") == 3
        event = engine.audit.events(action="collection.delete" if how == "remove" else "erase")[-1]
        assert event.counts["images"] == 40_000 and event.counts["faces"] == 40_000
        assert engine.audit.verify() == []


def test_deletion_primitive_is_one_transaction_with_its_audit_event(tmp_path):
    """A deletion whose audit event cannot be written deletes nothing (both commit together or neither)."""
    from faceindex.errors import PolicyError
    from faceindex.privacy.deletion import delete_images

    with Engine(tmp_path / "store") as engine:
        cid = _synthetic_collection(engine, "c", 5)
        ids = [r[0] for r in engine.catalog.conn.execute("SELECT id FROM images")]
        with pytest.raises(PolicyError):
            delete_images(engine.privacy.ctx, ids, Erased(route="collection", erasure=1, details={}),
                          collection_ids=[cid], also=lambda: {"subjects": b"\x00" * 512})
        assert engine.catalog.count("SELECT count(*) FROM images") == 5
        assert engine.catalog.find_collection("c") is not None


def test_privacy_parts_get_their_siblings_explicitly(tmp_path):
    with Engine.open(tmp_path / "store", mode="write") as engine:
        ops = engine.privacy
        assert ops.subjects.eraser is ops.eraser and ops.optouts.eraser is ops.eraser
        assert ops.retention.eraser is ops.eraser and ops.planner.subjects is ops.subjects
        assert not hasattr(ops, "engine") and not hasattr(ops.eraser, "engine")
        assert not hasattr(engine, "face_filter")  # the opt-out filter is asked for per ingest
        assert ops.ingest_filter() is None  # no opt-out recorded
