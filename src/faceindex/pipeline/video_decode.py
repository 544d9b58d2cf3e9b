"""Read untrusted video files with PyAV: sniff the container, check limits, yield sampled frames with cut signatures."""

from __future__ import annotations

import contextlib
import os
import queue
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from faceindex.errors import VideoError

# Containers we take, by their magic bytes (the file name is never consulted).
_ISO_VIDEO_BRANDS = (b"isom", b"iso2", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42", b"avc1", b"qt  ", b"M4V ",
                     b"M4VH", b"M4VP", b"3gp4", b"3gp5", b"3gp6", b"3g2a", b"dash", b"MSNV", b"f4v ", b"XAVC")
_QUICKTIME_ATOMS = (b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot")
TS_PACKET = 188


def sniff_video(head: bytes) -> str | None:
    """The container family named by a file's first bytes ('mp4', 'mov', 'matroska', 'avi', 'mpegts', 'mpegps'),
    or None. Give at least the first 600 bytes (an MPEG transport stream is recognised by 3 sync bytes).

    HEIC/AVIF photos are ISO media too: their brands are not in the video list, so they stay photos.
    """
    head = bytes(head[:600])
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _ISO_VIDEO_BRANDS:
            return "mov" if brand == b"qt  " else "mp4"
        return None
    if head[4:8] in _QUICKTIME_ATOMS and len(head) >= 8:
        return "mov"  # an old QuickTime file without ftyp
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"  # mkv and webm (EBML)
    if head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"AVIX"):
        return "avi"
    if len(head) > 2 * TS_PACKET and all(head[i] == 0x47 for i in (0, TS_PACKET, 2 * TS_PACKET)):
        return "mpegts"
    if head[:4] == b"\x00\x00\x01\xba":
        return "mpegps"
    return None


def is_video_file(source: str | os.PathLike | bytes) -> bool:
    """Whether a file (or its bytes) sniffs as a video container (False when unreadable: the photo path then
    reports why)."""
    if isinstance(source, bytes | bytearray | memoryview):
        return sniff_video(bytes(source[:600])) is not None
    try:
        with open(source, "rb") as handle:
            return sniff_video(handle.read(600)) is not None
    except (OSError, ValueError):  # ValueError: a NUL byte in the path
        return False


@dataclass(frozen=True)
class VideoLimits:
    """What a video may cost. max_pixels: width x height of a frame; max_duration_s: seconds indexed (the rest of a
    longer video is left out, and said so); max_bytes: size of the file."""

    max_pixels: int = 3840 * 2160
    max_duration_s: float = 4 * 3600.0
    max_bytes: int = 64 * 2**30


@dataclass(frozen=True)
class VideoInfo:
    """What the header says: seconds (None when the container does not say), frames per second, size, codec."""

    container: str
    codec: str
    width: int
    height: int
    fps: float | None
    duration_s: float | None
    variable_rate: bool = False


@dataclass
class SampledFrame:
    """One frame chosen for analysis: its time (seconds from the first frame), the RGB pixels at full size and at
    detection size, whether it is a keyframe, and a colour signature for spotting shot cuts."""

    time_s: float
    key: bool
    full: np.ndarray = field(repr=False)
    detection: np.ndarray = field(repr=False)
    scale: float
    signature: np.ndarray = field(repr=False)


_AV_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, EOFError, RuntimeError, IndexError,
                                               MemoryError, UnicodeDecodeError)


def _av():
    import av  # imported on first use: PyAV loads FFmpeg's libraries (~0.1 s)

    av.logging.set_level(av.logging.PANIC)  # FFmpeg's warnings on damaged input would flood stderr
    return av


def _check_file(path: str | os.PathLike, limits: VideoLimits) -> os.stat_result:
    try:
        info = os.stat(path)
    except FileNotFoundError as exc:
        raise VideoError("file not found") from exc
    except OSError as exc:
        raise VideoError(f"cannot read file ({exc.strerror or exc})") from exc
    if not stat.S_ISREG(info.st_mode):
        raise VideoError("not a regular file")
    if info.st_size == 0:
        raise VideoError("empty file (0 bytes)")
    if info.st_size > limits.max_bytes:
        raise VideoError(f"video file is {info.st_size:,} bytes, over the {limits.max_bytes:,}-byte limit "
                         "(video_max_bytes)")
    return info


def _describe_av_error(exc: BaseException) -> str:
    """FFmpeg's reason without PyAV's decorations (error number, file name): the file is named by the caller."""
    text = getattr(exc, "strerror", None) or str(exc).strip() or type(exc).__name__
    return str(text).split(": '", 1)[0]


def open_video(path: str | os.PathLike, limits: VideoLimits):
    """(container, stream, VideoInfo) of a readable video; raises VideoError with a short reason otherwise."""
    _check_file(path, limits)
    av = _av()
    try:
        container = av.open(os.fspath(path), metadata_errors="ignore")
    except _AV_ERRORS as exc:
        raise VideoError(f"not a readable video ({_describe_av_error(exc)})") from exc
    try:
        if not container.streams.video:
            what = "audio only" if container.streams.audio else "no stream of pictures"
            raise VideoError(f"no video stream ({what})")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        if ctx is None or not getattr(ctx, "name", None):
            raise VideoError("unsupported video codec (FFmpeg has no decoder for it)")
        width, height = int(ctx.width or 0), int(ctx.height or 0)
        if width <= 0 or height <= 0:
            raise VideoError(f"video stream without a frame size (codec {ctx.name})")
        if width * height > limits.max_pixels:
            raise VideoError(f"video frames are {width}x{height}, over the {limits.max_pixels:,}-pixel limit "
                             "(video_max_pixels)")
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else None
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        guessed = stream.guessed_rate
        variable = bool(rate and guessed and abs(float(rate) - float(guessed)) > 0.01 * float(guessed))
        with open(path, "rb") as handle:  # our family name (mp4 vs mov) where the bytes say; else FFmpeg's
            family = sniff_video(handle.read(600)) or container.format.name.split(",")[0]
        if family == "matroska" and ctx.name in ("vp8", "vp9", "av1"):
            family = "webm"
        info = VideoInfo(family, ctx.name, width, height, fps, duration, variable)
    except BaseException:
        container.close()
        raise
    return container, stream, info


ProgressFn = Callable[[float, float | None], None]
"""progress(seconds_processed, duration_seconds_or_None), called after each analysed frame."""


class FrameSampler:
    """Decodes a video on a background thread (FFmpeg's own threads decode; this thread also converts) and yields
    keyframes plus one frame every `1 / sample_fps` seconds, in time order.

    Every frame is decoded (inter frames need their references) but only the taken ones are converted to RGB,
    which is most of the saving over converting each frame. A keyframe closer than half a step to the frame taken
    before it is skipped, so all-intra codecs (MJPEG, ProRes) are not analysed at their full rate. Frame times
    come from each frame's own timestamp, so variable-frame-rate video is sampled by time, not by frame count.
    """

    def __init__(self, path: str | os.PathLike, *, sample_fps: float = 1.0, detect_max_side: int = 960,
                 limits: VideoLimits | None = None):
        if sample_fps <= 0:
            raise ValueError("sample_fps must be > 0")
        self.path = path
        self.step = 1.0 / sample_fps
        self.detect_max_side = detect_max_side
        self.limits = limits or VideoLimits()
        self._stat = _check_file(path, self.limits)
        self.container, self.stream, self.info = open_video(path, self.limits)
        self.processed_s = 0.0  # seconds of video decoded so far (the time of the last frame seen)
        self.limited = False  # stopped at limits.max_duration_s
        self.stopped_by: str | None = None  # why decoding ended early (damaged data), None when it ran to the end
        self.frames_decoded = 0

    def __iter__(self) -> Iterator[SampledFrame]:
        out: queue.Queue = queue.Queue(maxsize=4)
        stop = threading.Event()
        worker = threading.Thread(target=self._produce, args=(out, stop), name="faceindex-video-decode", daemon=True)
        worker.start()
        try:
            while True:
                item = out.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            while worker.is_alive():  # unblock a producer waiting on a full queue
                with contextlib.suppress(queue.Empty):
                    out.get(timeout=0.05)
            self.container.close()
        self._check_unchanged()

    def _produce(self, out: queue.Queue, stop: threading.Event) -> None:
        try:
            for frame in self._taken(stop):
                if stop.is_set():
                    return
                out.put(frame)
            out.put(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the consuming thread, which raises it
            out.put(exc)

    def _taken(self, stop: threading.Event) -> Iterator[SampledFrame]:
        stream = self.stream
        stream.thread_type = "AUTO"
        start: float | None = None
        last_taken = -np.inf
        next_sample = 0.0
        fallback_rate = self.info.fps or 25.0
        try:
            for n, frame in enumerate(self.container.decode(stream)):
                if stop.is_set():
                    return
                self.frames_decoded = n + 1
                t = frame.time if frame.time is not None else n / fallback_rate
                if start is None:
                    start = t
                t -= start
                if t > self.limits.max_duration_s:
                    self.limited = True
                    return
                if t < self.processed_s - 1e-6:
                    continue  # a timestamp going backwards (damaged or spliced stream): never sample into the past
                self.processed_s = t
                due = t >= next_sample - 1e-6
                key = bool(frame.key_frame) and t - last_taken >= self.step / 2
                if not (due or key):
                    continue
                if due:
                    next_sample = (np.floor(t / self.step + 1e-6) + 1) * self.step
                last_taken = t
                self._check_unchanged()  # a stat per analysed frame: stop at once, not after hours of decoding
                yield self._convert(frame, t, bool(frame.key_frame))
        except _AV_ERRORS as exc:
            if self.frames_decoded == 0:
                raise VideoError(f"cannot decode the video ({_describe_av_error(exc)})") from exc
            self.stopped_by = f"damaged video data after {self.processed_s:.3f} s ({_describe_av_error(exc)})"

    def _convert(self, frame, t: float, key: bool) -> SampledFrame:
        width, height = frame.width, frame.height
        full = frame.to_ndarray(format="rgb24")
        side = max(width, height)
        if side > self.detect_max_side:
            scale = side / self.detect_max_side
            small = frame.reformat(width=max(1, round(width / scale)), height=max(1, round(height / scale)),
                                   format="rgb24").to_ndarray()
            scale = width / small.shape[1]
        else:
            small, scale = full, 1.0
        return SampledFrame(t, key, full, small, scale, signature(small))

    def _check_unchanged(self) -> None:
        """A file rewritten while it was read gives tracks of neither version: refuse it (a later run reads it)."""
        try:
            now = os.stat(self.path)
        except OSError as exc:
            raise VideoError("file changed while being read (it is gone now)") from exc
        if (now.st_size, now.st_mtime_ns) != (self._stat.st_size, self._stat.st_mtime_ns):
            raise VideoError("file changed while being read: nothing recorded, a later run reads it again")


HIST_BINS = 16


def signature(rgb: np.ndarray) -> np.ndarray:
    """Colour histograms (HIST_BINS per channel, each summing to 1) of a frame's 4 quadrants, for cut detection.

    Quadrants keep some layout: two shots of similar colours but different framing still differ. Computed on a
    copy subsampled to ~1/16 of the pixels (the histogram barely changes; its cost goes from ~3 ms to ~0.2 ms).
    """
    small = rgb[::4, ::4]
    h, w = small.shape[:2]
    parts = []
    for rows in (slice(0, h // 2), slice(h // 2, h)):
        for cols in (slice(0, w // 2), slice(w // 2, w)):
            block = small[rows, cols].reshape(-1, 3) // (256 // HIST_BINS)
            for channel in range(3):
                counts = np.bincount(block[:, channel], minlength=HIST_BINS).astype(np.float32)
                parts.append(counts / max(1.0, counts.sum()))
    return np.concatenate(parts)


def cut_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean L1 distance of two signatures' histograms: 0 for identical frames, 2 for frames sharing no colour."""
    return float(np.abs(a - b).sum() / (len(a) / HIST_BINS))
