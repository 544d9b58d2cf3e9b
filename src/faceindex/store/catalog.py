"""The SQLite catalog: collections, images with provenance, faces with faceprints (source of truth)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from faceindex.errors import ConflictError, InvalidInputError, NotFoundError
from faceindex.pipeline.types import Face
from faceindex.store.connections import Connections, RoutedConnection
from faceindex.store.migrations import CORE, LEGAL_BASES, MigrationSet, apply_migrations, flatten, pending_migrations


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Collection:
    id: int
    name: str
    legal_basis: str
    purpose: str
    jurisdictions: tuple[str, ...]
    retention_days: int | None
    owner: str | None
    created_at: str

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Collection:
        juris = tuple(j for j in row["jurisdictions"].split(",") if j)
        return cls(row["id"], row["name"], row["legal_basis"], row["purpose"], juris,
                   row["retention_days"], row["owner"], row["created_at"])



ID_CHUNK = 500
"""Ids per IN (...) list: far below SQLite's bound-parameter limit."""


def id_chunks(ids: Iterable[int]) -> Iterator[list[int]]:
    """Ids in lists of at most ID_CHUNK, in the order given."""
    ids = [int(i) for i in ids]
    return (ids[start:start + ID_CHUNK] for start in range(0, len(ids), ID_CHUNK))


def marks(chunk: list[int]) -> str:
    """The `?, ?, ...` placeholders of an IN (...) list."""
    return ",".join("?" * len(chunk))

class Catalog:
    """One SQLite database in WAL mode: many reader threads at once, one writer (see Connections).

    `conn` is the calling thread's connection (its own reader, or the writer inside its transaction); every
    write belongs in `transaction()`, which holds the store's write lock (threads and processes) around
    BEGIN IMMEDIATE … COMMIT. Autocommit writes on `conn` outside a transaction still work (SQLite's
    busy_timeout serialises them) but are not covered by the write lock: avoid them.

    Opening: `Catalog(path)` creates the file and migrates it at once (a writer, as before). `lazy=True`
    touches nothing until used: reads need an existing file (StoreNotFoundError) and work on a read-only
    copy; the first `transaction()` (or `open_for_writing()`) creates and migrates it. `on_first_write`, when
    set, runs before each outermost transaction that asks for it (the Engine's write start-up; it must be
    idempotent and re-entrant).

    `secure_delete` is on so erased rows are overwritten with zeros, not left in free pages.
    The meta key `epoch` increases whenever faces are deleted: the vector index compares it with
    its own watermark to know whether appending new faces is enough or it must be rebuilt.
    """

    def __init__(self, path: Path, *, lazy: bool = False, lock_timeout: float | None = None,
                 migrations: Sequence[MigrationSet] = ()):
        self.path = Path(path)
        extra = {} if lock_timeout is None else {"lock_timeout": lock_timeout}
        self._sets: list[MigrationSet] = [CORE]
        self._complete = 0  # how many of `_sets` upgrade() last found applied (steps are never removed)
        self._db = Connections(self.path, migrate=lambda conn: apply_migrations(conn, self.migration_steps()),
                               pending=lambda conn: pending_migrations(conn, self.migration_steps()), **extra)
        self.on_first_write: Callable[[], object] | None = None
        self.use_migrations(*migrations)
        if not lazy:
            self.open_for_writing()

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
        the -wal file; False if a reader kept it busy for all `tries` (0.1 s apart)."""
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

    # -- collections --------------------------------------------------------------------------
    def create_collection(self, name: str, legal_basis: str, purpose: str, *, jurisdictions: tuple[str, ...] = (),
                          retention_days: int | None = None, owner: str | None = None) -> Collection:
        if not name or not name.strip():
            raise InvalidInputError("a collection needs a name")
        if legal_basis not in LEGAL_BASES:
            raise InvalidInputError(f"legal basis must be one of {', '.join(LEGAL_BASES)}; got {legal_basis!r}")
        if not purpose or not purpose.strip():
            raise InvalidInputError("a collection needs a purpose")
        juris = ",".join(sorted({j.strip().upper() for j in jurisdictions if j.strip()}))
        try:
            self.conn.execute(
                "INSERT INTO collections (name, legal_basis, purpose, jurisdictions, retention_days, owner, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (name, legal_basis, purpose.strip(), juris, retention_days, owner, utcnow()),
            )
        except sqlite3.IntegrityError as exc:
            raise ConflictError(f"collection {name!r} already exists") from exc
        return self.get_collection(name)

    def get_or_create_collection(self, name: str, legal_basis: str, purpose: str, **policy) -> tuple[Collection, bool]:
        """The collection named `name`, created when missing, atomically: (collection, created).

        Check and insert run in one write transaction, so two writers asking for the same new collection
        both get it (one creates it), never "already exists".
        """
        with self.transaction():
            existing = self.find_collection(name)
            if existing is not None:
                return existing, False
            return self.create_collection(name, legal_basis, purpose, **policy), True

    def get_collection(self, name: str) -> Collection:
        row = self.conn.execute("SELECT * FROM collections WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFoundError(f"no collection named {name!r}")
        return Collection.from_row(row)

    def find_collection(self, name: str) -> Collection | None:
        try:
            return self.get_collection(name)
        except NotFoundError:
            return None

    def list_collections(self) -> list[Collection]:
        return [Collection.from_row(r) for r in self.conn.execute("SELECT * FROM collections ORDER BY name")]

    # -- images -------------------------------------------------------------------------------
    def find_image(self, collection_id: int, uri: str) -> sqlite3.Row | None:
        return self.conn.execute("SELECT * FROM images WHERE collection_id = ? AND uri = ?",
                                 (collection_id, uri)).fetchone()

    def image_by_id(self, image_id: int) -> sqlite3.Row:
        row = self.conn.execute("SELECT * FROM images WHERE id = ?", (image_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no image with id {image_id}")
        return row

    def images_by_uri(self, uri: str) -> list[sqlite3.Row]:
        return list(self.conn.execute("SELECT * FROM images WHERE uri = ?", (uri,)))

    def indexed_twin(self, sha256: str, model_id: str) -> sqlite3.Row | None:
        """An already-indexed image with the same content, whose faces can be copied instead of recomputed.

        Images with withheld faces (opted out at ingest, erased since) are never twins: their face set is
        incomplete, and copying it would keep a person out after their opt-out is withdrawn.
        """
        return self.conn.execute(
            "SELECT i.* FROM images i WHERE i.sha256 = ? AND i.status = 'indexed' AND i.faces_withheld = 0"
            " AND NOT EXISTS (SELECT 1 FROM faces f WHERE f.image_id = i.id AND f.model_id != ?)"
            " ORDER BY i.id LIMIT 1",
            (sha256, model_id),
        ).fetchone()

    def insert_image(self, collection_id: int, uri: str, *, sha256: str | None, size_bytes: int | None,
                     width: int | None = None, height: int | None = None, fmt: str | None = None,
                     captured_at: str | None = None, status: str = "indexed", error: str | None = None,
                     n_faces: int = 0, faces_withheld: int = 0) -> int:
        cur = self.conn.execute(
            "INSERT INTO images (collection_id, uri, sha256, size_bytes, width, height, format, captured_at,"
            " ingested_at, status, error, n_faces, faces_withheld) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (collection_id, uri, sha256, size_bytes, width, height, fmt, captured_at, utcnow(), status, error,
             n_faces, faces_withheld),
        )
        return int(cur.lastrowid)

    def delete_images(self, image_ids: list[int]) -> int:
        """Delete images (their faces cascade); bumps the epoch when any face goes. Returns faces deleted.

        Any number of ids: they go in chunks of ID_CHUNK (call inside a transaction to make it all-or-nothing).
        """
        n_faces = 0
        for chunk in id_chunks(sorted({int(i) for i in image_ids})):
            n_faces += self.conn.execute(f"SELECT count(*) FROM faces WHERE image_id IN ({marks(chunk)})",
                                         chunk).fetchone()[0]
            self.conn.execute(f"DELETE FROM images WHERE id IN ({marks(chunk)})", chunk)
        if n_faces:
            self.bump_epoch()
        return n_faces

    def image_ids_of_collection(self, collection_id: int) -> list[int]:
        """Ids of every image (indexed or skipped) of a collection, ascending."""
        return [r[0] for r in self.conn.execute("SELECT id FROM images WHERE collection_id = ? ORDER BY id",
                                                (collection_id,))]

    def face_ids_of_images(self, image_ids: list[int]) -> list[int]:
        """Ids of every face (accepted or rejected) of the given images, ascending; any number of ids."""
        return sorted(r[0] for chunk in id_chunks(sorted({int(i) for i in image_ids})) for r in self.conn.execute(
            f"SELECT id FROM faces WHERE image_id IN ({marks(chunk)})", chunk))

    def delete_faces(self, face_ids: list[int]) -> int:
        """Delete single faces (their images stay, `n_faces` updated); bumps the epoch. Returns faces deleted.

        Used by erasure of one person's faces from photos that also show other people.
        """
        deleted = 0
        for chunk in id_chunks(sorted({int(i) for i in face_ids})):
            per_image = self.conn.execute(
                f"SELECT image_id, count(*), sum(embedding IS NOT NULL) FROM faces WHERE id IN ({marks(chunk)})"
                " GROUP BY image_id", chunk).fetchall()
            deleted += self.conn.execute(f"DELETE FROM faces WHERE id IN ({marks(chunk)})", chunk).rowcount
            self.conn.executemany(
                "UPDATE images SET n_faces = max(n_faces - ?, 0), faces_withheld = faces_withheld + ? WHERE id = ?",
                [(usable, n, image_id) for image_id, n, usable in per_image])
        if deleted:
            self.bump_epoch()
        return deleted

    # -- faces --------------------------------------------------------------------------------
    def insert_faces(self, image_id: int, faces: list[Face], model_id: str) -> list[int]:
        ids = []
        now = utcnow()
        for face in faces:
            blob = None if face.embedding is None else np.asarray(face.embedding, np.float32).tobytes()
            cur = self.conn.execute(
                "INSERT INTO faces (image_id, box_left, box_top, box_right, box_bottom, landmarks, detector,"
                " det_score, size_px, blur, rejected, model_id, embedding, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (image_id, *face.box, json.dumps(face.landmarks), face.detector, face.score, face.size_px,
                 face.blur, face.rejected if face.embedding is None else None, model_id, blob, now),
            )
            ids.append(int(cur.lastrowid))
        return ids

    def copy_faces(self, from_image: int, to_image: int) -> int:
        cur = self.conn.execute(
            "INSERT INTO faces (image_id, box_left, box_top, box_right, box_bottom, landmarks, detector, det_score,"
            " size_px, blur, rejected, model_id, embedding, created_at) SELECT ?, box_left, box_top, box_right,"
            " box_bottom, landmarks, detector, det_score, size_px, blur, rejected, model_id, embedding, ?"
            " FROM faces WHERE image_id = ? ORDER BY id",
            (to_image, utcnow(), from_image),
        )
        return cur.rowcount

    def iter_embeddings(self, after_id: int = 0, chunk: int = 50_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (ids int64, vectors float32 (n, dim)) of accepted faces with id > after_id, in id order."""
        last = after_id
        while True:
            rows = self.conn.execute(
                "SELECT id, embedding FROM faces WHERE id > ? AND embedding IS NOT NULL ORDER BY id LIMIT ?",
                (last, chunk),
            ).fetchall()
            if not rows:
                return
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)
            yield ids, vectors
            last = int(ids[-1])

    def face_vectors(self, face_ids: list[int]) -> list[tuple[int, np.ndarray]]:
        """(face id, float32 faceprint) of the given faces that have one, in id order (held in memory only)."""
        return [(int(r[0]), np.frombuffer(r[1], dtype=np.float32))
                for chunk in id_chunks(sorted({int(f) for f in face_ids})) for r in self.conn.execute(
                    f"SELECT id, embedding FROM faces WHERE id IN ({marks(chunk)}) AND embedding IS NOT NULL"
                    " ORDER BY id", chunk)]

    def face_details(self, face_ids: list[int]) -> dict[int, sqlite3.Row]:
        """Face rows joined with their image and collection, keyed by face id (any number of ids)."""
        details: dict[int, sqlite3.Row] = {}
        for chunk in id_chunks(face_ids):
            rows = self.conn.execute(
                "SELECT f.id AS face_id, f.box_left, f.box_top, f.box_right, f.box_bottom, f.image_id, i.uri,"
                " i.sha256, i.captured_at, i.width, i.height, c.name AS collection, c.legal_basis,"
                " c.id AS collection_id FROM faces f JOIN images i ON i.id = f.image_id"
                f" JOIN collections c ON c.id = i.collection_id WHERE f.id IN ({marks(chunk)})",
                chunk,
            )
            details.update((r["face_id"], r) for r in rows)
        return details

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
