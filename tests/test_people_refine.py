"""people.refine: a lone face joins the group whose mean faceprint it matches, with margin and constraints.

Hand-built unit faceprints where the algorithm is under test (a person is a direction u, their photos u + a·e_k
with e_k orthogonal noise directions), and the real pipeline on 20 photos of people/ for the end-to-end case.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from faceindex.matching import load_calibration, load_fusion_calibration
from faceindex.people.grouping import GroupingParams, agglomerate, group, knn_edges
from faceindex.people.refine import join_threshold, join_to_means

DIM = 128


def _face(person: int, noise: int, a: float) -> np.ndarray:
    v = np.zeros(DIM, np.float32)
    v[person] = 1.0
    v[noise] = a
    return v / np.linalg.norm(v)


def _person_and_outlier():
    """Rows 0-3: one person, pairwise cosine 1/(1+0.2²) = 0.962. Row 4: their outlier photo, cosine 0.939 to
    each of them (below a lone face's 0.945) but 0.953 to their mean faceprint."""
    return np.stack([_face(0, 10 + k, 0.2) for k in range(4)] + [_face(0, 20, 0.3)])


PARAMS = GroupingParams(0.92, 0.94, single_threshold=0.945, join_thresholds=(0.95,), join_margin=0.01)


def test_an_outlier_photo_joins_its_person_through_the_mean_faceprint():
    x = _person_and_outlier()
    assert float(x[4] @ x[0]) == pytest.approx(0.9393, abs=1e-3)
    without = group(x, GroupingParams(0.92, 0.94, single_threshold=0.945))  # no join step
    assert without.tolist() == [0, 0, 0, 0, -1]
    labels = group(x, PARAMS)
    assert labels.tolist() == [0, 0, 0, 0, 0]


def test_a_group_bigger_than_the_table_uses_its_last_threshold():
    assert join_threshold((0.91, 0.92, 0.93), 2) == 0.91
    assert join_threshold((0.91, 0.92, 0.93), 4) == 0.93
    assert join_threshold((0.91, 0.92, 0.93), 400) == 0.93
    x = _person_and_outlier()
    # a group of 4 faces asks the third entry (0.96): the outlier's 0.953 is not enough
    strict = GroupingParams(0.92, 0.94, single_threshold=0.945, join_thresholds=(0.95, 0.95, 0.96))
    assert group(x, strict).tolist() == [0, 0, 0, 0, -1]


def _two_people_and_a_face_between():
    """Rows 0-3 person A (direction 0), rows 4-7 person B (direction 1, close to A), row 8 halfway."""
    a = [_face(0, 10 + k, 0.2) for k in range(4)]
    b = []
    for k in range(4):
        v = np.zeros(DIM, np.float32)
        v[0], v[1], v[20 + k] = 0.97, 0.243, 0.2
        b.append(v / np.linalg.norm(v))
    mid = np.zeros(DIM, np.float32)
    mid[0], mid[1], mid[30] = 1.0, 0.12, 0.25
    return np.stack(a + b + [mid / np.linalg.norm(mid)]), np.array([0] * 4 + [1] * 4 + [-1])


def test_a_face_that_matches_two_people_about_equally_joins_neither():
    x, labels = _two_people_and_a_face_between()
    edges = knn_edges(x, 20, min_sim=0.9)
    means = [x[labels == g].sum(0) / np.linalg.norm(x[labels == g].sum(0)) for g in (0, 1)]
    scores = sorted(float(x[8] @ m) for m in means)
    assert scores[1] >= 0.95 and scores[1] - scores[0] < 0.01  # both clear the bar, within the margin
    assert join_to_means(x, labels, edges, (0.95,), 0.01)[8] == -1
    assert join_to_means(x, labels, edges, (0.95,), 0.0)[8] in (0, 1)  # no margin: it joins the better one


def test_one_photo_never_twice_in_a_person_and_rejections_hold():
    x = _person_and_outlier()
    labels = np.array([0, 0, 0, 0, -1])
    edges = knn_edges(x, 20, min_sim=0.9)
    assert join_to_means(x, labels, edges, (0.95,), 0.01)[4] == 0
    photo = np.array([10, 11, 12, 13, 12])  # the outlier is in the same photo as row 2
    assert join_to_means(x, labels, edges, (0.95,), 0.01, photo=photo)[4] == -1
    assert join_to_means(x, labels, edges, (0.95,), 0.01, cannot_join=[(4, 0)])[4] == -1
    # two free faces of one photo that both match: only the better one joins
    y = np.vstack([x, _face(0, 21, 0.31)])
    both = join_to_means(y, np.array([0, 0, 0, 0, -1, -1]), knn_edges(y, 20, min_sim=0.9), (0.95,), 0.01,
                         photo=np.array([1, 2, 3, 4, 9, 9]))
    assert both.tolist() == [0, 0, 0, 0, 0, -1]


def test_existing_people_are_joined_but_never_moved():
    x = _person_and_outlier()
    start = np.array([7, 7, 7, 7, -1])  # an operator's person, label 7
    edges = knn_edges(x, 20, min_sim=0.9)
    labels = agglomerate(x, edges, PARAMS, start=start)
    assert labels.tolist() == [7, 7, 7, 7, -1]
    assert group(x, PARAMS, start=start).tolist() == [7, 7, 7, 7, 7]
    assert group(x, PARAMS, start=start, cannot_join=[(4, 7)]).tolist() == [7, 7, 7, 7, -1]


def test_thresholds_come_from_the_shipped_fused_calibration():
    model = "dlib-resnet-v1+flip"
    params = GroupingParams.from_calibration(load_calibration(model))
    joins = params.join_thresholds
    assert len(joins) >= 2 and all(0.94 < t < 0.97 for t in joins)
    assert list(joins) == sorted(joins)  # a bigger group never asks less
    fusion = load_fusion_calibration(model)
    _, two, _ = fusion.for_probes(2)
    assert joins[0] == pytest.approx(two.threshold_for_fmr(1e-4))
    assert GroupingParams.from_calibration(load_calibration(model), fusion=None).join_thresholds == ()
    # a model without a fused calibration groups without the join step
    assert GroupingParams.from_calibration(load_calibration("dlib-resnet-v1")).join_thresholds == ()


PEOPLE = ("Leonardo_DiCaprio", "Mark_Zuckerberg", "Matt_Damon", "Robert_Downey_Jr", "Tom_Cruise")


def test_real_photos_an_outlier_joins_its_person_and_nobody_mixes(faces_dir):
    """Real pipeline on 20 photos of 5 people/ folders: Robert Downey Jr's fifth photo misses the average-link bar
    and is found by the join step; every group stays one person."""
    from faceindex.config import Settings
    from faceindex.evaluation.dataset import LabelledEmbedder, scan_labelled_folder
    from faceindex.pipeline.analyse import FacePipeline

    images = [i for i in scan_labelled_folder(faces_dir / "people") if i.identity in PEOPLE]
    embedder = LabelledEmbedder(FacePipeline(Settings()), workers=1, face_choice="prominent")
    done = [e for e in embedder.embed_all(images) if e.ok]
    assert len(done) == 20
    x = np.stack([e.embedding for e in done]).astype(np.float32)
    truth = np.array([e.image.identity for e in done])
    params = GroupingParams.from_calibration(load_calibration(embedder.model_id))
    assert params.join_thresholds  # the default pipeline's model ships a fused calibration
    before = group(x, replace(params, join_thresholds=()))
    after = group(x, params)
    outlier = int(np.flatnonzero([e.image.path.name == "insightface__d5.jpeg" for e in done])[0])
    assert before[outlier] == -1
    mates = (truth == "Robert_Downey_Jr") & (np.arange(len(x)) != outlier)
    assert after[outlier] >= 0 and set(after[mates].tolist()) == {after[outlier]}
    for label in set(after[after >= 0].tolist()):
        assert len(set(truth[after == label].tolist())) == 1
    assert (after >= 0).sum() == (before >= 0).sum() + 1
