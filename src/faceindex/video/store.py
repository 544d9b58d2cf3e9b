"""The video tables and thumbnail files of one store: record a video's tracks, read them back, delete them."""

from __future__ import annotations

import os
import sqlite3
import uuid
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from faceindex.store.catalog import Catalog
from faceindex.store.catalog_sql import id_chunks, marks
from faceindex.video.schema import VIDEO_MIGRATIONS
from faceindex.video.timecode import timecode

_HAS_TABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""Catalogs known to have the video tables (a search builds a VideoStore per call: this spares it the check)."""

THUMBS_DIR = "video-thumbnails"
"""Folder (0700) in the store directory holding one JPEG (0600) per track: derived from the video, personal
data like a faceprint, so erasure deletes it with its track."""


@dataclass(frozen=True)
class Appearance:
    """One track of a video, as search and the access report show it."""

    track_id: int
    image_id: int
    start_s: float
    end_s: float
    frames: int
    best_s: float
    box: tuple[int, int, int, int]
    thumbnail: str | None
    """File name in the store's THUMBS_DIR (None when it was not made)."""

    def to_dict(self) -> dict:
        return {"track": self.track_id, "start": timecode(self.start_s), "end": timecode(self.end_s),
                "start_s": self.start_s, "end_s": self.end_s, "frames": self.frames, "best": timecode(self.best_s),
                "best_s": self.best_s, "best_box": list(self.box), "thumbnail": self.thumbnail}


def _appearance(row: sqlite3.Row) -> Appearance:
    return Appearance(row["id"], row["image_id"], row["start_s"], row["end_s"], row["frames"], row["best_s"],
                      (row["box_left"], row["box_top"], row["box_right"], row["box_bottom"]), row["thumbnail"])


class VideoStore:
    """Video rows of a catalog and the thumbnails beside it. Reads answer "nothing" on a catalog without the video
    tables (a store no video code has opened for writing yet); writes need them (the Engine registers the set)."""

    def __init__(self, catalog: Catalog, root: str | os.PathLike):
        self.catalog = catalog
        self.thumbs = Path(root) / THUMBS_DIR
        self._tables = False

    @property
    def ready(self) -> bool:
        """Whether the catalog has the video tables: the video set is registered on it (the Engine does) and
        applied. Read once per catalog (from its `_migrations`, on any backend), then remembered."""
        if not self._tables:
            self._tables = _HAS_TABLES.get(self.catalog, False)
        if not self._tables and self.catalog.exists \
                and any(s.name == VIDEO_MIGRATIONS.name for s in self.catalog.migration_sets):
            self._tables = not set(VIDEO_MIGRATIONS.names) & set(self.catalog.pending_migrations())
            if self._tables:
                _HAS_TABLES[self.catalog] = True
        return self._tables

    # -- writes (inside the caller's transaction) -------------------------------------------------
    def write_thumbnail(self, data: bytes) -> str | None:
        """Write a thumbnail file (0600, a fresh random name) and return its name; None for no data.

        Written before the catalog rows that name it: a rolled-back transaction leaves an unnamed file, which
        `sweep` removes; a row never names a missing file because of a crash."""
        if not data:
            return None
        self.thumbs.mkdir(mode=0o700, exist_ok=True)
        name = f"{uuid.uuid4().hex}.jpg"
        fd = os.open(self.thumbs / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return name

    def record_video(self, image_id: int, *, container: str, codec: str, fps: float | None,
                     duration_s: float | None, processed_s: float, frames_analysed: int, note: str | None) -> None:
        self.catalog.conn.execute(
            "INSERT INTO videos (image_id, container, codec, fps, duration_s, processed_s, frames_analysed, note)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (image_id, container, codec, fps, duration_s, processed_s, frames_analysed, note))

    def record_track(self, image_id: int, *, start_s: float, end_s: float, frames: int, best_s: float,
                     box: tuple[int, int, int, int], thumbnail: str | None, face_ids: list[int]) -> int:
        cur = self.catalog.conn.execute(
            "INSERT INTO video_tracks (image_id, start_s, end_s, frames, best_s, box_left, box_top, box_right,"
            " box_bottom, thumbnail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (image_id, start_s, end_s, frames, best_s, *box, thumbnail))
        track_id = int(cur.lastrowid)
        self.catalog.conn.executemany("INSERT INTO video_track_faces (face_id, track_id) VALUES (?, ?)",
                                      [(f, track_id) for f in face_ids])
        return track_id

    def copy_video(self, from_image: int, to_image: int) -> int:
        """Give `to_image` (a byte-identical copy whose faces `Catalog.copy_faces` copied, in id order) the tracks
        of `from_image`, each with its own copy of the thumbnail. Returns tracks copied (0 for a photo)."""
        if not self.ready:
            return 0
        conn = self.catalog.conn
        video = conn.execute("SELECT * FROM videos WHERE image_id = ?", (from_image,)).fetchone()
        if video is None:
            return 0
        old, new = ([r[0] for r in conn.execute("SELECT id FROM faces WHERE image_id = ? ORDER BY id", (i,))]
                    for i in (from_image, to_image))
        face_map = dict(zip(old, new, strict=True))
        self.record_video(to_image, container=video["container"], codec=video["codec"], fps=video["fps"],
                          duration_s=video["duration_s"], processed_s=video["processed_s"],
                          frames_analysed=video["frames_analysed"], note=video["note"])
        rows = conn.execute("SELECT * FROM video_tracks WHERE image_id = ? ORDER BY id", (from_image,)).fetchall()
        for row in rows:
            faces = [r[0] for r in conn.execute("SELECT face_id FROM video_track_faces WHERE track_id = ?"
                                                " ORDER BY face_id", (row["id"],))]
            thumb = None
            if row["thumbnail"] and (self.thumbs / row["thumbnail"]).is_file():
                thumb = self.write_thumbnail((self.thumbs / row["thumbnail"]).read_bytes())
            self.record_track(to_image, start_s=row["start_s"], end_s=row["end_s"], frames=row["frames"],
                              best_s=row["best_s"], box=(row["box_left"], row["box_top"], row["box_right"],
                                                         row["box_bottom"]),
                              thumbnail=thumb, face_ids=[face_map[f] for f in faces if f in face_map])
        return len(rows)

    # -- reads ----------------------------------------------------------------------------------
    def appearances_of_faces(self, face_ids: Iterable[int]) -> dict[int, Appearance]:
        """face id -> the track it belongs to, for the faces that belong to one."""
        found: dict[int, Appearance] = {}
        if not self.ready:
            return found
        for chunk in id_chunks(face_ids):
            for row in self.catalog.conn.execute(
                    f"SELECT l.face_id, t.* FROM video_track_faces l JOIN video_tracks t ON t.id = l.track_id"
                    f" WHERE l.face_id IN ({marks(chunk)})", chunk):
                found[row["face_id"]] = _appearance(row)
        return found

    def appearances_of_images(self, image_ids: Iterable[int]) -> dict[int, list[Appearance]]:
        """image id -> its tracks in time order (videos only)."""
        found: dict[int, list[Appearance]] = {}
        if not self.ready:
            return found
        for chunk in id_chunks(image_ids):
            for row in self.catalog.conn.execute(
                    f"SELECT * FROM video_tracks WHERE image_id IN ({marks(chunk)}) ORDER BY start_s, id", chunk):
                found.setdefault(row["image_id"], []).append(_appearance(row))
        return found

    def track(self, track_id: int) -> Appearance | None:
        if not self.ready:
            return None
        row = self.catalog.conn.execute("SELECT * FROM video_tracks WHERE id = ?", (track_id,)).fetchone()
        return None if row is None else _appearance(row)

    def video(self, image_id: int) -> sqlite3.Row | None:
        if not self.ready:
            return None
        return self.catalog.conn.execute("SELECT * FROM videos WHERE image_id = ?", (image_id,)).fetchone()

    def thumbnail_path(self, name: str) -> Path:
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise ValueError(f"not a thumbnail name: {name!r}")
        return self.thumbs / name

    # -- deletion (the privacy layer's deletion primitive calls these) ----------------------------
    def doomed(self, face_ids: Iterable[int], image_ids: Iterable[int]) -> tuple[list[int], set[int], list[str]]:
        """What deleting these faces and images takes with it: (track ids, every face of those tracks, thumbnail
        names). A track loses all its faces together: its other faceprints and its thumbnail show the same
        person, so an erasure of one of them is an erasure of the track."""
        if not self.ready:
            return [], set(), []
        conn = self.catalog.conn
        tracks: set[int] = set()
        for chunk in id_chunks(face_ids):
            tracks.update(r[0] for r in conn.execute(
                f"SELECT track_id FROM video_track_faces WHERE face_id IN ({marks(chunk)})", chunk))
        for chunk in id_chunks(image_ids):
            tracks.update(r[0] for r in conn.execute(
                f"SELECT id FROM video_tracks WHERE image_id IN ({marks(chunk)})", chunk))
        faces: set[int] = set()
        thumbs: list[str] = []
        for chunk in id_chunks(tracks):
            faces.update(r[0] for r in conn.execute(
                f"SELECT face_id FROM video_track_faces WHERE track_id IN ({marks(chunk)})", chunk))
            thumbs.extend(r[0] for r in conn.execute(
                f"SELECT thumbnail FROM video_tracks WHERE id IN ({marks(chunk)}) AND thumbnail IS NOT NULL", chunk))
        return sorted(tracks), faces, thumbs

    def delete_tracks(self, track_ids: Iterable[int]) -> int:
        n = 0
        for chunk in id_chunks(track_ids):
            n += self.catalog.conn.execute(f"DELETE FROM video_tracks WHERE id IN ({marks(chunk)})", chunk).rowcount
        return n

    def remove_thumbnails(self, names: Iterable[str]) -> int:
        """Delete thumbnail files (after the transaction that deleted their rows committed); returns files removed."""
        removed = 0
        for name in names:
            try:
                self.thumbnail_path(name).unlink()
                removed += 1
            except FileNotFoundError:
                pass
        return removed

    def sweep(self) -> int:
        """Delete thumbnail files no track names (left by a rolled-back ingest, or by a video replaced on re-ingest
        whose rows cascaded away); returns files removed."""
        if not self.thumbs.is_dir() or not self.ready:
            return 0
        named = {r[0] for r in self.catalog.conn.execute(
            "SELECT thumbnail FROM video_tracks WHERE thumbnail IS NOT NULL")}
        return self.remove_thumbnails(n for n in os.listdir(self.thumbs) if n.endswith(".jpg") and n not in named)
