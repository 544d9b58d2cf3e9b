"""people.grouping and people.metrics as pure functions: hand-checked scores, constraints, incremental runs.

Synthetic faceprints (store/synthetic.py, shaped like dlib's) stand in where the algorithm, not the face
pipeline, is under test; the real-photo tests are in test_people.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from faceindex.people.grouping import GroupingParams, agglomerate, group, knn_edges, undirected
from faceindex.people.knn import from_pairs, job_index, row_search
from faceindex.people.metrics import cluster_scores
from faceindex.store.synthetic import make_gallery
from faceindex.store.vector_index import VectorIndex

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


# -- the k-NN graph (people/knn.py): job graph, the store's index, face ids to rows --------------------------

def test_job_graph_finds_the_close_edges_of_the_exact_graph():
    gallery = make_gallery(2000, seed=21)
    x = gallery.vectors
    exact = knn_edges(x, 20, min_sim=PARAMS.edge_threshold)
    approx = knn_edges(x, 20, min_sim=PARAMS.edge_threshold, index=job_index(x))
    want = set(zip(exact[0].tolist(), exact[1].tolist(), strict=True))
    got = set(zip(approx[0].tolist(), approx[1].tolist(), strict=True))
    assert len(got & want) / len(want) >= 0.9
    true_cos = np.einsum("ij,ij->i", x[approx[0]], x[approx[1]])
    assert np.allclose(approx[2], true_cos, atol=1e-5) and (approx[2] >= PARAMS.edge_threshold).all()
    exact_labels = agglomerate(x, exact, PARAMS)
    approx_labels = agglomerate(x, approx, PARAMS)
    a, b = cluster_scores(exact_labels, gallery.identities), cluster_scores(approx_labels, gallery.identities)
    assert b.pairwise_precision >= 0.99 and b.bcubed_f >= a.bcubed_f - 0.01


def test_row_search_maps_face_ids_to_rows_and_drops_faces_out_of_scope():
    # The store holds faces 10, 20, 30, 40; grouping's scope is faces 10, 30, 40 (20 is in a collection
    # that does not allow grouping).
    def face_search(queries, k):
        return (np.array([[0.99, 0.97, 0.95, 0.90, -np.inf]] * len(queries), np.float32),
                np.array([[30, 20, 40, 10, -1]] * len(queries), np.int64))

    search = row_search(face_search, np.array([10, 30, 40]), spare=2)
    scores, rows = search(np.zeros((1, 4), np.float32), 3)
    assert rows.tolist() == [[1, -1, 2, 0, -1]]
    assert scores[0, [0, 2, 3]].tolist() == pytest.approx([0.99, 0.95, 0.90])
    assert np.isneginf(scores[0, [1, 4]]).all()
    with pytest.raises(ValueError):
        row_search(face_search, np.array([3, 2]))


def test_from_pairs_pads_short_hit_lists():
    search = from_pairs(lambda q, k: [[(7, 0.9), (3, 0.8)], []])
    scores, ids = search(np.zeros((2, 4), np.float32), 3)
    assert ids.tolist() == [[7, 3, -1], [-1, -1, -1]]
    assert scores[0, :2].tolist() == pytest.approx([0.9, 0.8]) and np.isneginf(scores[1]).all()


def test_incremental_run_through_the_store_index_matches_the_graph_built_for_the_job():
    gallery = make_gallery(3000, seed=13)
    x = gallery.vectors
    labels = group(x, PARAMS)
    new_x, _ = gallery.probes(150, seed=17)
    all_x = np.concatenate([x, new_x])
    rows = np.arange(len(x), len(all_x))
    start = np.concatenate([labels, np.full(len(new_x), -1)])
    # The store's index (a real VectorIndex) holds every face under its face id; ids are not row numbers.
    face_ids = np.arange(len(all_x), dtype=np.int64) * 3 + 5
    store = VectorIndex(x.shape[1], "synthetic")
    store.add(face_ids, all_x)
    # spare=0: ask the store for exactly the k + 1 neighbours the job graph looks at, so the edges are the same.
    via_store = group(all_x, PARAMS, start=start, new_rows=rows, search=row_search(store.search, face_ids, spare=0))
    built = group(all_x, PARAMS, start=start, new_rows=rows)
    assert np.array_equal(via_store, built)
    assert np.isin(via_store[rows], labels[labels >= 0]).mean() > 0.5


def test_many_new_faces_build_a_graph_instead_of_asking_the_store(monkeypatch):
    from faceindex.people import grouping

    def refuse(queries, k):
        raise AssertionError("the store's index was asked for more faces than STORE_SEARCH_MAX")

    gallery = make_gallery(600, seed=2)
    monkeypatch.setattr(grouping, "STORE_SEARCH_MAX", 100)
    labels = group(gallery.vectors, PARAMS, search=refuse)
    assert cluster_scores(labels, gallery.identities).pairwise_precision >= 0.99
    with pytest.raises(AssertionError):
        group(gallery.vectors, PARAMS, new_rows=np.arange(50), search=refuse)


def _fill(store, collection: str, vectors: np.ndarray, first: int) -> None:
    """Synthetic faceprints as faces of synthetic photos (one face each) in a real catalog."""
    from faceindex.pipeline.types import Face

    catalog = store.catalog
    with catalog.transaction():
        catalog.bind_model("dlib-resnet-v1+flip")
        found = [c for c in catalog.list_collections() if c.name == collection]
        coll = found[0] if found else catalog.create_collection(collection, "legitimate-interests", "people test")
        for k, v in enumerate(vectors):
            image_id = catalog.insert_image(coll.id, f"/synthetic/{first + k:06d}.jpg", sha256=f"{first + k:064x}",
                                            size_bytes=1)
            catalog.insert_faces(image_id, [Face(box=(0, 0, 100, 100), score=1.0, detector="synthetic", landmarks=[],
                                                 size_px=100, blur=100.0, embedding=v)], "dlib-resnet-v1+flip")


def test_people_ops_ask_the_store_index_for_the_new_faces_only(tmp_path):
    from faceindex.people.operations import PeopleOps
    from faceindex.store.face_store import FaceStore

    gallery = make_gallery(800, seed=31)
    store = FaceStore(tmp_path / "store")
    store.open_for_writing()
    _fill(store, "a", gallery.vectors, 0)
    asked: list[int] = []

    def face_search(vectors, k):
        asked.append(len(vectors))
        return store.search(vectors, k)

    ops = PeopleOps(store.catalog, params=PARAMS, face_search=face_search)
    first = ops.cluster()
    assert asked == [800] and first.new_people > 0
    new_x, _ = gallery.probes(40, seed=33)
    _fill(store, "a", new_x, 800)
    second = ops.cluster()
    # The 40 new faces, then the free faces they reached (seen before, left alone): not every free face again.
    assert asked[1] == 40 and sum(asked[1:]) < 40 + first.unassigned, asked
    assert second.joined_existing > 20
    # A scope under half the store (collection b alone) builds its own graph: the store's neighbours would
    # mostly be faces of collection a.
    _fill(store, "b", gallery.vectors[:100], 900)
    calls = len(asked)
    ops.cluster("b")
    assert len(asked) == calls
    store.close()
