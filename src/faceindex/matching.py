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
    video: dict[str, Any] | None = None
    """For a face of a video: its track (time span as `HH:MM:SS.mmm` and seconds, best frame, thumbnail path)
    and `spans`, every matched track of that video in this result. Absent from a photo's JSON."""


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
                if cand["video"] is None:
                    del cand["video"]  # a photo hit keeps the shape it always had
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


FUSED_FALLBACK_THRESHOLD = 0.942
"""Fused threshold when the model has no fusion calibration (FMR then unknown): the highest FMR-1e-3 threshold
of any probe count measured for dlib-resnet-v1+flip on LFW DevTrain (0.9418 at 12 probes; see BENCHMARKS.md)."""


@dataclass
class FusedCandidate(Candidate):
    """A candidate of a fused search: `score` is the fused score (cosine to the probes' mean faceprint), `fmr`
    its false-match rate for this many probes; `best_single` the best score of one probe alone."""

    best_single: float | None = None
    person: int | None = None
    """The person (people grouping) this face belongs to, if any; `person_name` its name, if named."""
    person_name: str | None = None


@dataclass
class FusedResult:
    """The result of one fused search (a person's faces, or several photos of one person): one probe, whose
    `face` holds the threshold, the expected false candidates and the candidates, as a ProbeFace of search."""

    probe: str
    route: str
    """'person' (the faces of a person) or 'photos' (several photos of one person)."""
    face: ProbeFace
    probes: int
    source: str
    """'confirmed' (the person's confirmed faces), 'assigned' (all its faces: none is confirmed) or 'photos'."""
    gallery_size: int = 0
    person: int | None = None
    name: str | None = None
    probe_faces: list[dict] = field(default_factory=list)
    """Person route: {face_id, state}; photos route: {photo, face (1-based, largest first), of, box}."""
    skipped: list[dict] = field(default_factory=list)
    """Photos route: {photo, reason} of each photo that gave no usable face (the others were fused)."""
    warnings: list[str] = field(default_factory=list)
    """E.g. two probes that score below the 1:1 threshold against each other (maybe not one person)."""
    calibration: str = ""
    """How the fused threshold and FMRs were obtained (bucket of probe counts, or 'uncalibrated')."""

    def to_dict(self) -> dict[str, Any]:
        """The shape of search's JSON (probe, gallery_size, faces: [one face]) plus a `fused` object."""
        item = asdict(self.face)
        item["box"] = None if self.face.box is None else list(self.face.box)
        item["match"] = self.face.match
        item["note"] = "candidates for human review" if self.face.match else "no match"
        for cand in item["candidates"]:
            cand["box"] = list(cand["box"])
        fused = {"route": self.route, "probes": self.probes, "source": self.source, "person": self.person,
                 "name": self.name, "probe_faces": self.probe_faces, "skipped": self.skipped,
                 "warnings": self.warnings, "calibration": self.calibration}
        return {"probe": self.probe, "gallery_size": self.gallery_size, "fused": fused, "faces": [item]}


class ShiftedCalibration:
    """A calibration whose scores are read `shift` lower: FMR(t) = cal.FMR(t - shift), thresholds + shift.
    Used for more probes than the largest measured bucket (fusion.FusionCalibration.drift)."""

    def __init__(self, calibration, shift: float):
        self.calibration = calibration
        self.shift = float(shift)
        self.score_max = calibration.score_max

    def fmr_at(self, threshold: float) -> float:
        return self.calibration.fmr_at(threshold - self.shift)

    def threshold_for_fmr(self, fmr: float) -> float:
        return self.calibration.threshold_for_fmr(fmr) + self.shift

    def threshold_for_gallery(self, n_gallery: int, max_expected_false: float = 0.1) -> float:
        t = self.calibration.threshold_for_gallery(n_gallery, max_expected_false, ceiling=float("inf")) + self.shift
        return t if self.score_max is None else min(t, float(self.score_max))


def fusion_policy(single: ThresholdPolicy, fusion, probes: int) -> ThresholdPolicy:
    """The ThresholdPolicy of a fused score of `probes` probes: the single-probe policy itself for one probe;
    else the fusion calibration's bucket (see fusion.py), or, without one, the fallback threshold
    with FMRs unknown. A fixed threshold (`Settings.threshold`) stays fixed; its FMR is read on the fused scale."""
    if probes < 1:
        raise InvalidInputError("a fused search needs at least one probe")
    if probes == 1:
        return single
    if fusion is None:
        return ThresholdPolicy(None, fixed=single.fixed if single.fixed is not None else FUSED_FALLBACK_THRESHOLD,
                               max_expected_false=single.max_expected_false)
    _, calibration, shift = fusion.for_probes(probes)
    chosen = calibration if shift == 0 else ShiftedCalibration(calibration, shift)
    return ThresholdPolicy(chosen, fixed=single.fixed, max_expected_false=single.max_expected_false)


def load_fusion_calibration(model_id: str):
    """The fused-score calibration shipped for a model id (`faceindex/data/fusion-<model id, + as ->.json`), or
    None when there is none (fused searches then use FUSED_FALLBACK_THRESHOLD and report FMRs as unknown)."""
    from faceindex.fusion import FusionCalibration

    name = f"fusion-{model_id.replace('+', '-')}.json"
    try:
        text = resources.files("faceindex").joinpath("data", name).read_text(encoding="utf-8")
    except (FileNotFoundError, OSError):
        return None
    fusion = FusionCalibration.from_json(text)
    return fusion if fusion.model_id == model_id else None


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
