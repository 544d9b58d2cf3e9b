"""The `faceindex` CLI end to end on real photos: add, search --json, embed, verify, stats, remove, reindex."""

from __future__ import annotations

import json
import re
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
    result = runner.invoke(app, ["search", str(bad), "--purpose", "test", "--store", str(path), "--json"])
    assert result.exit_code == 1, result.output  # was 0: a probe that is not an image is a failure
    results = json_lines(result.stdout)
    assert "error" in results[0] and "faces" not in results[0]
    assert str(bad) in result.stderr and "1 of 1 probe(s) not searched" in result.stderr


def test_search_with_a_missing_probe_answers_the_others_and_exits_1(store, tmp_path):
    path, jolie, salley = store
    missing = tmp_path / "no-such-photo.jpg"
    for as_json in (True, False):
        result = runner.invoke(app, ["search", str(jolie), str(missing), str(salley), "--purpose", "test",
                                     "--store", str(path), *(["--json"] if as_json else [])])
        assert result.exit_code == 1, result.output
        assert "1 of 3 probe(s) not searched" in result.stderr and str(missing) in result.stderr
        assert str(jolie) not in result.stderr and str(salley) not in result.stderr  # says which: only the bad one
    results = json_lines(runner.invoke(app, ["search", str(jolie), str(missing), "--purpose", "test", "--store",
                                             str(path), "--json"]).stdout)
    assert [("error" in r, bool(r.get("faces"))) for r in results] == [(False, True), (True, False)]
    assert any(f["candidates"] for f in results[0]["faces"])  # the good probe's results are there


def test_search_text_table_shows_each_candidates_fmr(store):
    path, jolie, _ = store
    text = invoke("search", jolie, "--purpose", "test", "--store", path, "--top-k", "3")
    header = next(line for line in text.splitlines() if "score" in line)
    assert "FMR" in header.split("score")[1]  # a column beside the score
    rows = [line for line in text.splitlines() if re.search(r"│ 0\.\d{3} ", line)]
    assert rows and all(re.search(r"│ \d\.\de-\d\d ", row) for row in rows), text


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


GROUP = "groups/face_recognition__kit_with_rose.jpg"  # Kit Harington and Rose Leslie: two faces


def test_group_probe_faces_are_numbered_from_1_as_in_the_web_ui(store, faces_dir):
    path, _, _ = store
    group = faces_dir / GROUP
    boxes = [f["box"] for f in json_lines(invoke("search", group, "--purpose", "t", "--store", path, "--json"))[0]
             ["faces"]]
    assert len(boxes) == 2
    text = invoke("search", group, "--purpose", "t", "--store", path)
    assert f"face 1 at {boxes[0]}" in text and f"face 2 at {boxes[1]}" in text and "face 0 " not in text
    second = json_lines(invoke("search", group, "--face", "2", "--purpose", "t", "--store", path, "--json"))[0]
    assert [f["box"] for f in second["faces"]] == [boxes[1]]  # --face 2 is the second face, not the third
    assert f"face 2 at {boxes[1]}" in invoke("search", group, "--face", "2", "--purpose", "t", "--store", path)
    zero = runner.invoke(app, ["search", str(group), "--face", "0", "--purpose", "t", "--store", str(path)])
    assert zero.exit_code == 2  # 1-based: 0 is a usage error, never silently the largest face
    third = runner.invoke(app, ["search", str(group), "--face", "3", "--purpose", "t", "--store", str(path)])
    assert third.exit_code == 1 and "no face 3" in third.stderr


def test_verify_on_a_group_photo_says_which_face_it_compared(store, faces_dir):
    path, jolie, _ = store
    group = faces_dir / GROUP
    boxes = [f["box"] for f in json_lines(invoke("search", group, "--purpose", "t", "--store", path, "--json"))[0]
             ["faces"]]
    data = json_lines(invoke("verify", group, jolie, "--json", "--store", path))[0]
    assert set(data) >= {"same_person", "score", "threshold", "fmr"}  # the fields scripts read are all still there
    first, second = data["compared"]
    assert first["photo"] == str(group) and first["of"] == 2 and first["box"] == boxes[first["face"] - 1]
    assert second["photo"] == str(jolie) and second["face"] == 1
    text = invoke("verify", group, jolie, "--store", path)
    assert f"{group}: compared face {first['face']} of 2 at {first['box']}" in " ".join(text.split())
    assert f"{jolie}:" not in text  # a photo with one face needs no such line


def test_error_messages_print_literally_brackets_included(store, tmp_path):
    path, _, _ = store
    copy = tmp_path / "store"
    shutil.copytree(path, copy)
    result = runner.invoke(app, ["remove", "--image", "[scan] 2019/x.jpg", "--store", str(copy)])
    assert result.exit_code == 2
    assert "error (invalid_input): no image '[scan] 2019/x.jpg' in this store" in result.stderr
