"""The pipeline for one video: sample frames → detect and embed → tracks → 1-3 faceprints and a thumbnail per track."""

from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from faceindex.pipeline.analyse import AnalysedImage, FacePipeline
from faceindex.pipeline.decode import DecodedImage
from faceindex.pipeline.detect import HogDetector
from faceindex.pipeline.types import Box, Face
from faceindex.pipeline.video_decode import FrameSampler, ProgressFn, VideoInfo, VideoLimits, cut_distance
from faceindex.pipeline.video_tracks import Tracker

CUT_DISTANCE = 0.5
"""Two consecutive analysed frames whose colour signatures differ by at least this (video_decode.cut_distance,
0..2) are in different shots. Measured on the shared Hamilton clip: frames of one shot differ by < 0.3 one
second apart (stage lighting, movement), frames of two different photos by > 0.8."""
THUMB_SIDE = 320
"""Longest side (px) of a track's thumbnail."""


@dataclass
class VideoTrack:
    """One person's appearance: its time span (seconds from the video's start), how many analysed frames show it,
    the best frame's time and face box (full-resolution px), the indexes of its kept faces in AnalysedVideo.faces,
    and a JPEG of the best frame with the face boxed."""

    start_s: float
    end_s: float
    frames: int
    best_s: float
    best_box: Box
    faces: list[int]
    thumbnail: bytes = field(repr=False, default=b"")


@dataclass
class AnalysedVideo(AnalysedImage):
    """A video analysed: `faces` are only the kept faceprints of its tracks (1-3 each), never one per frame."""

    info: VideoInfo | None = None
    tracks: list[VideoTrack] = field(default_factory=list)
    processed_s: float = 0.0
    frames_analysed: int = 0
    rejected_sightings: int = 0
    note: str | None = None
    """Why less than the whole video was indexed (the duration limit, damaged data), or None."""


class VideoAnalyser:
    """Analyses videos with a photo pipeline's embedder and a detector suited to many frames.

    Video frames get the fast path only: HOG without the CNN fallback, turned look or crowd probe (each would
    cost ~0.5-1 s on every frame without a face, and a person in a video is usually seen in many frames, so a
    frame's miss costs little). Frames are detected at `detect_max_side` px; faces are aligned and embedded
    from the full-resolution frame, as for photos.
    """

    def __init__(self, pipeline: FacePipeline):
        s = pipeline.settings
        self.settings = s
        self.limits = VideoLimits(max_pixels=s.video_max_pixels, max_duration_s=s.video_max_duration_s,
                                  max_bytes=s.video_max_bytes)
        self.frames = FacePipeline(s.model_copy(update={"rotate_retry": False, "detail": "fast"}),
                                   detector=HogDetector(s.video_upsample), embedder=pipeline.embedder)

    def analyse(self, path: str | os.PathLike, *, progress: ProgressFn | None = None) -> AnalysedVideo:
        """Analyse one video file; raises VideoError (a FaceIndexError) with a short reason when it cannot be used."""
        s = self.settings
        sampler = FrameSampler(path, sample_fps=s.video_sample_fps, detect_max_side=s.video_detect_max_side,
                               limits=self.limits)
        info = sampler.info
        tracker = Tracker()
        result = AnalysedVideo(info.width, info.height, f"video/{info.codec}", None, info=info)
        previous = None
        for frame in sampler:
            decoded = DecodedImage(detection=frame.detection, scale=frame.scale, width=frame.full.shape[1],
                                   height=frame.full.shape[0], format="video-frame", _full=frame.full)
            faces = self.frames.analyse(decoded).faces
            usable = [f for f in faces if f.ok]
            result.rejected_sightings += len(faces) - len(usable)
            cut = previous is not None and cut_distance(previous[1], frame.signature) >= CUT_DISTANCE
            # An encoder puts a keyframe at a cut (x264's scenecut): then the cut is this very frame; else it
            # fell somewhere between the two analysed frames.
            cut_at = frame.time_s if frame.key or previous is None else (previous[0] + frame.time_s) / 2
            tracker.add(frame.time_s, usable, cut=cut, cut_at=cut_at, image=frame.detection, scale=frame.scale)
            previous = (frame.time_s, frame.signature)
            result.frames_analysed += 1
            if progress is not None:
                progress(frame.time_s, info.duration_s)
        frame_s = 1.0 / info.fps if info.fps else 0.0
        result.processed_s = sampler.processed_s + frame_s  # the last frame lasts one frame
        end = result.processed_s if sampler.limited or sampler.stopped_by else max(
            result.processed_s, info.duration_s or 0.0)
        if sampler.limited:
            result.note = (f"only the first {s.video_max_duration_s:g} s indexed (video_max_duration_s); the video "
                           f"lasts {info.duration_s:g} s" if info.duration_s else
                           f"only the first {s.video_max_duration_s:g} s indexed (video_max_duration_s)")
        elif sampler.stopped_by:
            result.note = sampler.stopped_by
        for track in tracker.finish(end):
            kept = track.kept(s.video_faceprints_per_track)
            first = len(result.faces)
            result.faces.extend(k.face for k in kept)
            best = track.best
            result.tracks.append(VideoTrack(
                start_s=round(track.start_s, 3), end_s=round(min(track.end_s, end), 3), frames=len(track.sightings),
                best_s=round(best.time_s, 3), best_box=best.face.box, faces=list(range(first, len(result.faces))),
                thumbnail=thumbnail(track.best_image, best.face.box, track.best_scale)))
        return result


def analyse_video(pipeline: FacePipeline, source: str | os.PathLike | bytes, *,
                  progress: ProgressFn | None = None) -> AnalysedVideo:
    """Analyse a video given by path, or by its bytes (Ray's read stage hands bytes over): those are written to
    a private temporary file (0600, deleted at once) because FFmpeg seeks in the file and the sampler checks
    that it does not change while read."""
    if not isinstance(source, bytes | bytearray | memoryview):
        return video_analyser(pipeline).analyse(source, progress=progress)
    with tempfile.NamedTemporaryFile(prefix="faceindex-video-", suffix=".bin") as handle:
        handle.write(source)
        handle.flush()
        return video_analyser(pipeline).analyse(handle.name, progress=progress)


def video_analyser(pipeline: FacePipeline) -> VideoAnalyser:
    """The VideoAnalyser sharing `pipeline`'s models, made on first use and kept on the pipeline."""
    analyser = pipeline.__dict__.get("_video_analyser")
    if analyser is None:
        analyser = pipeline.__dict__["_video_analyser"] = VideoAnalyser(pipeline)
    return analyser


def thumbnail(rgb: np.ndarray | None, box: Box, scale: float) -> bytes:
    """A JPEG (longest side THUMB_SIDE px) of a frame with the face boxed; `box` is in full-resolution px and
    `scale` full-resolution px per pixel of `rgb`."""
    if rgb is None:
        return b""
    image = Image.fromarray(rgb)
    factor = min(1.0, THUMB_SIDE / max(image.size))
    if factor < 1.0:
        image = image.resize((max(1, round(image.width * factor)), max(1, round(image.height * factor))),
                             Image.Resampling.BILINEAR)
    k = factor / scale
    left, top, right, bottom = (round(v * k) for v in box)
    draw = ImageDraw.Draw(image)
    draw.rectangle((left, top, right - 1, bottom - 1), outline=(255, 200, 0), width=max(2, round(image.width / 160)))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=82)
    return out.getvalue()


def face_faceprints(faces: list[Face]) -> np.ndarray:
    """The kept faces' faceprints as one (n, 128) array (for the opt-out filter)."""
    return np.stack([f.embedding for f in faces]) if faces else np.zeros((0, 128), np.float32)
