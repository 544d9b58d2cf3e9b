"""Uploaded videos: recognised by their bytes, streamed to a staging file in chunks, checked, then kept under the store.

A video can be gigabytes, so unlike a photo it is never held in memory: the upload is copied 1 MiB at a time
into `<store>/uploads-staging/` (hashing as it goes), its header is opened with PyAV (a damaged or audio-only
file is refused now, with its reason, rather than skipped later by the job), and only under the engine's
write gate is it renamed into the uploads folder, where the sweep that deletes unreferenced uploads runs.
Staging lies outside the uploads folder so that a sweep running meanwhile cannot delete a file being written.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from fastapi import UploadFile
from starlette.concurrency import run_in_threadpool

from faceindex.config import Settings
from faceindex.errors import ImageError
from faceindex.pipeline.video_decode import VideoLimits, open_video, sniff_video
from faceindex.privacy.uploads import fsync_dir, staging_root, uploads_root
from faceindex.service.config import ServiceConfig
from faceindex.service.errors import UploadTooLargeError

CHUNK = 2**20
"""Bytes copied per read (1 MiB): memory per upload stays at one chunk whatever the video's size."""
HEAD = 600
"""Bytes sniffed: sniff_video needs 600 (an MPEG transport stream shows itself by three 188-byte packets)."""
EXTENSIONS = {"mp4": ".mp4", "mov": ".mov", "matroska": ".mkv", "avi": ".avi", "mpegts": ".ts", "mpegps": ".mpg"}


@dataclass
class VideoUpload:
    """One checked video in the staging folder: its display name, container family, digest and size."""

    name: str
    staged: Path
    container: str
    sha256: str
    size: int

    def discard(self) -> None:
        self.staged.unlink(missing_ok=True)


def is_video_head(head: bytes) -> bool:
    return sniff_video(head) is not None


async def stage_video(file: UploadFile, head: bytes, name: str, store: Path, config: ServiceConfig,
                      settings: Settings) -> VideoUpload:
    """Copy an upload whose first bytes (`head`, already read) sniff as a video into a staging file and open its
    header. Over `config.max_video_upload_bytes` -> 413, unreadable -> 422 (VideoError); the staging file is
    deleted on any failure."""
    limit = config.max_video_upload_bytes
    folder = staging_root(store)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    staged = folder / f"{uuid.uuid4().hex}.part"
    digest, size = hashlib.sha256(), 0
    try:
        with open(staged, "wb") as out:
            chunk = head
            while chunk:
                size += len(chunk)
                if size > limit:
                    raise UploadTooLargeError(f"{name}: over the {limit:,}-byte limit for an uploaded video "
                                              "(max_video_upload_bytes)")
                digest.update(chunk)
                await run_in_threadpool(out.write, chunk)  # disk writes off the event loop
                chunk = await file.read(CHUNK)
        limits = VideoLimits(max_pixels=settings.video_max_pixels, max_duration_s=settings.video_max_duration_s,
                             max_bytes=min(settings.video_max_bytes, limit))
        await run_in_threadpool(_check_header, staged, name, limits)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    return VideoUpload(name, staged, sniff_video(head) or "mp4", digest.hexdigest(), size)


def _check_header(path: Path, name: str, limits: VideoLimits) -> None:
    try:
        container, _, _ = open_video(path, limits)
    except ImageError as exc:  # VideoError: its message says why; name the upload the client knows
        raise type(exc)(f"{name}: {exc}") from exc
    container.close()


def keep_video(store: Path, collection_id: int, video: VideoUpload) -> Path:
    """Move a staged video to `<store>/uploads/c<id>/<sha256 prefix>-<name><ext>` (call under the write gate);
    the same video uploaded twice lands on the same file, which the ingest reports as unchanged."""
    folder = uploads_root(store) / f"c{collection_id}"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    stem = Path(video.name).stem[:60] or "upload"
    path = folder / f"{video.sha256[:16]}-{stem}{EXTENSIONS.get(video.container, '.video')}"
    if path.exists():
        video.discard()
    else:
        with open(video.staged, "rb+") as handle:  # durable before the rename makes it visible
            os.fsync(handle.fileno())
        os.replace(video.staged, path)
        fsync_dir(folder)
    return path.resolve()
