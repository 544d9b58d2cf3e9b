"""Calibration of fused scores: how often a stranger scores >= t against the mean faceprint of m photos of one person.

Search by person (and by several photos of one person) fuses its probes into one score per gallery face:
the cosine between the gallery face and the normalised mean of the probes' faceprints,

    fused(g) = cos(g, mean_i p_i) = mean_i cos(g, p_i) / ||mean_i p_i||,

i.e. the mean of the single-probe scores, rescaled by how well the probes agree with each other. It is one
inner product per gallery face (one index query, whatever m is). Measured on LFW DevTrain faceprints it beats
the plain mean and the maximum of the single scores at every FMR (bench/calibrate_fusion.py, BENCHMARKS.md).

Its impostor distribution depends on m: averaging removes the probes' own noise, so the mean faceprint sits
closer to the person's "true" direction, and since dlib faceprints share a common direction (strangers score
~0.84), strangers score higher against it (mean 0.838 for m = 1, 0.856 for m = 16). A single-probe threshold
would therefore under-state the FMR of a fused score. Hence one `Calibration` per probe count ("bucket"),
measured the same way as the single-probe one; a set of m probes uses the smallest bucket >= m (the stranger
scores rise with m, so a bigger bucket is the conservative side), and above the largest bucket its calibration
shifted by `drift`: the modelled rise of the stranger scores from that bucket to infinitely many probes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from faceindex.errors import InvalidInputError
from faceindex.evaluation.calibration import Calibration

FORMAT = "faceindex.fusion-calibration/1"
RULE = "cosine to the mean faceprint"
BUCKETS: tuple[int, ...] = (2, 3, 4, 5, 6, 8, 10, 12, 16)
SETS_PER_BUCKET = 1500
"""Probe sets drawn per bucket (several per identity when few identities have enough photos): ~14 M stranger
scores each against a 9 500-face gallery, enough to measure FMRs down to ~1e-7."""


def fuse(vectors: np.ndarray) -> np.ndarray:
    """The fused probe (128,) float32: the normalised mean of unit faceprints (n, 128) of one person."""
    v = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    if len(v) == 0:
        raise InvalidInputError("fusing needs at least one faceprint")
    mean = v.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    if not norm > 0:
        raise InvalidInputError("the faceprints cancel out: they cannot be one person's")
    return (mean / norm).astype(np.float32)


@dataclass
class FusionCalibration:
    """Per-bucket calibrations of fused scores for one model (see the module docstring)."""

    model_id: str
    source: str
    buckets: dict[int, Calibration]
    drift: float = 0.0
    """Added to the largest bucket's thresholds for more probes than it (cosine units)."""
    rule: str = RULE
    format: str = field(default=FORMAT)

    def __post_init__(self) -> None:
        if not self.buckets or min(self.buckets) < 2:
            raise InvalidInputError("a fusion calibration needs buckets of 2 probes or more")
        if not (self.drift >= 0 and math.isfinite(self.drift)):
            raise InvalidInputError(f"drift must be a non-negative number, got {self.drift}")

    def for_probes(self, m: int) -> tuple[int, Calibration, float]:
        """(bucket, calibration, shift) for a set of m >= 2 probes: the smallest bucket >= m, else the largest
        with `drift` as the shift."""
        if m < 2:
            raise InvalidInputError("one probe is not fused: use the single-probe calibration")
        bigger = [b for b in sorted(self.buckets) if b >= m]
        if bigger:
            return bigger[0], self.buckets[bigger[0]], 0.0
        top = max(self.buckets)
        return top, self.buckets[top], self.drift

    def to_json(self) -> str:
        return json.dumps({"format": self.format, "model_id": self.model_id, "source": self.source,
                           "rule": self.rule, "drift": self.drift,
                           "buckets": {str(m): json.loads(c.to_json()) for m, c in sorted(self.buckets.items())}},
                          indent=1)

    @classmethod
    def from_json(cls, text: str) -> FusionCalibration:
        try:
            d = json.loads(text)
            if d.get("format") != FORMAT:
                raise InvalidInputError(f"not a faceindex fusion calibration (format {d.get('format')!r})")
            buckets = {int(m): Calibration.from_json(json.dumps(c)) for m, c in d["buckets"].items()}
            return cls(d["model_id"], d["source"], buckets, float(d["drift"]), d["rule"])
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise InvalidInputError(f"malformed fusion calibration JSON: {exc}") from exc


def probe_sets(labels: np.ndarray, m: int, sets: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Random sets of m row indices of one label each, spread evenly over the labels with >= m + 1 rows (one
    row of each label is left out of every set, so each set has a genuine match left in the gallery)."""
    by_label: dict[int, np.ndarray] = {}
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        if len(rows) >= m + 1:
            by_label[int(label)] = rows
    if not by_label:
        return []
    per = max(1, math.ceil(sets / len(by_label)))
    return [rng.choice(rows, m, replace=False) for rows in by_label.values() for _ in range(per)]


def fused_scores(x: np.ndarray, labels: np.ndarray, chosen: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(impostor, genuine) fused scores (float32) of each probe set against every row of `x`: impostors are the
    rows of other labels, genuine the rows of the set's label outside the set."""
    impostor, genuine = [], []
    for start in range(0, len(chosen), 256):  # bounded memory: 256 probes x n gallery rows per step
        block = chosen[start:start + 256]
        probes = np.stack([fuse(x[rows]) for rows in block])
        scores = probes @ x.T
        for k, rows in enumerate(block):
            same = labels == labels[rows[0]]
            impostor.append(scores[k, ~same])
            mask = same.copy()
            mask[rows] = False
            genuine.append(scores[k, mask])
    return np.concatenate(impostor), np.concatenate(genuine)


def measure(x: np.ndarray, identity: Sequence[str], *, model_id: str, source: str,
            buckets: Sequence[int] = BUCKETS, sets: int = SETS_PER_BUCKET, seed: int = 0) -> FusionCalibration:
    """Measure a FusionCalibration on labelled unit faceprints `x` (n, 128), `identity` (n,).

    `drift` models the stranger scores' mean as K / sqrt(a + (1 - a) / m) (the probes' own noise shrinks as
    1/m; a is the share of a faceprint that is the person's, K the common direction), fitted on the means
    measured at m = 1 and at the largest bucket, and takes the rise from that bucket to m = infinity.
    """
    x = np.asarray(x, dtype=np.float32)
    labels = np.unique(np.asarray(identity), return_inverse=True)[1]
    rng = np.random.default_rng(seed)
    singles = probe_sets(labels, 1, sets, rng)
    mean_1 = float(np.mean(fused_scores(x, labels, singles)[0]))
    calibrations: dict[int, Calibration] = {}
    means: dict[int, float] = {}
    for m in sorted(buckets):
        chosen = probe_sets(labels, m, sets, rng)
        if len(chosen) < 2:
            break
        impostor, genuine = fused_scores(x, labels, chosen)
        n_ids = len({int(labels[c[0]]) for c in chosen})
        calibrations[m] = Calibration.from_scores(
            impostor, genuine, model_id=model_id,
            source=f"{source}; {len(chosen)} sets of {m} photos of {n_ids} identities")
        means[m] = float(np.mean(impostor))
    if not calibrations:
        raise InvalidInputError("no identity has enough faceprints for a fused probe set")
    top = max(calibrations)
    ratio = (mean_1 / means[top]) ** 2  # = a + (1 - a) / top
    a = min(max((ratio - 1.0 / top) / (1.0 - 1.0 / top), 1e-6), 1.0)
    drift = max(0.0, mean_1 / math.sqrt(a) - means[top])
    return FusionCalibration(model_id, source, calibrations, round(drift, 6))
