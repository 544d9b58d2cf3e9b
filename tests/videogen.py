"""Make test videos with PyAV from real photos: who appears from when to when is then known exactly."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Segment:
    """`seconds` of video showing `photo` (None: a blank grey frame), slowly zooming in so frames differ."""

    photo: Path | None
    seconds: float
    label: str | None = None
    """Who the segment shows (None: nobody)."""


def frame_of(photo: Path | Image.Image | None, size: tuple[int, int], zoom: float) -> np.ndarray:
    """The photo fitted into `size` (letterboxed on grey), enlarged `zoom` times about its centre."""
    width, height = size
    canvas = Image.new("RGB", size, (96, 96, 96))
    if photo is not None:
        image = photo if isinstance(photo, Image.Image) else Image.open(photo).convert("RGB")
        fit = min(width / image.width, height / image.height) * zoom
        image = image.resize((max(1, round(image.width * fit)), max(1, round(image.height * fit))),
                             Image.Resampling.BILINEAR)
        canvas.paste(image, ((width - image.width) // 2, (height - image.height) // 2))
    return np.asarray(canvas)


def make_video(path: Path, segments: Sequence[Segment], *, size: tuple[int, int] = (480, 270), fps: int = 10,
               codec: str = "libx264", pix_fmt: str = "yuv420p", options: dict | None = None) -> list[tuple]:
    """Encode the segments one after another; returns (label, start_s, end_s) of each labelled segment."""
    container = av.open(str(path), "w")
    stream = container.add_stream(codec, rate=fps)
    stream.width, stream.height = size
    stream.pix_fmt = pix_fmt
    if codec == "libx264":
        # veryfast keeps x264's scene-cut detection (ultrafast turns it off): a keyframe starts each segment
        stream.options = {"preset": "veryfast", "crf": "23", **(options or {})}
    truth, t = [], 0.0
    for seg in segments:
        n = round(seg.seconds * fps)
        photo = None if seg.photo is None else Image.open(seg.photo).convert("RGB")
        photo = photo if photo is None or max(photo.size) <= 2 * max(size) else _shrunk(photo, 2 * max(size))
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(frame_of(photo, size, 1.0 + 0.08 * i / max(1, n)), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        if seg.label is not None:
            truth.append((seg.label, t, t + n / fps))
        t += n / fps
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return truth


def _shrunk(image: Image.Image, side: int) -> Image.Image:
    k = side / max(image.size)
    return image.resize((round(image.width * k), round(image.height * k)), Image.Resampling.BILINEAR)


def make_vfr_video(path: Path, photo: Path, times: Sequence[float], *, size: tuple[int, int] = (320, 240)) -> None:
    """A Matroska video whose frames carry the given timestamps (seconds, irregular: variable frame rate)."""
    container = av.open(str(path), "w", format="matroska")
    stream = container.add_stream("libx264", rate=25)
    stream.width, stream.height = size
    stream.pix_fmt = "yuv420p"
    stream.options = {"preset": "ultrafast"}
    stream.codec_context.time_base = Fraction(1, 1000)
    for i, t in enumerate(times):
        frame = av.VideoFrame.from_ndarray(frame_of(photo, size, 1.0 + 0.02 * i), format="rgb24")
        frame.pts = round(t * 1000)
        frame.time_base = Fraction(1, 1000)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()


def make_audio_only(path: Path, seconds: float = 1.0) -> None:
    """An MP4 file holding one AAC audio stream (a tone) and no video."""
    container = av.open(str(path), "w", format="mp4")
    stream = container.add_stream("aac", rate=44100)
    samples = int(seconds * 44100)
    tone = (0.2 * np.sin(np.arange(samples) * 2 * np.pi * 440 / 44100)).astype(np.float32)[None, :]
    for start in range(0, samples, 1024):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, start:start + 1024]), format="fltp",
                                           layout="mono")
        frame.sample_rate = 44100
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
