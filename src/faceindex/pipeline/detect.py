"""Face detectors behind one protocol: dlib HOG (default), dlib CNN, YuNet (ONNX), and fallbacks."""

from __future__ import annotations

import hashlib
import math
import threading
from pathlib import Path
from typing import Protocol

import numpy as np

from faceindex.errors import ModelFileError
from faceindex.pipeline.types import Detection


class FaceDetector(Protocol):
    """Finds faces in an RGB uint8 array; boxes are in that array's pixel coordinates."""

    name: str

    def detect(self, rgb: np.ndarray) -> list[Detection]: ...


def _clip(left: float, top: float, right: float, bottom: float, rgb: np.ndarray) -> tuple[int, int, int, int]:
    height, width = rgb.shape[:2]
    return (max(0, int(left)), max(0, int(top)), min(width, int(right)), min(height, int(bottom)))


MAX_UPSAMPLED_SIDE = 2048
"""Upsampling stops once the image's longest side would pass this (px): a 1600 px photo is not
doubled to 3200 px (~4x the time) to find faces smaller than 2.5 % of its width."""


def effective_upsample(rgb: np.ndarray, upsample: int, max_side: int = MAX_UPSAMPLED_SIDE) -> int:
    """The number of upsampling passes actually worth running on this image."""
    side = max(rgb.shape[:2])
    while upsample > 0 and side * 2**upsample > max_side:
        upsample -= 1
    return upsample


_frontal_lock = threading.Lock()
_frontal_template: bytes | None = None


def new_frontal_detector():
    """A new dlib frontal (HOG) face detector object, ~1 ms after the first of the process.

    dlib builds its built-in detector by parsing the model from text: ~0.25 CPU-s per call, paid by each
    HogDetector (the fast path, the turned look, the thorough path) and each thread of each, in every
    worker process. The first one is pickled here and the others are unpickled copies: the same weights,
    so the same detections, for a thousandth of the cost. Each call returns its own object (one per thread:
    see HogDetector).
    """
    global _frontal_template
    import pickle

    import dlib

    with _frontal_lock:
        if _frontal_template is None:
            detector = dlib.get_frontal_face_detector()
            _frontal_template = pickle.dumps(detector)
            return detector
    return pickle.loads(_frontal_template)  # noqa: S301 - bytes pickled by this process a moment ago


class HogDetector:
    """dlib's HOG + linear SVM frontal detector: ~40 ms for a 250 px image on one core.

    `upsample` doubles the image that many times first: higher numbers find smaller faces
    (about 80 px → 40 px minimum per step) at ~4x the cost per step; it is reduced on large
    images (see MAX_UPSAMPLED_SIDE).
    """

    name = "dlib-hog"

    def __init__(self, upsample: int = 1):
        self.upsample = upsample
        self._make = new_frontal_detector
        # One dlib detector per thread: its scan keeps scratch state, and two threads in one detector abort the
        # process (seen as a SIGABRT/SIGSEGV of `faceindex serve` under concurrent searches). Creating one is
        # cheap (the HOG filters are built into dlib), so each thread gets its own on first use.
        self._local = threading.local()
        self._local.detector = self._make()

    @property
    def _detector(self):
        detector = getattr(self._local, "detector", None)
        if detector is None:
            detector = self._local.detector = self._make()
        return detector

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        return self.detect_near(rgb, 0.0)[0]

    def detect_near(self, rgb: np.ndarray, floor: float) -> tuple[list[Detection], float]:
        """Faces (score >= 0) and the best score in [floor, 0) of the windows HOG rejected (-inf if none).

        The second value says how close HOG came to finding a face; one scan gives both (the
        window scores are computed anyway), so it costs nothing extra.
        """
        rects, scores, _ = self._detector.run(rgb, effective_upsample(rgb, self.upsample), min(floor, 0.0))
        found = [
            Detection(_clip(r.left(), r.top(), r.right() + 1, r.bottom() + 1, rgb), float(s), self.name)
            for r, s in zip(rects, scores, strict=True)
            if s >= 0.0
        ]
        return found, max((float(s) for s in scores if s < 0.0), default=-math.inf)


class CnnDetector:
    """dlib's MMOD CNN detector: finds more turned and partly covered faces; ~7 s per megapixel on one core.

    `max_side` (px), when set, shrinks the image first so its longest side is at most that: the
    cost falls with the pixel count, and faces smaller than ~80 px in the shrunk image (the
    detector's window, without upsampling) are no longer found. As the fallback of `hog+cnn` it
    runs at 400 px without upsampling (~0.1 MP, ~1 s): it is there for the faces HOG misses
    because of pose, which are usually large, not for small faces (HOG's upsampling finds those).
    """

    name = "dlib-cnn"

    def __init__(self, upsample: int = 1, max_side: int | None = None):
        import dlib
        import face_recognition_models

        self.upsample = upsample
        self.max_side = max_side
        self._detector = dlib.cnn_face_detection_model_v1(face_recognition_models.cnn_face_detector_model_location())
        self._lock = threading.Lock()  # a dlib net keeps its layer outputs: one caller at a time

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        small, scale = _shrink(rgb, self.max_side)
        with self._lock:
            found = self._detector(small, effective_upsample(small, self.upsample))
        return [
            Detection(
                _clip(d.rect.left() * scale, d.rect.top() * scale, (d.rect.right() + 1) * scale,
                      (d.rect.bottom() + 1) * scale, rgb),
                float(d.confidence),
                self.name,
            )
            for d in found
        ]


def _shrink(rgb: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
    """`rgb` resized so its longest side is <= max_side, and the factor back to `rgb` pixels (>= 1)."""
    height, width = rgb.shape[:2]
    if max_side is None or max(height, width) <= max_side:
        return rgb, 1.0
    from PIL import Image

    scale = max(height, width) / max_side
    size = (max(1, round(width / scale)), max(1, round(height / scale)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR)), scale


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class YuNetDetector:
    """YuNet (OpenCV zoo, MIT) through OpenCV's FaceDetectorYN: fast and finds small/turned faces.

    Needs `opencv-python-headless` and the ONNX file; the file's sha256 is checked before use
    so a swapped or corrupted model is refused instead of silently changing results.
    """

    name = "yunet"

    def __init__(self, model_path: Path, *, sha256: str | None = None, score_threshold: float = 0.7):
        model_path = Path(model_path)
        if not model_path.is_file():
            raise ModelFileError(f"YuNet model not found at {model_path}")
        if sha256 and sha256_file(model_path) != sha256:
            raise ModelFileError(f"YuNet model {model_path} fails its sha256 check")
        try:
            import cv2
        except ImportError as exc:
            raise ModelFileError("YuNet needs opencv: pip install 'faceindex[yunet]'") from exc
        self._cv2 = cv2
        self._detector = cv2.FaceDetectorYN.create(str(model_path), "", (320, 320), score_threshold, 0.3, 5000)
        self._lock = threading.Lock()  # the input size is state of the detector: one caller at a time

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        height, width = rgb.shape[:2]
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        with self._lock:
            self._detector.setInputSize((width, height))
            _, faces = self._detector.detect(bgr)
        if faces is None:
            return []
        return [
            Detection(_clip(x, y, x + w, y + h, rgb), float(row[-1]), self.name)
            for row in faces
            for x, y, w, h in [row[:4]]
        ]


class FallbackDetector:
    """Runs `primary`; only where it finds nothing, runs `secondary` (costly detectors run rarely).

    `gate` (a HOG score < 0, used when `primary` is a HogDetector): the secondary runs only if HOG's
    best rejected window scored at least this, i.e. HOG saw something nearly face-like. Photos with
    nothing of the kind (landscapes, animals, objects) then skip the secondary: measured at -0.5,
    12 of the 13 photos of shared/faces/nonfaces skip it, while all 25 LFW DevTrain images where HOG
    finds no face pass (scores -0.01 to -0.49), as do 3 of the 4 missed turned/masked faces of
    shared/faces/single (the fourth scored -0.64). None runs the secondary on every miss.
    """

    def __init__(self, primary: FaceDetector, secondary: FaceDetector, gate: float | None = None):
        self.primary = primary
        self.secondary = secondary
        self.gate = gate
        self.name = f"{primary.name}+{secondary.name}"

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        if self.gate is not None and isinstance(self.primary, HogDetector):
            found, near = self.primary.detect_near(rgb, self.gate)
            if found or near < self.gate:
                return found
            return self.secondary.detect(rgb)
        return self.primary.detect(rgb) or self.secondary.detect(rgb)


FALLBACK_CNN_MAX_SIDE = 400
"""Longest side (px) of the image the dlib CNN sees when it is a fallback (`hog+cnn`), run without
upsampling: ~0.1 MP, about 1 s on one core, and it still finds faces filling >= ~20 % of the photo.
On LFW DevTrain it found the face in all 25 images (of 3 443) where HOG found none."""
FALLBACK_GATE = -0.5
"""HOG score a rejected window must reach for the CNN fallback to run (see FallbackDetector)."""


def build_detector(
    name: str,
    *,
    upsample: int = 1,
    yunet_model: Path | None = None,
    yunet_sha256: str | None = None,
    yunet_score: float = 0.7,
    fallback_max_side: int | None = FALLBACK_CNN_MAX_SIDE,
    fallback_gate: float | None = FALLBACK_GATE,
) -> FaceDetector:
    """Build a detector from its settings name: hog, cnn, yunet, hog+yunet, hog+cnn.

    A detector after '+' runs only where the ones before it found nothing. A CNN in that place
    runs on the image shrunk to `fallback_max_side` px without upsampling (None: full size with
    `upsample`), and after HOG only where HOG's best rejected window scored >= `fallback_gate`
    (see FallbackDetector; None: always): at full size on every photo without a face it would
    cost seconds each. A YuNet fallback (~10-80 ms) runs on every miss at full detection size.
    """

    def single(part: str, fallback: bool) -> FaceDetector:
        if part == "hog":
            return HogDetector(upsample)
        if part == "cnn":
            return CnnDetector(0, fallback_max_side) if fallback and fallback_max_side else CnnDetector(upsample)
        if part == "yunet":
            if yunet_model is None:
                raise ModelFileError("detector 'yunet' needs a model path (FACEINDEX_YUNET_MODEL)")
            return YuNetDetector(yunet_model, sha256=yunet_sha256, score_threshold=yunet_score)
        raise ModelFileError(f"unknown detector {part!r}")

    parts = name.split("+")
    detector = single(parts[0], False)
    for part in parts[1:]:
        detector = FallbackDetector(detector, single(part, True), fallback_gate if part == "cnn" else None)
    return detector
