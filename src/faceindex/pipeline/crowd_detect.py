"""The thorough detector for crowds: dlib's CNN (MMOD, on onnxruntime) over an upscaled pyramid, plus HOG.

HOG at one upsampling misses faces under ~80 px in the detection image; the MMOD pyramid enlarged
`upscale` times finds faces down to 80/upscale px (measured: 12 px faces in ultralight__8.jpg need
7x). Its cost grows with the enlarged image's area, so the enlargement is the smaller of what
`min_face` asks for and what `max_megapixels` allows. HOG still runs first (at its own settings, a
small part of the cost) and its faces are kept as they are; the CNN adds the faces no HOG box
overlaps. So the thorough path finds every face HOG finds, with the same box (measured: the CNN's
box of a 30 px face is a few px smaller than HOG's, enough to turn a searchable face "too small").
"""

from __future__ import annotations

import math

import numpy as np

from faceindex.pipeline.detect import HogDetector
from faceindex.pipeline.mmod_runtime import MmodDetector
from faceindex.pipeline.types import Detection, iou

SAME_FACE_IOU = 0.3
"""A HOG box overlapping a CNN box at least this much is the same face: the two detectors frame a
face differently (HOG's box is tighter and lower), so the usual 0.5 would count some faces twice."""


def choose_upscale(width: int, height: int, *, window: int, min_face: int, max_megapixels: float) -> float:
    """Enlargement (>= 1) that brings `min_face` px faces to the detector's `window` px, capped so the
    enlarged image has at most `max_megapixels` (cost ~ area: ~0.06 s per megapixel of the whole
    pyramid on one core, ~2.3x the top level's area with the 3/4 step)."""
    wanted = window / min_face
    allowed = math.sqrt(max_megapixels * 1e6 / max(1, width * height))
    return max(1.0, min(wanted, allowed))


class ThoroughDetector:
    """HOG and the MMOD CNN pyramid on every photo: HOG's faces plus the CNN's new ones (module docstring)."""

    name = "hog+mmod"

    def __init__(self, hog: HogDetector, *, min_face: int = 12, max_megapixels: float = 40.0,
                 step: float = 0.75, threshold: float = 0.0):
        self.hog = hog
        self.min_face = min_face
        self.max_megapixels = max_megapixels
        self.cnn = MmodDetector(threshold=threshold, step=step)

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        height, width = rgb.shape[:2]
        self.cnn.upscale = choose_upscale(width, height, window=min(self.cnn.net.window),
                                          min_face=self.min_face, max_megapixels=self.max_megapixels)
        hog = self.hog.detect(rgb)
        cnn = [Detection(_clip(w.box, width, height), w.score, self.cnn.name) for w in self.cnn.detect_boxes(rgb)]
        cnn = [d for d in cnn if all(iou(d.box, h.box) < SAME_FACE_IOU for h in hog)]
        return hog + [d for d in cnn if d.box[2] > d.box[0] and d.box[3] > d.box[1]]


def _clip(box, width: int, height: int):
    left, top, right, bottom = box
    return (max(0, left), max(0, top), min(width, right), min(height, bottom))
