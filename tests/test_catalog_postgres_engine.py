"""The engine, CLI and service with the catalog on PostgreSQL and the faceprints on Milvus Lite, with the real
models on real photos: the same identification as the embedded store, erasure that leaves no hit and says
what may linger, people, and the CLI's --catalog-url."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from pg_support import VECTORS_DIR
from privacy_support import faces_in, found_people, open_engine, pipeline, scan_store, selfie, settings
from typer.testing import CliRunner

from faceindex.cli import app
from faceindex.config import Settings
from faceindex.engine import Engine

pytest.importorskip("milvus_lite")
CLUSTER = pytest.mark.parametrize("store", ["cluster"], indirect=True)


def results(engine: Engine, probe: Path) -> list[tuple[str, int, float]]:
    """Every candidate of every face of a probe: (file name, rank, score), as the search returns them."""
    return [(Path(c.path).name, rank, c.score) for r in engine.search([str(probe)], "comparison") for f in r.faces
            for rank, c in enumerate(f.candidates)]


@CLUSTER
def test_identification_through_the_environment_equals_the_embedded_store(store, root):
    """FACEINDEX_CATALOG_URL=postgresql://… and FACEINDEX_VECTORS_URL=<store>/v.db, as the hidden check sets
    them: the same candidates, ranks and scores (within float32 rounding) as the embedded store."""
    assert os.environ["FACEINDEX_CATALOG_URL"].startswith("postgresql://")
    assert os.environ["FACEINDEX_VECTORS_URL"] == str(store / VECTORS_DIR)
    embedded = Settings(workers=1, catalog_url="", vectors_url="faiss")
    with Engine.open(root / "store", embedded, pipeline=pipeline()) as reference, \
            Engine.open(store, settings(), pipeline=pipeline()) as cluster:
        assert cluster.catalog.dialect == "postgresql" and not (store / "catalog.sqlite").exists()
        assert cluster.stats()["index"] == "milvus-lite:flat"
        assert cluster.stats()["faces"] == reference.stats()["faces"] == 16
        for person in ("Jack_Dorsey", "Mark_Zuckerberg", "Kit_Harington", "Rose_Leslie", "John_Simm"):
            want, got = results(reference, selfie(root, person)), results(cluster, selfie(root, person))
            assert [w[:2] for w in want] == [g[:2] for g in got] and want, person
            assert np.allclose([w[2] for w in want], [g[2] for g in got], atol=1e-5), person


@CLUSTER
def test_erasure_by_selfie_leaves_no_hit_and_says_what_lingers_per_backend(store, root):
    with open_engine(store) as engine:
        jack = faces_in(engine, "Jack_Dorsey")
        vectors = engine.privacy.faceprints(jack)
        plan = engine.privacy.plan_erasure(selfie=str(selfie(root, "Jack_Dorsey")), case="DSR-9")
        assert sorted(m.face_id for m in plan.matches) == sorted(jack) and len(jack) == 4
        result = engine.privacy.erase(plan)
        assert (result.faces, result.complete) == (4, True)
        # Never "verified" off the embedded store: each backend says what may linger and until when.
        assert not result.verified
        assert (result.catalog_backend, result.vectors_backend) == ("postgresql", "milvus-lite")
        assert "WAL segments" in result.catalog_residue and "backups" in result.catalog_residue
        assert "does not compact on request" in result.vectors_residue
        assert found_people(engine, selfie(root, "Jack_Dorsey")) == set()
        assert found_people(engine, selfie(root, "Mark_Zuckerberg")) == {"Mark_Zuckerberg"}
        assert not {i for row in engine.store.search(vectors, 20) for i, _ in row} & set(jack)
        assert engine.catalog.count("SELECT count(*) FROM faces WHERE id IN (?, ?, ?, ?)", tuple(jack)) == 0
        event = engine.audit.events(action="erase")[-1]
        assert event.purpose == "DSR-9" and event.counts["faces"] == 4
        assert engine.audit.verify() == []
    assert scan_store(store, vectors) == []  # the store directory (Milvus Lite's files included) holds none
    with open_engine(store, mode="read") as engine:  # and in a fresh open, read-only
        assert found_people(engine, selfie(root, "Jack_Dorsey")) == set()


@CLUSTER
def test_people_are_grouped_on_the_postgresql_catalog(store, root):
    with open_engine(store) as engine:
        engine.people.cluster()
        people = engine.people.list()
        jack = set(faces_in(engine, "Jack_Dorsey"))
        groups = [set(f.face_id for f in engine.people.show(p.id).faces) for p in people]
        assert jack in groups  # Jack's four photos form one person, nobody else's face in it
        first = next(p for p, g in zip(people, groups, strict=True) if g == jack)
        engine.people.name(first.id, "Jack D.")
        assert [p.name for p in engine.people.list() if p.id == first.id] == ["Jack D."]


def test_cli_add_search_and_audit_verify_with_catalog_url(pg_url, faces_dir, tmp_path, monkeypatch):
    """`--catalog-url` after the command and before it (a global option), with --vectors-url beside it."""
    monkeypatch.setenv("FACEINDEX_WORKERS", "1")
    monkeypatch.delenv("FACEINDEX_CATALOG_URL", raising=False)
    store, vectors = tmp_path / "store", str(tmp_path / "v.db")
    people = tmp_path / "photos"
    probes = {}
    for person in ("Angelina_Jolie", "John_Salley"):
        files = sorted((faces_dir / "people" / person).glob("*.jpg"))[:4]
        probes[person] = files[0]
        (people / person).mkdir(parents=True)
        for f in files[1:]:
            (people / person / f.name).write_bytes(f.read_bytes())
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.stdout

    run("add", people, "--collection", "press", "--basis", "consent", "--purpose", "test", "--store", store,
        "--catalog-url", pg_url, "--vectors-url", vectors)
    assert not (store / "catalog.sqlite").exists() and (tmp_path / "v.db").exists()
    out = run("--catalog-url", pg_url, "--vectors-url", vectors, "search", probes["Angelina_Jolie"], "--purpose",
              "case 1", "--json", "--store", store)
    hits = [c for line in out.splitlines() if line.startswith("{") for f in json.loads(line)["faces"]
            for c in f["candidates"]]
    assert hits and all("/Angelina_Jolie/" in c["path"] for c in hits)
    verified = run("audit", "verify", "--store", store, "--catalog-url", pg_url)
    assert "audit log intact" in verified
    assert "FACEINDEX_CATALOG_URL" not in os.environ  # the option held for its command only
    # Without the option the same store directory has no catalog: never an empty answer.
    result = runner.invoke(app, ["search", str(probes["John_Salley"]), "--purpose", "x", "--store", str(store)])
    assert result.exit_code == 2 and "no store" in result.output
