"""Bystander redaction: blur every face of a photo except the named subject's (also used by access reports)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageFilter

from faceindex.pipeline.types import Box, iou, scale_box
from faceindex.privacy.audit import AuditEvent
from faceindex.privacy.probe import strict_threshold

if TYPE_CHECKING:
    from faceindex.engine import Engine
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


@dataclass
class RedactResult:
    out: Path
    kept: list[Box] = field(default_factory=list)
    blurred: int = 0
    score: float | None = None
    """Cosine of the kept face against the subject's enrolled faces (None: no face kept)."""


def redact_photo(engine: Engine, photo: str | os.PathLike, subject_name: str, out: str | os.PathLike, *,
                 case: str | None = None) -> RedactResult:
    """Write a copy of `photo` where every face except the subject's best match is blurred.

    The subject's face is the one face scoring highest against the subject's enrolled faceprints, and only
    if it reaches the strict threshold: keeping a wrong face would expose a bystander, blurring the
    subject by mistake only costs a retake. One photo shows a person once, so at most one face is kept.
    """
    subjects = engine.privacy.subjects
    subject = subjects.get(subject_name)
    refs = engine.privacy.faceprints(subjects.face_ids(subject.id))
    analysis = engine.pipeline.analyse(photo, keep_image=True)
    result = RedactResult(Path(out))
    keep: list[Box] = []
    if len(refs) and analysis.accepted:
        threshold = strict_threshold(engine.policy, len(refs))
        scored = [(float(np.max(refs @ f.embedding)), f.box) for f in analysis.accepted]
        best, box = max(scored)
        if best >= threshold:
            keep, result.score = [box], round(best, 4)
    image = Image.fromarray(analysis.decoded.full())
    # analyse() just ran the detector on this very file: every face it found is here, usable or not.
    result.blurred = blur_all_but(image, keep, [f.box for f in analysis.faces if f.box not in keep])
    result.kept = keep
    result.out.parent.mkdir(parents=True, exist_ok=True)
    image.save(result.out, quality=92) if result.out.suffix.lower() in (".jpg", ".jpeg") else image.save(result.out)
    with engine.catalog.transaction():
        engine.audit.record(AuditEvent("redact", actor=engine.actor, purpose=case,
                                       params={"subject_id": subject.id},
                                       counts={"faces": len(analysis.faces), "kept": len(keep),
                                               "blurred": result.blurred}))
    return result
