"""What the web search pages show besides the engine's result: candidates with their photo's size and file name,
and the uploaded probe photos as small inline JPEGs with their faces' boxes (nothing uploaded is stored)."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

from PIL import Image

from faceindex.errors import FaceIndexError
from faceindex.matching import Candidate, FusedResult
from faceindex.service.media import thumbnail
from faceindex.service.state import ServiceState
from faceindex.service.uploads import Upload, display_name
from faceindex.service.video_media import public_video
from faceindex.store import reads

PROBE_SIDE = 720
"""Longest side (px) of the probe shown back on the results page with its numbered face boxes."""
FUSED_PROBE_SIDE = 320
"""Longest side (px) of each photo of a same-person search shown back: up to 12 of them side by side."""


def candidate_rows(engine, candidates: Sequence[Candidate]) -> list[dict]:
    """Each candidate's fields with its photo's size (to draw its box), file name and video hit (service URLs)."""
    sizes = reads.image_sizes(engine.catalog, [c.image_id for c in candidates])
    return [{**c.__dict__, "name": display_name(c.path), "size": sizes.get(c.image_id, (1, 1)),
             "video": c.video and public_video(c.image_id, c.video)} for c in candidates]


def probe_view(state: ServiceState, upload: Upload, settings, side: int = PROBE_SIDE) -> dict:
    """The probe as a small inline JPEG with the size of the upright photo, so the page can draw each face's
    box with its number (1, 2, …: the numbers the results and the CLI use). Nothing is stored."""
    with state.decodes:
        data = thumbnail(upload.data, settings, side)
    with Image.open(io.BytesIO(data)) as small:
        tw, th = small.size
    width, height = upload.width, upload.height
    if (tw > th) != (width > height) and tw != th:  # EXIF rotation: boxes are in upright coordinates
        width, height = height, width
    return {"src": "data:image/jpeg;base64," + base64.b64encode(data).decode(), "width": width, "height": height,
            "label": max(14, max(width, height) // 28)}


def fused_photos_view(state: ServiceState, uploads: Sequence[Upload], names: Sequence[str], result: FusedResult,
                      settings) -> list[dict]:
    """Each uploaded photo of a same-person search, in the order sent: its name, a thumbnail, and either the face
    that went into the fused probe (`used`: face, of, box) or why it was skipped (`skipped`).

    `names` are the probe names the search was run with (people_search.probe_names), which the result's
    `probe_faces` and `skipped` entries carry. A photo that cannot be decoded again has no thumbnail.
    """
    used = {u["photo"]: u for u in result.probe_faces}
    skipped = {s["photo"]: s["reason"] for s in result.skipped}
    photos = []
    for upload, name in zip(uploads, names, strict=True):
        try:
            picture = probe_view(state, upload, settings, FUSED_PROBE_SIDE)
        except FaceIndexError:  # e.g. a truncated JPEG: the search skipped it with the reason already
            picture = None
        photos.append({"name": name.removeprefix("upload:"), "picture": picture, "used": used.get(name),
                       "skipped": skipped.get(name)})
    return photos
