"""After agglomeration: a face left alone joins the group whose mean faceprint it clearly matches (fused score).

Why a second step: agglomeration asks a lone face to reach `single_threshold` on its *average* cosine to a
group, i.e. cos(face, group mean) × ‖group mean‖. A person's outlier photos (profile, age, lighting) fall
short of that even when they match the person's mean faceprint well, and that is most of the recall lost on
LFW (BENCHMARKS.md, people quality). The mean faceprint of n faces is the fused probe of search by person
(faceindex/fusion.py), whose stranger scores are calibrated per probe count: the threshold a face must reach
to join a group of n is the fused score a stranger reaches at the chosen FMR against n probes, so bigger
groups (whose means strangers also score higher against) ask more. A face that matches two groups almost
equally (within `margin`) joins neither: look-alikes are where a wrong join happens.

One pass against the groups as agglomeration left them (joins do not move the means), so the result does not
depend on the order of the faces. Only free faces that agglomeration left unassigned move; the constraints
are agglomeration's: never two faces of one photo in a group, never a face into a group an operator rejected
it from. Costs O(edges + n) and one dot product per (face, candidate group); candidates are the groups of
the face's k-NN neighbours, never all groups.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def join_threshold(thresholds: Sequence[float], n: int) -> float:
    """The fused score a face needs to join a group of n >= 2 faces: `thresholds[n - 2]`, the last for more."""
    return float(thresholds[min(n, len(thresholds) + 1) - 2])


def join_to_means(x: np.ndarray, labels: np.ndarray, edges: tuple[np.ndarray, np.ndarray, np.ndarray],
                  thresholds: Sequence[float], margin: float, *, photo: np.ndarray | None = None,
                  start: np.ndarray | None = None, cannot_join: Iterable[tuple[int, int]] = ()) -> np.ndarray:
    """New labels: each free unassigned row joins its best candidate group when it clears the bar.

    - `x`: unit faceprints (n, dim); `labels`: agglomeration's labels (-1 = unassigned);
      `edges`: the (i, j, cosine) k-NN edges agglomeration used (candidates: the groups of a row's neighbours).
    - `thresholds`: fused-score thresholds by group size (`join_threshold`); empty = no joins.
    - `margin`: the best group's fused score must beat the second candidate's by this much (cosine units).
    - `photo`, `start`, `cannot_join`: as in `grouping.agglomerate` (a row with a start label never moves).
    """
    labels = np.asarray(labels, dtype=np.int64)
    out = labels.copy()
    if not len(thresholds) or not len(labels):
        return out
    start = np.full(len(labels), -1, np.int64) if start is None else np.asarray(start, dtype=np.int64)
    ei, ej = (np.asarray(a, dtype=np.int64) for a in edges[:2])
    src, dst = np.concatenate([ei, ej]), np.concatenate([ej, ei])
    keep = (labels[src] < 0) & (start[src] < 0) & (labels[dst] >= 0)
    pairs = np.unique(np.stack([src[keep], labels[dst[keep]]], axis=1), axis=0) if keep.any() else None
    if pairs is None:
        return out
    rows, cand = pairs[:, 0], pairs[:, 1]
    groups, inv = np.unique(cand, return_inverse=True)
    members = np.flatnonzero(np.isin(labels, groups))
    g_of = np.searchsorted(groups, labels[members])
    sums = np.zeros((len(groups), x.shape[1]))
    np.add.at(sums, g_of, np.asarray(x, dtype=np.float64)[members])
    sizes = np.bincount(g_of, minlength=len(groups))
    norms = np.linalg.norm(sums, axis=1)
    score = np.einsum("ij,ij->i", np.asarray(x, dtype=np.float64)[rows], sums[inv]) / norms[inv]
    need = np.array([join_threshold(thresholds, int(s)) if s >= 2 else np.inf for s in sizes])[inv]
    # Per row: best and second-best candidate (pairs are sorted by row; sort by row, then score descending).
    order = np.lexsort((-score, rows))
    rows, cand, score, need = rows[order], cand[order], score[order], need[order]
    first = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    second = np.full(len(first), -np.inf)
    has_two = np.r_[first[1:], len(rows)] - first >= 2
    second[has_two] = score[first[has_two] + 1]
    ok = (score[first] >= need[first]) & (score[first] - second >= margin)
    chosen = first[ok]
    banned = {(int(r), int(g)) for r, g in cannot_join}
    taken: set[tuple[int, int]] = set()
    if photo is not None:
        held = members[np.asarray(photo)[members] >= 0]  # only the candidate groups' photos matter
        taken = set(zip(labels[held].tolist(), np.asarray(photo)[held].tolist(), strict=True))
    # Strongest first, so when two faces of one photo want one group the better match gets it.
    for k in chosen[np.argsort(-score[chosen], kind="stable")].tolist():
        r, g = int(rows[k]), int(cand[k])
        if (r, g) in banned:
            continue
        if photo is not None and photo[r] >= 0:
            key = (g, int(photo[r]))
            if key in taken:
                continue
            taken.add(key)
        out[r] = g
    return out
