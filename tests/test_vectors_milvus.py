"""The Milvus vector backend on a real Milvus Lite: search equals the embedded FAISS store, crash repair,
erasure by query, model and store checks, and clear errors for a server that is not there."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from store_support import MODEL, add_images

from faceindex.errors import InvalidInputError, ModelMismatchError, StoreError
from faceindex.store.face_store import FaceStore
from faceindex.store.milvus_mirror import WATERMARK_KEY
from faceindex.store.vector_index import VectorIndex
from faceindex.store.vectors import VectorStore, backend_of

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")


def _collection(store: FaceStore) -> int:
    with store.catalog.transaction():
        return store.catalog.create_collection("synthetic", "consent", "tests").id


def _lite(tmp_path, name: str = "v.db") -> str:
    return str(tmp_path / name)


def test_backend_is_chosen_by_url():
    assert backend_of(None) == backend_of("faiss") == "faiss"
    assert backend_of("http://milvus:19530") == backend_of("https://user:pw@host:443") == "milvus"
    assert backend_of("/data/faces.db") == backend_of("faces.db") == "milvus-lite"
    with pytest.raises(InvalidInputError, match="Milvus Lite"):
        backend_of("postgresql://x/y")


def test_both_backends_implement_the_protocol(tmp_path):
    from faceindex.store.milvus_vectors import MilvusVectors

    mv = MilvusVectors(_lite(tmp_path))
    try:
        assert isinstance(VectorIndex(128, MODEL), VectorStore) and isinstance(mv, VectorStore)
        assert VectorIndex(128, MODEL).capabilities.proves_erasure_bytes
        assert not mv.capabilities.proves_erasure_bytes and "compact" in mv.capabilities.residue_note
    finally:
        mv.close()


def test_milvus_lite_answers_as_the_embedded_store(tmp_path):
    """Same catalog, two vector backends: identical top-10 ids and cosines (both exact at this size)."""
    faiss_store = FaceStore(tmp_path / "a")
    milvus_store = FaceStore(tmp_path / "b", vectors_url=_lite(tmp_path))
    for store in (faiss_store, milvus_store):
        add_images(store.catalog, _collection(store), 600, seed=3)
        store.index()
        store.save_index()
    queries = np.random.default_rng(9).standard_normal((5, 128)).astype(np.float32)
    a, b = faiss_store.search(queries, 10), milvus_store.search(queries, 10)
    assert [[i for i, _ in row] for row in a] == [[i for i, _ in row] for row in b]
    assert np.allclose([[s for _, s in row] for row in a], [[s for _, s in row] for row in b], atol=1e-5)
    assert milvus_store.gallery_size() == 600 and milvus_store.index().kind == "milvus-lite:flat"
    faiss_store.close()
    milvus_store.close()


def test_a_crash_between_catalog_and_milvus_writes_is_repaired_on_the_next_write_open(tmp_path):
    url = _lite(tmp_path)
    store = FaceStore(tmp_path / "s", vectors_url=url)
    cid = _collection(store)
    add_images(store.catalog, cid, 50, seed=1)
    store.index()
    store.save_index()
    mirror = store._mirror
    # Crash 1: faces committed in the catalog, never sent to Milvus (the process died before the catch-up).
    add_images(store.catalog, cid, 20, seed=2, prefix="/late")
    # Crash 2: an orphan in Milvus whose catalog row is gone (died between the catalog delete and Milvus').
    mirror.vectors.add(np.array([10_000]), np.ones((1, 128), np.float32))
    mirror.vectors.flush()
    mirror._vectors.close()  # no save: the watermark in the catalog stays where the crash left it
    mirror._vectors, mirror._bound, mirror._wm = None, False, None
    store.catalog.close()

    reopened = FaceStore(tmp_path / "s", vectors_url=url)  # write open: repair
    vectors = reopened._mirror.vectors
    catalog_ids = {r[0] for r in reopened.catalog.conn.execute("SELECT id FROM faces")}
    assert set(vectors.all_ids().tolist()) == catalog_ids and len(catalog_ids) == 70
    wm = json.loads(reopened.catalog.get_meta(WATERMARK_KEY))
    assert wm["max_face_id"] == max(catalog_ids) and wm["epoch"] == reopened.catalog.epoch
    reopened.close()


def test_erasure_deletes_flushes_and_no_erased_id_is_returned(tmp_path):
    store = FaceStore(tmp_path / "s", vectors_url=_lite(tmp_path))
    images = add_images(store.catalog, _collection(store), 30, seed=4)
    store.index()
    doomed = store.catalog.face_ids_of_images(images[:10])
    vectors = np.stack([v for _, v in store.catalog.face_vectors(doomed)])
    with store.catalog.transaction():
        store.catalog.delete_faces(doomed)
    store.forget_vectors(doomed)
    assert store._mirror.vectors.present(doomed) == set()
    hits = {i for row in store.search(vectors, 5) for i, _ in row}
    assert not hits & set(doomed) and store.gallery_size() == 20
    caps = store.vector_capabilities
    assert caps.backend == "milvus-lite" and not caps.proves_erasure_bytes
    assert "does not compact on request" in caps.residue_note
    store.close()


def test_search_above_is_exact_from_the_catalog(tmp_path):
    store = FaceStore(tmp_path / "s", vectors_url=_lite(tmp_path))
    add_images(store.catalog, _collection(store), 40, seed=5)
    probe = store.catalog.face_vectors([7])[0][1]
    hits = store.search_above(probe, 0.99)
    assert hits and hits[0][0] == 7 and abs(hits[0][1] - 1.0) < 1e-5
    store.close()


def test_a_collection_of_another_model_or_store_is_refused(tmp_path):
    url = _lite(tmp_path)
    first = FaceStore(tmp_path / "one", vectors_url=url)
    add_images(first.catalog, _collection(first), 5, seed=6)
    first.index()
    first.close()
    other_model = FaceStore(tmp_path / "two", vectors_url=url, lazy=True)
    other_model.open_for_writing()
    add_images(other_model.catalog, _collection(other_model), 5, seed=7, model="another-model")
    with pytest.raises(ModelMismatchError, match="another-model"):
        other_model.index()
    other_model.catalog.close()
    other_store = FaceStore(tmp_path / "three", vectors_url=url)
    add_images(other_store.catalog, _collection(other_store), 5, seed=8)
    with pytest.raises(StoreError, match="another store"):
        other_store.index()
    other_store.catalog.close()


def test_an_unreachable_server_is_a_store_error_naming_the_url(tmp_path):
    store = FaceStore(tmp_path / "s", vectors_url="http://user:secret@127.0.0.1:9", lazy=True)
    with pytest.raises(StoreError, match=r"Milvus at http://user:\*\*\*@127.0.0.1:9: connect failed") as exc:
        store.open_for_writing()
    assert "secret" not in str(exc.value)


def test_a_collection_of_another_dimension_or_layout_version_is_refused_with_the_fix(tmp_path):
    from faceindex.store.milvus_vectors import MilvusVectors

    url = _lite(tmp_path)
    mv = MilvusVectors(url, collection="c64")
    try:
        assert mv.bind(MODEL, 64, "s1", create=True)
        with pytest.raises(ModelMismatchError, match="64-d"):
            mv.bind(MODEL, 128, "s1", create=False)
        mv._client.alter_collection_properties("c64", properties={"faceindex.schema_version": "0"})
        with pytest.raises(StoreError, match="layout version '0'.*Drop it.*faceindex reindex"):
            mv.bind(MODEL, 64, "s1", create=False)
    finally:
        mv.close()


def test_after_an_erasure_no_milvus_lite_file_holds_the_erased_faceprints(tmp_path):
    """A delete alone leaves them in Lite's segment files (it does not compact on request): checked here first,
    so the test notices if Lite changes; the erasure path then rebuilds the collection, which removes them."""
    from faceindex.privacy.scrub import find_residue

    url = _lite(tmp_path)
    store = FaceStore(tmp_path / "s", vectors_url=url)
    images = add_images(store.catalog, _collection(store), 300, seed=11)
    store.index()
    doomed = store.catalog.face_ids_of_images(images[:40])
    needles = [v.tobytes() for _, v in store.catalog.face_vectors(doomed)]
    store._mirror.vectors.delete(np.asarray(doomed[:20]))  # the plain delete, without faceindex's rebuild
    assert find_residue(tmp_path / "v.db", needles[:20]), "Lite now drops deleted bytes: update LITE_RESIDUE"
    with store.catalog.transaction():
        store.catalog.delete_faces(doomed)
    store.forget_vectors(doomed)
    assert find_residue(tmp_path / "v.db", needles) == {}
    assert store.gallery_size() == 260 and store._mirror.vectors.present(doomed) == set()
    store.close()


def test_searches_of_a_milvus_store_in_step_run_concurrently(tmp_path):
    """A search in progress (holding the shared lock) does not make another search wait: the Milvus path
    takes the exclusive lock only to catch the mirror up, not on every search."""
    store = FaceStore(tmp_path / "s", vectors_url=_lite(tmp_path))
    add_images(store.catalog, _collection(store), 40, seed=5)
    store.index()
    store.save_index()
    q = np.random.default_rng(4).standard_normal((1, 128)).astype(np.float32)
    inside, release, out = threading.Event(), threading.Event(), {}

    def in_flight():  # what a concurrent search holds while Milvus answers it
        with store._rw.read():
            inside.set()
            release.wait(120)

    holder = threading.Thread(target=in_flight)
    holder.start()
    try:
        assert inside.wait(120)
        searcher = threading.Thread(target=lambda: out.update(hits=store.search(q, 5), n=store.gallery_size()))
        searcher.start()
        searcher.join(120)  # a safety net only: it returns at once unless it waits for the exclusive lock
        assert not searcher.is_alive(), "a Milvus search waited for another search"
    finally:
        release.set()
        holder.join(120)
    assert len(out["hits"][0]) == 5 and out["n"] == 40
    # Truly concurrent searches through one client answer as serial ones do.
    probes = np.random.default_rng(6).standard_normal((8, 128)).astype(np.float32)
    serial = [store.search(p[None, :], 5) for p in probes]
    answers: dict[int, list] = {}
    threads = [threading.Thread(target=lambda i=i: answers.__setitem__(i, store.search(probes[i][None, :], 5)))
               for i in range(len(probes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert [answers[i] for i in range(len(probes))] == serial
    store.close()
