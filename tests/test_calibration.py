"""Calibration: measured points, monotone FMR(threshold), tail extrapolation and the gallery-size rule."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

from faceindex.errors import InvalidInputError
from faceindex.evaluation.calibration import Calibration


@pytest.fixture(scope="module")
def impostor() -> np.ndarray:
    return np.random.default_rng(7).normal(0.0, 0.1, 20_000)


@pytest.fixture(scope="module")
def cal(impostor) -> Calibration:
    genuine = np.random.default_rng(8).normal(0.6, 0.1, 2_000)
    return Calibration.from_scores(impostor, genuine, model_id="test-model", source="synthetic N(0, 0.1)")


def test_measured_points_are_exact(cal, impostor):
    top = np.sort(impostor)[::-1]
    by_target = {p.fmr_target: p for p in cal.points}
    # FMR 1e-3 of 20 000 impostors allows 20 false matches: the threshold is the 20th highest score.
    p = by_target[1e-3]
    assert p.threshold == top[19] and p.fmr == 20 / 20_000
    assert cal.fmr_at(p.threshold) == pytest.approx(1e-3)
    assert by_target[1.0].threshold == top[-1] and by_target[1.0].fmr == 1.0
    # Resolution limit: nothing finer than 1 / 20 000 = 5e-5 is measured.
    assert min(q.fmr for q in cal.points) == 1 / 20_000
    assert (cal.n_impostor, cal.n_genuine) == (20_000, 2_000)
    assert 0.99 < by_target[1e-3].tar <= 1.0  # genuine mean is 0.6, threshold about 0.31


def test_fmr_monotone_and_inverse(cal):
    ts = np.linspace(-1.0, 1.5, 5001)
    f = np.array([cal.fmr_at(t) for t in ts])
    assert np.all(np.diff(f) <= 0) and f[0] == 1.0 and np.all(f > 0)
    for target in np.logspace(-9, -0.2, 40):
        t = cal.threshold_for_fmr(target)
        assert cal.fmr_at(t) <= target
        assert cal.fmr_at(t) == pytest.approx(target, rel=1e-6)
    thresholds = [cal.threshold_for_fmr(x) for x in np.logspace(-9, 0, 50)]
    assert np.all(np.diff(thresholds) <= 0)


def test_table_and_tail_is_conservative_for_gaussian(cal):
    rows = cal.table()
    assert [r["fmr"] for r in rows] == [1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6]
    assert [r["measured"] for r in rows] == [True, True, True, True, False, False]
    # On Gaussian impostors the exponential tail must not promise a lower FMR than the truth: its
    # threshold for 1e-6 is at or above the true Gaussian quantile (0.475).
    true_t = NormalDist(0, 0.1).inv_cdf(1 - 1e-6)
    assert rows[-1]["threshold"] >= true_t
    assert not cal.is_measured(rows[-1]["threshold"]) and cal.is_measured(rows[0]["threshold"])


def test_small_sample_limits_resolution():
    small = Calibration.from_scores(np.linspace(-0.2, 0.3, 50), model_id="m", source="50 pairs")
    assert [r["measured"] for r in small.table()][:2] == [True, False]  # 1e-2 needs 100 impostors
    assert small.n_genuine == 0 and small.points[0].tar is None


def test_gallery_rule(cal):
    sizes = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000]
    ts = [cal.threshold_for_gallery(n) for n in sizes]
    assert np.all(np.diff(ts) >= 0)  # tightens as the gallery grows
    for n, t in zip(sizes, ts, strict=True):
        assert n * cal.fmr_at(t) <= 0.1 * (1 + 1e-9)
        assert cal.expected_false_candidates(t, n) == pytest.approx(n * cal.fmr_at(t))
    # Floor: up to 100 faces the budget would allow FMR >= 1e-3; it is held at 1e-3.
    floor = cal.threshold_for_fmr(1e-3)
    assert ts[0] == ts[1] == ts[2] == floor
    assert ts[3] > floor and cal.fmr_at(ts[3]) == pytest.approx(1e-4)
    # Ceiling: a cap below the rule's threshold wins, and the overrun shows in the expected count.
    capped = cal.threshold_for_gallery(1_000_000, ceiling=0.4)
    assert capped == 0.4 and cal.expected_false_candidates(capped, 1_000_000) > 0.1
    with pytest.raises(InvalidInputError):
        cal.threshold_for_gallery(0)


def test_json_round_trip(cal):
    again = Calibration.from_json(cal.to_json())
    assert again == cal
    assert again.fmr_at(0.35) == cal.fmr_at(0.35)
    with pytest.raises(InvalidInputError):
        Calibration.from_json('{"format": "other"}')
    with pytest.raises(InvalidInputError):
        Calibration.from_json("not json")
    broken = cal.to_json().replace('"tail_scale": ', '"tail_scale": -')
    with pytest.raises(InvalidInputError):
        Calibration.from_json(broken)


def test_rejects_bad_scores():
    with pytest.raises(InvalidInputError):
        Calibration.from_scores([0.1, math.nan, 0.2], model_id="m", source="s")
    with pytest.raises(InvalidInputError):
        Calibration.from_scores([0.1], model_id="m", source="s")
