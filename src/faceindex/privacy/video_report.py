"""The video part of a subject access report: each video appearance with its timecodes, shown as a face crop."""

from __future__ import annotations

import base64
import io
from typing import Any

from PIL import Image

from faceindex.privacy.context import PrivacyContext
from faceindex.video.store import VideoStore
from faceindex.video.timecode import timecode

CROP_MARGIN = 0.4
"""A face crop extends this fraction of the face box's size on each side: the face, not the frame (the frame
may show other people, whose faces the report must not disclose)."""


def mark_videos(ctx: PrivacyContext, images: dict[int, dict[str, Any]]) -> None:
    """Give each video entry `media: "video"`, each of its faces the span of its track, and `appearances`: the
    distinct tracks of the listed faces in time order (a track holds up to 3 faceprints of one appearance)."""
    videos = VideoStore(ctx.catalog, ctx.store.root)
    if not videos.ready:
        return
    spans = videos.appearances_of_faces(f["face_id"] for item in images.values() for f in item["faces"])
    for item in images.values():
        if videos.video(item["image_id"]) is None:
            continue
        item["media"] = "video"
        seen: dict[int, dict[str, Any]] = {}
        for face in item["faces"]:
            found = spans.get(face["face_id"])
            if found is None:
                continue
            face["video"] = {"track": found.track_id, "start": timecode(found.start_s), "end": timecode(found.end_s)}
            seen.setdefault(found.track_id, {**found.to_dict(), "thumbnail_file": found.thumbnail})
        item["appearances"] = sorted(seen.values(), key=lambda a: (a["start_s"], a["track"]))
        for appearance in item["appearances"]:
            del appearance["thumbnail"]  # a store-internal file name: the report carries the crop itself


def video_picture(ctx: PrivacyContext, item: dict[str, Any]) -> dict[str, Any] | None:
    """The face crop of the first appearance's best frame (from its thumbnail) as a JPEG data URI, or None."""
    videos = VideoStore(ctx.catalog, ctx.store.root)
    appearances = item.get("appearances", [])
    names = [a.pop("thumbnail_file", None) for a in appearances]  # store-internal: never in the report
    for appearance, name in zip(appearances, names, strict=True):
        if not name:
            continue
        try:
            image = Image.open(videos.thumbnail_path(name)).convert("RGB")
        except OSError:
            continue
        k = image.width / item["width"] if item.get("width") else 1.0
        left, top, right, bottom = (v * k for v in appearance["best_box"])
        mx, my = (right - left) * CROP_MARGIN, (bottom - top) * CROP_MARGIN
        crop = image.crop((max(0, round(left - mx)), max(0, round(top - my)),
                           min(image.width, round(right + mx)), min(image.height, round(bottom + my))))
        buffer = io.BytesIO()
        crop.save(buffer, format="JPEG", quality=88)
        item["available"] = True
        return {"uri": "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode(), "scale": k}
    item["available"] = False
    return None
