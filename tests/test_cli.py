"""The `faceindex` CLI end to end on real photos: add, search --json, embed, verify, stats, remove, reindex."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from faceindex.cli import app
from faceindex.engine import Engine
from faceindex.errors import ModelMismatchError

runner = CliRunner()


def invoke(*args: str) -> str:
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def store(faces_dir, tmp_path_factory) -> tuple[Path, Path, Path]:
    """A store holding two people's photos (all but one each); returns (store, jolie probe, salley probe)."""
    root = tmp_path_factory.mktemp("cli")
    photos = root / "photos"
    probes = []
    for person in ("Angelina_Jolie", "John_Salley"):
        files = sorted((faces_dir / "people" / person).glob("*.jpg"))
        probes.append(files[0])
        (photos / person).mkdir(parents=True)
        for src in files[1:6]:
            shutil.copy(src, photos / person / src.name)
    out = invoke("add", photos, "--collection", "news", "--basis", "legitimate-interests", "--purpose",
                 "archive", "--store", root / "store", "--json")
    report = json_lines(out)[-1]
    assert report["indexed"] == 10 and report["faces"] >= 10 and report["skipped"] == 0
    return root / "store", probes[0], probes[1]


def test_search_json_lines_shape_and_rank_one(store):
    path, jolie, salley = store
    out = invoke("search", jolie, salley, "--purpose", "test", "--store", path, "--json", "--top-k", "3")
    results = json_lines(out)
    assert [r["probe"] for r in results] == [str(jolie), str(salley)]
    for result, person in zip(results, ("Angelina_Jolie", "John_Salley"), strict=True):
        face = max(result["faces"], key=lambda f: len(f["candidates"]))
        assert len(face["box"]) == 4 and 1 <= len(face["candidates"]) <= 3
        top = face["candidates"][0]
        assert Path(top["path"]).parent.name == person
        assert set(top) >= {"path", "box", "score", "collection", "fmr", "face_id"}
        assert top["collection"] == "news" and 0 < top["score"] <= 1


def test_search_unreadable_probe_gives_error_object(store, tmp_path):
    path, _, _ = store
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"GIF89a garbage")
    results = json_lines(invoke("search", bad, "--purpose", "test", "--store", path, "--json"))
    assert "error" in results[0] and "faces" not in results[0]


def test_search_without_purpose_is_refused(store):
    path, jolie, _ = store
    result = runner.invoke(app, ["search", str(jolie), "--store", str(path)])
    assert result.exit_code != 0


def test_embed_prints_the_stored_faceprint(store):
    path, jolie, _ = store
    data = json_lines(invoke("embed", jolie, "--json", "--store", path))[0]
    assert data["path"] == str(jolie) and len(data["faces"]) >= 1
    vector = np.array(next(f["embedding"] for f in data["faces"] if f["embedding"]))
    assert vector.shape == (128,) and abs(np.linalg.norm(vector) - 1) < 1e-5


def test_verify_and_stats(store):
    path, jolie, salley = store
    same = json_lines(invoke("verify", jolie, next(jolie.parent.glob("deepface__img2.jpg")), "--json",
                             "--store", path))[0]
    different = json_lines(invoke("verify", jolie, salley, "--json", "--store", path))[0]
    assert same["same_person"] is True and different["same_person"] is False
    stats = json_lines(invoke("stats", "--json", "--store", path))[0]
    assert stats["collections"] == 1 and stats["images"] == 10 and stats["skipped"] == 0 and stats["faces"] >= 10


def test_remove_and_reindex(store, tmp_path):
    path, jolie, _ = store
    copy = tmp_path / "store"
    shutil.copytree(path, copy)
    victim = json_lines(invoke("search", jolie, "--purpose", "t", "--store", copy, "--json"))[0]
    top = max(victim["faces"], key=lambda f: len(f["candidates"]))["candidates"][0]["path"]
    invoke("remove", "--image", top, "--store", copy)
    after = json_lines(invoke("search", jolie, "--purpose", "t", "--store", copy, "--json"))[0]
    assert top not in {c["path"] for f in after["faces"] for c in f["candidates"]}
    (copy / "index.faiss").write_bytes(b"corrupt")  # a damaged index is rebuilt from the catalog
    again = json_lines(invoke("search", jolie, "--purpose", "t", "--store", copy, "--json"))[0]
    assert [c["path"] for f in again["faces"] for c in f["candidates"]] == \
        [c["path"] for f in after["faces"] for c in f["candidates"]]
    assert "rebuilt" in invoke("reindex", "--store", copy)
    invoke("remove", "--collection", "news", "--store", copy)
    assert json_lines(invoke("stats", "--json", "--store", copy))[0]["faces"] == 0


def test_store_refuses_faceprints_of_another_model(store, tmp_path):
    path, jolie, _ = store
    copy = tmp_path / "store"
    shutil.copytree(path, copy)
    with Engine(copy) as engine:
        engine.catalog.set_meta("model_id", "some-other-model")
        with pytest.raises(ModelMismatchError):
            engine.search([str(jolie)], purpose="t")
        with pytest.raises(ModelMismatchError):
            engine.ingest([jolie], "news")
