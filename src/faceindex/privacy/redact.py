"""Bystander redaction: blur every face of a photo except the named subject's (also used by access reports)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from faceindex.pipeline.types import Box
from faceindex.privacy.actions import Redacted
from faceindex.privacy.context import PrivacyContext
from faceindex.privacy.obscure import blur_all_but
from faceindex.privacy.probe import strict_threshold
from faceindex.privacy.subjects import Subjects


@dataclass
class RedactResult:
    out: Path
    kept: list[Box] = field(default_factory=list)
    blurred: int = 0
    score: float | None = None
    """Cosine of the kept face against the subject's enrolled faces (None: no face kept)."""


def redact_photo(ctx: PrivacyContext, subjects: Subjects, photo: str | os.PathLike, subject_name: str,
                 out: str | os.PathLike, *, case: str | None = None) -> RedactResult:
    """Write a copy of `photo` where every face except the subject's best match is blurred.

    The subject's face is the one face scoring highest against the subject's enrolled faceprints, and only
    if it reaches the strict threshold: keeping a wrong face would expose a bystander, blurring the
    subject by mistake only costs a retake. One photo shows a person once, so at most one face is kept.
    """
    subject = subjects.get(subject_name)
    refs = subjects.faceprints(subjects.face_ids(subject.id))
    analysis = ctx.analyse(photo, keep_image=True)
    result = RedactResult(Path(out))
    keep: list[Box] = []
    if len(refs) and analysis.accepted:
        threshold = strict_threshold(ctx.policy(), len(refs))
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
    ctx.record(Redacted(purpose=case, subject_id=subject.id, faces=len(analysis.faces), kept=len(keep),
                        blurred=result.blurred))
    return result
