"""Index rebuilds that do not stop writers: built from a snapshot without the write lock, dropped and built again
when faces are erased meanwhile, and harmless when killed mid-build."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
from store_support import add_images

from faceindex.config import Settings
from faceindex.engine import Engine
from faceindex.privacy.scrub import find_residue
from faceindex.store import face_store, index_builds
from faceindex.store.face_store import FaceStore
from faceindex.store.vector_index import VectorIndex

SRC = Path(__file__).resolve().parents[1] / "src"
WAIT_S = 120  # safety nets only: each wait below ends at once unless something waits for the build
FLIP_MODEL = "dlib-resnet-v1+flip"  # the model id of the default pipeline (a real `add` into the same store)


def _store(root: Path, n: int, *, model: str = "dlib-resnet-v1") -> tuple[FaceStore, int]:
    """A store of `n` synthetic faces whose index is approximate (HNSW-SQ8 over a memory-mapped vectors file),
    rebuilt from snapshots whatever its size."""
    store = FaceStore(root, approximate_above=100)
    store.locked_build_below = 0
    with store.catalog.transaction():
        cid = store.catalog.create_collection("c", "consent", "p").id
    add_images(store.catalog, cid, n, seed=1, model=model)
    assert store.index().kind == "hnsw" and store.gallery_size() == n
    return store, cid


def _vector(store: FaceStore, face_id: int) -> np.ndarray:
    return store.catalog.face_vectors([face_id])[0][1][None, :]


class Parked:
    """A build hook that parks the first build (complete, not yet saved or serving) until released."""

    def __init__(self):
        self.inside, self.release, self.calls, self.work_fd = threading.Event(), threading.Event(), 0, -1

    def __call__(self, fresh: VectorIndex) -> None:
        self.calls += 1
        if self.calls == 1:
            if fresh._vf is not None:  # keep the work file open: its bytes stay readable after it is deleted
                self.work_fd = os.open(fresh._vf.path, os.O_RDONLY)
            self.inside.set()
            self.release.wait(WAIT_S)


def _start_parked_build(store: FaceStore) -> tuple[Parked, threading.Thread]:
    parked = Parked()
    store.build_hook = parked
    builder = threading.Thread(target=store.rebuild_index)
    builder.start()
    assert parked.inside.wait(WAIT_S)
    return parked, builder


def test_an_insert_commits_while_a_rebuild_builds_and_is_searchable_after_the_swap(tmp_path):
    """Fails before the snapshot build: the insert waited for the store's write lock the whole build."""
    store, cid = _store(tmp_path / "store", 150)
    parked, builder = _start_parked_build(store)
    committed, joined = threading.Event(), {}
    second = threading.Thread(target=lambda: joined.update(index=store.rebuild_index()))
    try:
        inserter = threading.Thread(target=lambda: (add_images(store.catalog, cid, 30, seed=2, prefix="/late"),
                                                    committed.set()))
        inserter.start()
        assert committed.wait(WAIT_S), "the insert waited for the index build"
        assert store.gallery_size() == 150  # the old index serves until the swap
        # A second rebuild asked for meanwhile joins this one (it swaps in an index caught up after the ask).
        second.start()
    finally:
        parked.release.set()
        builder.join(WAIT_S)
        inserter.join(WAIT_S)
        if second.is_alive():
            second.join(WAIT_S)
    late = store.catalog.max_face_id()
    assert parked.calls == 1 and joined["index"] is store._index  # built once: no deletion, the second joined
    assert len(store._index) == 180  # the faces committed during the build were appended before the swap
    assert store.search(_vector(store, late), 1)[0][0][0] == late
    saved, watermark = VectorIndex.load(store.index_path)
    assert len(saved) == 180 and watermark["max_face_id"] == late  # saved at the swap with its watermark
    store.close()


def test_an_add_of_real_photos_from_another_process_commits_during_the_rebuild(tmp_path, faces_dir):
    store, _ = _store(tmp_path / "store", 150, model=FLIP_MODEL)
    photos = faces_dir / "people" / "Barack_Obama"
    parked, builder = _start_parked_build(store)
    try:
        env = os.environ | {"PYTHONPATH": str(SRC), "FACEINDEX_STORE": str(store.root)}
        done = subprocess.run(
            [sys.executable, "-m", "faceindex", "add", str(photos / "face_recognition__obama.jpg"),
             str(photos / "face_recognition__obama1.jpg"), "-c", "news", "--basis", "consent",
             "--purpose", "test", "--workers", "1"], env=env, capture_output=True, text=True, timeout=WAIT_S)
        assert done.returncode == 0, done.stdout + done.stderr
        assert store.catalog.max_face_id() > 150  # committed while this process's build is parked
    finally:
        parked.release.set()
        builder.join(WAIT_S)
    added = [i for i in range(151, store.catalog.max_face_id() + 1) if store.catalog.face_vectors([i])]
    assert added and len(store._index) == 150 + len(added)  # caught up at the swap, searchable
    for face_id in added:
        assert store.search(_vector(store, face_id), 1)[0][0][0] == face_id
    store.close()


def test_an_erasure_during_the_rebuild_drops_the_build_and_leaves_no_erased_faceprint_anywhere(tmp_path):
    with Engine.open(tmp_path / "store", Settings(workers=1), mode="write") as engine:
        store = engine.store
        store.approximate_above, store.locked_build_below = 100, 0
        keep = engine.create_collection("keep", "consent", "test")
        doomed = engine.create_collection("doomed", "consent", "test")
        add_images(engine.catalog, keep.id, 150, seed=3)
        gone_images = add_images(engine.catalog, doomed.id, 20, seed=4, prefix="/doomed")
        gone = engine.catalog.face_ids_of_images(gone_images)
        erased = [v.tobytes() for _, v in engine.catalog.face_vectors(gone)]
        assert store.index().kind == "hnsw" and store.gallery_size() == 170
        epoch = engine.catalog.epoch
        parked, builder = _start_parked_build(store)
        result = {}
        eraser = threading.Thread(target=lambda: result.update(
            r=engine.privacy.erase(engine.privacy.plan_erasure(collection="doomed", case="DSR-9"))))
        try:
            assert find_residue(store.root, erased), "the parked build's work file holds the faceprints"
            eraser.start()
            for _ in range(WAIT_S * 20):  # the deletion commits without waiting for the build
                if engine.catalog.epoch != epoch or not eraser.is_alive():
                    break
                threading.Event().wait(0.05)
            assert engine.catalog.epoch != epoch
        finally:
            parked.release.set()
            builder.join(WAIT_S)
            eraser.join(WAIT_S)
        assert result["r"].faces == 20 and result["r"].complete and result["r"].verified
        assert parked.calls == 2  # the build holding the erased faces was dropped and made again
        assert find_residue(store.root, erased) == {}  # no store file, no work file holds them
        # The dropped work file was zeroed before it was deleted: its freed blocks hold no faceprint either.
        dropped = b"".join(iter(lambda: os.read(parked.work_fd, 1 << 20), b""))
        os.close(parked.work_fd)
        assert len(dropped) and not any(dropped)
        assert len(store._index) == 150 and not np.isin(gone, store._index._labels).any()
        assert store.search_above(np.frombuffer(erased[0], np.float32), 0.99) == []


def test_a_build_dropped_by_deletions_every_time_ends_under_the_write_lock(tmp_path, caplog):
    store, _ = _store(tmp_path / "store", 150)
    calls = []

    def delete(face_id: int) -> None:
        with store.catalog.transaction():
            store.catalog.delete_faces([face_id])

    def delete_one_each_time(fresh: VectorIndex) -> None:
        calls.append(len(fresh))
        if len(calls) <= index_builds.BUILD_TRIES:  # another thread deletes a face while this build runs
            victim = threading.Thread(target=delete, args=(len(calls),))
            victim.start()
            victim.join(WAIT_S)

    store.build_hook = delete_one_each_time
    with caplog.at_level(logging.WARNING, logger="faceindex.store.face_store"):
        fresh = store.rebuild_index()
    assert calls == [150, 149, 148, 147]  # three dropped snapshot builds, then one under the lock
    assert "building under the write lock" in caplog.text
    assert len(fresh) == 147 and not np.isin([1, 2, 3], fresh._labels).any()
    store.close()


def test_a_build_killed_mid_way_leaves_the_old_index_usable(tmp_path):
    root = tmp_path / "store"
    store, _ = _store(root, 150)
    store.close()
    saved = root / face_store.INDEX_FILE
    before = (saved.stat().st_ino, saved.read_bytes())
    script = ("import sys, time; from faceindex.store.face_store import FaceStore\n"
              f"s = FaceStore({str(root)!r}, approximate_above=100); s.locked_build_below = 0\n"
              "s.build_hook = lambda fresh: (print('parked', flush=True), time.sleep(600))\n"
              "s.rebuild_index()\n")
    child = subprocess.Popen([sys.executable, "-c", script], env=os.environ | {"PYTHONPATH": str(SRC)},
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "parked"
        work = list(root.glob(".faceindex-vectors.tmp-*"))
        assert len(work) == 1  # the build's faceprints, beside the index in use
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(WAIT_S)
    assert (saved.stat().st_ino, saved.read_bytes()) == before  # the saved index was never touched
    reopened = FaceStore(root, approximate_above=100)
    assert not work[0].exists()  # the dead build's work file went at the next open for writing
    assert reopened.gallery_size() == 150 and reopened.index().kind == "hnsw"
    assert reopened.search(_vector(reopened, 7), 1)[0][0][0] == 7
    assert (saved.stat().st_ino, saved.read_bytes()) == before  # served as saved: no rebuild was needed
    reopened.close()
