"""VectorIndex: exact and HNSW search, erasure, atomic self-checking persistence, synthetic faceprints."""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
import pytest

from faceindex.errors import InvalidInputError, ModelMismatchError, StoreError
from faceindex.store import index_file
from faceindex.store.ivf import nprobe_for
from faceindex.store.synthetic import make_gallery, similarity_stats
from faceindex.store.vector_index import IndexParams, VectorIndex

MODEL = "dlib_resnet_v1"


def exact_topk(gallery: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    sims = queries @ gallery.T
    rows = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, rows, axis=1), rows


@pytest.fixture(scope="module")
def small():
    g = make_gallery(2_000, seed=3)
    ids = np.arange(2_000, dtype=np.int64) * 7 + 100  # face ids need not be row numbers
    return g, ids


def flat_index(small) -> VectorIndex:
    g, ids = small
    vi = VectorIndex(128, MODEL)
    vi.add(ids, g.vectors)
    return vi


def hnsw_index(small) -> VectorIndex:
    g, ids = small
    params = IndexParams(layout="hnsw-flat", hnsw_m=16, ef_construction=40)
    vi = VectorIndex(128, MODEL, approximate_above=500, params=params)
    vi.add(ids[:400], g.vectors[:400])
    assert vi.kind == "flat"
    vi.add(ids[400:], g.vectors[400:])  # crosses the threshold: graph built from all stored vectors
    assert vi.kind == "hnsw"
    return vi


def sq8_index(small, work_dir=None) -> VectorIndex:
    """The memory-lean layout: HNSW M16 over SQ8 codes, float32 vectors in a memory-mapped file."""
    g, ids = small
    params = IndexParams(layout="hnsw-sq8-mmap", ef_construction=40)
    vi = VectorIndex(128, MODEL, approximate_above=500, params=params, work_dir=work_dir)
    vi.add(ids[:400], g.vectors[:400])
    assert vi.kind == "flat" and vi.mapped_bytes() == 0
    vi.add(ids[400:1_500], g.vectors[400:1_500])  # crosses the threshold: SQ8 graph + vectors file
    vi.add(ids[1_500:], g.vectors[1_500:])  # grows both incrementally
    assert vi.kind == "hnsw" and vi.layout == "hnsw-sq8-mmap" and vi.mapped_bytes() == 2_000 * 512
    return vi


def ivf_index(small, work_dir=None) -> VectorIndex:
    """The default layout beyond ``ivf_above``: flat, then HNSW-SQ8, then IVF over SQ8 residual codes."""
    g, ids = small
    params = IndexParams(ivf_above=1_500, ef_construction=40, nprobe=40)
    vi = VectorIndex(128, MODEL, approximate_above=500, params=params, work_dir=work_dir)
    vi.add(ids[:1_200], g.vectors[:1_200])
    assert vi.kind == "hnsw" and not vi.rebuild_needed(300) and vi.rebuild_needed(301)
    vi.add(ids[1_200:1_800], g.vectors[1_200:1_800])  # crosses ivf_above: rebuilt as IVF, lists trained
    vi.add(ids[1_800:], g.vectors[1_800:])  # appended to the lists
    # ~4·sqrt(n) lists, less those that would average fewer than 8 training faceprints (privacy)
    assert vi.kind == "ivf" and 50 < vi.nlist <= int(4 * 1_800**0.5) and vi.mapped_bytes() == 2_000 * 512
    assert vi.rebuild_needed(4 * 1_800 - 2_000 + 1) and not vi.rebuild_needed(100)  # 4x its trained size
    return vi


def files_under(*dirs) -> list:
    return [f for d in dirs for f in Path(d).rglob("*") if f.is_file()]


# -- exact index -----------------------------------------------------------------------------------
def test_flat_search_is_exact(small):
    g, ids = small
    vi = flat_index(small)
    assert len(vi) == 2_000 and vi.kind == "flat"
    q, _ = g.probes(20, seed=5)
    scores, got = vi.search(q, 10)
    want_s, want_rows = exact_topk(g.vectors, q, 10)
    assert got.dtype == np.int64 and scores.dtype == np.float32 and got.shape == (20, 10)
    np.testing.assert_array_equal(got, ids[want_rows])
    np.testing.assert_allclose(scores, want_s, atol=1e-5)


def test_remove_and_missing_slots(small):
    g, ids = small
    vi = VectorIndex(128, MODEL)
    vi.add(ids[:5], g.vectors[:5])
    assert vi.remove(np.array([ids[1], ids[3], 999_999])) == 2
    assert vi.remove(np.array([ids[1], -1])) == 0
    assert len(vi) == 3
    scores, got = vi.search(g.vectors[1], 5)
    assert set(got[0, :3]) == {ids[0], ids[2], ids[4]}
    assert list(got[0, 3:]) == [-1, -1] and np.isneginf(scores[0, 3:]).all()
    empty = VectorIndex(128, MODEL)
    s, i = empty.search(g.vectors[:2], 3)
    assert (i == -1).all() and np.isneginf(s).all()
    vi.add(ids[1:2], g.vectors[1:2])  # an erased id may come back (re-ingest)
    assert vi.search(g.vectors[1], 1)[1][0, 0] == ids[1]


def test_input_validation(small):
    g, ids = small
    vi = flat_index(small)
    with pytest.raises(InvalidInputError):
        vi.add(ids[:1], g.vectors[:1])  # already present
    with pytest.raises(InvalidInputError):
        vi.add(np.array([1, 1]), g.vectors[:2])  # repeated in the batch
    with pytest.raises(InvalidInputError):
        vi.add(np.array([-5]), g.vectors[:1])
    with pytest.raises(InvalidInputError):
        vi.add(np.array([1, 2]), g.vectors[:1])
    with pytest.raises(InvalidInputError):
        vi.search(np.ones((1, 64), np.float32), 3)  # wrong dimension
    with pytest.raises(InvalidInputError):
        vi.search(np.full((1, 128), np.nan, np.float32), 3)
    with pytest.raises(InvalidInputError):
        vi.search(np.zeros(128, np.float32), 3)
    # Raw (unnormalised) descriptors are normalised, so scores stay cosines.
    scores, got = vi.search(g.vectors[7] * 1.44, 1)
    assert got[0, 0] == ids[7] and scores[0, 0] == pytest.approx(1.0, abs=1e-5)


def test_search_above_is_exact_and_ordered(small):
    g, ids = small
    q = g.vectors[42]
    sims = g.vectors @ q
    want = set(ids[sims >= 0.9])
    for vi in (flat_index(small), hnsw_index(small), sq8_index(small)):
        scores, got = vi.search_above(q, 0.9)
        assert set(got) == want and len(got) == len(want)
        assert (np.diff(scores) <= 0).all() and scores.min() >= 0.9
        s3, g3 = vi.search_above(q, 0.9, limit=3)
        np.testing.assert_array_equal(g3, got[:3])


# -- approximate index -----------------------------------------------------------------------------
def assert_close_to_exact(vi: VectorIndex, g) -> None:
    """300 mated probes: recall@10 vs exact >= 0.98, scores exact cosines best first, and every true mate
    above the match threshold among the exact top 50 found by a k=50 search (mate recall >= 0.98)."""
    q, who = g.probes(300, seed=12)
    scores, got = vi.search(q, 10)
    want_s, want = exact_topk(g.vectors, q, 50)
    recall = np.mean([len(set(got[i]) & set(want[i, :10])) / 10 for i in range(len(q))])
    assert recall >= 0.98, recall
    np.testing.assert_allclose(scores, np.einsum("qd,qkd->qk", q, g.vectors[got]), atol=1e-5)
    assert (np.diff(scores, axis=1) <= 0).all()
    _, got50 = vi.search(q, 50)
    mate = (want_s >= 0.92) & (g.identities[want] == who[:, None])
    found = sum(np.isin(want[i][mate[i]], got50[i]).sum() for i in range(len(q)))
    assert found / mate.sum() >= 0.98, (found, mate.sum())


@pytest.mark.parametrize("layout", ["hnsw-flat", "hnsw-sq8-mmap"])
def test_hnsw_recall_on_faceprint_like_clusters(layout, tmp_path):
    """30 k synthetic faceprints (identity clusters as tight as dlib's): recall@10 vs exact >= 0.98."""
    g = make_gallery(30_000, seed=11)
    ids = np.arange(30_000, dtype=np.int64)
    vi = VectorIndex(128, MODEL, approximate_above=10_000, params=IndexParams(layout=layout), work_dir=tmp_path)
    for lo in range(0, 30_000, 10_000):
        vi.add(ids[lo : lo + 10_000], g.vectors[lo : lo + 10_000])
    assert vi.kind == "hnsw" and len(vi) == 30_000
    assert_close_to_exact(vi, g)


def test_hnsw_remove_hides_erases_and_compacts(small, tmp_path):
    g, ids = small
    vi = hnsw_index(small)
    gone = ids[10:20]
    assert vi.remove(gone) == 10 and len(vi) == 1_990 and vi.kind == "hnsw"
    assert vi.remove(np.concatenate([gone, [-1]])) == 0  # nothing left to remove, dead rows untouched
    _, got = vi.search(g.vectors[10:20], 20)
    assert not set(got.ravel()) & set(gone)
    assert not set(vi.search_above(g.vectors[15], 0.0)[1]) & set(gone)
    vi.save(tmp_path / "ix", {"epoch": 1})
    vi2, _ = VectorIndex.load(tmp_path / "ix")
    assert len(vi2) == 1_990 and not set(vi2.search(g.vectors[10:20], 20)[1].ravel()) & set(gone)
    # Past max_dead_fraction the graph is rebuilt from the live vectors; small enough -> exact again.
    vi.remove(ids[:1_600])
    assert len(vi) == 400 and vi.kind == "flat"
    assert vi.search(g.vectors[1_999], 1)[1][0, 0] == ids[1_999]


@pytest.mark.parametrize("make", [flat_index, hnsw_index, sq8_index, ivf_index], ids=["flat", "hnsw", "sq8", "ivf"])
def test_removed_vectors_absent_from_saved_file(small, tmp_path, make):
    g, ids = small
    vi = make(small)
    path = tmp_path / "faces.fidx"
    vi.save(path, {"max_face_id": int(ids.max())})
    blob = b"".join(f.read_bytes() for f in files_under(tmp_path))  # every file the store keeps
    victims = [3, 700, 1_500]
    assert all(g.vectors[r].tobytes() in blob for r in victims)  # the scan below can see vectors
    vi.remove(ids[victims])
    vi.save(path, {"max_face_id": int(ids.max())})
    blob = b"".join(f.read_bytes() for f in files_under(tmp_path))
    for r in victims:
        v = g.vectors[r]
        assert v.tobytes() not in blob
        assert v[:16].tobytes() not in blob and v[-16:].tobytes() not in blob  # nor a fragment
    assert g.vectors[4].tobytes() in blob


# -- persistence -----------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [flat_index, hnsw_index, sq8_index, ivf_index], ids=["flat", "hnsw", "sq8", "ivf"])
def test_save_load_round_trip(small, tmp_path, make):
    g, _ = small
    vi = make(small)
    wm = {"max_face_id": 14_093, "epoch": 4}
    vi.save(tmp_path / "faces.fidx", wm)
    vi2, wm2 = VectorIndex.load(tmp_path / "faces.fidx")
    assert wm2 == wm
    assert (vi2.kind, len(vi2), vi2.model_id, vi2.dim) == (vi.kind, len(vi), MODEL, 128)
    assert vi2.params == vi.params and vi2.approximate_above == vi.approximate_above
    q, _ = g.probes(10, seed=9)
    for a, b in zip(vi.search(q, 10), vi2.search(q, 10), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not list(tmp_path.glob(".*tmp*"))


def test_model_and_dim_mismatch(small, tmp_path):
    vi = flat_index(small)
    vi.save(tmp_path / "ix", {})
    with pytest.raises(ModelMismatchError):
        VectorIndex.load(tmp_path / "ix", model_id="arcface_r100")
    with pytest.raises(ModelMismatchError):
        VectorIndex.load(tmp_path / "ix", dim=512)
    assert len(VectorIndex.load(tmp_path / "ix", model_id=MODEL, dim=128)[0]) == 2_000


def test_corrupt_or_truncated_file_raises_store_error(small, tmp_path):
    path = tmp_path / "ix"
    flat_index(small).save(path, {"epoch": 1})
    good = path.read_bytes()
    damaged = [
        b"",
        good[:7],
        good[:100],
        good[: len(good) // 2],
        good[:-1],
        good[:-20],
        good + b"\x00",
        b"not an index at all" * 50,
    ]
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x40  # one bit in a stored vector: only the checksum sees it
    damaged.append(bytes(flipped))
    for data in damaged:
        path.write_bytes(data)
        with pytest.raises(StoreError):
            VectorIndex.load(path)
    with pytest.raises(StoreError):
        VectorIndex.load(tmp_path / "missing")


def test_save_is_atomic(small, tmp_path, monkeypatch):
    g, ids = small
    path = tmp_path / "ix"
    vi = flat_index(small)
    vi.save(path, {"epoch": 1})
    # A temp file left by a crashed save does not disturb load, and the next save removes it
    # (it may hold faceprints erased since).
    stale = tmp_path / f".{path.name}.tmp-99999"
    stale.write_bytes(b"half-written" + g.vectors[5].tobytes())
    assert VectorIndex.load(path)[1] == {"epoch": 1}
    # A crash in the middle of writing leaves the previous file intact and no temp file.
    vi.remove(ids[:10])

    def crash(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(index_file.faiss, "write_index", crash)
    with pytest.raises(StoreError, match="disk full"):
        vi.save(path, {"epoch": 2})
    monkeypatch.undo()
    loaded, wm = VectorIndex.load(path)
    assert wm == {"epoch": 1} and len(loaded) == 2_000
    assert not stale.exists() and not list(tmp_path.glob(".*tmp*"))
    vi.save(path, {"epoch": 2})
    assert VectorIndex.load(path)[1] == {"epoch": 2}
    with pytest.raises(InvalidInputError):
        vi.save(path, {"epoch": object()})  # watermark must be JSON


# -- memory-lean layout: HNSW over SQ8 codes + memory-mapped float32 vectors ---------------------------
def test_sq8_layout_defaults_and_validation():
    p = IndexParams(layout="hnsw-sq8-mmap")
    assert (p.hnsw_m, p.ef_construction, p.ef_search, p.rerank_factor) == (16, 100, 512, 4)
    # The default: HNSW-SQ8 (met the 1 M targets) up to 1 M faces, IVF-SQ8 beyond (10 M: bench_vectors.py).
    default = IndexParams()
    assert default.layout == "sq8-mmap" and default.ivf_above == 1_000_000 and default.nprobe is None
    assert IndexParams.from_dict(default.to_dict() | {"layout": "hnsw-sq8-mmap"}) == p
    # IVF probes 1/10 of its lists, capped near 600 k codes: the settings measured at 2 M and 10 M faces.
    assert nprobe_for(default, 4_161, 2_000_000) == 417 and nprobe_for(default, 8_601, 10_000_000) == 517
    assert nprobe_for(IndexParams(nprobe=60), 565, 20_000) == 60
    flat = IndexParams(layout="hnsw-flat")
    assert (flat.hnsw_m, flat.ef_construction, flat.ef_search) == (32, 40, 256)
    assert IndexParams.from_dict(p.to_dict()) == p
    assert IndexParams.from_dict({"hnsw_m": 32}).layout == "hnsw-flat"  # files from before layouts
    with pytest.raises(InvalidInputError):
        IndexParams(layout="ivf")
    with pytest.raises(InvalidInputError):
        IndexParams(layout="hnsw-sq8-mmap", rerank_factor=0)


def test_sq8_recall_exact_scores_and_memory(tmp_path):
    """20 k clustered faceprints: recall@10 and mate recall vs exact >= 0.98, scores exact cosines."""
    g = make_gallery(20_000, seed=11)
    ids = np.arange(20_000, dtype=np.int64)
    vi = VectorIndex(
        128, MODEL, approximate_above=5_000, params=IndexParams(layout="hnsw-sq8-mmap"), work_dir=tmp_path
    )
    for lo in range(0, 20_000, 5_000):
        vi.add(ids[lo : lo + 5_000], g.vectors[lo : lo + 5_000])
    assert vi.kind == "hnsw" and len(vi) == 20_000
    assert vi.memory_bytes() / 20_000 < 300 and vi.mapped_bytes() == 20_000 * 512
    assert_close_to_exact(vi, g)


def test_sq8_remove_zeroes_the_mapped_file_at_once_and_compacts(small, tmp_path):
    g, ids = small
    vi = sq8_index(small, work_dir=tmp_path)
    (work,) = files_under(tmp_path)  # the unsaved index's vectors file lives in work_dir
    assert g.vectors[10].tobytes() in work.read_bytes()
    assert vi.remove(ids[10:20]) == 10 and len(vi) == 1_990
    data = work.read_bytes()  # zeroed in the file now, before any save
    assert not any(g.vectors[r][:16].tobytes() in data for r in range(10, 20))
    _, got = vi.search(g.vectors[10:20], 20)
    assert not set(got.ravel()) & set(ids[10:20])
    path = tmp_path / "store" / "index.faiss"
    path.parent.mkdir()
    vi.save(path, {"epoch": 1})  # work file is in another directory: copied, then deleted
    assert sorted(f.name for f in files_under(tmp_path)) == ["index.faiss", "index.faiss.vectors"]
    vi.add(np.array([5]), g.vectors[10:11])  # grows the saved file in place; its header still loads
    assert len(VectorIndex.load(path)[0]) == 1_990
    # Past max_dead_fraction: rebuilt from the live vectors; small enough -> exact flat, file gone.
    vi.remove(ids[:1_600])
    assert vi.kind == "flat" and vi.mapped_bytes() == 0
    vi.save(path, {"epoch": 2})
    assert [f.name for f in files_under(tmp_path)] == ["index.faiss"]
    assert VectorIndex.load(path)[0].search(g.vectors[1_999], 1)[1][0, 0] == ids[1_999]


def test_sq8_unsaved_work_file_is_deleted_with_the_index(small, tmp_path):
    vi = sq8_index(small, work_dir=tmp_path)
    assert len(files_under(tmp_path)) == 1
    del vi
    gc.collect()
    assert files_under(tmp_path) == []


def test_sq8_missing_or_corrupt_vectors_file_raises_store_error(small, tmp_path):
    g, ids = small
    path = tmp_path / "index.faiss"
    vi = sq8_index(small, work_dir=tmp_path)
    vi.save(path, {"epoch": 1})
    assert sorted(f.name for f in files_under(tmp_path)) == ["index.faiss", "index.faiss.vectors"]
    vec = index_file.vectors_path(path)
    good = vec.read_bytes()
    assert VectorIndex.load(path)[1] == {"epoch": 1}
    flipped = bytearray(good)
    flipped[len(good) // 3] ^= 0x01  # one bit of one stored float
    for data in (b"", good[:-4], bytes(flipped)):
        vec.write_bytes(data)
        with pytest.raises(StoreError):
            VectorIndex.load(path)
    vec.unlink()
    with pytest.raises(StoreError, match="vectors"):
        VectorIndex.load(path)
    # Crash between an erasure (rows zeroed in the file at once) and the next save: the saved header's
    # CRC no longer matches, so the store rebuilds from the catalog instead of trusting the pair.
    vi = sq8_index(small, work_dir=tmp_path)
    vi.save(path, {"epoch": 1})
    vi.remove(ids[:3])
    with pytest.raises(StoreError, match="checksum"):
        VectorIndex.load(path)
    vi.save(path, {"epoch": 2})
    assert len(VectorIndex.load(path)[0]) == 1_997


# -- synthetic data --------------------------------------------------------------------------------
def test_synthetic_faceprints_are_deterministic_and_dlib_like():
    a, b = make_gallery(3_000, seed=1), make_gallery(3_000, seed=1)
    assert a.vectors.tobytes() == b.vectors.tobytes()
    assert a.probes(5)[0].tobytes() == b.probes(5)[0].tobytes()
    assert make_gallery(3_000, seed=2).vectors.tobytes() != a.vectors.tobytes()
    np.testing.assert_allclose(np.linalg.norm(a.vectors, axis=1), 1.0, atol=1e-5)
    st = similarity_stats(a.vectors, a.identities, max_faces=2_000)
    # Measured on lfw-devtrain dlib faceprints: same 0.951 ± 0.016, different 0.839 ± 0.033.
    assert 0.94 <= st["same_mean"] <= 0.965 and 0.01 <= st["same_sd"] <= 0.025
    assert 0.82 <= st["diff_mean"] <= 0.855 and 0.025 <= st["diff_sd"] <= 0.045


def test_ef_search_setting_applies_to_new_and_loaded_indexes(tmp_path):
    from faceindex.config import Settings
    from faceindex.engine import Engine

    with Engine.open(tmp_path / "store", Settings(workers=1, index_ef_search=1024), mode="write") as engine:
        assert engine.store.index().params.ef_search == 1024
        engine.reindex()  # writes the index file with its params
    with Engine(tmp_path / "store", Settings(workers=1, index_ef_search=300)) as engine:
        assert engine.store.index().params.ef_search == 300  # a search-time setting: no rebuild needed
    with Engine(tmp_path / "store", Settings(workers=1)) as engine:
        assert engine.store.index().params.ef_search == 1024  # unset: the file's, as built (not the override)


# -- IVF over SQ8 residual codes (the default beyond ivf_above) --------------------------------------
def test_ivf_recall_exact_scores_memory_and_bulk_build(tmp_path):
    """20 k clustered faceprints loaded in one bulk build: recall@10 and mate recall >= 0.98, exact cosines."""
    g = make_gallery(20_000, seed=11)
    ids = np.arange(20_000, dtype=np.int64)
    vi = VectorIndex(128, MODEL, approximate_above=5_000, params=IndexParams(layout="ivf-sq8-mmap", nprobe=60),
                     work_dir=tmp_path)
    vi.extend((ids[lo : lo + 3_000], g.vectors[lo : lo + 3_000]) for lo in range(0, 20_000, 3_000))
    assert vi.kind == "ivf" and len(vi) == 20_000 and 400 < vi.nlist <= int(4 * 20_000**0.5)
    assert vi.memory_bytes() / 20_000 < 300 and vi.mapped_bytes() == 20_000 * 512
    assert_close_to_exact(vi, g)
    with pytest.raises(InvalidInputError, match="duplicate"):
        VectorIndex(128, MODEL, params=IndexParams(layout="ivf-sq8-mmap"), work_dir=tmp_path).extend(
            [(ids[:5], g.vectors[:5]), (ids[:5], g.vectors[:5])])
    assert len(files_under(tmp_path)) == 1  # the failed bulk load left no vectors file behind


def test_ivf_remove_deletes_codes_zeroes_the_file_and_compacts(small, tmp_path):
    g, ids = small
    vi = ivf_index(small, work_dir=tmp_path)
    (work,) = files_under(tmp_path)
    assert vi.remove(ids[10:20]) == 10 and len(vi) == 1_990
    data = work.read_bytes()
    assert not any(g.vectors[r][:16].tobytes() in data for r in range(10, 20))
    _, got = vi.search(g.vectors[10:20], 20)
    assert not set(got.ravel()) & set(ids[10:20])
    path = tmp_path / "s" / "index.faiss"
    path.parent.mkdir()
    vi.save(path, {"epoch": 1})
    loaded = VectorIndex.load(path)[0]
    assert loaded.kind == "ivf" and len(loaded) == 1_990
    assert loaded.search(g.vectors[1_999], 1)[1][0, 0] == ids[1_999]
    vi.remove(ids[:450], compact=False)  # past max_dead_fraction: FaceStore rebuilds in the background
    assert vi.needs_compaction() and vi.kind == "ivf"
    vi.remove(ids[450:600])  # compact=True (the default): rebuilt here, from the live rows
    assert not vi.needs_compaction() and len(vi) == 1_400 and vi.kind == "hnsw"
