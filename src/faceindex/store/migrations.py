"""Schema migrations: the mechanism (named steps, each applied once in its own transaction) and the core set.

Each layer owns its set beside its code (sqlite-utils style): `CORE` here (collections, images, faces, audit
log), `privacy.schema.PRIVACY_MIGRATIONS`, `service.schema.SERVICE_MIGRATIONS`. The store imports nothing
above it: the layer that composes registers the sets on the catalog (`Catalog.use_migrations`), in order,
and the catalog applies what a database lacks. A step's name is recorded in `_migrations` and never changes
once released (stores in the wild are upgraded by comparing names); a set may only append new steps.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from faceindex.store.sql_dialect import SQLITE, dialect_of, translate_ddl


@dataclass(frozen=True)
class MigrationSet:
    """One layer's named, ordered migrations: (name, SQL script) steps; a set may rely on the sets before it."""

    name: str
    steps: tuple[tuple[str, str], ...]

    def __post_init__(self):
        # A DialectSQL (a str carrying its PostgreSQL text) is kept as it is.
        object.__setattr__(self, "steps", tuple((str(n), sql if isinstance(sql, str) else str(sql))
                                                for n, sql in self.steps))
        names = self.names
        if len(set(names)) != len(names):
            raise ValueError(f"migration set {self.name!r} repeats a step name")

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.steps]


def flatten(sets: Iterable[MigrationSet]) -> list[tuple[str, str]]:
    """The steps of `sets` in order; ValueError when two sets name a step alike (names are global)."""
    steps: list[tuple[str, str]] = []
    owner: dict[str, str] = {}
    for migration_set in sets:
        for name, sql in migration_set.steps:
            if name in owner:
                raise ValueError(f"migration {name!r} of set {migration_set.name!r} is already in set {owner[name]!r}")
            owner[name] = migration_set.name
            steps.append((name, sql))
    return steps

LEGAL_BASES = (
    "consent",
    "contract",
    "legal-obligation",
    "vital-interests",
    "public-task",
    "legitimate-interests",
)

_BASIS_CHECK = ", ".join(f"'{b}'" for b in LEGAL_BASES)

MIGRATIONS: list[tuple[str, str]] = [  # the core steps (CORE below); privacy's 0002-0005 came between 0001 and 0006
    (
        "0001_initial",
        f"""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE collections (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            legal_basis TEXT NOT NULL CHECK (legal_basis IN ({_BASIS_CHECK})),
            purpose TEXT NOT NULL CHECK (length(trim(purpose)) > 0),
            jurisdictions TEXT NOT NULL DEFAULT '',
            retention_days INTEGER CHECK (retention_days IS NULL OR retention_days > 0),
            owner TEXT,
            created_at TEXT NOT NULL
        );
        CREATE TABLE images (
            id INTEGER PRIMARY KEY,
            collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
            uri TEXT NOT NULL,
            sha256 TEXT,
            size_bytes INTEGER,
            width INTEGER,
            height INTEGER,
            format TEXT,
            captured_at TEXT,
            ingested_at TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('indexed', 'skipped')),
            error TEXT,
            n_faces INTEGER NOT NULL DEFAULT 0,
            UNIQUE (collection_id, uri)
        );
        CREATE INDEX images_sha256 ON images(sha256);
        CREATE TABLE faces (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            box_left INTEGER NOT NULL, box_top INTEGER NOT NULL,
            box_right INTEGER NOT NULL, box_bottom INTEGER NOT NULL,
            landmarks TEXT NOT NULL,
            detector TEXT NOT NULL,
            det_score REAL NOT NULL,
            size_px INTEGER NOT NULL,
            blur REAL NOT NULL,
            rejected TEXT,
            model_id TEXT NOT NULL,
            embedding BLOB,
            created_at TEXT NOT NULL,
            CHECK ((rejected IS NULL) = (embedding IS NOT NULL))
        );
        CREATE INDEX faces_image ON faces(image_id);
        CREATE TABLE audit_events (
            seq INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            purpose TEXT,
            params TEXT NOT NULL,
            counts TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        );
        CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit_events
            BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
        CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit_events
            BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
        """,
    ),
    (
        # Faces of the photo that the catalog does not hold: dropped at ingest by an opt-out, or erased
        # later. Such a row is never a twin whose faces are copied for an identical file: its face set
        # is incomplete on purpose, and must not stay so once an opt-out is withdrawn.
        "0006_images_faces_withheld",
        """
        ALTER TABLE images ADD COLUMN faces_withheld INTEGER NOT NULL DEFAULT 0;
        """,
    ),
]


CORE = MigrationSet("core", MIGRATIONS)
"""The store's own set: what a bare `Catalog` applies."""


def apply_migrations(conn: sqlite3.Connection, migrations: Sequence[tuple[str, str]] | None = None) -> list[str]:
    """Apply every step not yet recorded (default: the core set), each in its own BEGIN IMMEDIATE transaction
    with its `_migrations` row, so a failing step leaves neither its changes nor its row; return the names applied.

    Whether a step is done is read again inside its transaction, so two processes opening a new store at
    once never both run it ("table meta already exists"); the store's write lock serialises them first anyway.

    On PostgreSQL (`conn.dialect`) each step's script is translated (sql_dialect.translate_ddl) and run in one
    call; DDL is transactional there too, so the all-or-nothing rule holds on both.
    """
    sqlite = dialect_of(conn) == SQLITE
    conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    done = {row[0] for row in conn.execute("SELECT name FROM _migrations")}
    applied = []
    for name, sql in MIGRATIONS if migrations is None else migrations:
        if name in done:
            continue
        # executescript would COMMIT implicitly; run statements one by one inside our transaction.
        conn.execute("BEGIN IMMEDIATE" if sqlite else "BEGIN")
        try:
            if conn.execute("SELECT 1 FROM _migrations WHERE name = ?", (name,)).fetchone():
                conn.execute("COMMIT")
                continue
            if sqlite:
                for statement in _split_sql(sql):
                    conn.execute(statement)
            else:
                conn.script(translate_ddl(sql))
            conn.execute("INSERT INTO _migrations VALUES (?, ?)", (name, datetime.now(UTC).isoformat()))
            conn.execute("COMMIT")
        except Exception:
            conn.execute("ROLLBACK")
            raise
        applied.append(name)
    return applied


def pending_migrations(conn: sqlite3.Connection, migrations: Sequence[tuple[str, str]] | None = None) -> list[str]:
    """Names of the steps (default: the core set) a database still lacks (all for a new, empty file). Reads only."""
    names = [name for name, _ in (MIGRATIONS if migrations is None else migrations)]
    if dialect_of(conn) == SQLITE:
        has_table = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_migrations'").fetchone()
    else:
        has_table = conn.execute("SELECT to_regclass('_migrations') IS NOT NULL").fetchone()[0]
    done = {row[0] for row in conn.execute("SELECT name FROM _migrations")} if has_table else set()
    return [name for name in names if name not in done]


def _split_sql(script: str) -> list[str]:
    """Split a script into complete statements (sqlite3.complete_statement keeps triggers whole)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                statements.append(current.strip())
            current = ""
    if current.strip():
        statements.append(current.strip())
    return statements
