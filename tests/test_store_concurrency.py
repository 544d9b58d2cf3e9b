"""Concurrent use of one store: writers in several processes, readers in many threads beside a writer."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from store_support import add_images, synthetic_faces

from faceindex.config import Settings
from faceindex.engine import Engine
from faceindex.errors import StoreBusyError
from faceindex.store.catalog import Catalog
from faceindex.store.face_store import FaceStore

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_two_add_commands_on_one_new_store_both_succeed(tmp_path, faces_dir):
    """Two `faceindex add` runs at once, into the same new collection of a store that does not exist yet."""
    folders = []
    for n, person in enumerate(("Jack_Dorsey", "Mark_Zuckerberg")):
        folder = tmp_path / f"photos{n}"
        folder.mkdir()
        for photo in sorted((faces_dir / "people" / person).iterdir())[:2]:
            shutil.copy(photo, folder / photo.name)
        folders.append(folder)
    store = tmp_path / "store"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    runs = [subprocess.Popen([sys.executable, "-m", "faceindex", "add", str(folder), "-c", "shared",
                              "--basis", "consent", "--purpose", "concurrency test", "--workers", "1",
                              "--store", str(store), "--json"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for folder in folders]
    outputs = [run.communicate(timeout=600) for run in runs]
    for run, (out, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, out + err
        assert "Traceback" not in err and "locked" not in err and "already exists" not in out + err
    with Engine.open(store, Settings(workers=1), mode="read") as engine:
        stats = engine.stats()
        assert (stats["collections"], stats["images"], stats["skipped"]) == (1, 4, 0)
        assert stats["faces"] >= 4 and len(engine.store.index()) == stats["faces"]
        assert len(engine.audit.events(action="collection.create")) == 1
        assert len(engine.audit.events(action="ingest")) == 2
        assert engine.audit.verify() == []


def _open_and_write(store: str, seed: int, barrier) -> None:
    barrier.wait()  # every process opens the new store at the same moment: migrations and create race
    with Engine.open(store, Settings(workers=1), mode="write") as engine:
        collection = engine.collection("shared", "consent", "race")
        add_images(engine.catalog, collection.id, 5, seed=seed)


def test_processes_opening_a_new_store_at_once_neither_race_migrations_nor_collection_creation(tmp_path):
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(6)
    workers = [context.Process(target=_open_and_write, args=(str(tmp_path / "store"), seed, barrier))
               for seed in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [w.exitcode for w in workers] == [0] * 6
    with Engine.open(tmp_path / "store", Settings(workers=1), mode="read") as engine:
        assert engine.stats()["faces"] == 30 and engine.stats()["collections"] == 1
        assert len(engine.audit.events(action="collection.create")) == 1


def test_a_second_writer_waits_then_fails_with_a_clear_message(tmp_path):
    catalog = Catalog(tmp_path / "catalog.sqlite", lock_timeout=0.3)
    fd = os.open(tmp_path / "write.lock", os.O_RDWR)  # another process's lock, as far as flock is concerned
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        started = time.monotonic()
        with pytest.raises(StoreBusyError, match="another faceindex process"), catalog.transaction():
            pass
        assert time.monotonic() - started >= 0.3  # it waited before giving up
        fcntl.flock(fd, fcntl.LOCK_UN)
        with catalog.transaction():  # released: writes go on
            catalog.set_meta("after", "1")
    finally:
        os.close(fd)
        catalog.close()


def test_a_reader_thread_sees_committed_state_only_and_is_not_blocked_by_the_writer(tmp_path):
    catalog = Catalog(tmp_path / "catalog.sqlite")
    inside, release = threading.Event(), threading.Event()

    def writer() -> None:
        with catalog.transaction():
            catalog.create_collection("pending", "consent", "p")
            inside.set()
            release.wait(30)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert inside.wait(30)
        # The writer holds its transaction open: this thread reads at once, without its uncommitted row.
        assert catalog.find_collection("pending") is None
        assert catalog.conn.execute("SELECT 1").fetchone()[0] == 1
    finally:
        release.set()
        thread.join(30)
    assert catalog.find_collection("pending") is not None
    catalog.close()


def test_searches_from_many_threads_while_another_thread_ingests(tmp_path):
    store = FaceStore(tmp_path / "store", approximate_above=10_000)
    with store.catalog.transaction():
        cid = store.catalog.create_collection("c", "consent", "p").id
    add_images(store.catalog, cid, 200, seed=0)
    store.index()
    probes = np.stack([f.embedding for f in synthetic_faces(8, seed=0)])  # the first 8 faces themselves
    errors: list[BaseException] = []
    done = threading.Event()
    rounds = [0] * 4

    def searcher(n: int) -> None:
        try:
            while not done.is_set() or rounds[n] < 5:
                hits = store.search(probes, 3)
                # Each probe finds itself first (its own faceprint, cosine 1), whatever is being appended.
                assert [row[0][1] for row in hits] == pytest.approx([1.0] * len(probes), abs=1e-5)
                found = [fid for row in hits for fid, _ in row]
                assert len(store.catalog.face_details(found)) == len(set(found))
                rounds[n] += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    def ingester() -> None:
        try:
            for batch in range(1, 11):
                add_images(store.catalog, cid, 50, seed=batch)
                store.index()
                store.save_index()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            done.set()

    threads = [threading.Thread(target=searcher, args=(n,)) for n in range(4)] + [threading.Thread(target=ingester)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert errors == []
    assert min(rounds) >= 5
    assert len(store.index()) == store.catalog.stats()["faces"] == 700
    store.close()


def test_engine_searches_from_threads_beside_a_writer_thread(store, root):
    """What the service does without a global lock: real searches in threads while rows are added."""
    from privacy_support import open_engine, selfie

    errors: list[BaseException] = []
    probe = str(selfie(root, "Jack_Dorsey"))
    with open_engine(store) as engine:
        engine.search([probe], "warm-up")  # models loaded once, before the threads
        collection = engine.create_collection("synthetic", "consent", "concurrency")
        before = engine.stats()["faces"]

        def searcher() -> None:
            try:
                for _ in range(3):
                    found = {Path(c.path).parent.name for r in engine.search([probe], "case 7")
                             for f in r.faces for c in f.candidates}
                    assert found == {"Jack_Dorsey"}
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                errors.append(exc)

        def writer() -> None:
            try:
                for batch in range(5):
                    add_images(engine.catalog, collection.id, 20, seed=100 + batch, model=engine.pipeline.model_id)
                    engine.store.index()
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=searcher) for _ in range(3)] + [threading.Thread(target=writer)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
        assert errors == []
        assert engine.stats()["faces"] == before + 100 == len(engine.store.index())
        assert len(engine.audit.events(action="search")) >= 10
        assert engine.audit.verify() == []
