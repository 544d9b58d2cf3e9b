"""Link the faces of sampled video frames into tracks (one person within one shot) and pick each track's faceprints."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np

from faceindex.pipeline.types import Face, iou

LINK_IOU = 0.3
"""A face overlapping a track's last box at least this much (intersection over union) may continue it..."""
LINK_SIMILARITY = 0.88
"""...if its faceprint is at least this similar (cosine) to one of the track's recent faceprints. dlib ResNet
faceprints of different people measured mean 0.83, sd 0.036 (matching.FALLBACK_THRESHOLD): 0.88 with an
overlapping box is ~1.4 sd above that mean, and the same face one second later scores ~0.95-0.99."""
REJOIN_SIMILARITY = 0.93
"""A face anywhere in the frame continues a track (the person moved, or the camera did) at this similarity
alone: above the 99.9th percentile of different-people pairs (0.92)."""
MAX_GAP_S = 4.0
"""A track not seen for this long within its shot is closed: the person left, and a later return is a new track."""
DIVERSE_BELOW = 0.97
"""A further faceprint is kept for a track only if its similarity to every kept one is below this: a second
faceprint of the same pose adds storage, not recall."""
KEEP_QUALITY = 0.6
"""...and only from frames whose quality is at least this fraction of the track's best."""


def face_quality(face: Face) -> float:
    """How good a faceprint this face gives, 0..~3: size (saturating at 160 px), sharpness (saturating at a
    Laplacian variance of 60) and the detector's confidence. Larger and sharper chips verify better (the
    pipeline's min_face_px / min_blur gates refuse the worst); the score breaks ties between usable ones."""
    return min(face.size_px, 160) / 160 + min(face.blur, 60.0) / 60 + 0.25 * float(np.clip(face.score, 0.0, 4.0))


@dataclass
class Sighting:
    """One face of one analysed frame, in full-resolution pixels."""

    time_s: float
    face: Face
    quality: float


@dataclass
class Track:
    """One person's continuous appearance within one shot.

    start_s/end_s are set when it closes: the appearance is taken to begin halfway between the last analysed
    frame without the face and the first with it (at the shot's start when it is there from the shot's first
    frame), and likewise at the end, so with samples `step` seconds apart the error is at most step / 2.
    """

    shot: int
    sightings: list[Sighting] = field(default_factory=list)
    start_s: float = 0.0
    end_s: float = 0.0
    best_image: np.ndarray | None = field(default=None, repr=False)
    """The detection-size RGB frame of the best sighting (for its thumbnail); the other frames are not kept."""
    best_scale: float = 1.0

    @property
    def best(self) -> Sighting:
        return max(self.sightings, key=lambda s: s.quality)

    @property
    def last(self) -> Sighting:
        return self.sightings[-1]

    def recent_prints(self, n: int = 3) -> np.ndarray:
        prints = [s.face.embedding for s in self.sightings[-n:]] + [self.best.face.embedding]
        return np.stack(prints)

    def kept(self, at_most: int = 3) -> list[Sighting]:
        """1..at_most sightings whose faceprints are stored: the best one, then the most different good ones."""
        best = self.best
        chosen = [best]
        pool = [s for s in self.sightings if s is not best and s.quality >= KEEP_QUALITY * best.quality]
        while len(chosen) < at_most and pool:
            kept_prints = np.stack([c.face.embedding for c in chosen])
            nearest = [float(np.max(kept_prints @ s.face.embedding)) for s in pool]
            i = int(np.argmin(nearest))
            if nearest[i] >= DIVERSE_BELOW:
                break
            chosen.append(pool.pop(i))
        return sorted(chosen, key=lambda s: s.time_s)


@dataclass
class _Frame:
    time_s: float
    shot: int


class Tracker:
    """Feed it the analysed frames in time order (`add`), then `finish`: it returns every track, closed.

    Within a shot, each usable face continues the track it matches best (LINK_* / REJOIN_SIMILARITY), one face
    per track per frame, greedily by similarity; an unmatched face opens a track. A cut closes every track.
    """

    def __init__(self):
        self.frames: list[_Frame] = []
        self.times: list[float] = []  # the frames' times, for bisection
        self.end_s: float | None = None
        self.shot_starts: list[float] = []
        self.open: list[Track] = []
        self.closed: list[Track] = []

    def add(self, time_s: float, faces: list[Face], *, cut: bool, cut_at: float | None = None,
            image: np.ndarray | None = None, scale: float = 1.0) -> None:
        """One analysed frame: its time, its usable faces (with faceprints), whether a cut precedes it (and the
        best guess of the cut's time), and the detection-size image for thumbnails."""
        if not self.frames or cut:
            self.shot_starts.append(time_s if not self.frames else (cut_at if cut_at is not None else time_s))
            self._close_all()  # after the new shot's start is known: it is where the closed tracks end
        shot = len(self.shot_starts) - 1
        self.frames.append(_Frame(time_s, shot))
        self.times.append(time_s)
        for track in [t for t in self.open if time_s - t.last.time_s > MAX_GAP_S]:
            self._close(track)
        pairs = []
        for fi, face in enumerate(faces):
            for ti, track in enumerate(self.open):
                sim = float(np.max(track.recent_prints() @ face.embedding))
                overlap = iou(track.last.face.box, face.box)
                if (overlap >= LINK_IOU and sim >= LINK_SIMILARITY) or sim >= REJOIN_SIMILARITY:
                    pairs.append((sim + overlap * 0.01, fi, ti))
        used_faces, used_tracks = set(), set()
        for _, fi, ti in sorted(pairs, reverse=True):
            if fi in used_faces or ti in used_tracks:
                continue
            used_faces.add(fi)
            used_tracks.add(ti)
            self._extend(self.open[ti], faces[fi], time_s, image, scale)
        for fi, face in enumerate(faces):
            if fi not in used_faces:
                track = Track(shot)
                self._extend(track, face, time_s, image, scale)
                self.open.append(track)

    def finish(self, end_s: float) -> list[Track]:
        """Close every track; `end_s` is where the video (as processed) ends. Tracks in time order."""
        self.end_s = end_s
        self._close_all()
        return sorted(self.closed, key=lambda t: (t.start_s, t.end_s))

    def _extend(self, track: Track, face: Face, time_s: float, image: np.ndarray | None, scale: float) -> None:
        sighting = Sighting(time_s, face, face_quality(face))
        best_before = track.best.quality if track.sightings else -1.0
        track.sightings.append(sighting)
        if sighting.quality > best_before:
            track.best_image, track.best_scale = image, scale

    def _close_all(self) -> None:
        for track in list(self.open):
            self._close(track)

    def _close(self, track: Track) -> None:
        self.open.remove(track)
        first, last = track.sightings[0].time_s, track.last.time_s
        ended = track.shot + 1 < len(self.shot_starts) or self.end_s is not None
        shot_start = self.shot_starts[track.shot]
        shot_end = self.shot_starts[track.shot + 1] if track.shot + 1 < len(self.shot_starts) else self.end_s
        i = bisect.bisect_left(self.times, first)
        track.start_s = shot_start if i == 0 or self.frames[i - 1].shot != track.shot else \
            max(shot_start, (self.times[i - 1] + first) / 2)
        j = bisect.bisect_right(self.times, last)
        after = self.frames[j] if j < len(self.frames) and self.frames[j].shot == track.shot else None
        if after is not None:  # closed by a gap (or a frame of the shot without it followed)
            track.end_s = (last + after.time_s) / 2
        elif ended and shot_end is not None:  # seen in its shot's last frame: it lasts until the cut or the end
            track.end_s = max(last, shot_end)
        else:
            track.end_s = last
        self.closed.append(track)
