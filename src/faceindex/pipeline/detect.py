"""Face detectors behind one protocol: dlib HOG (default), dlib CNN, YuNet (ONNX), and fallbacks."""

from __future__ import annotations

import hashlib
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


class HogDetector:
    """dlib's HOG + linear SVM frontal detector: ~40 ms for a 250 px image on one core.

    `upsample` doubles the image that many times first: higher numbers find smaller faces
    (about 80 px → 40 px minimum per step) at ~4x the cost per step; it is reduced on large
    images (see MAX_UPSAMPLED_SIDE).
    """

    name = "dlib-hog"

    def __init__(self, upsample: int = 1):
        import dlib

        self.upsample = upsample
        self._detector = dlib.get_frontal_face_detector()

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        rects, scores, _ = self._detector.run(rgb, effective_upsample(rgb, self.upsample), 0.0)
        return [
            Detection(_clip(r.left(), r.top(), r.right() + 1, r.bottom() + 1, rgb), float(s), self.name)
            for r, s in zip(rects, scores, strict=True)
        ]


class CnnDetector:
    """dlib's MMOD CNN detector: finds more rotated and small faces; ~5–10 s per megapixel on CPU."""

    name = "dlib-cnn"

    def __init__(self, upsample: int = 1):
        import dlib
        import face_recognition_models

        self.upsample = upsample
        self._detector = dlib.cnn_face_detection_model_v1(face_recognition_models.cnn_face_detector_model_location())

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        found = self._detector(rgb, effective_upsample(rgb, self.upsample))
        return [
            Detection(
                _clip(d.rect.left(), d.rect.top(), d.rect.right() + 1, d.rect.bottom() + 1, rgb),
                float(d.confidence),
                self.name,
            )
            for d in found
        ]


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

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        height, width = rgb.shape[:2]
        self._detector.setInputSize((width, height))
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        _, faces = self._detector.detect(bgr)
        if faces is None:
            return []
        return [
            Detection(_clip(x, y, x + w, y + h, rgb), float(row[-1]), self.name)
            for row in faces
            for x, y, w, h in [row[:4]]
        ]


class FallbackDetector:
    """Runs `primary`; only where it finds nothing, runs `secondary` (costly detectors run rarely)."""

    def __init__(self, primary: FaceDetector, secondary: FaceDetector):
        self.primary = primary
        self.secondary = secondary
        self.name = f"{primary.name}+{secondary.name}"

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        return self.primary.detect(rgb) or self.secondary.detect(rgb)


def build_detector(
    name: str,
    *,
    upsample: int = 1,
    yunet_model: Path | None = None,
    yunet_sha256: str | None = None,
    yunet_score: float = 0.7,
) -> FaceDetector:
    """Build a detector from its settings name: hog, cnn, yunet, hog+yunet, hog+cnn."""

    def single(part: str) -> FaceDetector:
        if part == "hog":
            return HogDetector(upsample)
        if part == "cnn":
            return CnnDetector(upsample)
        if part == "yunet":
            if yunet_model is None:
                raise ModelFileError("detector 'yunet' needs a model path (FACEINDEX_YUNET_MODEL)")
            return YuNetDetector(yunet_model, sha256=yunet_sha256, score_threshold=yunet_score)
        raise ModelFileError(f"unknown detector {part!r}")

    parts = name.split("+")
    detector = single(parts[0])
    for part in parts[1:]:
        detector = FallbackDetector(detector, single(part))
    return detector
