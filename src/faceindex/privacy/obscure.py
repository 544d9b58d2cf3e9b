"""Obscuring faces in pixels: pixelate-then-blur one box, blur every face but the kept ones, detect afresh."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from PIL import Image, ImageFilter

from faceindex.pipeline.types import Box, iou, scale_box

if TYPE_CHECKING:
    from faceindex.pipeline.analyse import FacePipeline
    from faceindex.pipeline.decode import DecodedImage

MARGIN = 0.2
"""Fraction of the box side added on every side before blurring: covers hair, ears and jaw line,
which a tight detector box leaves visible and which help re-identification."""
BLOCKS = 6
"""A blurred face keeps at most BLOCKS x BLOCKS colour cells: pixelation first (destroys detail that
a Gaussian blur alone leaves partly recoverable by deconvolution), then a blur to hide the cell grid."""


def obscure(image: Image.Image, box: Box) -> None:
    """Pixelate then blur one face region of `image` in place (box in the image's own pixels)."""
    left, top, right, bottom = box
    pad_x, pad_y = round((right - left) * MARGIN), round((bottom - top) * MARGIN)
    region = (max(0, left - pad_x), max(0, top - pad_y), min(image.width, right + pad_x),
              min(image.height, bottom + pad_y))
    width, height = region[2] - region[0], region[3] - region[1]
    if width < 2 or height < 2:
        return
    patch = image.crop(region).resize((BLOCKS, BLOCKS), Image.Resampling.BOX)
    patch = patch.resize((width, height), Image.Resampling.NEAREST)
    patch = patch.filter(ImageFilter.GaussianBlur(radius=max(2.0, min(width, height) / (2 * BLOCKS))))
    image.paste(patch, region[:2])


def detect_boxes(pipeline: FacePipeline, decoded: DecodedImage) -> list[Box]:
    """Fresh face boxes (full-resolution pixels) of a decoded photo: faces that were never stored (opted-out
    people, faces from a changed file) must be blurred too, so redaction never trusts the catalog alone."""
    return [scale_box(d.box, decoded.scale, decoded.width, decoded.height)
            for d in pipeline.detector.detect(decoded.detection)]


def blur_all_but(image: Image.Image, keep: Iterable[Box], others: Iterable[Box], *, overlap: float = 0.3) -> int:
    """Blur every box of `others` that does not overlap a kept box by IoU >= `overlap`; returns boxes blurred."""
    keep = list(keep)
    blurred = 0
    for box in others:
        if all(iou(box, k) < overlap for k in keep):
            obscure(image, box)
            blurred += 1
    return blurred
