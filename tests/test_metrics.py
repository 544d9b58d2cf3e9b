"""Hand-computed cases for the verification and identification metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from faceindex.errors import InvalidInputError
from faceindex.evaluation.metrics import (
    cmc,
    det_curve,
    eer,
    fnir_at_fpir,
    open_set_scores,
    roc_curve,
    tar_at_far,
    thin_curve,
    verification_accuracy_kfold,
)

GEN = [0.9, 0.8, 0.7, 0.5]
IMP = [0.6, 0.5, 0.3, 0.2]  # 0.5 ties with a genuine score


def test_roc_exact_with_ties():
    t, far, tar = roc_curve(GEN, IMP)
    assert t.tolist() == [math.inf, 0.9, 0.8, 0.7, 0.6, 0.5, 0.3, 0.2]
    assert far.tolist() == [0, 0, 0, 0, 0.25, 0.5, 0.75, 1.0]
    # At 0.5 the tied genuine and impostor scores are both accepted: TAR 1 and FAR 0.5 together.
    assert tar.tolist() == [0, 0.25, 0.5, 0.75, 0.75, 1.0, 1.0, 1.0]


def test_det_is_one_minus_tar():
    t, far, frr = det_curve(GEN, IMP)
    assert frr.tolist() == [1.0, 0.75, 0.5, 0.25, 0.25, 0.0, 0.0, 0.0]
    assert far.tolist() == roc_curve(GEN, IMP)[1].tolist()


def test_eer_on_a_score():
    # At 0.6: genuine 0.5 rejected (FRR 1/4), impostor 0.6 accepted (FAR 1/4).
    assert eer(GEN, IMP) == (0.25, 0.6)


def test_eer_interpolated_across_a_tie():
    # Thresholds 0.1 -> (FAR 1, FRR 0), 0.5 -> (0.5, 0), 0.9 -> (0, 0.5): the tie at 0.5 makes the DET
    # step diagonal; the segment from 0.5 to 0.9 crosses FAR = FRR half-way: EER 0.25 at 0.7.
    e, t = eer([0.9, 0.5], [0.5, 0.1])
    assert e == pytest.approx(0.25) and t == pytest.approx(0.7)
    # Unequal counts: 0.6 -> (0.5, 0), 0.8 -> (0, 1/3); crossing at s = 0.5 / (0.5 + 1/3) = 0.6.
    e, t = eer([0.9, 0.8, 0.6], [0.6, 0.3])
    assert e == pytest.approx(0.2) and t == pytest.approx(0.72)


def test_eer_perfect_and_inverted():
    assert eer([0.9, 0.8], [0.1, 0.2]) == (0.0, 0.8)
    assert eer([0.1], [0.9]) == (1.0, 0.9)
    # Top score shared by both sets: the crossing lies between it and "accept nothing".
    assert eer([0.5], [0.5]) == (0.5, 0.5)
    e, t = eer([0.5, 0.9], [0.9])  # (FAR 1, FRR 1/2) at 0.9 -> (0, 1) at +inf: crossing at s = 1/3
    assert e == pytest.approx(2 / 3) and t == 0.9


def test_tar_at_far_lowest_threshold_and_tied_impostors():
    imp = [0.7, 0.7, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0, 0.0, 0.0]
    gen = [0.9, 0.8, 0.7, 0.65]
    pts = tar_at_far(gen, imp, far_targets=(0.1, 0.2, 0.01))
    # FAR 0.1 allows one false accept, but the two 0.7 impostors go together: threshold must be 0.8.
    p = pts[0.1]
    assert (p.threshold, p.false_rate, p.hit_rate) == (0.8, 0.0, 0.5)
    # FAR 0.2 admits both 0.7s; the lowest threshold still at FAR 0.2 is 0.65 (a genuine score).
    p = pts[0.2]
    assert (p.threshold, p.false_rate, p.hit_rate) == (0.65, 0.2, 1.0)
    # 1e-2 needs >= 100 impostors: reported as unresolved, not as TAR at FAR 0.
    p = pts[0.01]
    assert not p.resolvable and p.threshold is None and p.hit_rate is None and p.n_negative == 10


def test_tar_at_far_rejects_bad_input():
    with pytest.raises(InvalidInputError):
        tar_at_far([0.5, float("nan")], [0.1])
    with pytest.raises(InvalidInputError):
        tar_at_far([0.5], [])
    with pytest.raises(InvalidInputError):
        tar_at_far([0.5], [0.1], far_targets=(0.0,))


S = np.array([
    [0.9, 0.95, 0.1, 0.2],  # A: best mate 0.9, beaten by B's 0.95 -> rank 2
    [0.5, 0.5, 0.4, 0.3],   # B: mate 0.5 ties with A's 0.5 -> rank 2 (a tie is not a win)
    [0.1, 0.2, 0.7, 0.3],   # C: rank 1
    [0.8, 0.1, 0.1, 0.1],   # D: not in the gallery -> non-mated search, left out of the CMC
])
GALLERY = ["A", "B", "C", "A"]
PROBES = ["A", "B", "C", "D"]


def test_cmc_from_matrix():
    assert cmc(S, PROBES, GALLERY, max_rank=3).tolist() == pytest.approx([1 / 3, 1.0, 1.0])


def test_cmc_from_ranked_lists():
    ranked = [["B", "A"], ["A", "B", "C"], ["C"], ["X"]]
    assert cmc(ranked, PROBES, max_rank=2).tolist() == [0.25, 0.75]
    with pytest.raises(InvalidInputError):
        cmc(S, PROBES)  # a float matrix without gallery labels is a mistake, not ranked lists
    with pytest.raises(InvalidInputError):
        cmc(S[:, :3], PROBES, GALLERY)


def test_open_set_scores():
    mated, nonmated = open_set_scores(S, PROBES, GALLERY, rank=1)
    assert mated.tolist() == [-math.inf, -math.inf, 0.7]
    # D's top score, then A, B, C against the gallery without their own identity.
    assert nonmated.tolist() == [0.8, 0.95, 0.5, 0.3]
    mated, _ = open_set_scores(S, PROBES, GALLERY, rank=2)
    assert mated.tolist() == [0.9, 0.5, 0.7]


def test_fnir_at_fpir():
    mated = [0.9, 0.8, -math.inf, 0.6]  # the third mate was not returned at rank <= R
    nonmated = [0.85, 0.5, 0.4, 0.3, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1]
    pts = fnir_at_fpir(mated, nonmated, fpir_targets=(0.1, 0.2, 0.01))
    p = pts[0.1]  # one non-mated search (0.85) may pass: lowest such threshold is 0.6
    assert (p.threshold, p.false_rate, p.hit_rate, p.miss_rate) == (0.6, 0.1, 0.75, 0.25)
    p = pts[0.2]  # threshold 0.5 admits 0.85 and 0.5; the missing mate still counts as a miss
    assert (p.threshold, p.false_rate, p.miss_rate) == (0.5, 0.2, 0.25)
    assert not pts[0.01].resolvable  # 10 non-mated searches cannot resolve FPIR 1 %


def test_fnir_all_mates_missing():
    p = fnir_at_fpir([-math.inf, -math.inf], [0.3, 0.2], fpir_targets=(0.5,))[0.5]
    assert p.miss_rate == 1.0 and p.false_rate == 0.5


def test_kfold_hand_computed():
    scores = np.r_[GEN, IMP]
    same = [True] * 4 + [False] * 4
    folds = [0, 1, 0, 1, 0, 1, 0, 1]
    # Test fold 0, train on {g .8 .5, i .5 .2}: accuracy 3/4 on (.2,.5] and (.5,.8]; the lower of the
    # two (median rule) -> midpoint .35; fold 0 {g .9 .7, i .6 .3}: .6 is wrongly accepted -> 3/4.
    # Test fold 1, train on {g .9 .7, i .6 .3}: perfect on (.6,.7] -> .65; fold 1: g .5 rejected -> 3/4.
    mean, std, thr = verification_accuracy_kfold(scores, same, folds)
    assert mean == 0.75 and std == 0.0
    assert thr.tolist() == pytest.approx([0.35, 0.65])


def test_kfold_unequal_folds_and_int_folds():
    scores = [0.9, 0.2, 0.8, 0.7, 0.1, 0.6]
    same = [True, False, True, False, False, True]
    # folds by i % 3: {0.9 s, 0.7 d}, {0.2 d, 0.1 d}, {0.8 s, 0.6 s}
    mean, std, thr = verification_accuracy_kfold(scores, same, 3)
    # fold0 train {.2d .1d .8s .6s}: best plateau (.2,.6] -> .4; test: .9 ok, .7 accepted wrongly -> 0.5
    # fold1 train {.9s .7d .8s .6s}: candidates .6 .7 .8 .9 +inf score 3 2 3 2 1 correct; of the two
    #   best (.6 and .8) the median rule takes the lower, .6 (accept all); test {.2d .1d} -> 1.0
    # fold2 train {.9s .7d .2d .1d}: perfect on (.7,.9] -> .8; test {.8s .6s}: .6 rejected -> 0.5
    assert thr.tolist() == pytest.approx([0.4, 0.6, 0.8])
    assert mean == pytest.approx(2 / 3)
    assert std == pytest.approx(np.std([0.5, 1.0, 0.5], ddof=1))
    with pytest.raises(InvalidInputError):
        verification_accuracy_kfold(scores, same, [0] * 6)


def test_identification_blocks_match_whole_matrix():
    rng = np.random.default_rng(0)
    sim = rng.normal(0, 0.1, (1100, 40)).astype(np.float32)  # > one 512-probe block
    gallery = np.arange(40) % 20
    probes = rng.integers(0, 25, 1100)  # identities 20..24 are not in the gallery
    sim[np.arange(1100), probes % 20] += 0.25
    c = cmc(sim, probes, gallery, max_rank=5)
    mated = probes < 20
    best = np.where(probes[:, None] == gallery[None, :], sim, -np.inf).max(axis=1)
    nonmate_best = np.where(probes[:, None] == gallery[None, :], -np.inf, sim).max(axis=1)
    assert c[0] == pytest.approx(np.mean((best > nonmate_best)[mated]))
    m, n = open_set_scores(sim, probes, gallery, leave_identity_out=False)
    assert m.size == mated.sum() and n.size == (~mated).sum()
    assert np.array_equal(np.isfinite(m), (best > nonmate_best)[mated])


def test_thin_curve_keeps_ends_and_corners():
    rng = np.random.default_rng(1)
    t, far, tar = roc_curve(rng.normal(1, 1, 5000), rng.normal(0, 1, 5000))
    tt, ff, rr = thin_curve(t, far, tar, n=300)
    assert tt.size <= 300 and tt[0] == math.inf and tt[-1] == t[-1]
    # The best TAR at the lowest non-zero FAR (a staircase corner) is kept.
    low = far[far > 0].min()
    assert rr[ff == low].max() == tar[far == low].max()


def test_against_brute_force_with_many_ties():
    rng = np.random.default_rng(5)
    gen, imp = rng.integers(3, 12, 300) / 10, rng.integers(0, 8, 400) / 10  # heavy ties on a 0.1 grid
    t, far, tar = roc_curve(gen, imp)
    for k in range(1, t.size):
        assert far[k] == np.mean(imp >= t[k]) and tar[k] == np.mean(gen >= t[k])
    for target, p in tar_at_far(gen, imp, (0.05, 0.01, 0.0025)).items():
        ok = [c for c in np.unique(np.r_[gen, imp]) if np.mean(imp >= c) <= target]
        best = min(ok)  # the most accepting threshold that meets the target
        assert p.threshold == best and p.hit_rate == np.mean(gen >= best)
    e, thr = eer(gen, imp)
    lo = max(c for c in t[1:] if np.mean(gen < c) <= np.mean(imp >= c))  # last point with FRR <= FAR
    assert np.mean(gen < lo) <= e <= np.mean(imp >= lo)
