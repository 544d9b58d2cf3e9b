"""Images in the catalog: find, insert and delete them (any number of ids: in chunks)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from faceindex.errors import NotFoundError
from faceindex.store.catalog_sql import chunks, id_chunks, marks, utcnow

INSERT_IMAGE = ("INSERT INTO images (collection_id, uri, sha256, size_bytes, width, height, format, captured_at,"
                " ingested_at, status, error, n_faces, faces_withheld) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


class ImageRecords:
    """The image methods of `Catalog` (a mixin: it uses the catalog's `conn` and `bump_epoch`)."""

    conn: Any
    bump_epoch: Callable[[], None]  # Catalog's: the epoch in the meta table goes up whenever faces are deleted

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
        return self.insert_images(collection_id, [dict(
            uri=uri, sha256=sha256, size_bytes=size_bytes, width=width, height=height, fmt=fmt,
            captured_at=captured_at, status=status, error=error, n_faces=n_faces, faces_withheld=faces_withheld)])[0]

    def insert_images(self, collection_id: int, images: list[dict[str, Any]]) -> list[int]:
        """Insert image rows of one collection in one batch; their new ids, in order. Each dict holds
        `insert_image`'s keyword arguments and `uri` (`sha256` and `size_bytes` required, the rest optional).
        On PostgreSQL the batch costs one or two round trips whatever its size (insert_returning_ids)."""
        now = utcnow()
        rows = [(collection_id, i["uri"], i["sha256"], i["size_bytes"], i.get("width"), i.get("height"),
                 i.get("fmt"), i.get("captured_at"), now, i.get("status", "indexed"), i.get("error"),
                 i.get("n_faces", 0), i.get("faces_withheld", 0)) for i in images]
        return self.conn.insert_returning_ids(INSERT_IMAGE, rows)

    def find_images(self, collection_id: int, uris: list[str]) -> dict[str, sqlite3.Row | None]:
        """`find_image` of many uris in one query per ID_CHUNK of them: every uri asked maps to its row or None.
        What ingest asks of a scanned chunk of files (one round trip per chunk on PostgreSQL, not per file)."""
        found: dict[str, sqlite3.Row | None] = dict.fromkeys(uris)
        for chunk in chunks(dict.fromkeys(uris)):
            for row in self.conn.execute(f"SELECT * FROM images WHERE collection_id = ? AND uri IN ({marks(chunk)})",
                                         (collection_id, *chunk)):
                found[row["uri"]] = row
        return found

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
                f"SELECT image_id, count(*), count(embedding) FROM faces WHERE id IN ({marks(chunk)})"
                " GROUP BY image_id", chunk).fetchall()
            deleted += self.conn.execute(f"DELETE FROM faces WHERE id IN ({marks(chunk)})", chunk).rowcount
            # CASE, not SQLite's scalar max(a, b): the same statement runs on PostgreSQL.
            self.conn.executemany(
                "UPDATE images SET n_faces = CASE WHEN n_faces > ? THEN n_faces - ? ELSE 0 END,"
                " faces_withheld = faces_withheld + ? WHERE id = ?",
                [(usable, usable, n, image_id) for image_id, n, usable in per_image])
        if deleted:
            self.bump_epoch()
        return deleted
