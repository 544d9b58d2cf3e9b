"""Plain data passed between pipeline stages: boxes, detections, faces with faceprints."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Box = tuple[int, int, int, int]
"""A face box as (left, top, right, bottom) in the original image's pixels, right/bottom exclusive."""


@dataclass(frozen=True)
class Detection:
    """One face found by a detector, in the pixel coordinates of the array it was run on."""

    box: Box
    score: float
    detector: str


@dataclass
class Face:
    """A detected face in full-resolution coordinates, with its quality verdict and faceprint.

    `embedding` is an L2-normalised float32 vector (None when the face was rejected for quality
    before embedding). `landmarks` are the 5 alignment points (x, y) in full-resolution pixels.
    """

    box: Box
    score: float
    detector: str
    landmarks: list[tuple[float, float]]
    size_px: int
    blur: float
    rejected: str | None = None
    embedding: np.ndarray | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.rejected is None and self.embedding is not None


def scale_box(box: Box, scale: float, width: int, height: int) -> Box:
    """Map a box from a downscaled image to full resolution and clip it to the image."""
    left, top, right, bottom = (round(v * scale) for v in box)
    return (max(0, left), max(0, top), min(width, right), min(height, bottom))


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 = disjoint, 1 = identical)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Return float32 rows scaled to unit length (cosine similarity then equals the dot product)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
