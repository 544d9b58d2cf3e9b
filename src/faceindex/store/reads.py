"""Typed catalog reads the adapters need (pages of images and faces, counts), so no adapter writes SQL.

Functions take the Catalog; they only read, so they run on whichever connection the caller's catalog holds
(the service passes the engine's catalog under its read gate). Rows are `sqlite3.Row` (on PostgreSQL
`sql_dialect.Row`, which reads the same: by name or position) with the columns named in each docstring;
callers turn them into their own response models.
"""

from __future__ import annotations

import sqlite3

from faceindex.store.catalog import Catalog, Collection, id_chunks, marks

IMAGE_SQL = "SELECT i.*, c.name AS collection FROM images i JOIN collections c ON c.id = i.collection_id"
Row = sqlite3.Row
"""A catalog row: read columns by name (`row["uri"]`)."""
FACE_SQL = ("SELECT f.id, f.image_id, f.box_left, f.box_top, f.box_right, f.box_bottom, f.detector, f.det_score,"
            " f.size_px, f.blur, f.rejected, f.model_id, f.created_at FROM faces f")
"""Face columns an adapter may show: never `embedding` (a faceprint) or landmarks."""


def image(catalog: Catalog, image_id: int) -> sqlite3.Row | None:
    """An image row (every images column plus `collection`, its collection's name), or None."""
    return catalog.conn.execute(IMAGE_SQL + " WHERE i.id = ?", (image_id,)).fetchone()


def images_page(catalog: Catalog, collection_id: int | None, limit: int, offset: int) -> tuple[int, list[sqlite3.Row]]:
    """(total, rows) of images in id order, optionally of one collection; rows as `image()`."""
    where, params = ("", ()) if collection_id is None else (" WHERE i.collection_id = ?", (collection_id,))
    total = catalog.count("SELECT count(*) FROM images i" + where, params)
    rows = catalog.conn.execute(IMAGE_SQL + where + " ORDER BY i.id LIMIT ? OFFSET ?",
                                (*params, limit, offset)).fetchall()
    return total, rows


def face(catalog: Catalog, face_id: int) -> sqlite3.Row | None:
    """A face row (FACE_SQL columns: box, quality, model; no faceprint), or None."""
    return catalog.conn.execute(FACE_SQL + " WHERE f.id = ?", (face_id,)).fetchone()


def faces_of_image(catalog: Catalog, image_id: int) -> list[sqlite3.Row]:
    """Every face of one image in id order (FACE_SQL columns)."""
    return catalog.conn.execute(FACE_SQL + " WHERE f.image_id = ? ORDER BY f.id", (image_id,)).fetchall()


def faces_page(catalog: Catalog, *, collection_id: int | None, image_id: int | None, limit: int,
               offset: int) -> tuple[int, list[sqlite3.Row]]:
    """(total, rows) of faces in id order, optionally of one collection and/or one image."""
    clauses, params = [], []
    if collection_id is not None:
        clauses.append("f.image_id IN (SELECT id FROM images WHERE collection_id = ?)")
        params.append(collection_id)
    if image_id is not None:
        clauses.append("f.image_id = ?")
        params.append(image_id)
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    total = catalog.count("SELECT count(*) FROM faces f" + where, tuple(params))
    rows = catalog.conn.execute(FACE_SQL + where + " ORDER BY f.id LIMIT ? OFFSET ?",
                                (*params, limit, offset)).fetchall()
    return total, rows


def image_sizes(catalog: Catalog, image_ids: list[int]) -> dict[int, tuple[int, int]]:
    """Width and height in pixels of each image id found."""
    return {r[0]: (r[1], r[2]) for chunk in id_chunks(sorted(set(image_ids))) for r in catalog.conn.execute(
        f"SELECT id, width, height FROM images WHERE id IN ({marks(chunk)})", chunk)}


def collection(catalog: Catalog, collection_id: int) -> Collection | None:
    """A collection by id, or None."""
    row = catalog.conn.execute("SELECT * FROM collections WHERE id = ?", (collection_id,)).fetchone()
    return Collection.from_row(row) if row else None


def collection_counts(catalog: Catalog, collection_id: int) -> tuple[int, int]:
    """(indexed images, faces in them) of one collection."""
    images, faces = catalog.conn.execute(
        "SELECT count(*), coalesce(sum(n_faces), 0) FROM images WHERE collection_id = ? AND status = 'indexed'",
        (collection_id,)).fetchone()
    return int(images), int(faces)


def collection_image_count(catalog: Catalog, collection_id: int) -> int:
    """Every image record of one collection, indexed or skipped."""
    return catalog.count("SELECT count(*) FROM images WHERE collection_id = ?", (collection_id,))


def image_uris(catalog: Catalog) -> set[str]:
    """The file path of every image record (to tell which stored files are still referenced)."""
    return {r[0] for r in catalog.conn.execute("SELECT uri FROM images")}


def skipped_files(catalog: Catalog, limit: int = 1000) -> list[tuple[str, str | None]]:
    """(path, reason) of image records that were skipped at ingest, in id order, at most `limit`."""
    return [(r[0], r[1]) for r in catalog.conn.execute(
        "SELECT uri, error FROM images WHERE status = 'skipped' ORDER BY id LIMIT ?", (limit,))]


def audit_count(catalog: Catalog) -> int:
    """Events in the audit log."""
    return catalog.count("SELECT count(*) FROM audit_events")


def audit_last_seq(catalog: Catalog) -> int:
    """Sequence number of the newest audit event (0 when there is none)."""
    return catalog.count("SELECT coalesce(max(seq), 0) FROM audit_events")
