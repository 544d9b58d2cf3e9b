"""`faceindex people …` end to end on real photos: grouping, JSON lines, naming, clear errors, audit events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from faceindex.cli import app

runner = CliRunner()
FOLDERS = ("Angelina_Jolie", "Barack_Obama", "Matt_Damon", "Tom_Hanks")  # Tom_Hanks: one photo


def run(*args: object, code: int = 0) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result.output


@pytest.fixture(scope="module")
def store(faces_dir: Path, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli-people") / "store"
    folders = [faces_dir / "people" / f for f in FOLDERS if (faces_dir / "people" / f).is_dir()]
    assert len(folders) == len(FOLDERS)
    run("add", *folders, "--collection", "c", "--basis", "legitimate-interests", "--purpose", "people cli test",
        "--store", path, "--workers", "2")
    return path


def test_cluster_list_name_and_errors(store: Path):
    report = json.loads(run("people", "cluster", "--store", store, "--json"))
    assert report["new_people"] >= 3 and report["unassigned"] >= 1  # a face seen once forms no person
    lines = [json.loads(line) for line in run("people", "list", "--json", "--faces", "--store", store).splitlines()]
    assert lines and all({"id", "name", "size", "faces"} <= set(p) for p in lines)
    for person in lines:
        folders = {Path(f["path"]).parent.name for f in person["faces"]}
        assert len(folders) == 1, f"person {person['id']} mixes {folders}"
        assert person["size"] == len(person["faces"]) >= 2
    assert "faces" not in json.loads(run("people", "list", "--json", "--store", store).splitlines()[0])
    first = lines[0]["id"]
    run("people", "name", first, "Test Person", "--store", store)
    shown = json.loads(run("people", "show", "Test Person", "--json", "--store", store))
    assert shown["id"] == first and shown["name"] == "Test Person"
    out = run("people", "merge", first, first, "--store", store, code=2)
    assert "error (invalid_input): cannot merge person" in out
    out = run("people", "name", first, "x" * 10_000, "--store", store, code=2)
    assert "at most 200 characters" in out
    out = run("people", "show", "999999", "--store", store, code=2)
    assert "error (not_found)" in out
    events = [json.loads(line)["action"] for line in run("audit", "list", "--json", "--store", store).splitlines()]
    assert "people.cluster" in events and "people.name" in events
    assert "Test Person" not in run("audit", "list", "--json", "--store", store)  # ids only, never the name


def test_list_on_a_missing_store_is_an_error(tmp_path: Path):
    out = run("people", "list", "--store", tmp_path / "nope", code=2)
    assert "store_not_found" in out
