"""Shared set-up of the video tests: test videos made once per session from real photos, and a shared pipeline.

The made video (480x270, 10 fps, H.264 with x264's scene-cut keyframes) shows, in this order:
Jennifer Aniston 0-3 s, a cut to Matt Damon 3-6 s, a giraffe (no face) 6-8 s, Jennifer Aniston again (another
photo) 8-10.5 s. The probes are other photos of the same two people.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from videogen import Segment, make_audio_only, make_vfr_video, make_video

from faceindex.config import Settings
from faceindex.pipeline.analyse import FacePipeline

PEOPLE = {
    "Jennifer_Aniston": ("deepface__img55.jpg", "deepface__img56.jpg"),
    "Matt_Damon": ("deepface__img30.jpg",),
}
PROBES = {"Jennifer_Aniston": "deepface__img53.jpg", "Matt_Damon": "deepface__img31.jpg"}
TRUTH = [("Jennifer_Aniston", 0.0, 3.0), ("Matt_Damon", 3.0, 6.0), ("Jennifer_Aniston", 8.0, 10.5)]

_cache: dict[str, object] = {}


def pipeline() -> FacePipeline:
    """One pipeline for the session (models load once, ~1 s)."""
    if "pipeline" not in _cache:
        _cache["pipeline"] = FacePipeline(Settings(workers=1))
    return _cache["pipeline"]


def probe(faces_dir: Path, person: str) -> Path:
    return faces_dir / "people" / person / PROBES[person]


def videos(faces_dir: Path, folder: Path) -> dict[str, Path]:
    """Every test video, made on the first call (~5 s) into `folder` (a session temporary folder)."""
    if "videos" in _cache:
        return _cache["videos"]
    people = faces_dir / "people"
    aniston, aniston2 = (people / "Jennifer_Aniston" / n for n in PEOPLE["Jennifer_Aniston"])
    damon = people / "Matt_Damon" / PEOPLE["Matt_Damon"][0]
    giraffe = faces_dir / "nonfaces" / "dlib__giraffe.jpg"
    folder.mkdir(parents=True, exist_ok=True)
    out = {"made": folder / "made.mp4"}
    truth = make_video(out["made"], [Segment(aniston, 3, "Jennifer_Aniston"), Segment(damon, 3, "Matt_Damon"),
                                     Segment(giraffe, 2), Segment(aniston2, 2.5, "Jennifer_Aniston")])
    assert truth == TRUTH
    small = (160, 120)
    for name, codec in (("clip.mov", "libx264"), ("clip.mkv", "libx264"), ("clip.webm", "libvpx"),
                        ("clip.avi", "mpeg4"), ("clip.ts", "libx264")):
        out[name] = folder / name
        make_video(out[name], [Segment(damon, 1.0, "Matt_Damon")], size=small, codec=codec)
    out["audio.mp4"] = folder / "audio.mp4"
    make_audio_only(out["audio.mp4"])
    out["vfr.mkv"] = folder / "vfr.mkv"
    make_vfr_video(out["vfr.mkv"], damon, [0, 0.1, 0.15, 0.9, 1.0, 2.5, 2.6, 4.0, 4.01])
    _cache["videos"] = out
    return out


def tracks(store: Path) -> list[sqlite3.Row]:
    """Every track row of a store (read directly: the test checks what is on disk)."""
    with sqlite3.connect(store / "catalog.sqlite") as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute("SELECT * FROM video_tracks ORDER BY start_s").fetchall()


def track_faces(store: Path) -> dict[int, list[int]]:
    with sqlite3.connect(store / "catalog.sqlite") as conn:
        found: dict[int, list[int]] = {}
        for face_id, track_id in conn.execute("SELECT face_id, track_id FROM video_track_faces ORDER BY face_id"):
            found.setdefault(track_id, []).append(face_id)
        return found


def thumbnails(store: Path) -> set[str]:
    folder = store / "video-thumbnails"
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()
