"""Ingest robustness: hostile files are skipped with reasons, re-runs are incremental, kill -9 loses nothing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from imagegen import png_header_bomb

from faceindex.config import Settings
from faceindex.engine import Engine
from faceindex.errors import PolicyError
from faceindex.store.vector_index import VectorIndex

PEOPLE = ["John_Salley", "John_Savage", "Katy_Perry"]


def copy_people(faces_dir: Path, dest: Path, people=PEOPLE) -> list[Path]:
    out = []
    for person in people:
        for src in sorted((faces_dir / "people" / person).glob("*.jpg")):
            target = dest / person / src.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, target)
            out.append(target)
    return out


def make_hostile_files(folder: Path, good_jpeg: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    data = good_jpeg.read_bytes()
    files = {
        "empty": folder / "empty.jpg",
        "truncated": folder / "truncated.jpg",
        "text": folder / "notes.jpg",
        "random": folder / "noise.png",
        "bomb": folder / "bomb.png",
    }
    files["empty"].write_bytes(b"")
    files["truncated"].write_bytes(data[: len(data) // 3])
    files["text"].write_text("this is not a photo\n" * 20)
    files["random"].write_bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    files["bomb"].write_bytes(png_header_bomb(100_000, 100_000))
    return files


def catalog_counts(store: Path) -> tuple[int, int, int]:
    conn = sqlite3.connect(store / "catalog.sqlite")
    try:
        images = conn.execute("SELECT count(*) FROM images").fetchone()[0]
        faces = conn.execute("SELECT count(*) FROM faces WHERE embedding IS NOT NULL").fetchone()[0]
        dupes = conn.execute("SELECT count(*) FROM (SELECT collection_id, uri FROM images GROUP BY 1, 2 "
                             "HAVING count(*) > 1)").fetchone()[0]
        return images, faces, dupes
    finally:
        conn.close()


def test_hostile_files_are_skipped_with_reasons_and_the_batch_goes_on(faces_dir, tmp_path):
    good = copy_people(faces_dir, tmp_path / "photos", ["John_Salley"])
    hostile = make_hostile_files(tmp_path / "photos" / "junk", good[0])
    with Engine(tmp_path / "store", Settings(workers=1)) as engine:
        report = engine.ingest([tmp_path / "photos"], "c", basis="consent", purpose="robustness test")
        reasons = dict(report.skipped)
        assert report.indexed == len(good) and report.faces >= len(good)
        assert set(reasons) == {str(p.resolve()) for p in hostile.values()}
        assert all(reason for reason in reasons.values())
        assert "pixel limit" in reasons[str(hostile["bomb"].resolve())]
        assert engine.stats()["skipped"] == len(hostile)


def test_a_rerun_reports_files_skipped_before_as_skipped_again_never_unchanged(faces_dir, tmp_path):
    good = copy_people(faces_dir, tmp_path / "photos", ["John_Salley"])
    hostile = make_hostile_files(tmp_path / "photos" / "junk", good[0])
    with Engine(tmp_path / "store", Settings(workers=1)) as engine:
        engine.ingest([tmp_path / "photos"], "c", basis="consent", purpose="robustness test")
        rows = {r["uri"]: r["id"] for r in engine.catalog.conn.execute("SELECT id, uri FROM images")}
        again = engine.ingest([tmp_path / "photos"], "c")
        # The broken files are still not indexed: the re-run says so with their reasons, it does not call them
        # "unchanged" (which read as "indexed, nothing to do") ...
        assert dict(again.skipped).keys() == {str(p.resolve()) for p in hostile.values()}
        assert again.unchanged == len(good) and again.indexed == again.replaced == 0
        # ... and a skip for the same reason keeps its catalog row (no churn of ids on every run).
        assert {r["uri"]: r["id"] for r in engine.catalog.conn.execute("SELECT id, uri FROM images")} == rows
        # A broken file that is repaired in place is indexed by the next run.
        shutil.copy(good[0], hostile["truncated"])
        fixed = engine.ingest([tmp_path / "photos"], "c")
        assert fixed.indexed + fixed.copied == 1 and len(fixed.skipped) == len(hostile) - 1
        assert engine.stats()["skipped"] == len(hostile) - 1


def test_rerun_is_incremental_and_changed_files_are_reindexed(faces_dir, tmp_path):
    files = copy_people(faces_dir, tmp_path / "photos", ["Katy_Perry"])
    with Engine(tmp_path / "store", Settings(workers=1)) as engine:
        first = engine.ingest([tmp_path / "photos"], "c", basis="consent", purpose="test")
        second = engine.ingest([tmp_path / "photos"], "c")
        assert second.unchanged == len(files) and second.indexed == 0
        shutil.copy(faces_dir / "people" / "John_Salley" / sorted(
            p.name for p in (faces_dir / "people" / "John_Salley").glob("*.jpg"))[0], files[0])
        third = engine.ingest([tmp_path / "photos"], "c")
        assert third.indexed == 1 and third.unchanged == len(files) - 1 and third.replaced == 1
        stats = engine.stats()
        assert stats["images"] == len(files)
        assert len(engine.store.index()) == stats["faces"]
        assert stats["faces"] <= first.faces + 2


def test_exact_copies_reuse_faces_without_recomputing(faces_dir, tmp_path):
    src = sorted((faces_dir / "people" / "Katy_Perry").glob("*.jpg"))[0]
    for name in ("one.jpg", "two.jpg"):
        shutil.copy(src, tmp_path / name)
    with Engine(tmp_path / "store", Settings(workers=1)) as engine:
        report = engine.ingest([tmp_path / "one.jpg", tmp_path / "two.jpg"], "c", basis="consent", purpose="t")
        assert report.indexed == 1 and report.copied == 1
        one_photo = report.faces // 2
        assert one_photo >= 1 and engine.stats()["faces"] == 2 * one_photo
        rows = engine.catalog.conn.execute("SELECT embedding FROM faces ORDER BY id").fetchall()
        assert rows[0][0] == rows[len(rows) // 2][0]


def test_ingest_refuses_a_new_collection_without_basis_and_purpose(tmp_path, faces_dir):
    with Engine(tmp_path / "store") as engine, pytest.raises(PolicyError):
        engine.ingest([faces_dir / "nonfaces"], "no-basis")


KILL_PEOPLE = ["Angelina_Jolie", "Barack_Obama", "Cai_Xukun", "John_Salley", "John_Savage", "John_Schneider",
               "John_Simm", "Katy_Perry"]  # ~90 photos: several commit batches (BATCH_FILES) before the end


def batch_event_totals(store: Path) -> dict[str, int]:
    """Sums of the counts of the "ingest.batch" audit events in a store (read without opening an Engine)."""
    conn = sqlite3.connect(store / "catalog.sqlite")
    try:
        totals: dict[str, int] = {}
        for (counts,) in conn.execute("SELECT counts FROM audit_events WHERE action = 'ingest.batch'"):
            for key, value in json.loads(counts).items():
                totals[key] = totals.get(key, 0) + value
        return totals
    finally:
        conn.close()


def test_kill_9_during_ingest_then_rerun_loses_nothing_and_duplicates_nothing(faces_dir, tmp_path):
    files = copy_people(faces_dir, tmp_path / "photos", KILL_PEOPLE)
    store = tmp_path / "store"
    cmd = [sys.executable, "-m", "faceindex", "add", str(tmp_path / "photos"), "--collection", "c",
           "--basis", "consent", "--purpose", "crash test", "--store", str(store), "--workers", "1", "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            time.sleep(0.2)
            try:  # the file exists a moment before its tables do
                if (store / "catalog.sqlite").exists() and catalog_counts(store)[0] >= 3:
                    break
            except sqlite3.OperationalError:
                continue
        else:
            pytest.fail("ingest never committed 3 images")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    images_at_kill, faces_at_kill, _ = catalog_counts(store)
    assert 3 <= images_at_kill < len(files), "the kill must land mid-run"
    # Every committed face is covered by an audit event although the run never reached its final "ingest" event.
    totals = batch_event_totals(store)
    assert totals["indexed"] + totals["copied"] + totals["skipped"] == images_at_kill
    assert totals["faces"] == faces_at_kill > 0
    with Engine(store) as engine:
        assert engine.audit.verify() == [] and engine.audit.events(action="ingest") == []
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    images, faces, dupes = catalog_counts(store)
    assert images == len(files) and dupes == 0
    totals = batch_event_totals(store)
    assert totals["indexed"] + totals["copied"] + totals["skipped"] == images and totals["faces"] == faces
    index, watermark = VectorIndex.load(store / "index.faiss")
    assert len(index) == faces and watermark["max_face_id"] >= faces
    with Engine(store) as engine:
        assert engine.stats()["faces"] == faces
        rerun = engine.ingest([tmp_path / "photos"], "c")
        assert rerun.unchanged == len(files)
        assert len(engine.audit.events(action="ingest")) == 2  # the killed run never wrote its final event
        runs = {e.params["run"] for e in engine.audit.events(action="ingest.batch")}
        assert len(runs) == 2  # the killed run's batches and the re-run's (the last run had nothing to commit)
