"""Search results that tell the truth: candidates with scores, false-match rates and 'no match'."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any

from faceindex.pipeline.types import Box

FALLBACK_THRESHOLD = 0.82
"""Used only when no calibration exists for a model: cosine 0.82 ≈ dlib's customary Euclidean 0.6
on unit vectors (1 − 0.6²/2); its false-match rate is then reported as unknown."""


@dataclass
class Candidate:
    """A gallery face that scored at or above the threshold: for human review, never an identification."""

    face_id: int
    image_id: int
    path: str
    box: Box
    collection: str
    score: float
    fmr: float | None = None
    subject: str | None = None
    same_photo_as: list[int] = field(default_factory=list)
    """Face ids of other candidates from the same photo: one photo cannot show the same person twice,
    so at most one of them is right."""


@dataclass
class ProbeFace:
    box: Box
    status: str = "searched"
    """'searched', or 'refused' with `reason` (face too small, too blurred)."""
    reason: str | None = None
    threshold: float | None = None
    threshold_fmr: float | None = None
    expected_false_candidates: float | None = None
    candidates: list[Candidate] = field(default_factory=list)

    @property
    def match(self) -> bool:
        return bool(self.candidates)


@dataclass
class ProbeResult:
    probe: str
    faces: list[ProbeFace] | None = None
    error: str | None = None
    gallery_size: int = 0

    def to_dict(self) -> dict[str, Any]:
        if self.error is not None:
            return {"probe": self.probe, "error": self.error}
        faces = []
        for face in self.faces or []:
            item = asdict(face)
            item["box"] = list(face.box)
            item["match"] = face.match
            item["note"] = "candidates for human review" if face.match else (
                "no match" if face.status == "searched" else face.reason)
            for cand in item["candidates"]:
                cand["box"] = list(cand["box"])
            faces.append(item)
        return {"probe": self.probe, "gallery_size": self.gallery_size, "faces": faces}


class ThresholdPolicy:
    """Chooses the operating threshold and reports its false-match rate (FMR).

    With a calibration (measured impostor scores for the model) the default threshold is the lowest
    one whose expected number of false candidates, gallery_size × FMR, stays below a bound: a bigger
    gallery gets a stricter threshold. A fixed threshold can be forced; its FMR is still reported.
    """

    def __init__(self, calibration=None, *, fixed: float | None = None, max_expected_false: float = 0.1):
        self.calibration = calibration
        self.fixed = fixed
        self.max_expected_false = max_expected_false

    def threshold(self, gallery_size: int, override: float | None = None) -> float:
        if override is not None:
            return override
        if self.fixed is not None:
            return self.fixed
        if self.calibration is None:
            return FALLBACK_THRESHOLD
        return float(self.calibration.threshold_for_gallery(max(gallery_size, 1), self.max_expected_false))

    def fmr(self, score: float) -> float | None:
        return None if self.calibration is None else float(self.calibration.fmr_at(score))


def load_calibration(model_id: str):
    """The calibration shipped for a model id (measured on LFW DevTrain), or None."""
    from faceindex.evaluation.calibration import Calibration

    name = f"calibration-{model_id.replace('+', '-')}.json"
    try:
        text = resources.files("faceindex").joinpath("data", name).read_text()
    except (FileNotFoundError, OSError):
        return None
    return Calibration.from_json(json.loads(text) if text.lstrip().startswith("{") else text)
