"""Which face of a photo is "the" face: the one its label means, or the one a 1:1 comparison uses."""

from __future__ import annotations

import math
from collections.abc import Sequence

from faceindex.errors import InvalidInputError
from faceindex.pipeline.types import Face

OFFSET_WEIGHT = 0.5
"""`choose_face`: px of face side traded per px of distance from the image centre. In a 250 px LFW
crop a centred 90 px face beats a 110 px bystander whose centre is > 40 px further out; a 400 px face
300 px off-centre still beats a 40 px face at the centre (any weight < 1.2 would)."""

FACE_CHOICES = ("prominent", "centre")


def choose_face(faces: Sequence[Face], width: int, height: int, rule: str = "prominent") -> Face | None:
    """The face a photo's label most likely refers to.

    'prominent' (any labelled photo): a large face near the centre. Score = box side (sqrt of its
    area, px) - OFFSET_WEIGHT x distance (px) of the box centre from the image centre; the highest
    wins. In an ordinary portrait the subject is the large face, often off-centre (rule of thirds),
    and must not lose to a small face in the background; a bystander cut by the edge can have the
    bigger box. Both terms are lengths, so the choice does not change when the photo is resized.
    (InsightFace and FaceNet's LFW scripts use area - 2 x squared offset: there any face further
    off-centre than 0.7 x its side loses to even a tiny central face, which misfires on portraits.)

    'centre': the face whose box centre is nearest the image centre, for datasets built as crops
    centred on the labelled face, as LFW is (its README: each image is centred on a single face);
    there a bystander nearer the camera can have the bigger box (measured: LFW
    `Charles_Schumer_0002`, a 126 px face 62 px off-centre beside the labelled 90 px central face).
    """
    if not faces:
        return None
    if rule not in FACE_CHOICES:
        raise InvalidInputError(f"unknown face choice {rule!r}: expected one of {', '.join(FACE_CHOICES)}")
    cx, cy = width / 2.0, height / 2.0

    def offset(f: Face) -> float:
        left, top, right, bottom = f.box
        return math.hypot((left + right) / 2.0 - cx, (top + bottom) / 2.0 - cy)

    if rule == "centre":
        return min(faces, key=offset)

    def score(f: Face) -> float:
        left, top, right, bottom = f.box
        return math.sqrt((right - left) * (bottom - top)) - OFFSET_WEIGHT * offset(f)

    return max(faces, key=score)
