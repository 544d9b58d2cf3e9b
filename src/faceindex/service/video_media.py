"""Video for the web: hits with URLs instead of store paths, and the source file served by byte ranges if unchanged.

A video cannot be re-encoded per request as photos are (media.py), so its catalogued bytes are served as they
are, under the same guards: the path must resolve to itself (no symlink on it), the file is opened without
following links, and its content must hash to the sha256 recorded at ingest. Hashing a large video on every
range request would cost seconds, so a file verified once is remembered by (device, inode, size, mtime) and
re-hashed only when one of them changes. Container metadata (a phone's GPS tag) is served with the video.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from faceindex.errors import InvalidInputError
from faceindex.service.errors import PhotoChangedError
from faceindex.service.media import open_unswapped

CHUNK = 256 * 1024
MAX_RANGE = 8 * 2**20
"""Largest part of a video one range request returns (bytes): a browser asks again for the next part, so an
open-ended `bytes=0-` does not tie up a worker thread for a whole file."""
CONTENT_TYPES = {"mp4": "video/mp4", "mov": "video/quicktime", "matroska": "video/x-matroska", "avi": "video/x-msvideo",
                 "mpegts": "video/mp2t", "webm": "video/webm"}

_verified: dict[str, tuple[int, int, int, int]] = {}
_verified_lock = threading.Lock()


def public_video(image_id: int, video: dict) -> dict:
    """A candidate's `video` with service URLs (thumbnail, play from the span's start), never a store path."""
    return {**video, "thumbnail": f"/api/v1/tracks/{video['track']}/thumbnail" if video.get("thumbnail") else None,
            "play": f"/api/v1/images/{image_id}/video#t={video['start_s']:.3f}"}


def with_video_urls(result: dict) -> dict:
    """A search result (ProbeResult.to_dict) whose video hits name service URLs (see public_video)."""
    for face in result.get("faces") or []:
        for cand in face["candidates"]:
            if cand.get("video") is not None:
                cand["video"] = public_video(cand["image_id"], cand["video"])
    return result


@dataclass(frozen=True)
class OpenVideo:
    fd: int
    size: int


def open_catalogued(uri: str, sha256: str | None) -> OpenVideo:
    """An open file descriptor of the catalogued video (the caller closes it), or 404/410 as for photos."""
    fd = open_unswapped(uri, "video")
    try:
        info = os.fstat(fd)
        key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
        with _verified_lock:
            known = _verified.get(uri) == key
        if not known:
            digest, at = hashlib.sha256(), 0
            while block := os.pread(fd, CHUNK * 4, at):
                digest.update(block)
                at += len(block)
            if sha256 is None or digest.hexdigest() != sha256:
                raise PhotoChangedError("the video file changed since it was indexed; not shown (re-ingest it)")
            with _verified_lock:
                _verified[uri] = key
        return OpenVideo(fd, info.st_size)
    except BaseException:
        os.close(fd)
        raise


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) inclusive of a single `Range: bytes=` header, capped at MAX_RANGE bytes; None for no header.

    Raises InvalidInputError for a malformed or unsatisfiable range (the route answers 416)."""
    if header is None:
        return None
    match = _RANGE.match(header.strip())
    if match is None or match.groups() == ("", ""):
        raise InvalidInputError(f"unsupported Range header {header!r} (one range of bytes is served)")
    first, last = match.groups()
    if first == "":  # the last N bytes
        start, end = max(0, size - int(last)), size - 1
    else:
        start = int(first)
        end = min(size - 1, int(last)) if last else size - 1
    if start >= size or end < start:
        raise InvalidInputError(f"range {header!r} is outside the video's {size} bytes")
    return start, min(end, start + MAX_RANGE - 1)


def read_range(video: OpenVideo, start: int, end: int) -> Iterator[bytes]:
    """The bytes start..end (inclusive) in CHUNK pieces; closes the file at the end."""
    try:
        at = start
        while at <= end:
            block = os.pread(video.fd, min(CHUNK, end + 1 - at), at)
            if not block:
                return
            at += len(block)
            yield block
    finally:
        os.close(video.fd)
