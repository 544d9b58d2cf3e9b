"""Videos: a track's frame thumbnail and the video itself by byte ranges (for HTML5 <video>), to roles that may view."""

from __future__ import annotations

import os
from typing import Annotated

from fastapi import APIRouter, Header, Response
from fastapi.responses import StreamingResponse

from faceindex.errors import InvalidInputError, NotFoundError
from faceindex.service.deps import ERRORS, NOT_FOUND, CanViewImages, IdPath, StateDep
from faceindex.service.shared import audit_view, check_view, image_row
from faceindex.service.video_media import CONTENT_TYPES, byte_range, open_catalogued, read_range
from faceindex.video.store import VideoStore

router = APIRouter(prefix="/api/v1", tags=["videos"], responses={**ERRORS, **NOT_FOUND})
NO_STORE = {"Cache-Control": "private, no-store"}


def _videos(engine) -> VideoStore:
    return VideoStore(engine.catalog, engine.store.root)


@router.get("/tracks/{track_id}/thumbnail", response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}, "description": "The track's best frame, face boxed."}})
def track_thumbnail(track_id: IdPath, principal: CanViewImages, state: StateDep):
    """The best frame of one video track (one person within one shot), longest side 320 px, with the face boxed.
    Each view is recorded in the audit log, as for photos."""
    with state.gate.read(principal) as engine:
        videos = _videos(engine)
        track = videos.track(track_id)
        if track is None or not track.thumbnail:
            raise NotFoundError(f"no video track {track_id} with a thumbnail")
        check_view(state, principal, track.image_id)
        try:
            data = videos.thumbnail_path(track.thumbnail).read_bytes()
        except FileNotFoundError as exc:
            raise NotFoundError(f"the thumbnail of track {track_id} is gone") from exc
    audit_view(state, principal, track.image_id, "video-thumbnail")
    return Response(data, media_type="image/jpeg", headers=NO_STORE)


@router.get("/images/{image_id}/video", response_class=StreamingResponse,
            responses={200: {"content": {"video/mp4": {}}}, 206: {"description": "A byte range of the video."},
                       410: {"description": "The video file changed since it was indexed: not shown."},
                       416: {"description": "The range is outside the file."}})
def video_file(image_id: IdPath, principal: CanViewImages, state: StateDep,
               range_header: Annotated[str | None, Header(alias="Range")] = None):
    """The indexed video as it is on disk, only while it is the catalogued file (sha256 checked), with HTTP range
    requests (206) so a browser can seek. A request from the start of the file is recorded in the audit log."""
    check_view(state, principal, image_id)
    with state.gate.read(principal) as engine:
        row = image_row(engine, image_id)
        video = _videos(engine).video(image_id)
    if video is None:
        raise NotFoundError(f"image {image_id} is not a video")
    opened = open_catalogued(row["uri"], row["sha256"])
    try:
        wanted = byte_range(range_header, opened.size)
    except InvalidInputError as exc:
        os.close(opened.fd)
        return Response(status_code=416, headers={"Content-Range": f"bytes */{opened.size}"},
                        content=exc.message)
    start, end = wanted if wanted is not None else (0, opened.size - 1)
    if start == 0:  # a player starting (or a download): one audit event, not one per seek
        audit_view(state, principal, image_id, "video")
    headers = {**NO_STORE, "Accept-Ranges": "bytes", "Content-Length": str(end - start + 1)}
    if wanted is not None:
        headers["Content-Range"] = f"bytes {start}-{end}/{opened.size}"
    media = CONTENT_TYPES.get(video["container"], "application/octet-stream")
    return StreamingResponse(read_range(opened, start, end), status_code=206 if wanted is not None else 200,
                             media_type=media, headers=headers)
