"""Erasure reaches the photos the store itself keeps (`<store>/uploads/`), never the operator's own files.

Real photos, the real pipeline: the group photo of Kit Harington with Rose Leslie is uploaded, Rose is
erased, and the pipeline is run again on the stored file to show that her face is gone from it while
Kit's is still there and still found.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from privacy_support import open_engine
from test_service_support import start_service

from faceindex.privacy import erasure
from faceindex.privacy.probe import strict_threshold
from faceindex.service.config import ServiceConfig
from faceindex.service.uploads import check_upload, save_uploads

GROUP = "groups/face_recognition__kit_with_rose.jpg"
ROSE_ALONE = "people/Rose_Leslie/face_recognition__img1.jpg"
KIT_ALONE = "people/Kit_Harington/face_recognition__john2.jpeg"
SELFIE = {"rose": "people/Rose_Leslie/face_recognition__img2.jpg",
          "kit": "people/Kit_Harington/face_recognition__john1.jpeg"}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def faceprint(engine, path: Path) -> np.ndarray:
    return max(engine.analyse(path).accepted, key=lambda f: f.size_px).embedding


def record(engine, path: Path):
    return engine.catalog.conn.execute("SELECT * FROM images WHERE uri = ?", (str(path),)).fetchone()


def assert_rose_gone_kit_kept(engine, faces_dir: Path, stored: Path) -> None:
    """Re-run the real pipeline on the stored file: no face in it is Rose (her face is not detected, or scores
    far below the strict threshold), Kit's face is still found and still matches his selfie."""
    limit = strict_threshold(engine.policy, 1)
    rose, kit = faceprint(engine, faces_dir / SELFIE["rose"]), faceprint(engine, faces_dir / SELFIE["kit"])
    faces = engine.analyse(stored).accepted
    assert max(float(f.embedding @ rose) for f in faces) < limit - 0.05
    assert max(float(f.embedding @ kit) for f in faces) >= limit
    row = record(engine, stored)  # the record follows the rewritten file, so a re-ingest sees it unchanged
    assert row["sha256"] == sha256(stored) and row["size_bytes"] == stored.stat().st_size


def test_selfie_erasure_redacts_or_deletes_uploads_and_leaves_operator_files(tmp_path, faces_dir):
    operator = tmp_path / "operator"
    operator.mkdir()
    for name in (GROUP, ROSE_ALONE):
        shutil.copy(faces_dir / name, operator / Path(name).name)
    before = {p.name: p.read_bytes() for p in operator.iterdir()}
    svc = start_service(tmp_path / "store")
    try:
        client, curator = svc.client, svc.auth("curator")
        client.post("/api/v1/collections", headers=curator, json={"name": "family", "basis": "consent",
                                                                   "purpose": "family photos"})
        files = [("files", (Path(n).name, (faces_dir / n).read_bytes())) for n in (GROUP, ROSE_ALONE, KIT_ALONE)]
        job = svc.wait_job(client.post("/api/v1/collections/family/uploads", headers=curator, files=files).json()["id"])
        assert job["status"] == "done" and job["counts"]["faces"] == 4, job
        svc.engine.ingest([operator], "operator", basis="legitimate-interests", purpose="press archive")
        # Stored as `<sha256 prefix>-<stem><extension of the sniffed format>`.
        uploads = {p.stem.split("-", 1)[1]: p for p in (tmp_path / "store" / "uploads").rglob("*") if p.is_file()}
        group, alone, kit_alone = (uploads[Path(n).stem] for n in (GROUP, ROSE_ALONE, KIT_ALONE))
        group_sha = sha256(group)

        officer = svc.auth("privacy-officer")
        selfie = (faces_dir / SELFIE["rose"]).read_bytes()
        plan = client.post("/api/v1/erasures/plans/selfie", headers=officer, files={"photo": ("s.jpg", selfie)})
        assert plan.status_code == 201, plan.text
        # Rose's face in the uploaded group photo and in her own upload, and the same in the operator's copies.
        assert plan.json()["faces"] == 4
        done = client.post(f"/api/v1/erasures/plans/{plan.json()['plan_id']}", headers=officer).json()
        assert done["complete"] and done["verified"], done
        assert done["upload_files_deleted"] == 1 and done["upload_files_redacted"] == 1

        engine = svc.engine
        assert not alone.exists() and record(engine, alone) is None  # her only face: file and record gone
        assert group.is_file() and sha256(group) != group_sha
        assert_rose_gone_kit_kept(engine, faces_dir, group)
        assert kit_alone.is_file() and record(engine, kit_alone) is not None
        found = client.post("/api/v1/search", headers=svc.auth("admin"), data={"purpose": "check"},
                            files={"photo": ("k.jpg", (faces_dir / SELFIE["kit"]).read_bytes())}).json()
        assert str(group) in {c["path"] for c in found["faces"][0]["candidates"]}
        # Operator files are never modified; their records (provenance) stay, only Rose's faces went.
        assert {p.name: p.read_bytes() for p in operator.iterdir()} == before
        assert all(record(engine, p) is not None for p in operator.iterdir())
        assert engine.catalog.count("SELECT count(*) FROM upload_erasures") == 0
        # A curator removing one face "keeps the rest of the photo": the face is obscured, the record stays.
        kit_sha, kit_id = sha256(kit_alone), record(engine, kit_alone)["id"]
        face = client.get(f"/api/v1/images/{kit_id}", headers=curator).json()["faces"][0]["id"]
        assert client.delete(f"/api/v1/faces/{face}", headers=curator).json()["faces_removed"] == 1
        assert record(engine, kit_alone)["n_faces"] == 0 and sha256(kit_alone) != kit_sha
        assert record(engine, kit_alone)["sha256"] == sha256(kit_alone) and not engine.analyse(kit_alone).faces
        # A re-ingest of the uploads folder sees the rewritten photo as unchanged.
        report = engine.ingest([group.parent], "family")
        assert report.unchanged == 2 and report.indexed == 0
    finally:
        svc.close()


@pytest.fixture()
def uploaded(tmp_path, faces_dir):
    """A store with the group photo placed in uploads by the service's own helper, then ingested."""
    store = tmp_path / "store"
    with open_engine(store) as engine:
        collection = engine.create_collection("family", "consent", "family photos")
        upload = check_upload((faces_dir / GROUP).read_bytes(), "kit_with_rose.jpg", ServiceConfig())
        (path,) = save_uploads(store, collection.id, [upload])
        engine.ingest([path], "family")
        rose = max(engine.catalog.conn.execute("SELECT id, embedding FROM faces").fetchall(),
                   key=lambda r: float(np.frombuffer(r[1], np.float32) @ faceprint(engine, faces_dir / SELFIE["rose"])))
        engine.privacy.subjects.enrol("Rose", face_ids=[rose[0]])
    return store, path


def test_crash_after_the_commit_is_finished_on_reopen_and_is_idempotent(uploaded, faces_dir, monkeypatch):
    store, path = uploaded
    original = path.read_bytes()

    def crash(name: str) -> None:
        if name == "erasure:deleted":
            raise KeyboardInterrupt("simulated crash after the deletion committed")

    with open_engine(store) as engine:
        monkeypatch.setattr(erasure, "_failpoint", crash)
        with pytest.raises(KeyboardInterrupt):
            engine.privacy.erase(engine.privacy.plan_erasure(subject="Rose"))
        monkeypatch.undo()
        # The faces are gone and the file work is journaled with them, but the file is not touched yet.
        assert engine.catalog.count("SELECT count(*) FROM upload_erasures") == 1
        assert path.read_bytes() == original
    with open_engine(store) as engine:  # reopening finishes the erasure, the upload redaction included
        assert [r.uploads_redacted for r in engine.privacy.resumed] == [1]
        assert engine.catalog.count("SELECT count(*) FROM upload_erasures") == 0
        assert_rose_gone_kit_kept(engine, faces_dir, path)
        redacted = path.read_bytes()
        # A crash between the file replace and the record update: the rewrite is recognised, not redone.
        with engine.catalog.transaction() as conn:
            conn.execute("UPDATE images SET sha256 = 'stale', size_bytes = 0 WHERE uri = ?", (str(path),))
            conn.execute("INSERT INTO upload_erasures (job_id, uri, boxes, redacted_sha256) VALUES (0, ?, ?, ?)",
                         (str(path), "[[79, 130, 155, 205]]", hashlib.sha256(redacted).hexdigest()))
        assert engine.privacy.eraser.uploads.finish() == (0, 1)
        assert path.read_bytes() == redacted and record(engine, path)["sha256"] == sha256(path)
