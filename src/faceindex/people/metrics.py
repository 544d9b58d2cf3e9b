"""Clustering quality against known identities: pairwise and BCubed precision, recall and F."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class ClusterScores:
    """Fractions in [0, 1]. Pairwise: over pairs of faces put together (precision) or belonging together
    (recall). BCubed: per face, the share of its group that is its identity (precision) and of its
    identity that is in its group (recall), averaged over faces, so big identities do not dominate as
    they do pairwise. Unassigned faces (label -1) count as groups of one."""

    pairwise_precision: float
    pairwise_recall: float
    pairwise_f: float
    bcubed_precision: float
    bcubed_recall: float
    bcubed_f: float
    n_faces: int
    n_groups: int
    unassigned: int

    def as_dict(self) -> dict:
        return asdict(self)


def _f(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def cluster_scores(labels: np.ndarray, truth: np.ndarray) -> ClusterScores:
    """Scores of predicted `labels` (int, -1 = unassigned) against `truth` (any hashable per face)."""
    labels = np.asarray(labels, dtype=np.int64).copy()
    n = len(labels)
    unassigned = labels < 0
    labels[unassigned] = labels.max(initial=-1) + 1 + np.arange(int(unassigned.sum()))
    _, pred = np.unique(labels, return_inverse=True)
    _, true = np.unique(np.asarray(truth), return_inverse=True)
    joint = pred.astype(np.int64) * (true.max() + 1) + true
    _, joint_inv, joint_counts = np.unique(joint, return_inverse=True, return_counts=True)
    pred_counts, true_counts = np.bincount(pred), np.bincount(true)
    both = joint_counts[joint_inv].astype(np.float64)  # per face: faces sharing its group and identity
    bp = float(np.mean(both / pred_counts[pred]))
    br = float(np.mean(both / true_counts[true]))
    pairs = lambda c: float(np.sum(c.astype(np.float64) * (c - 1) / 2))  # noqa: E731
    tp, pp, tt = pairs(joint_counts), pairs(pred_counts), pairs(true_counts)
    p = tp / pp if pp else 1.0
    r = tp / tt if tt else 1.0
    return ClusterScores(p, r, _f(p, r), bp, br, _f(bp, br), n, int(len(pred_counts) - unassigned.sum()),
                         int(unassigned.sum()))
