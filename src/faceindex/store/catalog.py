"""The catalog: collections, images with provenance, faces with faceprints (source of truth), on SQLite
(the store's own file, the default) or PostgreSQL (`url="postgresql://…"`: store.pg_connections).

`Catalog` holds the connections, schema, transactions and meta here; its collection, image and face methods
live in catalog_collections, catalog_images and catalog_faces (mixins), the SQL helpers in catalog_sql.
Everything callers import from this module is still importable from it.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from faceindex.store.catalog_collections import Collection, CollectionRecords
from faceindex.store.catalog_faces import FaceRecords
from faceindex.store.catalog_images import ImageRecords
from faceindex.store.catalog_sql import ID_CHUNK, id_chunks, marks, utcnow
from faceindex.store.connections import Connections, RoutedConnection
from faceindex.store.migrations import CORE, LEGAL_BASES, MigrationSet, apply_migrations, flatten, pending_migrations
from faceindex.store.pg_connections import PgConnections, is_postgres_url, redact
from faceindex.store.sql_dialect import POSTGRESQL, SQLITE

__all__ = ["ID_CHUNK", "LEGAL_BASES", "Catalog", "CatalogCapabilities", "Collection", "id_chunks", "marks", "utcnow"]

PG_RESIDUE = (
    "PostgreSQL at {url}: the rows were deleted in one transaction with the audit event and the database was "
    "vacuumed, so no query returns them and their space is marked for reuse. Their bytes may stay in the "
    "table's data pages until overwritten, in the server's WAL segments until a checkpoint recycles them "
    "(checkpoint_timeout, 5 min by default, and max_wal_size; longer with wal_keep_size or a replication slot), "
    "in WAL archives and base backups until they expire, and on replicas as on the primary. faceindex cannot "
    "read the server's files, so this erasure is not proven byte by byte"
)


@dataclass(frozen=True)
class CatalogCapabilities:
    """What the catalog's database can promise after a delete (read by privacy's erasure, not guessed).

    ``backend``: "sqlite" or "postgresql". ``proves_erasure_bytes``: True only for the store's own SQLite file
    (secure_delete, WAL checkpoint and VACUUM, then a byte scan). ``residue_note``: what may linger and until
    when ("" when proven)."""

    backend: str
    proves_erasure_bytes: bool
    residue_note: str = ""


class Catalog(CollectionRecords, ImageRecords, FaceRecords):
    """One SQLite database in WAL mode: many reader threads at once, one writer (see Connections). With `url`
    a PostgreSQL database instead, with the same contract (store.pg_connections; SQL translated by
    store.sql_dialect), `path`'s directory still holding the write lock.

    `conn` is the calling thread's connection (its own reader, or the writer inside its transaction); every
    write belongs in `transaction()`, which holds the store's write lock (threads and processes) around
    BEGIN IMMEDIATE … COMMIT. Autocommit writes on `conn` outside a transaction still work (SQLite's
    busy_timeout serialises them) but are not covered by the write lock: avoid them.

    Opening: `Catalog(path)` creates the file and migrates it at once (a writer, as before). `lazy=True`
    touches nothing until used: reads need an existing file (StoreNotFoundError) and work on a read-only
    copy; the first `transaction()` (or `open_for_writing()`) creates and migrates it. `on_first_write`, when
    set, runs before each outermost transaction that asks for it (the Engine's write start-up; it must be
    idempotent and re-entrant).

    Schema: the core migration set always; higher layers register theirs (`migrations=` or `use_migrations`)
    and the catalog applies, whenever it opens for writing, every registered step the file lacks.

    `secure_delete` is on so erased rows are overwritten with zeros, not left in free pages.
    The meta key `epoch` increases whenever faces are deleted: the vector index compares it with
    its own watermark to know whether appending new faces is enough or it must be rebuilt.
    """

    def __init__(self, path: Path, *, lazy: bool = False, lock_timeout: float | None = None,
                 migrations: Sequence[MigrationSet] = (), url: str | None = None):
        self.path = Path(path)
        self.url = url if is_postgres_url(url) else None
        if url and self.url is None and str(url).strip() not in ("", "sqlite"):
            from faceindex.errors import InvalidInputError

            raise InvalidInputError(f"catalog_url {redact(str(url))!r} is not understood: leave it empty (the "
                                    "store's own SQLite file) or give postgresql://user@host:5432/database")
        extra = {} if lock_timeout is None else {"lock_timeout": lock_timeout}
        self._sets: list[MigrationSet] = [CORE]
        self._complete = 0  # how many of `_sets` upgrade() last found applied (steps are never removed)
        migrate = lambda conn: apply_migrations(conn, self.migration_steps())  # noqa: E731
        pending = lambda conn: pending_migrations(conn, self.migration_steps())  # noqa: E731
        if self.url is None:
            self._db = Connections(self.path, migrate=migrate, pending=pending, **extra)
        else:  # the store directory (the path's parent) still holds the write lock and the local files
            self._db = PgConnections(self.url, self.path.parent, migrate=migrate, pending=pending, **extra)
        self.on_first_write: Callable[[], object] | None = None
        self.use_migrations(*migrations)
        if not lazy:
            self.open_for_writing()

    def twin(self) -> Catalog:
        """Another Catalog on the same database (own connections), opened lazily: for a component that must not
        share this one's connections (the service's key checks, its job records)."""
        twin = Catalog(self.path, lazy=True, url=self.url, migrations=self._sets[1:])
        twin._db.lock.timeout = self._db.lock.timeout
        return twin

    @property
    def dialect(self) -> str:
        """"sqlite" or "postgresql": which database answers (for the few callers whose SQL must differ)."""
        return SQLITE if self.url is None else POSTGRESQL

    @property
    def location(self) -> str:
        """Where the catalog lives, for messages: the SQLite file, or the URL without its password."""
        return str(self.path) if self.url is None else redact(self.url)

    @property
    def capabilities(self) -> CatalogCapabilities:
        if self.url is None:
            return CatalogCapabilities(SQLITE, True)
        return CatalogCapabilities(POSTGRESQL, False, PG_RESIDUE.format(url=redact(self.url)))

    # -- schema -------------------------------------------------------------------------------
    @property
    def migration_sets(self) -> list[MigrationSet]:
        """The sets this catalog applies, in order: core first, then those the composing layers registered."""
        return list(self._sets)

    def migration_steps(self) -> list[tuple[str, str]]:
        return flatten(self._sets)

    def use_migrations(self, *sets: MigrationSet) -> None:
        """Register a higher layer's migration sets (after those already registered; a set already there is
        skipped). Registering writes nothing: the sets are applied whenever this catalog opens for writing
        (or a read upgrades a writable store), and at once if its writer is already open. Call `upgrade()`
        to apply them now. ValueError when a set names a step that another set already has."""
        new = [s for s in sets if s.name not in {k.name for k in self._sets}]
        if not new:
            return
        flatten(self._sets + new)  # refuse clashing step names before anything changes
        self._sets.extend(new)
        self._db.schema_changed()
        if self.open_for_writes:
            with self._db.write_lock() as writer:
                apply_migrations(writer, self.migration_steps())
            self._db.schema_changed()  # new tables: PostgreSQL's statement translation reads them again

    def pending_migrations(self) -> list[str]:
        """Names of the registered steps the database lacks (all of them when it does not exist). Reads only."""
        if not self.exists:
            return [n for s in self._sets for n in s.names]
        return self._db.pending_now()

    def upgrade(self) -> bool:
        """Apply the registered steps an existing, writable database lacks (under the write lock); True when its
        schema is then complete. Creates nothing (False for a missing store) and writes nothing on a read-only
        one (False when it lacks a step: its reads must treat the missing tables as empty)."""
        if self._complete == len(self._sets):  # checked since the last set was registered: no file opened
            return True
        if not self.exists:
            return False
        if self.pending_migrations():
            if not self.writable:
                return False
            self.open_for_writing()
            if self.pending_migrations():  # a writer that was open already: apply what it lacks
                with self._db.write_lock() as writer:
                    apply_migrations(writer, self.migration_steps())
                self._db.schema_changed()
        self._complete = len(self._sets)
        return True

    @property
    def conn(self) -> RoutedConnection:
        return self._db.router

    @property
    def _depth(self) -> int:
        """Transaction nesting of the calling thread (0 outside any transaction it holds)."""
        return self._db.depth if self._db.lock.held_by_me else 0

    @property
    def exists(self) -> bool:
        return self._db.exists

    @property
    def writable(self) -> bool:
        """False on a read-only copy or mount: reads work, every write raises StoreError."""
        return self._db.writable

    @property
    def open_for_writes(self) -> bool:
        return self._db._writer is not None

    def open_for_writing(self) -> None:
        """Create (0600) and migrate the database under the write lock; idempotent."""
        self._db.open_for_writing()

    def close(self) -> None:
        self._db.close()

    def checkpoint(self, tries: int = 20) -> bool:
        """Copy the WAL into the database and truncate it to 0 bytes, so deleted rows' bytes do not linger in
        the -wal file; False if a reader kept it busy for all `tries` (0.1 s apart).

        On PostgreSQL: VACUUM the store's database (outside any transaction), so deleted rows' tuples are
        removed from the tables and their indexes; what may still linger is `capabilities.residue_note`.
        VACUUM skips pages the visibility map marks all-visible, so untouched tables cost little."""
        if self.url is not None:
            if self._depth:  # VACUUM cannot run inside a transaction: as on SQLite, a busy checkpoint is False
                return False
            self.conn.execute("VACUUM")
            return True
        for _ in range(tries):
            if not self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]:
                return True
            time.sleep(0.1)
        return False

    @contextmanager
    def transaction(self, *, startup: bool = True) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT under the store's write lock; nested uses join the outer transaction.

        `startup=False`: do not run `on_first_write` first (a search's own audit event is a write, but a
        search must not trigger resumptions and retention).
        """
        if startup and self.on_first_write is not None and not self._depth:
            self.on_first_write()
        with self._db.transaction() as conn:
            yield conn

    @contextmanager
    def write_lock(self) -> Iterator[sqlite3.Connection]:
        """Hold the store's write lock (no transaction): for writes to files beside the catalog."""
        with self._db.write_lock() as conn:
            yield conn

    # -- meta -------------------------------------------------------------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                          (key, value))

    @property
    def epoch(self) -> int:
        return int(self.get_meta("epoch", "0"))

    def bump_epoch(self) -> None:
        self.set_meta("epoch", str(self.epoch + 1))

    def max_face_id(self) -> int:
        return self.conn.execute("SELECT coalesce(max(id), 0) FROM faces").fetchone()[0]

    def bind_model(self, model_id: str) -> None:
        """Record the store's embedding model on first use; refuse a different one afterwards."""
        current = self.get_meta("model_id")
        if current is None:
            self.set_meta("model_id", model_id)
        elif current != model_id:
            from faceindex.errors import ModelMismatchError

            raise ModelMismatchError(
                f"this store holds faceprints of model {current!r}; the pipeline produces {model_id!r}. "
                "Use a separate store or re-embed."
            )

    def count(self, sql: str, params: tuple = ()) -> int:
        return int(self.conn.execute(sql, params).fetchone()[0])

    def stats(self) -> dict[str, int]:
        return {
            "collections": self.count("SELECT count(*) FROM collections"),
            "images": self.count("SELECT count(*) FROM images WHERE status = 'indexed'"),
            "skipped": self.count("SELECT count(*) FROM images WHERE status = 'skipped'"),
            "faces": self.count("SELECT count(*) FROM faces WHERE embedding IS NOT NULL"),
            "rejected_faces": self.count("SELECT count(*) FROM faces WHERE embedding IS NULL"),
            # Of the rejected: faces detected (and redacted) but too small to identify (FacePipeline's reason).
            "small_faces": self.count("SELECT count(*) FROM faces WHERE rejected LIKE 'too small%'"),
        }
