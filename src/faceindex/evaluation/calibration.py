"""Score-threshold calibration: false-match rate (FMR) per threshold, and gallery-size-aware thresholds."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from faceindex.errors import InvalidInputError

FORMAT = "faceindex.calibration/1"
FMR_GRID: tuple[float, ...] = tuple(10.0 ** -e for e in range(1, 7))  # 1e-1 ... 1e-6, the table shown
_STEPS_PER_DECADE = 4  # measured points every quarter decade: fine enough for log interpolation
_MIN_FMR = 1e-12  # deepest grid point; in practice the sample size stops far earlier
_TAIL_FRACTION, _TAIL_MIN, _TAIL_MAX = 0.05, 10, 10_000  # impostors used to fit the tail


@dataclass(frozen=True)
class CalibrationPoint:
    """A measured operating point: the most conservative threshold whose sample FMR <= fmr_target.

    `threshold` is an impostor score (accept when score >= threshold); `fmr` is the FMR measured
    there (a fraction, <= fmr_target); `tar` the genuine accept rate there, if genuine scores
    were given.
    """

    fmr_target: float
    threshold: float
    fmr: float
    tar: float | None = None


@dataclass
class Calibration:
    """How a model's similarity scores translate into false-match rates, measured on one data set.

    Scores are similarities (higher = more alike; feed a distance as its negative). FMR(t) is the
    fraction of impostor (non-mated) comparisons with score >= t.

    - Within the measured range, `fmr_at` interpolates log10(FMR) linearly in the threshold between
      the measured points (quarter-decade grid, down to FMR = 1/n_impostor: a sample of n impostor
      pairs cannot resolve a smaller FMR).
    - Beyond the highest measured threshold it extrapolates with an exponential tail,
      FMR(t) = fmr_last * exp(-(t - t_last) / tail_scale), anchored at the last measured point
      (so the curve stays continuous and monotone). `tail_scale` is the maximum-likelihood
      exponential scale of the excesses of the top 5% of impostor scores (at least 10, at most
      10 000 of them) over the next score. Chosen over a Gaussian fit of the whole distribution
      because impostor tails are typically heavier than Gaussian and an exponential decays more
      slowly, so extrapolated FMRs err on the high side (thresholds on the strict side). It is
      still a model, not a measurement: rare near-duplicate impostors (twins, relatives) can be
      heavier still. `points` and `table()` say which figures are measured.
    """

    model_id: str
    source: str
    n_genuine: int
    n_impostor: int
    points: list[CalibrationPoint]
    tail_scale: float
    score_max: float | None = 1.0  # highest possible score (cosine: 1.0); default threshold ceiling
    format: str = field(default=FORMAT)

    def __post_init__(self) -> None:
        if not self.points:
            raise InvalidInputError("a calibration needs at least one measured point")
        t = np.array([p.threshold for p in self.points])
        f = np.array([p.fmr for p in self.points])
        if np.any(np.diff(t) <= 0) or np.any(np.diff(f) >= 0) or np.any(f <= 0) or f[0] > 1:
            raise InvalidInputError("calibration points must have rising thresholds and falling FMR in (0, 1]")
        if not (self.tail_scale > 0 and math.isfinite(self.tail_scale)):
            raise InvalidInputError(f"tail_scale must be a positive number, got {self.tail_scale}")
        self._t, self._logf = t, np.log10(f)

    @classmethod
    def from_scores(cls, impostor, genuine=None, *, model_id: str, source: str,
                    score_max: float | None = 1.0) -> Calibration:
        """Measure a calibration from impostor scores (and optionally genuine scores for TAR)."""
        imp = np.sort(np.asarray(impostor, dtype=np.float64).ravel())
        gen = None if genuine is None else np.sort(np.asarray(genuine, dtype=np.float64).ravel())
        if imp.size < 2:
            raise InvalidInputError(f"calibration needs impostor scores, got {imp.size}")
        for name, a in (("impostor", imp), ("genuine", gen)):
            if a is not None and not np.all(np.isfinite(a)):
                raise InvalidInputError(f"{name} scores contain NaN or infinite values")
        n = imp.size
        u = np.unique(imp)
        at_least = n - np.searchsorted(imp, u, side="left")  # impostors accepted at each threshold u
        points: list[CalibrationPoint] = []
        for step in range(0, int(-math.log10(_MIN_FMR) * _STEPS_PER_DECADE) + 1):
            target = 10.0 ** (-step / _STEPS_PER_DECADE)
            allowed = math.floor(target * n * (1 + 1e-12))  # tolerance: 1e-3 * 1000 must give 1
            ok = np.nonzero(at_least <= allowed)[0]
            if allowed < 1 or ok.size == 0:  # beyond what this sample resolves
                break
            # The lowest threshold meeting the target; it is the top of its plateau (the next
            # impostor score below it would be accepted with any lower threshold), so the most
            # conservative threshold with that measured FMR.
            t = float(u[ok[0]])
            if points and points[-1].threshold == t:
                continue
            tar = None if gen is None else float((gen.size - np.searchsorted(gen, t, side="left")) / gen.size)
            points.append(CalibrationPoint(target, t, float(at_least[ok[0]] / n), tar))
        top = imp[::-1]
        k = int(min(max(math.ceil(_TAIL_FRACTION * n), _TAIL_MIN), _TAIL_MAX, n - 1))
        scale = float(np.mean(top[:k] - top[k]))
        if not scale > 0:  # all tail scores tied: fall back to the spread of the whole sample
            scale = float(np.std(imp)) or 1e-3
        return cls(model_id, source, 0 if gen is None else int(gen.size), n, points, scale, score_max)

    def fmr_at(self, threshold: float) -> float:
        """Estimated FMR (fraction) when accepting scores >= `threshold`; non-increasing in it."""
        t = float(threshold)
        if math.isnan(t):
            raise InvalidInputError("threshold is NaN")
        if t <= self._t[0]:
            return float(10.0 ** self._logf[0])
        if t <= self._t[-1]:
            return float(10.0 ** np.interp(t, self._t, self._logf))
        return float(10.0 ** self._logf[-1] * math.exp(-(t - self._t[-1]) / self.tail_scale))

    def threshold_for_fmr(self, fmr: float) -> float:
        """Lowest threshold with `fmr_at(threshold) <= fmr` (the inverse of `fmr_at`)."""
        f = float(fmr)
        if not f > 0:
            raise InvalidInputError(f"FMR must be > 0, got {fmr}")
        lf = math.log10(f)
        if lf >= self._logf[0]:
            return float(self._t[0])
        if lf >= self._logf[-1]:
            t = float(np.interp(lf, self._logf[::-1], self._t[::-1]))
        else:
            t = float(self._t[-1] + self.tail_scale * math.log(10.0 ** self._logf[-1] / f))
        for _ in range(16):  # rounding can leave fmr_at(t) a hair above f: step up by ulps
            if self.fmr_at(t) <= f:
                break
            t = float(np.nextafter(t, np.inf))
        return t

    def is_measured(self, threshold: float) -> bool:
        """Whether `fmr_at(threshold)` comes from the sample rather than the tail model."""
        return float(threshold) <= self._t[-1]

    def table(self, grid=FMR_GRID) -> list[dict]:
        """Threshold per FMR of `grid`: {fmr, threshold, measured}; unmeasured rows are extrapolated."""
        return [{"fmr": f, "threshold": self.threshold_for_fmr(f), "measured": bool(f >= 10.0 ** self._logf[-1])}
                for f in grid]

    def threshold_for_gallery(self, n_gallery: int, max_expected_false: float = 0.1, *,
                              max_fmr: float = 1e-3, ceiling: float | None = None) -> float:
        """Default threshold for a gallery of `n_gallery` faces: n_gallery x FMR(t) <= max_expected_false.

        Each search compares the probe with every gallery face, so the expected number of false
        candidates above t is n_gallery x FMR(t); keeping it below `max_expected_false` (0.1: one
        false candidate per ten searches) tightens the threshold as the gallery grows. Floor: the
        threshold never goes below that of `max_fmr` (small galleries would otherwise get a loose
        threshold). Ceiling: `ceiling`, default `score_max` (no threshold above the best possible
        score); where the ceiling binds the budget is exceeded, which `expected_false_candidates`
        will show.
        """
        if int(n_gallery) < 1:
            raise InvalidInputError(f"n_gallery must be >= 1, got {n_gallery}")
        if not max_expected_false > 0:
            raise InvalidInputError(f"max_expected_false must be > 0, got {max_expected_false}")
        t = self.threshold_for_fmr(min(max_expected_false / int(n_gallery), max_fmr))
        cap = self.score_max if ceiling is None else ceiling
        return t if cap is None else min(t, float(cap))

    def expected_false_candidates(self, threshold: float, n_gallery: int) -> float:
        """Expected false candidates per search at `threshold` for `n_gallery` faces: n x FMR."""
        return int(n_gallery) * self.fmr_at(threshold)

    def to_json(self) -> str:
        d = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        return json.dumps(d, indent=2)

    @classmethod
    def from_json(cls, text: str) -> Calibration:
        try:
            d = json.loads(text)
            if d.get("format") != FORMAT:
                raise InvalidInputError(f"not a faceindex calibration (format {d.get('format')!r})")
            d["points"] = [CalibrationPoint(**p) for p in d["points"]]
            return cls(**d)
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise InvalidInputError(f"malformed calibration JSON: {e}") from e
