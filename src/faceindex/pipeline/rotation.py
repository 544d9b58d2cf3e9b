"""Quarter-turn rotations of an image and the mapping of boxes and points back to the unrotated photo."""

from __future__ import annotations

import numpy as np

from faceindex.pipeline.types import Box

RETRY_TURNS = (3, 1, 2)
"""Quarter turns (numpy `rot90` k, counter-clockwise) tried, in order, on a photo without usable faces
and not turned by its EXIF orientation tag: 3 = turned 90° clockwise (the usual sideways phone or scanner
picture), then 1 = 90° counter-clockwise, then 2 = upside down. Each costs one primary-detector run."""

TURNED_HOG_UPSAMPLE = 0
"""HOG upsampling passes on a turned photo: none finds faces from ~80 px of the detection image up (the
large faces of sideways portraits and scans) at about a quarter of the cost of the default one pass."""

TURNED_MIN_SCORE = {"dlib-hog": 1.0, "dlib-cnn": 1.0, "yunet": 0.9}
"""Detector score a face found on a turned photo must reach (by detector name; others: the detector's own
cut-off). Three more looks at a photo triple its chances of a false face, so the bar is raised: on
shared/faces the turned true faces scored 1.36-2.24 with dlib HOG and the one false face (a dog, turned
270°) 0.66."""


def rotate(image: np.ndarray, turns: int) -> np.ndarray:
    """The image turned `turns` quarter turns counter-clockwise, as a fresh array with plain C strides.

    dlib checks the strides themselves, not numpy's contiguity flag: `np.ascontiguousarray` returns the
    rotated view unchanged when an axis has length 1 (numpy ignores the stride of such an axis), and a
    1-pixel-high photo turned then reached dlib with a negative column stride (a RuntimeError). A new array
    always has the plain strides; the copy costs what ascontiguousarray's copy cost on every other photo.
    """
    turned = np.rot90(image, turns)
    out = np.empty(turned.shape, dtype=image.dtype)
    out[...] = turned
    return out


def unrotate_point(x: float, y: float, turns: int, width: int, height: int) -> tuple[float, float]:
    """Map a point of the rotated image back to the original image of `width` x `height` pixels.

    Points are continuous pixel coordinates (0..width, 0..height), so the mapping is exact at the
    borders: a quarter turn counter-clockwise sends original (x, y) to (y, width - x).
    """
    turns %= 4
    if turns == 0:
        return x, y
    if turns == 1:
        return width - y, x
    if turns == 2:
        return width - x, height - y
    return y, height - x


def unrotate_box(box: Box, turns: int, width: int, height: int) -> Box:
    """Map a (left, top, right, bottom) box of the rotated image back to the original image."""
    (x0, y0), (x1, y1) = (unrotate_point(box[0], box[1], turns, width, height),
                          unrotate_point(box[2], box[3], turns, width, height))
    return (int(round(min(x0, x1))), int(round(min(y0, y1))), int(round(max(x0, x1))), int(round(max(y0, y1))))
