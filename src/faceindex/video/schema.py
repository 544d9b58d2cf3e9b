"""Catalog migrations owned by the video layer: videos, their tracks, and which stored faces belong to which track.

A video is an ordinary `images` row (its `format` is `video/<codec>`) whose track faceprints are ordinary
`faces` rows, so search, erasure and retention reach them as they reach photos; these tables add what a
photo lacks. Rows cascade from `images` and `faces`; a track that loses a face is deleted whole by the one
deletion primitive (privacy/deletion.py), which also removes its thumbnail file.
"""

from __future__ import annotations

from faceindex.store.migrations import MigrationSet

MIGRATIONS: list[tuple[str, str]] = [
    (
        "video_0001_tables",
        """
        CREATE TABLE videos (
            image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
            container TEXT NOT NULL,
            codec TEXT NOT NULL,
            fps REAL,
            duration_s REAL,
            processed_s REAL NOT NULL,
            frames_analysed INTEGER NOT NULL,
            note TEXT
        );
        CREATE TABLE video_tracks (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            start_s REAL NOT NULL,
            end_s REAL NOT NULL CHECK (end_s >= start_s),
            frames INTEGER NOT NULL,
            best_s REAL NOT NULL,
            box_left INTEGER NOT NULL, box_top INTEGER NOT NULL,
            box_right INTEGER NOT NULL, box_bottom INTEGER NOT NULL,
            thumbnail TEXT
        );
        CREATE INDEX video_tracks_image ON video_tracks(image_id);
        CREATE TABLE video_track_faces (
            face_id INTEGER PRIMARY KEY REFERENCES faces(id) ON DELETE CASCADE,
            track_id INTEGER NOT NULL REFERENCES video_tracks(id) ON DELETE CASCADE
        );
        CREATE INDEX video_track_faces_track ON video_track_faces(track_id);
        """,
    ),
]

VIDEO_MIGRATIONS = MigrationSet("video", MIGRATIONS)


def apply(catalog) -> bool:
    """Register the video set on `catalog` and apply what a writable store lacks; False when the tables are
    missing and cannot be made (a read-only store, or none yet): reads then treat videos as absent."""
    catalog.use_migrations(VIDEO_MIGRATIONS)
    return catalog.upgrade()
