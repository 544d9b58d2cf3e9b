"""Migrations owned by their layer: named sets (core, privacy, service), frozen names, upgrades, rollback."""

from __future__ import annotations

import ast
import sqlite3
from pathlib import Path

import pytest

from faceindex.engine import Engine
from faceindex.ingest.detail import INGEST_MIGRATIONS
from faceindex.people.schema import PEOPLE_MIGRATIONS
from faceindex.privacy.schema import PRIVACY_MIGRATIONS
from faceindex.service.schema import SERVICE_MIGRATIONS, ensure_service_schema
from faceindex.store import connections
from faceindex.store.catalog import Catalog
from faceindex.store.migrations import CORE, MigrationSet, apply_migrations, flatten
from faceindex.video.schema import VIDEO_MIGRATIONS

# Every step ever released, per set, in order. Stores in the wild record these names in `_migrations`:
# renaming or removing one breaks their upgrade, so this list only ever grows (append new steps at the end).
RELEASED = {
    "core": ["0001_initial", "0006_images_faces_withheld"],
    "privacy": ["0002_subjects_consent", "0003_optout_templates", "0004_erasure_journal", "0005_upload_erasures"],
    "service": ["0100_api_keys", "0101_web_sessions", "0102_ingest_jobs"],
    "people": ["people_0001_tables", "people_0002_seen"],
    "ingest": ["ingest_0001_detail"],
    "video": ["video_0001_tables"],
}

# The schemas faceindex has shipped, in the order the steps were added (git history): a store written by
# any of these versions must open with the current code.
SHIPPED = [
    ["0001_initial"],
    ["0001_initial", "0002_subjects_consent", "0003_optout_templates", "0004_erasure_journal"],
    ["0001_initial", "0002_subjects_consent", "0003_optout_templates", "0004_erasure_journal", "0100_api_keys",
     "0101_web_sessions"],
    ["0001_initial", "0002_subjects_consent", "0003_optout_templates", "0004_erasure_journal", "0100_api_keys",
     "0101_web_sessions", "0005_upload_erasures"],
    ["0001_initial", "0002_subjects_consent", "0003_optout_templates", "0004_erasure_journal", "0100_api_keys",
     "0101_web_sessions", "0005_upload_erasures", "0006_images_faces_withheld"],
]
ALL_SETS = (CORE, PRIVACY_MIGRATIONS, SERVICE_MIGRATIONS, PEOPLE_MIGRATIONS, INGEST_MIGRATIONS, VIDEO_MIGRATIONS)
ENGINE_SETS = RELEASED["core"] + RELEASED["privacy"] + RELEASED["people"] + RELEASED["ingest"] + RELEASED["video"]
"""What the engine's write start-up applies (the service adds its own set)."""
ALL_STEPS = dict(flatten(ALL_SETS))
SRC = Path(__file__).resolve().parents[1] / "src" / "faceindex"


def applied(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [r[0] for r in conn.execute("SELECT name FROM _migrations ORDER BY rowid")]
    finally:
        conn.close()


def tables(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        conn.close()


def old_store(root: Path, names: list[str]) -> Path:
    """A store as an older faceindex left it: only `names` applied (in that order), with one collection."""
    root.mkdir()
    path = root / "catalog.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    apply_migrations(conn, [(n, ALL_STEPS[n]) for n in names])
    conn.execute("INSERT INTO collections (name, legal_basis, purpose, created_at) VALUES ('old', 'consent', 'kept',"
                 " '2026-01-01T00:00:00+00:00')")
    conn.close()
    return root


def test_released_names_are_frozen():
    assert {s.name: s.names for s in ALL_SETS} == RELEASED
    assert [s.name for s in Catalog(Path("/nonexistent/c.sqlite"), lazy=True).migration_sets] == ["core"]


def test_the_store_imports_nothing_above_it():
    higher = ("faceindex.privacy", "faceindex.service", "faceindex.engine", "faceindex.ingest", "faceindex.cli",
              "faceindex.matching", "faceindex.evaluation")
    for module in (SRC / "store").glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not [n for n in names if n.startswith(higher)], module.name


def test_a_fresh_store_applies_every_set(tmp_path):
    (tmp_path / "a").mkdir()
    Catalog(tmp_path / "a" / "catalog.sqlite", migrations=[PRIVACY_MIGRATIONS, SERVICE_MIGRATIONS,
                                                           PEOPLE_MIGRATIONS, INGEST_MIGRATIONS,
                                                           VIDEO_MIGRATIONS]).close()
    assert applied(tmp_path / "a" / "catalog.sqlite") == [n for names in RELEASED.values() for n in names]
    with Engine.open(tmp_path / "b", mode="write") as engine:  # the engine's write start-up: core, privacy, people,
        # ingest
        assert applied(engine.catalog.path) == ENGINE_SETS
        assert ensure_service_schema(engine) is True  # the service adds its own
        assert set(applied(engine.catalog.path)) == {n for names in RELEASED.values() for n in names}
        assert engine.catalog.count("SELECT count(*) FROM api_keys") == 0


def test_the_service_set_registered_before_the_store_exists_is_applied_by_its_first_write(tmp_path):
    engine = Engine(tmp_path / "store")
    assert ensure_service_schema(engine) is False  # nothing created by registering
    assert not (tmp_path / "store").exists()
    engine.create_collection("c", "consent", "test")
    assert {"api_keys", "ingest_jobs", "subjects"} <= tables(engine.catalog.path)
    engine.close()


@pytest.mark.parametrize("names", SHIPPED + [list(ALL_STEPS)[:n] for n in range(1, len(ALL_STEPS))],
                         ids=lambda names: names[-1] + f"-{len(names)}")
def test_a_store_at_a_released_schema_upgrades(tmp_path, names):
    store = old_store(tmp_path / "store", names)
    with Engine.open(store, mode="write") as engine:
        assert set(applied(engine.catalog.path)) == set(names) | set(ENGINE_SETS)
        assert ensure_service_schema(engine)
        assert set(applied(engine.catalog.path)) == set(ALL_STEPS)
        assert [c.name for c in engine.catalog.list_collections()] == ["old"]  # its data kept
        engine.create_collection("new", "consent", "after the upgrade")
        assert engine.catalog.count("SELECT count(*) FROM ingest_jobs") == 0


def test_a_store_at_the_current_schema_opens_unchanged(tmp_path):
    store = old_store(tmp_path / "store", list(ALL_STEPS))
    before = applied(store / "catalog.sqlite")
    with Engine.open(store, mode="write") as engine:
        ensure_service_schema(engine)
    assert applied(store / "catalog.sqlite") == before


def test_a_failing_migration_rolls_back_its_statements_and_its_record(tmp_path):
    broken = MigrationSet("extra", [("9000_fine", "CREATE TABLE fine (x INTEGER);"),
                                    ("9001_broken", "CREATE TABLE half (x INTEGER);\nINSERT INTO nowhere VALUES (1);")])
    catalog = Catalog(tmp_path / "catalog.sqlite")
    with pytest.raises(sqlite3.OperationalError, match="no such table: nowhere"):
        catalog.use_migrations(broken)  # the writer is open: applied at once
    catalog.close()
    assert "fine" in tables(tmp_path / "catalog.sqlite") and "half" not in tables(tmp_path / "catalog.sqlite")
    assert applied(tmp_path / "catalog.sqlite")[-1] == "9000_fine"
    fixed = MigrationSet("extra", [("9000_fine", "CREATE TABLE fine (x INTEGER);"),
                                   ("9001_broken", "CREATE TABLE half (x INTEGER);")])
    Catalog(tmp_path / "catalog.sqlite", migrations=[fixed]).close()  # the next open finishes it
    assert applied(tmp_path / "catalog.sqlite")[-1] == "9001_broken" and "half" in tables(tmp_path / "catalog.sqlite")


def test_a_set_may_not_reuse_another_sets_step_name(tmp_path):
    catalog = Catalog(tmp_path / "catalog.sqlite", lazy=True)
    with pytest.raises(ValueError, match="already in set 'core'"):
        catalog.use_migrations(MigrationSet("mine", [("0001_initial", "SELECT 1;")]))
    assert [s.name for s in catalog.migration_sets] == ["core"]


def test_a_read_only_store_without_the_service_tables_reads_as_having_none(tmp_path, monkeypatch):
    with Engine.open(tmp_path / "store", mode="write") as engine:  # core + privacy only: no service tables
        engine.create_collection("c", "consent", "test")
    monkeypatch.setattr(connections.Connections, "writable", property(lambda self: False))
    with Engine.open(tmp_path / "store", mode="read") as engine:
        assert ensure_service_schema(engine) is False  # not created, no crash: "no keys, no jobs"
        assert engine.stats()["collections"] == 1
    assert "api_keys" not in tables(tmp_path / "store" / "catalog.sqlite")
