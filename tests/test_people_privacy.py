"""Privacy by person on real photos (people/): erasure and opt-out of a person, the people groups in an access
report, and grouping as a processing purpose chosen when a collection is created.

The store is tests/people_support.py's (8 people grouped from "archive"; one unseen photo each in "later").
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from people_support import (
    cli,
    faces_of_folder,
    folder,
    fresh_copy,
    open_engine,
    person_of_folder,
    photos_of,
)
from privacy_support import scan_store

from faceindex.errors import InvalidInputError, NoFaceError, NotFoundError, PolicyError


@pytest.fixture()
def store(faces_dir, tmp_path_factory, tmp_path) -> Path:
    return fresh_copy(faces_dir, tmp_path_factory, tmp_path)


def found_folders(engine, photo: Path) -> set[str]:
    """Folders of every candidate an ordinary search with `photo` returns."""
    return {folder(c.path) for r in engine.search([str(photo)], "check") for f in r.faces or [] for c in f.candidates}


def test_forget_person_lists_then_leaves_none_of_their_faces(store: Path, faces_dir: Path):
    name = "Jennifer_Aniston"
    with open_engine(store) as engine:
        person = person_of_folder(engine, name)
        engine.people.name(person, "Jen")
        hers = faces_of_folder(engine, name)
        vectors = engine.privacy.faceprints(hers)
        plan = engine.privacy.plan_erasure(person="Jen", case="request 12", expand=True)
        summary = engine.privacy.eraser.summary(plan)
        listed = {m["face_id"] for m in summary["matches"]}
        assert set(engine.people.store.faces_of(person)) <= listed  # every face of the group, listed first
        assert {folder(m["path"]) for m in summary["matches"]} == {name}
        assert all(m["state"] in ("auto", "search") for m in summary["matches"])
        # The unseen photo (collection 'later', grouping off) is found by the person's search and added by expand.
        assert any(m["state"] == "search" and m["collection"] == "later" for m in summary["matches"])
        assert summary["people"] == 1 and summary["person_id"] == person
        result = engine.privacy.erase(plan)
        assert result.faces == len(hers) and result.verified
        assert faces_of_folder(engine, name) == []
        for photo in photos_of(faces_dir, name):
            assert name not in found_folders(engine, photo)
        with pytest.raises(NotFoundError):
            engine.people.show(person)  # the person record and its name are gone
        erase = engine.audit.events(action="erase")[-1]
        assert erase.params["route"] == "person" and erase.params["person_id"] == person
        assert erase.purpose == "request 12" and "Jen" not in json.dumps(erase.params)
        others = {p.id for p in engine.people.list()}
        assert len(others) == 7  # nobody else was touched
    assert scan_store(store, vectors) == []
    assert b"Jen\x00" not in (store / "catalog.sqlite").read_bytes()


def test_forget_person_without_expand_keeps_to_the_group_and_names_what_search_still_finds(store: Path):
    with open_engine(store) as engine:
        person = person_of_folder(engine, "Katy_Perry")
        group = set(engine.people.store.faces_of(person))
        plan = engine.privacy.plan_erasure(person=person)
        assert set(plan.face_ids) == group
        left = plan.also_found_by_search
        assert left and {folder(m.path) for m in left} == {"Katy_Perry"} and {m.collection for m in left} == {"later"}
        assert plan.search_threshold is not None and all(m.score >= plan.search_threshold for m in left)
        engine.privacy.erase(engine.privacy.planner.include_faces(plan, [m.face_id for m in left]))
        assert faces_of_folder(engine, "Katy_Perry") == []


def test_opt_out_person_keeps_a_template_per_face_and_blocks_reingest(store: Path, faces_dir: Path):
    name = "Scarlett_Johansson"
    photos = photos_of(faces_dir, name)
    with open_engine(store) as engine:
        person = person_of_folder(engine, name)
        size = len(engine.people.store.faces_of(person))
        result = engine.privacy.opt_out_person(person, reference="request 13")
        assert (result.templates, result.person) == (size, person)
        assert faces_of_folder(engine, name) == []
        listed = engine.privacy.opt_outs()
        assert len(listed) == 1 and listed[0].templates == size and listed[0].id == result.optout_id
        report = engine.ingest(photos, "again", basis="legitimate-interests", purpose="re-ingest test")
        assert report.opted_out_faces == len(photos) and faces_of_folder(engine, name) == []
        assert engine.audit.events(action="opt-out")[-1].purpose == "request 13"
        with pytest.raises(NotFoundError):
            engine.people.show(person)
        engine.privacy.withdraw_opt_out(result.optout_id, "changed mind")
        assert engine.privacy.opt_outs() == []
        assert engine.catalog.count("SELECT count(*) FROM optout_templates") == 0


def test_access_report_lists_the_people_groups_of_the_requesters_faces(store: Path, faces_dir: Path, tmp_path: Path):
    with open_engine(store) as engine:
        person = person_of_folder(engine, "Matt_Damon")
        engine.people.name(person, "Matt")
        size = len(engine.people.store.faces_of(person))
        selfie = faces_dir / "lfw-devtrain/images/Matt_Damon"
        report = engine.privacy.access_report(str(next(selfie.iterdir())), tmp_path / "sar", case="sar 1")
    groups = report.data["people"]
    assert [g["id"] for g in groups] == [person] and groups[0]["name"] == "Matt" and groups[0]["faces"] == size
    assert groups[0]["faces_in_report"] >= 1
    assert "People groups" in (tmp_path / "sar/report.html").read_text()


def test_bad_input_by_person(store: Path):
    with open_engine(store) as engine:
        with pytest.raises(NotFoundError):
            engine.privacy.plan_erasure(person=424242)
        with pytest.raises(NotFoundError):
            engine.privacy.opt_out_person("Nobody")
        with pytest.raises(InvalidInputError, match="exactly one"):
            engine.privacy.plan_erasure(person=1, collection="archive")
        person = person_of_folder(engine, "Leonardo_DiCaprio")
        for face in list(engine.people.store.faces_of(person)):
            engine.people.reject(person, face)
        with pytest.raises(NoFaceError):
            engine.privacy.opt_out_person(person)
        plan = engine.privacy.plan_erasure(person=person)  # no faces left: only the record goes
        assert plan.face_ids == [] and not plan.empty
        engine.privacy.erase(plan)
        with pytest.raises(NotFoundError):
            engine.people.show(person)


def test_grouping_is_chosen_when_a_collection_is_created(store: Path, faces_dir: Path):
    with open_engine(store) as engine:
        assert dict((n, a) for n, a, _ in engine.people.groupings()) == {"archive": True, "later": False}
        assert all(p.faces and {f.collection for f in p.faces} == {"archive"} for p in engine.people.list(faces=True))
        with pytest.raises(PolicyError, match="does not allow grouping"):
            engine.people.cluster("later")
        events = engine.audit.events(action="people.grouping")
        assert [(e.params, e.counts) for e in events] == [({"collection": "later", "allowed": "off"}, {"faces": 0})]
        with pytest.raises(InvalidInputError, match="grouping off"):
            engine.ingest(photos_of(faces_dir, "Matt_Damon")[:1], "later", grouping=True)
        # Switched on later (audited): its faces join their people at the next run.
        engine.people.set_grouping("later", True)
        report = engine.people.cluster()
        assert report.joined_existing >= 6
        # Off again: they leave every person, and nobody is formed from them.
        dropped = engine.people.set_grouping("later", False)
        assert dropped == report.joined_existing
        engine.people.cluster()
        assert {f.collection for p in engine.people.list(faces=True) for f in p.faces or []} == {"archive"}


def test_cli_forget_and_opt_out_by_person(store: Path, tmp_path: Path):
    with open_engine(store, mode="read") as engine:
        person = person_of_folder(engine, "Jack_Dorsey")
        other = person_of_folder(engine, "Mark_Zuckerberg")
    text = cli("forget", "--person", person, "--dry-run", "--store", store)
    assert f"person {person}:" in text and "nothing erased" in text
    # The table folds long paths over lines (never "…"): the folder's name is whole once the borders go.
    assert "Jack_Dorsey" in re.sub(r"[\s│]", "", text) and "…" not in text
    out = cli("forget", "--person", person, "--yes", "--json", "--case", "req 1", "--store", store)
    data = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    assert data["erased"] and data["result"]["verified"] and data["plan"]["route"] == "person"
    assert {Path(m["path"]).parent.name for m in data["plan"]["matches"]} == {"Jack_Dorsey"}
    assert "error (not_found)" in cli("forget", "--person", person, "--yes", "--store", store, code=2)
    out = cli("opt-out", "--person", other, "--reference", "req 2", "--json", "--store", store)
    data = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    assert data["person"] == other and data["templates"] >= 3 and data["erasure"]["faces"] >= 3
    listed = json.loads(cli("opt-outs", "--json", "--store", store).splitlines()[-1])
    assert listed[0]["templates"] == data["templates"]
    assert "one of them" in cli("opt-out", "--store", store, code=2)
    listing = [json.loads(line) for line in cli("people", "grouping", "--json", "--store", store).splitlines()]
    assert {r["collection"]: r["grouping"] for r in listing} == {"archive": "on", "later": "off"}


def test_cli_add_with_grouping_off(tmp_path: Path, faces_dir: Path):
    store = tmp_path / "store"
    photos = photos_of(faces_dir, "Jack_Dorsey")[:2]
    cli("add", *photos, "-c", "private", "--basis", "consent", "--purpose", "p", "--grouping", "off",
        "--workers", "1", "--store", store)
    assert "error (empty_store)" in cli("people", "cluster", "--store", store, code=2)
    assert "use on or off" in cli("add", *photos, "-c", "x", "--grouping", "maybe", "--store", store, code=2)
    actions = [json.loads(line)["action"] for line in cli("audit", "list", "--json", "--store", store).splitlines()]
    assert "people.grouping" in actions
    assert np.all([a != "people.cluster" for a in actions])
