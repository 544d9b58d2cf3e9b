"""Faces in the catalog: insert and copy them, read their faceprints (in chunks) and their details."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from typing import Any

import numpy as np

from faceindex.pipeline.types import Face
from faceindex.store.catalog_sql import id_chunks, marks, utcnow

INSERT_FACE = ("INSERT INTO faces (image_id, box_left, box_top, box_right, box_bottom, landmarks, detector,"
               " det_score, size_px, blur, rejected, model_id, embedding, created_at)"
               " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


class FaceRecords:
    """The face methods of `Catalog` (a mixin: it uses the catalog's `conn`)."""

    conn: Any

    def insert_faces(self, image_id: int, faces: list[Face], model_id: str) -> list[int]:
        """Insert an image's faces; their new ids, in order (`insert_faces_of` for one image)."""
        return self.insert_faces_of([(image_id, faces)], model_id)[0]

    def insert_faces_of(self, images: list[tuple[int, list[Face]]], model_id: str) -> list[list[int]]:
        """Insert the faces of several images (image id, its faces) in one batch; per image, its faces' new ids
        in order. The connection decides how the batch travels (RoutedConnection.insert_returning_ids): on
        PostgreSQL a batch of an ingest transaction's faces costs two round trips (ids, then COPY) instead of
        one statement per face; on SQLite the same rows go one statement each, in the process."""
        now = utcnow()
        rows = [(int(image_id), *(int(v) for v in face.box), json.dumps(face.landmarks), face.detector,
                 float(face.score), int(face.size_px), float(face.blur),
                 face.rejected if face.embedding is None else None, model_id,
                 None if face.embedding is None else np.asarray(face.embedding, np.float32).tobytes(), now)
                for image_id, faces in images for face in faces]
        ids = iter(self.conn.insert_returning_ids(INSERT_FACE, rows))
        return [[next(ids) for _ in faces] for _, faces in images]

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
