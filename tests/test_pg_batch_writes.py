"""Batched catalog writes and lookups (issue 11 follow-up) on SQLite and on a real PostgreSQL server: the ids a
batch returns are its rows' own ids in order, below and above the COPY threshold, rows read back equal, a
failed batch rolls back whole, and a batch lookup answers every key. No models: synthetic faces."""

from __future__ import annotations

import numpy as np
import pytest
from store_support import MODEL, synthetic_faces

from faceindex.pipeline.types import Face
from faceindex.store.catalog import Catalog
from faceindex.store.pg_connection import COPY_MIN_ROWS
from faceindex.store.sql_dialect import IntegrityError, copy_target


@pytest.fixture(params=["sqlite", "postgresql"])
def cat(request, tmp_path):
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    catalog = Catalog(tmp_path / "catalog.sqlite", url=url, lazy=True)
    with catalog.transaction():
        catalog.bind_model(MODEL)
    yield catalog
    catalog.close()


def test_copy_target_takes_only_plain_value_inserts():
    assert copy_target("INSERT INTO faces (a, B) VALUES (?, ?)") == ("faces", ("a", "b"))
    assert copy_target("INSERT OR IGNORE INTO t (a) VALUES (?)") is None  # COPY has no conflict clause
    assert copy_target("INSERT INTO t (a, b) VALUES (?, 'x')") is None
    assert copy_target("INSERT INTO t (a) SELECT a FROM u") is None
    assert copy_target("INSERT INTO t (a) VALUES (?) RETURNING a") is None


@pytest.mark.parametrize("n_images", [3, COPY_MIN_ROWS + 9])  # pipelined INSERTs, then COPY on PostgreSQL
def test_a_batch_returns_its_rows_ids_in_order_and_the_rows_read_back_equal(cat, n_images):
    faces = synthetic_faces(2 * n_images, seed=n_images)
    faces[1] = Face(box=(1, 2, 30, 40), score=0.5, detector="hog", landmarks=[(1.5, 2.5)] * 5, size_px=29,
                    blur=3.25, rejected="too small")  # a rejected face: no faceprint, a reason
    with cat.transaction():
        collection = cat.create_collection("c", "consent", "p").id
        before = cat.insert_image(collection, "/first.jpg", sha256="f" * 64, size_bytes=1)
        image_ids = cat.insert_images(collection, [
            {"uri": f"/{i}.jpg", "sha256": f"{i:064x}", "size_bytes": 100 + i, "width": 640, "height": 480,
             "fmt": "JPEG", "n_faces": 2, "status": "indexed"} for i in range(n_images)])
        face_ids = cat.insert_faces_of([(image, faces[2 * k:2 * k + 2]) for k, image in enumerate(image_ids)],
                                       MODEL)
        after = cat.insert_image(collection, "/last.jpg", sha256="e" * 64, size_bytes=1)
    assert image_ids == list(range(before + 1, before + 1 + n_images))  # no gap, ascending, as one by one
    assert after == image_ids[-1] + 1
    rows = {r["uri"]: r for r in cat.conn.execute("SELECT * FROM images WHERE id IN "
                                                  f"({','.join('?' * n_images)})", image_ids)}
    for i, image in enumerate(image_ids):
        assert (rows[f"/{i}.jpg"]["id"], rows[f"/{i}.jpg"]["size_bytes"], rows[f"/{i}.jpg"]["format"]) \
            == (image, 100 + i, "JPEG")
    flat = [f for pair in face_ids for f in pair]
    assert [len(pair) for pair in face_ids] == [2] * n_images and flat == sorted(flat) and len(set(flat)) == len(flat)
    for k, pair in enumerate(face_ids):
        for face_id, face in zip(pair, faces[2 * k:2 * k + 2], strict=True):
            row = cat.conn.execute("SELECT * FROM faces WHERE id = ?", (face_id,)).fetchone()
            assert row["image_id"] == image_ids[k]
            assert (row["box_left"], row["box_top"], row["box_right"], row["box_bottom"]) == face.box
            assert (row["det_score"], row["blur"], row["size_px"], row["rejected"]) == \
                (face.score, face.blur, face.size_px, face.rejected)
            if face.embedding is None:
                assert row["embedding"] is None
            else:
                assert np.frombuffer(bytes(row["embedding"]), np.float32).tobytes() == face.embedding.tobytes()
    ids, vectors = next(cat.iter_embeddings())
    assert ids.tolist() == [f for f in flat if f != face_ids[0][1]]  # the vector store's view: same ids
    assert cat.insert_faces(image_ids[0], faces[:1], MODEL) == [flat[-1] + 1]


def test_a_failed_batch_rolls_back_whole_and_its_ids_are_not_reused(cat):
    with cat.transaction():
        collection = cat.create_collection("c", "consent", "p").id
    rows = [{"uri": f"/{i}.jpg", "sha256": None, "size_bytes": None} for i in range(COPY_MIN_ROWS + 1)]
    rows[-1] = dict(rows[0])  # UNIQUE (collection_id, uri): the last row of the batch fails
    with pytest.raises(IntegrityError), cat.transaction():
        cat.insert_images(collection, rows)
    assert cat.count("SELECT count(*) FROM images") == 0
    with cat.transaction():
        first = cat.insert_images(collection, rows[:-1])
    assert len(first) == len(rows) - 1 and first == sorted(first)
    # A face for a missing image fails the batch (foreign key) and nothing of it is kept.
    with pytest.raises(IntegrityError), cat.transaction():
        cat.insert_faces_of([(first[0], synthetic_faces(COPY_MIN_ROWS, 1)), (10**9, synthetic_faces(1, 2))], MODEL)
    assert cat.count("SELECT count(*) FROM faces") == 0


def test_a_batch_lookup_answers_every_uri_asked(cat):
    with cat.transaction():
        collection = cat.create_collection("c", "consent", "p").id
        other = cat.create_collection("d", "consent", "p").id
        ids = cat.insert_images(collection, [{"uri": f"/{i}.jpg", "sha256": f"{i:064x}", "size_bytes": i}
                                             for i in range(1200)])  # more than one IN (...) chunk
        cat.insert_image(other, "/elsewhere.jpg", sha256=None, size_bytes=None)
    asked = [f"/{i}.jpg" for i in range(0, 1200, 3)] + ["/missing.jpg", "/elsewhere.jpg"]
    found = cat.find_images(collection, asked)
    assert list(found) == asked
    assert found["/missing.jpg"] is None and found["/elsewhere.jpg"] is None  # another collection's row
    for i in range(0, 1200, 3):
        assert found[f"/{i}.jpg"]["id"] == ids[i] == cat.find_image(collection, f"/{i}.jpg")["id"]
    assert cat.find_images(collection, []) == {}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_ingest_writes_a_batch_faces_in_one_call_and_looks_up_scanned_files_per_chunk(backend, request, tmp_path,
                                                                                      faces_dir, monkeypatch):
    """The real ingest (real models, real photos): a batch's images and faces go to the catalog in one
    insert_images and one insert_faces_of, with their detail level, and
    a re-run over unchanged files asks the catalog once per chunk of files, never once per file; the faces
    stored are those the report counts, each with its faceprint in the vector store."""
    from privacy_support import pipeline

    from faceindex.config import Settings
    from faceindex.engine import Engine

    photos = tmp_path / "photos"
    photos.mkdir()
    for path in sorted((faces_dir / "people/Jack_Dorsey").iterdir())[:4]:
        (photos / path.name).write_bytes(path.read_bytes())
    calls: dict[str, int] = {}
    for name in ("insert_image", "insert_images", "insert_faces", "insert_faces_of", "find_image", "find_images"):
        original = getattr(Catalog, name)

        def spy(self, *args, _original=original, _name=name, **kwargs):
            calls[_name] = calls.get(_name, 0) + 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(Catalog, name, spy)
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else ""
    settings = Settings(workers=1, catalog_url=url, vectors_url="faiss")
    with Engine.open(tmp_path / "store", settings, pipeline=pipeline(), mode="write") as engine:
        first = engine.ingest([photos], "c", basis="consent", purpose="test")
        assert (first.indexed, first.faces) == (4, 4)
        # One batch of 4 files: its images in one call, their faces in one; none one by one.
        assert (calls["insert_images"], calls["insert_faces_of"]) == (1, 1)
        assert calls.get("insert_image", 0) == calls.get("insert_faces", 0) == 0
        rows = engine.catalog.conn.execute("SELECT uri, detail, n_faces FROM images ORDER BY id").fetchall()
        assert sorted(r["uri"].rsplit("/", 1)[1] for r in rows) == sorted(p.name for p in photos.iterdir())
        assert {(r["detail"], r["n_faces"]) for r in rows} == {(engine.collection_detail("c"), 1)}
        assert engine.catalog.count("SELECT count(*) FROM faces WHERE embedding IS NOT NULL") == 4
        assert engine.stats()["faces"] == 4
        calls.clear()
        again = engine.ingest([photos], "c")
        assert (again.unchanged, again.indexed) == (4, 0)
        assert calls == {"find_images": 1}  # one lookup for the 4 files, none per file


def test_add_on_postgresql_killed_mid_batch_loses_and_duplicates_nothing(faces_dir, tmp_path, pg_url):
    """kill -9 of `faceindex add` on the PostgreSQL catalog while it commits (after its first committed image, at
    seeded moments): the batch in hand is lost whole (its COPY runs inside the batch's transaction), no image or
    face is stored twice, none without its image, and completing the run stores every file once."""
    import json
    import os
    import random
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    import psycopg
    from privacy_support import pipeline

    from faceindex.config import Settings
    from faceindex.engine import Engine

    photos = tmp_path / "photos"
    for person in ("Jack_Dorsey", "John_Salley"):
        (photos / person).mkdir(parents=True)
        for path in (faces_dir / "people" / person).iterdir():
            (photos / person / path.name).write_bytes(path.read_bytes())
    n_files = sum(1 for p in photos.rglob("*") if p.is_file())
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", ""), "FACEINDEX_WORKERS": "1",
           "FACEINDEX_CATALOG_URL": pg_url}
    store = tmp_path / "store"
    cmd = [sys.executable, "-m", "faceindex", "add", str(photos), "--collection", "c", "--basis", "consent",
           "--purpose", "crash", "--store", str(store), "--json"]

    def query(sql: str) -> int:
        try:
            with psycopg.connect(pg_url, autocommit=True) as conn:
                return conn.execute(sql).fetchone()[0]
        except psycopg.errors.UndefinedTable:  # the schema is not there yet
            return 0

    def whole() -> int:
        assert query("SELECT count(*) FROM (SELECT 1 FROM images GROUP BY collection_id, uri"
                     " HAVING count(*) > 1) d") == 0
        assert query("SELECT count(*) FROM (SELECT 1 FROM faces GROUP BY image_id, box_left, box_top, box_right,"
                     " box_bottom HAVING count(*) > 1) d") == 0, "a face was stored twice"
        assert query("SELECT count(*) FROM faces f LEFT JOIN images i ON i.id = f.image_id WHERE i.id IS NULL") == 0
        assert query("SELECT count(*) FROM images i WHERE i.status = 'indexed' AND i.n_faces <>"
                     " (SELECT count(*) FROM faces f WHERE f.image_id = i.id AND f.embedding IS NOT NULL)") == 0
        return query("SELECT count(*) FROM images")

    rng = random.Random(11)
    killed_mid_run = 0
    for _ in range(2):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                                start_new_session=True)
        try:
            start = query("SELECT count(*) FROM images") if killed_mid_run else 0
            deadline = time.monotonic() + 240
            while proc.poll() is None and query("SELECT count(*) FROM images") <= start:
                assert time.monotonic() < deadline, "add never committed an image"
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 1.0))
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                killed_mid_run += 1
            proc.wait()
        assert whole() <= n_files
    assert killed_mid_run >= 1, "no kill landed while `add` ran"
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert whole() == n_files
    again = json.loads(subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600).stdout)
    assert (again["unchanged"], again["indexed"]) == (n_files, 0)
    with Engine.open(store, Settings(workers=1, catalog_url=pg_url), pipeline=pipeline(), mode="write") as engine:
        assert engine.audit.verify() == []
        assert len(engine.store.index()) == engine.stats()["faces"] == query(
            "SELECT count(*) FROM faces WHERE embedding IS NOT NULL") > 0
