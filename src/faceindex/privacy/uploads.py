"""Photos the store itself keeps: an erased face must not survive in the store's own copy of the photo.

Erasing a person's faces deletes their rows, faceprints and derived crops; a photo uploaded through the
service is kept under `<store>/uploads/` and would still show them. Files in operator-declared folders are
the operator's own and are never modified (their image record is provenance, not biometric data); files
under the uploads folder belong to the store, so after an erasure commits each one it touched is
- deleted, when its image has no face left (the record goes in the erasure's own `delete_images` call), or
- rewritten with the erased faces pixelated and blurred (`redact.obscure`), and its record's sha256 and
  size updated so that a re-ingest sees an unchanged file
(two kinds of route differ, see KEEP_PHOTO_ROUTES and TEMPLATE_ONLY_ROUTES).
The work is journaled in `upload_erasures` in the transaction that deletes the faces, so an erasure that
crashes after its commit finishes it when the store next opens; running it twice changes nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from faceindex.errors import FaceIndexError
from faceindex.pipeline.decode import decode_image, sniff_format
from faceindex.pipeline.types import Box
from faceindex.pipeline.video_decode import is_video_file
from faceindex.privacy.context import PrivacyContext
from faceindex.privacy.obscure import obscure
from faceindex.store.catalog import id_chunks, marks
from faceindex.store.uris import uri_to_path

log = logging.getLogger(__name__)

UPLOADS_DIR = "uploads"
STAGING_DIR = "uploads-staging"
SAVE_FORMATS = {"JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP"}
"""Formats a redacted upload is re-encoded in (those the service accepts); anything else becomes PNG,
which is fine because faceindex judges a file's format by its bytes, never by its name."""
KEEP_PHOTO_ROUTES = {"face"}
"""Routes whose caller asked to keep the rest of the photo (a curator removing one bystander's face): the
face is obscured in the stored file even when no other face is left, and the image record stays."""
TEMPLATE_ONLY_ROUTES = {"retention"}
"""Routes that expire faceprints, not people: a BIPA purge must destroy the face geometry, while the photo
itself is kept for its collection's own retention period (whose expiry deletes the image and its file)."""


def uploads_root(store: str | os.PathLike) -> Path:
    return Path(store) / UPLOADS_DIR


def staging_root(store: str | os.PathLike) -> Path:
    """Where uploaded videos are streamed before they are checked: outside the uploads folder, so the sweep of
    unreferenced uploads never deletes a file still being written (stale ones are swept by age instead)."""
    return Path(store) / STAGING_DIR


def is_store_upload(store: str | os.PathLike, path: str | os.PathLike) -> bool:
    """Whether a path lies in the store's uploads folder once links are resolved (a file the store owns)."""
    return Path(path).resolve().is_relative_to(uploads_root(store).resolve())


def write_atomic(path: Path, data: bytes) -> None:
    """Write via a hidden temp file, fsync, os.replace, fsync the folder: a crash leaves the old file or the
    new one, never a torn one (the service's upload sweep deletes a leftover temp file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    try:  # makes the rename or unlink itself durable; not possible on every platform
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def redacted_bytes(path: Path, boxes: Iterable[Box], *, max_pixels: int, max_bytes: int) -> tuple[bytes, str]:
    """The photo re-encoded with every box obscured (the same pixelate-then-blur over a box enlarged by 20 %
    as bystander redaction); returns (encoded bytes, format). Pixels are decoded upright (EXIF orientation
    applied, as the boxes were measured) and saved without metadata, so the result shows upright too."""
    decoded = decode_image(path, max_pixels=max_pixels, max_bytes=max_bytes)
    image = Image.fromarray(decoded.full())
    for box in boxes:
        obscure(image, tuple(int(v) for v in box))
    fmt = decoded.format if decoded.format in SAVE_FORMATS else "PNG"
    out = io.BytesIO()
    image.save(out, fmt, **({"quality": 92} if fmt in ("JPEG", "WEBP") else {}))
    return out.getvalue(), fmt


@dataclass
class UploadWork:
    """What an erasure does to the store's uploaded files, worked out before its faces are deleted."""

    emptied: list[int] = field(default_factory=list)
    """Image ids of uploads left without any face: the erasure deletes these records too."""
    files: dict[str, list[Box]] = field(default_factory=dict)
    """Upload path -> face boxes to obscure ([] = only delete the file, once no record refers to it)."""


class UploadEraser:
    """Plans, journals and finishes the erasure of faces from the store's own uploaded photos."""

    def __init__(self, ctx: PrivacyContext):
        self.ctx = ctx
        self.catalog = ctx.catalog

    def plan(self, route: str, face_ids: list[int], image_ids: list[int]) -> UploadWork:
        """For an erasure of single faces and whole images (ids that exist now, before the deletion)."""
        work = UploadWork()
        store = self.ctx.store.root
        if not uploads_root(store).is_dir():  # nothing uploaded: a CLI-only store costs one stat
            return work
        if route in TEMPLATE_ONLY_ROUTES:
            face_ids = []
        conn, whole = self.catalog.conn, set(image_ids)
        erased: dict[int, list[Box]] = {}
        uris: dict[int, str] = {}
        for chunk in id_chunks(face_ids):
            for row in conn.execute("SELECT f.image_id, i.uri, f.box_left, f.box_top, f.box_right, f.box_bottom"
                                    " FROM faces f JOIN images i ON i.id = f.image_id"
                                    f" WHERE f.id IN ({marks(chunk)})", chunk):
                if row[0] not in whole:
                    erased.setdefault(row[0], []).append(tuple(row[2:6]))
                    uris[row[0]] = row[1]
        for image_id, boxes in erased.items():
            if not is_store_upload(store, uris[image_id]):
                continue  # an operator's file: the face is gone from the catalog, the file is theirs
            left = conn.execute("SELECT count(*) FROM faces WHERE image_id = ?", (image_id,)).fetchone()[0]
            if left > len(boxes) or route in KEEP_PHOTO_ROUTES:
                work.files.setdefault(uris[image_id], []).extend(boxes)
            else:
                work.emptied.append(image_id)
                work.files.setdefault(uris[image_id], [])
        for chunk in id_chunks(image_ids):
            for (uri,) in conn.execute(f"SELECT uri FROM images WHERE id IN ({marks(chunk)})", chunk):
                if is_store_upload(store, uri):
                    work.files.setdefault(uri, [])
        return work

    def journal(self, job_id: int, work: UploadWork) -> None:
        """Record the file work; call inside the transaction that deletes the faces, so both commit together."""
        self.catalog.conn.executemany(
            "INSERT INTO upload_erasures (job_id, uri, boxes) VALUES (?, ?, ?)",
            [(job_id, uri, json.dumps([list(b) for b in boxes])) for uri, boxes in sorted(work.files.items())])

    def finish(self) -> tuple[int, int]:
        """Carry out every journaled file job (this erasure's, or one a crash left); returns (deleted, redacted).

        Idempotent: a file already deleted is skipped, a file already rewritten is recognised by the digest
        recorded before it was replaced, so a resumed erasure never blurs twice or loses the record update.
        """
        deleted = redacted = 0
        store = self.ctx.store.root
        rows = self.catalog.conn.execute("SELECT id, uri, boxes, redacted_sha256 FROM upload_erasures"
                                         " ORDER BY id").fetchall()
        for row_id, uri, boxes, done_sha in rows:
            path = uri_to_path(uri)
            referenced = self.catalog.conn.execute("SELECT 1 FROM images WHERE uri = ? LIMIT 1",
                                                   (uri,)).fetchone() is not None
            if not is_store_upload(store, path) or not path.is_file():
                pass  # never an operator's file, whatever the journal says; a missing file needs nothing
            elif referenced and json.loads(boxes):
                if self._redact(row_id, uri, json.loads(boxes), done_sha):
                    redacted += 1
                else:
                    deleted += 1
            elif not referenced:
                _delete(path)
                deleted += 1
            with self.catalog.transaction() as conn:
                conn.execute("DELETE FROM upload_erasures WHERE id = ?", (row_id,))
        return deleted, redacted

    def _redact(self, row_id: int, uri: str, boxes: list[list[int]], done_sha: str | None) -> bool:
        """Obscure the boxes in the file and update its records; False if it had to be deleted instead."""
        path = uri_to_path(uri)
        if is_video_file(path):  # sniffed before reading: a video may be gigabytes
            # A video is not redacted frame by frame: the store's copy goes, as for an undecodable photo.
            log.warning("an erased face was in an uploaded video; deleting the store's copy of the video")
            _delete(path)
            return False
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest != done_sha:  # not rewritten yet (or rewritten by a run that crashed before recording it)
            settings = self.ctx.settings
            try:
                data, _ = redacted_bytes(path, boxes, max_pixels=settings.max_pixels, max_bytes=settings.max_bytes)
            except (FaceIndexError, OSError) as exc:
                # The erased face cannot be blurred out of a file that no longer decodes; keeping the store's
                # copy would keep the face, so the file goes (its record stays, like a moved operator file).
                log.warning("cannot redact uploaded photo (%s); deleting the store's copy", exc)
                _delete(path)
                return False
            digest = hashlib.sha256(data).hexdigest()
            with self.catalog.transaction() as conn:  # recorded first: a crash after the replace is recognised
                conn.execute("UPDATE upload_erasures SET redacted_sha256 = ? WHERE id = ?", (digest, row_id))
            write_atomic(path, data)
        with self.catalog.transaction() as conn:
            conn.execute("UPDATE images SET sha256 = ?, size_bytes = ?, format = coalesce(?, format) WHERE uri = ?",
                         (digest, len(data), sniff_format(data[:32]), uri))
        return True


def _delete(path: Path) -> None:
    path.unlink(missing_ok=True)
    fsync_dir(path.parent)
