"""Uploaded photos: checked by their bytes (format sniffed, size and pixel limits), kept under the store.

Clients choose file names and content types, so neither is trusted: the format comes from the magic
bytes (`pipeline.decode.sniff_format`), the name only survives as a sanitised suffix for humans.
"""

from __future__ import annotations

import hashlib
import io
import re
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from fastapi import UploadFile
from PIL import Image

from faceindex.errors import ImageError, ImageTooLargeError
from faceindex.pipeline.decode import sniff_format
from faceindex.privacy.uploads import is_store_upload, staging_root, uploads_root, write_atomic
from faceindex.service.config import ServiceConfig
from faceindex.service.errors import UnsupportedMediaError, UploadTooLargeError

EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "WEBP": ".webp", "TIFF": ".tif", "BMP": ".bmp"}


@dataclass
class Upload:
    """One checked upload: its bytes, a safe display name and what its header says."""

    name: str
    data: bytes
    format: str
    width: int
    height: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def safe_name(filename: str | None, default: str = "upload") -> str:
    """The last path component with only [A-Za-z0-9._-] kept, at most 80 characters, never hidden."""
    base = re.split(r"[\\/]", filename or "")[-1]
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._")[:80]
    return cleaned or default


def image_size(data: bytes, name: str) -> tuple[int, int]:
    """Width and height from the image header, without decoding the pixels."""
    with warnings.catch_warnings():
        # Pillow's own bomb guard warns (or raises) on big headers; our pixel limit is applied by the caller.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as im:
                return im.size
        except Image.DecompressionBombError as exc:
            raise ImageTooLargeError(f"{name}: image dimensions far over the pixel limit") from exc
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageError(f"{name}: unreadable image header") from exc


def check_upload(data: bytes, filename: str | None, config: ServiceConfig) -> Upload:
    name = safe_name(filename)
    if len(data) > config.max_upload_bytes:
        raise UploadTooLargeError(f"{name}: over the {config.max_upload_bytes:,}-byte upload limit")
    if not data:
        raise ImageError(f"{name}: empty file")
    fmt = sniff_format(data[:32])
    if fmt is None:
        raise UnsupportedMediaError(f"{name}: not a JPEG, PNG, GIF, WebP, TIFF or BMP image (judged by content)")
    width, height = image_size(data, name)
    if width * height > config.max_upload_pixels:
        raise ImageTooLargeError(f"{name}: {width}x{height} is over the {config.max_upload_pixels:,}-pixel limit")
    return Upload(name, data, fmt, width, height)


async def read_upload(file: UploadFile, config: ServiceConfig, head: bytes = b"") -> Upload:
    """Read at most the byte limit (+1 to detect overflow) and check the photo. `head`: bytes already read."""
    data = head + await file.read(config.max_upload_bytes + 1 - len(head))
    return check_upload(data, file.filename, config)


def display_name(path: str | Path) -> str:
    """A photo's file name as people know it: without the content-hash prefix the service gives uploads."""
    name = Path(path).name
    match = re.fullmatch(r"[0-9a-f]{16}-(.+)", name)
    return match.group(1) if match else name


def save_uploads(store: Path, collection_id: int, uploads: Iterable[Upload]) -> list[Path]:
    """Write uploads to `<store>/uploads/c<id>/<sha256 prefix>-<name>` atomically; returns the paths.

    Names start with the content hash, so two different photos never overwrite each other and the same
    photo uploaded twice lands on the same file (which the ingest then reports as unchanged).
    """
    folder = uploads_root(store) / f"c{collection_id}"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    paths = []
    for upload in uploads:
        stem = Path(upload.name).stem[:60] or "upload"
        path = folder / f"{upload.sha256[:16]}-{stem}{EXTENSIONS[upload.format]}"
        if not path.exists():
            write_atomic(path, upload.data)
        paths.append(path.resolve())
    return paths


def is_upload(store: Path, path: str | Path) -> bool:
    """Whether a catalog URI points into this store's uploads folder (files the service owns)."""
    return is_store_upload(store, path)


def sweep_uploads(store: Path, referenced: set[str], keep: set[str]) -> int:
    """Delete uploaded files no image record refers to any more (after erasure or deletion).

    `keep` holds paths of queued or running ingest jobs, not yet in the catalog. Returns files deleted.
    """
    removed = _sweep_staging(store)
    root = uploads_root(store)
    if not root.is_dir():
        return removed
    for path in root.rglob("*"):
        # Half-written `.tmp` files of a crashed upload go too: saving and sweeping both hold the engine lock.
        if path.is_file() and str(path.resolve()) not in referenced | keep:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


STAGING_STALE_S = 3600.0
"""A staged video untouched this long (seconds) is a leftover of a crashed upload: one being streamed is written
every few milliseconds, and one being checked or moved is at most seconds old."""


def _sweep_staging(store: Path) -> int:
    folder = staging_root(store)
    if not folder.is_dir():
        return 0
    removed, cutoff = 0, time.time() - STAGING_STALE_S
    for path in folder.iterdir():
        try:
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            pass
    return removed
