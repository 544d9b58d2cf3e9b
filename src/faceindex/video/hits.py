"""Search candidates that are video faces: one per track (its best-scoring faceprint), with timecodes and thumbnail."""

from __future__ import annotations

from faceindex.matching import Candidate
from faceindex.video.store import VideoStore


def add_video_hits(candidates: list[Candidate], videos: VideoStore) -> list[Candidate]:
    """Fill `video` on the candidates that are faces of video tracks and keep one candidate per track (a track
    stores up to 3 faceprints of one appearance: one hit, not three). Order (best score first) is kept.

    Each video candidate gets its track's span and `spans`: the spans of every track of that video among the
    candidates, in time order, so a reader sees all the moments this probe matched in the video.
    """
    appearances = videos.appearances_of_faces(c.face_id for c in candidates)
    if not appearances:
        return candidates
    kept, seen_tracks = [], set()
    for cand in candidates:
        found = appearances.get(cand.face_id)
        if found is None:
            kept.append(cand)
            continue
        if found.track_id in seen_tracks:
            continue
        seen_tracks.add(found.track_id)
        cand.video = found.to_dict()
        cand.video["thumbnail"] = str(videos.thumbnail_path(found.thumbnail)) if found.thumbnail else None
        kept.append(cand)
    spans: dict[int, list[dict]] = {}
    for cand in kept:
        if cand.video is not None:
            spans.setdefault(cand.image_id, []).append(
                {k: cand.video[k] for k in ("track", "start", "end", "start_s", "end_s")})
    for cand in kept:
        if cand.video is not None:
            cand.video["spans"] = sorted(spans[cand.image_id], key=lambda s: (s["start_s"], s["track"]))
    return kept


def overlaps(a: dict, b: dict) -> bool:
    """Whether two video hits' tracks overlap in time (then they cannot both be the probe's person)."""
    return a["start_s"] < b["end_s"] and b["start_s"] < a["end_s"]
