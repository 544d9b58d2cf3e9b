"""Verification and identification error rates (ROC, DET, EER, TAR@FAR, CMC, FNIR@FPIR, LFW k-fold)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from faceindex.errors import InvalidInputError

# Conventions for the whole module: a score is a similarity (higher = more alike, e.g. cosine in
# [-1, 1]; feed a distance as its negative) and a comparison is *accepted* when score >= threshold.
# Every rate is computed exactly from the sample with that rule, so ties between a genuine and an
# impostor score are never split in anyone's favour: both are accepted or both rejected.


def _scores(values, name: str, allow_neg_inf: bool = False) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64).ravel()
    if a.size == 0:
        raise InvalidInputError(f"{name}: no scores given")
    bad = np.isnan(a) | np.isposinf(a) | (np.isneginf(a) if not allow_neg_inf else False)
    if np.any(bad):
        raise InvalidInputError(f"{name}: {int(bad.sum())} score(s) are NaN or infinite")
    return a


def _count_at_least(sorted_scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """How many of `sorted_scores` (ascending) are >= each threshold; exact with ties."""
    return sorted_scores.size - np.searchsorted(sorted_scores, thresholds, side="left")


def roc_curve(genuine, impostor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC of a verifier: (thresholds, FAR, TAR), thresholds in descending order.

    Thresholds are +inf (nothing accepted: FAR = TAR = 0) followed by every distinct score, so each
    achievable operating point appears exactly once; FAR/TAR are fractions in [0, 1] measured with
    `score >= threshold`. Size grows with the number of distinct scores (downsample for plotting).
    """
    g, i = np.sort(_scores(genuine, "genuine")), np.sort(_scores(impostor, "impostor"))
    thresholds = np.concatenate(([np.inf], np.unique(np.concatenate((g, i)))[::-1]))
    far = _count_at_least(i, thresholds) / i.size
    tar = _count_at_least(g, thresholds) / g.size
    return thresholds, far, tar


def thin_curve(thresholds: np.ndarray, far: np.ndarray, tar: np.ndarray, n: int = 1000):
    """A ROC (as from `roc_curve`) cut to at most n points for plots and JSON.

    A third are spread evenly by index, the rest log-spaced in FAR (keeps the low-FAR end that a
    log axis shows): at each FAR level both the last point before it and the first at it are kept,
    so the corners of the staircase (the best TAR at each FAR) survive thinning.
    """
    t = thresholds
    if t.size <= n:
        return t, far, tar
    idx = set(np.linspace(0, t.size - 1, n // 3).astype(int).tolist())
    pos = far[far > 0]
    if pos.size:
        first = np.minimum(np.searchsorted(far, np.logspace(np.log10(pos.min()), 0, n // 3)), t.size - 1)
        idx.update(first.tolist())
        idx.update(np.maximum(first - 1, 0).tolist())
    k = np.array(sorted(idx))
    return t[k], far[k], tar[k]


def det_curve(genuine, impostor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DET of a verifier: (thresholds, FAR, FRR) with FRR = 1 - TAR; same thresholds as `roc_curve`."""
    thresholds, far, tar = roc_curve(genuine, impostor)
    return thresholds, far, 1.0 - tar


def eer(genuine, impostor) -> tuple[float, float]:
    """Equal error rate and its threshold: (EER as a fraction, threshold in score units).

    FAR falls and FRR rises as the threshold rises; between two adjacent distinct scores the DET is
    taken as the straight segment joining the two operating points (reachable by randomising
    between them), and the EER is where that segment crosses FAR = FRR. The threshold is linearly
    interpolated the same way; when the crossing lands exactly on a score the threshold is that
    score. Trade-off: the interpolated EER is smooth but is a property of the curve, not of a
    single deterministic threshold (the true rates at the returned threshold bracket it).
    """
    thresholds, far, frr = det_curve(genuine, impostor)
    t, far, frr = thresholds[::-1], far[::-1], frr[::-1]  # ascending; +inf (FAR 0, FRR 1) last
    diff = frr - far  # -1 at the lowest score (everything accepted), +1 at +inf
    k = int(np.argmax(diff >= 0))
    if diff[k] == 0:
        return float(far[k]), float(t[k])
    s = diff[k - 1] / (diff[k - 1] - diff[k])  # in (0, 1): where the segment crosses zero
    # Crossing towards +inf (only when the top score is shared by both sets): report the top score.
    thr = t[k - 1] if np.isinf(t[k]) else t[k - 1] + s * (t[k] - t[k - 1])
    return float(far[k - 1] + s * (far[k] - far[k - 1])), float(thr)


@dataclass(frozen=True)
class OperatingPoint:
    """One threshold chosen to meet a false-positive target (FAR for 1:1, FPIR for 1:N).

    `threshold`, `false_rate` and `hit_rate` are None when the sample cannot resolve the target
    (fewer than 1/target negatives): we would otherwise report a rate of 0 false positives that
    means nothing. `hit_rate` is TAR (1:1) or 1 - FNIR (1:N).
    """

    target: float
    threshold: float | None
    false_rate: float | None
    hit_rate: float | None
    n_positive: int
    n_negative: int

    @property
    def resolvable(self) -> bool:
        return self.threshold is not None

    @property
    def miss_rate(self) -> float | None:
        """FRR (1:1) or FNIR (1:N) at the threshold."""
        return None if self.hit_rate is None else 1.0 - self.hit_rate

    def to_dict(self) -> dict:
        return {**asdict(self), "miss_rate": self.miss_rate, "resolvable": self.resolvable}


def _operating_points(pos: np.ndarray, neg: np.ndarray, targets) -> dict[float, OperatingPoint]:
    thresholds, fr, hr = _roc_with_misses(pos, neg)
    out: dict[float, OperatingPoint] = {}
    for target in targets:
        target = float(target)
        if not 0.0 < target <= 1.0:
            raise InvalidInputError(f"false-positive target {target} is not in (0, 1]")
        if target * neg.size < 1.0:  # not even one false positive allowed: cannot be measured
            out[target] = OperatingPoint(target, None, None, None, int(pos.size), int(neg.size))
            continue
        # Thresholds descend, false rate is non-increasing in the threshold: the last index that
        # still meets the target is the lowest (most accepting) such threshold, i.e. the best hit rate.
        k = int(np.nonzero(fr <= target)[0][-1])
        out[target] = OperatingPoint(target, float(thresholds[k]), float(fr[k]), float(hr[k]),
                                     int(pos.size), int(neg.size))
    return out


def _roc_with_misses(pos: np.ndarray, neg: np.ndarray):
    """ROC where positives scored -inf (mate not returned) are never accepted at any threshold."""
    found = pos[~np.isneginf(pos)]
    if found.size == 0:
        thresholds, fr, _ = roc_curve(neg, neg)
        return thresholds, fr, np.zeros_like(fr)
    thresholds, fr, hr = roc_curve(found, neg)
    return thresholds, fr, hr * found.size / pos.size


def tar_at_far(genuine, impostor, far_targets=(1e-2, 1e-3, 1e-4)) -> dict[float, OperatingPoint]:
    """TAR at fixed FAR targets: for each target the lowest threshold whose measured FAR <= target.

    A target needs at least 1/target impostor pairs (e.g. 10 000 for 1e-4); below that the entry is
    an unresolved OperatingPoint (threshold/TAR None) rather than an optimistic number.
    """
    return _operating_points(_scores(genuine, "genuine"), _scores(impostor, "impostor"), far_targets)


def fnir_at_fpir(mated_scores_rank1, nonmated_top_scores,
                 fpir_targets=(0.003, 0.01)) -> dict[float, OperatingPoint]:
    """FNIR at fixed FPIR, as NIST FRVT 1:N defines them, for a threshold T and rank R.

    FPIR(T) = fraction of non-mated searches whose best candidate scores >= T (any candidate above
    threshold is a false positive). FNIR(T) = fraction of mated searches where the mate is not
    returned at rank <= R with score >= T. Inputs are one score per search: `mated_scores_rank1` is
    the mate's score when it is within rank R (R = 1 for the usual figure), -inf when it is not
    (a miss at every threshold); `nonmated_top_scores` is the top candidate score of each
    non-mated search. See `open_set_scores` to derive both from a similarity matrix.
    Returned points have `false_rate` = FPIR and `miss_rate` = FNIR.
    """
    mated = _scores(mated_scores_rank1, "mated_scores_rank1", allow_neg_inf=True)
    return _operating_points(mated, _scores(nonmated_top_scores, "nonmated_top_scores"), fpir_targets)


def _mate_stats(similarity, probe_labels, gallery_labels, block: int = 512):
    """Per probe: (has a mate, best mate score, rank of that mate, best non-mate score).

    Rank counts non-mated entries scoring >= the best mate (ties pessimistic). Works through the
    matrix `block` probes at a time so temporaries stay ~block x n_gallery, not n_probe x n_gallery.
    """
    s = np.asarray(similarity)
    p, g = np.asarray(probe_labels), np.asarray(gallery_labels)
    if s.ndim != 2 or s.shape != (p.size, g.size) or s.dtype.kind not in "fiu":
        raise InvalidInputError(f"similarity must be a numeric (n_probe, n_gallery) = ({p.size}, {g.size}) "
                                f"matrix, got shape {s.shape}")
    out = np.empty((4, p.size))
    for lo in range(0, p.size, block):
        rows = s[lo:lo + block].astype(np.float64)
        if not np.all(np.isfinite(rows)):
            raise InvalidInputError("similarity contains NaN or infinite values")
        mated = p[lo:lo + block, None] == g[None, :]
        best = np.where(mated, rows, -np.inf).max(axis=1, initial=-np.inf)
        others = np.where(mated, -np.inf, rows)
        out[:, lo:lo + block] = (mated.any(axis=1), best, 1 + (others >= best[:, None]).sum(axis=1),
                                 others.max(axis=1, initial=-np.inf))
    return out[0].astype(bool), out[1], out[2], out[3]


def cmc(similarity, probe_labels: Sequence[Hashable], gallery_labels: Sequence[Hashable] | None = None,
        max_rank: int = 20) -> np.ndarray:
    """Cumulative match characteristic: cmc[r - 1] = fraction of mated probes with the mate at rank <= r.

    Two input forms. With `gallery_labels`: `similarity` is an (n_probe, n_gallery) score matrix;
    the mate's rank is 1 + the number of non-mated gallery entries scoring >= its best mated entry
    (a tie is not a win: pessimistic), counted over gallery entries (with one template per
    identity that equals ranking identities). Probes with no mate in the gallery are left out
    (they are non-mated searches; see `fnir_at_fpir`). Without `gallery_labels`: `similarity` is
    one ranked list of gallery labels per probe (best first); a mate absent from a list is a miss.
    Rank-1 is `cmc(...)[0]`, rank-5 `cmc(...)[4]`.
    """
    if max_rank < 1:
        raise InvalidInputError(f"max_rank must be >= 1, got {max_rank}")
    ranks: list[float] = []
    if gallery_labels is not None:
        has_mate, _, rank, _ = _mate_stats(similarity, probe_labels, gallery_labels)
        ranks = list(rank[has_mate])
    else:
        if isinstance(similarity, np.ndarray) and similarity.dtype.kind == "f":
            raise InvalidInputError("a score matrix needs gallery_labels; without them cmc expects ranked "
                                    "label lists")
        if len(similarity) != len(probe_labels):
            raise InvalidInputError(f"{len(similarity)} ranked lists for {len(probe_labels)} probes")
        for lst, label in zip(similarity, probe_labels, strict=True):
            hits = [r for r, x in enumerate(lst, start=1) if x == label]
            ranks.append(hits[0] if hits else np.inf)
    if not ranks:
        raise InvalidInputError("no probe has a mate in the gallery: CMC is undefined")
    r = np.asarray(ranks, dtype=np.float64)
    return (r[None, :] <= np.arange(1, max_rank + 1)[:, None]).mean(axis=1)


def open_set_scores(similarity, probe_labels, gallery_labels, rank: int = 1,
                    leave_identity_out: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Per-search scores for `fnir_at_fpir` from a score matrix: (mated, nonmated_top).

    Mated searches (probe identity in the gallery) give the best mate score if the mate ranks
    <= `rank` (pessimistic ties, as in `cmc`), else -inf. Probes absent from the gallery give their
    top score as non-mated searches. With `leave_identity_out`, every mated probe also yields a
    non-mated search against the gallery minus its own identity, the usual way to get non-mated
    searches from a closed labelled set; it reuses probes, so the searches are not independent.
    """
    has_mate, best, mate_rank, others_top = _mate_stats(similarity, probe_labels, gallery_labels)
    mated_scores = np.where(mate_rank <= rank, best, -np.inf)[has_mate]
    # others_top is -inf only when the gallery holds nothing but the probe's own identity.
    nonmated = others_top[~has_mate]
    if leave_identity_out:
        nonmated = np.concatenate((nonmated, others_top[has_mate & np.isfinite(others_top)]))
    return mated_scores, nonmated


def _best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """Threshold with the best accuracy on (scores, same); max-margin and median among ties."""
    u = np.unique(scores)
    cand = np.concatenate((u, [np.inf]))  # accept >= cand[j]; +inf rejects everything
    tp = _count_at_least(np.sort(scores[same]), cand)
    tn = np.searchsorted(np.sort(scores[~same]), cand, side="left")  # different pairs below cand
    acc = tp + tn
    best = np.nonzero(acc == acc.max())[0]
    j = int(best[(best.size - 1) // 2])  # middle of the equally good thresholds: least biased
    # Any threshold in (u[j-1], u[j]] gives the same training accuracy; the midpoint keeps the
    # largest margin to both neighbouring scores.
    if j == 0:
        return float(u[0])
    if j == u.size:
        return float(np.nextafter(u[-1], np.inf))
    return float((u[j - 1] + u[j]) / 2)


def verification_accuracy_kfold(scores, same, folds) -> tuple[float, float, np.ndarray]:
    """LFW-protocol verification accuracy: (mean, std, per-fold thresholds).

    `folds` is one fold id per pair (e.g. `Pair.fold`) or an int k (pairs dealt to folds i % k).
    For each fold the threshold with the best accuracy on all *other* folds is applied to that
    fold; accuracy is (true accepts + true rejects) / pairs, a fraction. `std` is the sample
    standard deviation over folds (ddof=1) as in the LFW README, so the standard error of the mean
    is std / sqrt(k).
    """
    s = _scores(scores, "scores")
    y = np.asarray(same, dtype=bool).ravel()
    f = np.arange(s.size) % int(folds) if np.ndim(folds) == 0 else np.asarray(folds).ravel()
    if y.size != s.size or f.size != s.size:
        raise InvalidInputError(f"scores ({s.size}), same ({y.size}) and folds ({f.size}) differ in length")
    ids = np.unique(f)
    if ids.size < 2:
        raise InvalidInputError("k-fold accuracy needs at least 2 folds")
    accs, thresholds = [], []
    for fold in ids:
        test = f == fold
        t = _best_threshold(s[~test], y[~test])
        accs.append(float(np.mean((s[test] >= t) == y[test])))
        thresholds.append(t)
    return float(np.mean(accs)), float(np.std(accs, ddof=1)), np.asarray(thresholds)
