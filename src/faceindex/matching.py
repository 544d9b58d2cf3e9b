"""Search results that tell the truth: candidates with scores, false-match rates and 'no match'."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from faceindex.errors import InvalidInputError
from faceindex.pipeline.types import Box

FALLBACK_THRESHOLD = 0.93
"""Used only when no calibration exists for a model; its false-match rate is then reported as unknown.
dlib ResNet faceprints live in a narrow cone: on 40 LFW identities impostor cosines measured mean 0.83,
sd 0.036, 99.9th percentile 0.92, while genuine pairs had mean 0.95."""


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


def load_calibration(model_id: str, path: str | os.PathLike | None = None):
    """The calibration for a model id, or None when there is none (FMRs are then reported as unknown).

    Looked up in order: `path` (e.g. `Settings.calibration`); the FACEINDEX_CALIBRATION environment
    variable (so a caller that passes no path still honours the operator's file); the file shipped
    for the model, `faceindex/data/calibration-<model id with + as ->.json` (measured on LFW
    DevTrain). A file the operator named must exist, parse and be for `model_id`: the FMRs of
    another model's scores would be wrong without any visible sign, so that is an InvalidInputError.
    """
    from faceindex.evaluation.calibration import Calibration

    chosen = path if path is not None else (os.environ.get("FACEINDEX_CALIBRATION") or None)
    if chosen is not None:
        try:
            text = Path(chosen).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"cannot read calibration file {chosen}: {exc}") from exc
        calibration = Calibration.from_json(text)
        if calibration.model_id != model_id:
            raise InvalidInputError(f"calibration file {chosen} is for model {calibration.model_id!r}, "
                                    f"but the pipeline's model is {model_id!r}: run `faceindex calibrate` again")
        return calibration
    name = f"calibration-{model_id.replace('+', '-')}.json"
    try:
        text = resources.files("faceindex").joinpath("data", name).read_text(encoding="utf-8")
    except (FileNotFoundError, OSError):
        return None
    return Calibration.from_json(text)
