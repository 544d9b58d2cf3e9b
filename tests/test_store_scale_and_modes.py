"""Id lists of any length (a 40,000-image collection can be deleted), private file modes of a store, and index
rebuilds that do not block searches."""

from __future__ import annotations

import sqlite3
import stat
import threading
from pathlib import Path

from store_support import add_images

from faceindex.config import Settings
from faceindex.engine import Engine
from faceindex.store.face_store import FaceStore
from faceindex.store.index_factory import IndexParams

N_IMAGES = 40_001  # above SQLite's default limit of 32,766 bound variables per statement


def test_the_catalog_holds_sqlite_to_its_default_variable_limit(tmp_path):
    """So the tests below fail on an unchunked id list here too (this build of SQLite allows 250,000)."""
    catalog = FaceStore(tmp_path / "store").catalog
    assert catalog.conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) < N_IMAGES
    with catalog.transaction() as writer:
        assert writer.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) < N_IMAGES
    catalog.close()


def test_a_collection_of_40000_images_can_be_removed(tmp_path):
    with Engine.open(tmp_path / "store", Settings(workers=1), mode="write") as engine:
        collection = engine.create_collection("big", "consent", "scale test")
        keep = engine.create_collection("small", "consent", "scale test")
        add_images(engine.catalog, collection.id, N_IMAGES, seed=1)
        add_images(engine.catalog, keep.id, 3, seed=2)
        assert engine.stats()["faces"] == N_IMAGES + 3
        assert engine.remove_collection("big") == N_IMAGES
        assert engine.stats()["faces"] == 3
        assert len(engine.store.index()) == 3
        assert engine.audit.events(action="collection.delete")[-1].counts["images"] == N_IMAGES


def test_a_collection_of_40000_images_can_be_erased(tmp_path):
    with Engine.open(tmp_path / "store", Settings(workers=1), mode="write") as engine:
        collection = engine.create_collection("big", "consent", "scale test")
        add_images(engine.catalog, collection.id, N_IMAGES, seed=3)
        result = engine.privacy.erase(engine.privacy.plan_erasure(collection="big", case="DPA-1"))
        assert result.faces == N_IMAGES and result.complete
        assert engine.pending_erasures() == 0
        assert engine.stats()["faces"] == 0


def test_face_details_and_deletes_take_any_number_of_ids(tmp_path):
    store = FaceStore(tmp_path / "store")
    catalog = store.catalog
    with catalog.transaction():
        cid = catalog.create_collection("c", "consent", "p").id
    images = add_images(catalog, cid, N_IMAGES, seed=4)
    faces = catalog.face_ids_of_images(images)
    assert len(faces) == N_IMAGES
    assert len(catalog.face_details(faces)) == N_IMAGES
    with catalog.transaction():
        assert catalog.delete_images(images[: N_IMAGES - 1]) == N_IMAGES - 1
    assert catalog.stats()["faces"] == 1
    store.close()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_store_directory_is_0700_and_its_files_0600(tmp_path):
    root = tmp_path / "store"
    with Engine.open(root, Settings(workers=1, approximate_above=10), mode="write") as engine:
        collection = engine.create_collection("c", "consent", "p")
        add_images(engine.catalog, collection.id, 40, seed=5)  # above approximate_above: the .vectors file too
        engine.reindex()
        wal = root / "catalog.sqlite-wal"
        assert wal.exists() and _mode(wal) == 0o600
    assert _mode(root) == 0o700
    files = [p for p in root.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"catalog.sqlite", "index.faiss", "index.faiss.vectors", "write.lock"}
    assert {p.name: _mode(p) for p in files} == {p.name: 0o600 for p in files}


def test_an_older_store_readable_by_others_is_made_private_by_the_next_write(tmp_path):
    root = tmp_path / "store"
    with Engine.open(root, Settings(workers=1), mode="write") as engine:
        collection = engine.create_collection("c", "consent", "p")
        add_images(engine.catalog, collection.id, 5, seed=6)
        engine.reindex()
    for path in [root, *root.iterdir()]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # what faceindex made before
    with Engine.open(root, Settings(workers=1), mode="read") as engine:
        engine.stats()
    assert _mode(root / "catalog.sqlite") == 0o644  # a read changes nothing
    with Engine.open(root, Settings(workers=1), mode="write"):
        pass
    assert _mode(root) == 0o700
    assert _mode(root / "catalog.sqlite") == 0o600 and _mode(root / "index.faiss") == 0o600


def test_saved_index_files_are_0600_whatever_the_umask(tmp_path):
    import os

    old = os.umask(0o000)
    try:
        store = FaceStore(tmp_path / "store", approximate_above=10)
        with store.catalog.transaction():
            cid = store.catalog.create_collection("c", "consent", "p").id
        add_images(store.catalog, cid, 20, seed=7)
        store.rebuild_index()
        store.close()
    finally:
        os.umask(old)
    for name in ("catalog.sqlite", "index.faiss", "index.faiss.vectors"):
        assert _mode(tmp_path / "store" / name) == 0o600, name
    assert _mode(tmp_path / "store") == 0o700


def _vector_of(store: FaceStore, face_id: int):
    return store.catalog.face_vectors([face_id])[0][1][None, :]


def test_a_rebuild_does_not_block_searches_which_use_the_old_index_until_the_swap(tmp_path):
    """The build is parked (a hook in the building thread) while another thread searches: the search returns
    at once, from the index in use; after the swap the new faces are found."""
    store = FaceStore(tmp_path / "store", approximate_above=100)
    with store.catalog.transaction():
        cid = store.catalog.create_collection("c", "consent", "p").id
    add_images(store.catalog, cid, 150, seed=8)
    assert store.index().kind == "hnsw" and store.gallery_size() == 150
    add_images(store.catalog, cid, 30, seed=9, prefix="/late")
    late = store.catalog.max_face_id()
    inside, release, seen = threading.Event(), threading.Event(), {}

    def parked(fresh):
        seen["fresh"] = len(fresh)
        inside.set()
        release.wait(120)

    store.build_hook = parked
    builder = threading.Thread(target=store.rebuild_index)
    builder.start()
    try:
        assert inside.wait(120)
        searcher = threading.Thread(target=lambda: seen.update(
            hit=store.search(_vector_of(store, late), 1)[0], old=store.search(_vector_of(store, 1), 1)[0],
            size=store.gallery_size()))
        searcher.start()
        searcher.join(120)  # a safety net only: it returns at once unless it waits for the build
        assert not searcher.is_alive(), "a search waited for the index build"
    finally:
        release.set()
        builder.join(120)
    assert seen["fresh"] == 180 and seen["size"] == 150  # the old index answered during the build
    assert seen["old"][0][0] == 1 and seen["hit"][0][0] != late
    assert store.gallery_size() == 180 and store.search(_vector_of(store, late), 1)[0][0][0] == late
    store.build_hook = None
    store.close()
    reopened = FaceStore(tmp_path / "store", lazy=True)
    assert reopened.gallery_size() == 180  # the swapped-in index was saved with its watermark
    reopened.close()


def test_an_index_saved_under_the_former_default_layout_adopts_the_current_one(tmp_path):
    root = tmp_path / "store"
    store = FaceStore(root, approximate_above=10, params=IndexParams(layout="hnsw-sq8-mmap"))
    with store.catalog.transaction():
        cid = store.catalog.create_collection("c", "consent", "p").id
    add_images(store.catalog, cid, 20, seed=10)
    assert store.index().layout == "hnsw-sq8-mmap"
    store.close()
    reopened = FaceStore(root, approximate_above=10, params=IndexParams(ivf_above=25))
    assert reopened.index().kind == "hnsw" and reopened.index().layout == "sq8-mmap"  # loaded as saved
    add_images(reopened.catalog, cid, 20, seed=11, prefix="/more")
    assert reopened.index().kind == "ivf" and reopened.gallery_size() == 40  # grown past ivf_above
    reopened.close()
