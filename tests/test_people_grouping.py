"""people.grouping and people.metrics as pure functions: hand-checked scores, constraints, incremental runs.

Synthetic faceprints (store/synthetic.py, shaped like dlib's) stand in where the algorithm, not the face
pipeline, is under test; the real-photo tests are in test_people.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from faceindex.people.grouping import GroupingParams, agglomerate, group, knn_edges, undirected
from faceindex.people.metrics import cluster_scores
from faceindex.store.synthetic import make_gallery

PARAMS = GroupingParams(0.9266, 0.9374)


def test_scores_by_hand():
    # truth: A A A B B ; predicted: {0,1} {2,3} {4}
    s = cluster_scores(np.array([0, 0, 1, 1, 2]), np.array(list("AAABB")))
    assert s.pairwise_precision == pytest.approx(1 / 2)  # pairs put together: (0,1) right, (2,3) wrong
    assert s.pairwise_recall == pytest.approx(1 / 4)  # true pairs: 3 of A + 1 of B; found (0,1)
    # BCubed precision per face: 1, 1, 1/2, 1/2, 1 -> 0.8; recall: 2/3, 2/3, 1/3, 1/2, 1/2 -> 8/15
    assert s.bcubed_precision == pytest.approx(0.8)
    assert s.bcubed_recall == pytest.approx(8 / 15)
    assert s.unassigned == 0 and s.n_groups == 3


def test_unassigned_faces_count_as_groups_of_one():
    s = cluster_scores(np.array([-1, -1, 0, 0]), np.array(list("AABB")))
    assert s.pairwise_precision == 1.0 and s.pairwise_recall == pytest.approx(0.5)
    assert s.unassigned == 2 and s.n_groups == 1


def test_undirected_keeps_each_pair_once_strongest_first():
    i, j, s = undirected(np.array([0, 1, 2, 0]), np.array([1, 0, 0, 2]), np.array([0.9, 0.95, 0.8, 0.7]))
    assert i.tolist() == [0, 0] and j.tolist() == [1, 2]
    assert s.tolist() == pytest.approx([0.95, 0.8])


def test_synthetic_identities_are_grouped_without_mixing():
    gallery = make_gallery(3000, seed=3)
    labels = group(gallery.vectors, PARAMS)
    s = cluster_scores(labels, gallery.identities)
    assert s.pairwise_precision >= 0.99
    assert s.bcubed_f >= 0.85


def test_average_link_refuses_a_chain():
    # a ~ b ~ c along a line: a-b and b-c are close, a-c are strangers. Single link would join all three.
    base = np.zeros(128, np.float32)
    base[0] = 1.0
    step = np.zeros(128, np.float32)
    step[1] = 1.0
    x = np.stack([base + t * step for t in (0.0, 0.33, 0.66)])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sims = x @ x.T
    assert sims[0, 1] > 0.94 and sims[1, 2] > 0.94 and sims[0, 2] < 0.85
    labels = agglomerate(x, knn_edges(x, 2), GroupingParams(0.9, 0.93))
    assert labels[0] != labels[2] or labels[0] == -1


def test_incremental_run_keeps_fixed_groups_apart_and_joins_new_faces():
    gallery = make_gallery(2000, seed=5)
    x, truth = gallery.vectors, gallery.identities
    labels = group(x, PARAMS)
    # An operator splits the biggest group in two: both halves are fixed and must stay apart.
    big = np.bincount(labels[labels >= 0]).argmax()
    members = np.flatnonzero(labels == big)
    start = labels.copy()
    start[members[: len(members) // 2]] = labels.max() + 1
    new_x, new_truth = gallery.probes(200, seed=9)
    all_x = np.concatenate([x, new_x])
    rows = np.arange(len(x), len(all_x))
    out = group(all_x, PARAMS, start=np.concatenate([start, np.full(200, -1)]), new_rows=rows)
    assert np.array_equal(out[: len(x)][start >= 0], start[start >= 0]), "a fixed group changed"
    joined = np.isin(out[rows], start[start >= 0])
    assert joined.mean() > 0.5
    after = cluster_scores(out, np.concatenate([truth, new_truth]))
    assert after.pairwise_precision >= 0.99
