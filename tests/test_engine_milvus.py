"""The engine on both vector backends (embedded FAISS, Milvus Lite) with the real models on real photos:
identification, erasure by selfie, and a refusing Milvus as a clear error from the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from privacy_support import GROUP, faces_in, found_people, fresh_copy, needles, pipeline, selfie

from faceindex.config import Settings
from faceindex.engine import Engine
from faceindex.privacy.scrub import find_residue

pytest.importorskip("milvus_lite")

BACKENDS = ["faiss", "milvus-lite"]
EXPECTED = {"Jack_Dorsey": {"Jack_Dorsey"}, "Mark_Zuckerberg": {"Mark_Zuckerberg"}, "John_Simm": {"John_Simm"},
            "Kit_Harington": {"Kit_Harington", "group"}, "Rose_Leslie": {"Rose_Leslie", "group"}}


def _open(store: Path, backend: str) -> Engine:
    """The shared ingested store (built with FAISS), opened for writing on `backend`. On Milvus Lite the
    collection lives inside the store (`<store>/vectors.db`) and is filled from the catalog at this open,
    the same repair that follows a crash between the two writes."""
    url = "faiss" if backend == "faiss" else str(store / "vectors.db")
    return Engine.open(store, Settings(workers=1, vectors_url=url), pipeline=pipeline(), mode="write")


@pytest.fixture()
def store(faces_dir, tmp_path_factory, tmp_path):
    return fresh_copy(faces_dir, tmp_path_factory, tmp_path)


@pytest.mark.parametrize("backend", BACKENDS)
def test_identification_is_the_same_on_both_backends(store, root, backend):
    with _open(store, backend) as engine:
        assert engine.store.vector_capabilities.backend == backend
        assert engine.store.gallery_size() == engine.catalog.conn.execute(
            "SELECT count(*) FROM faces WHERE embedding IS NOT NULL").fetchone()[0] > 0
        for person, expected in EXPECTED.items():
            assert found_people(engine, selfie(root, person)) == expected, person
        # Scores too, not only identities: the top candidate's cosine of one probe on this backend.
        top = engine.search([str(selfie(root, "Jack_Dorsey"))], "test")[0].faces[0].candidates[0]
        assert "/Jack_Dorsey/" in top.path and top.score > 0.9


@pytest.mark.parametrize("backend", BACKENDS)
def test_erasure_by_selfie_leaves_no_hit_and_says_what_may_linger(store, root, backend):
    with _open(store, backend) as engine:
        jack = faces_in(engine, "Jack_Dorsey")
        vectors = np.stack([v for _, v in engine.catalog.face_vectors(jack)])
        plan = engine.privacy.plan_erasure(selfie=str(selfie(root, "Jack_Dorsey")), case="DSR-1")
        assert sorted(m.face_id for m in plan.matches) == sorted(jack) and len(jack) == 4
        result = engine.privacy.erase(plan)
        assert (result.faces, result.complete, result.vectors_backend) == (4, True, backend)
        assert found_people(engine, selfie(root, "Jack_Dorsey")) == set()
        assert found_people(engine, selfie(root, "Mark_Zuckerberg")) == {"Mark_Zuckerberg"}
        # No erased id comes back from the vectors, searched with the erased faceprints themselves.
        assert not {i for row in engine.store.search(vectors, 10) for i, _ in row} & set(jack)
        if backend == "faiss":
            assert result.verified and result.vectors_residue == ""
        else:
            # Never "verified" where the bytes cannot be proven gone; the note says what lingers and until when.
            assert not result.verified and "does not compact on request" in result.vectors_residue
            assert engine.store._mirror.vectors.present(jack) == set()
    # No file of the store holds an erased faceprint, Milvus Lite's directory included (its collection is rebuilt
    # after an erasure); on Lite that scan is evidence, not proof (its files are compressed), hence not "verified".
    assert find_residue(store, needles(vectors)) == {}
    with _open(store, backend) as engine:  # and after reopening
        assert found_people(engine, selfie(root, "Jack_Dorsey")) == set()


def test_milvus_lite_reindex_and_stats(store, root):
    with _open(store, "milvus-lite") as engine:
        before = engine.store.gallery_size()
        engine.store.rebuild_index()
        assert engine.store.gallery_size() == before
        assert engine.stats()["index"] == "milvus-lite:flat"
        assert found_people(engine, selfie(root, "John_Simm")) == {"John_Simm"}


def test_a_refusing_milvus_is_a_clear_error_with_a_non_zero_exit(tmp_path, faces_dir):
    env = os.environ | {"FACEINDEX_VECTORS_URL": "http://127.0.0.1:9", "FACEINDEX_STORE": str(tmp_path / "s"),
                        "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    photo = faces_dir / "groups" / GROUP
    proc = subprocess.run([sys.executable, "-m", "faceindex", "add", str(photo), "--collection", "c", "--basis",
                           "consent", "--purpose", "test"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "Milvus at http://127.0.0.1:9: connect failed" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr + proc.stdout


def test_a_new_process_searches_the_milvus_lite_store_read_only(store, root):
    """The CLI's `search` opens the store read-only in a fresh process, which finds the collection released
    (not loaded) on Milvus Lite: it must load it, not fail."""
    with _open(store, "milvus-lite"):
        pass
    env = os.environ | {"FACEINDEX_VECTORS_URL": str(store / "vectors.db"), "FACEINDEX_STORE": str(store),
                        "FACEINDEX_WORKERS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    proc = subprocess.run([sys.executable, "-m", "faceindex", "search", str(selfie(root, "Jack_Dorsey")),
                           "--purpose", "test", "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "/Jack_Dorsey/" in proc.stdout and "Mark_Zuckerberg" not in proc.stdout
