"""Search by person and by several photos of one person, on real photos (people/), and the fused calibration.

The store (tests/people_support.py): 8 people of ../shared/faces/people grouped from collection "archive"; the
last photo of each in collection "later" (grouping off), which a search by the person must find.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from people_support import (
    PEOPLE,
    cli,
    faces_of_folder,
    folder,
    fresh_copy,
    open_engine,
    person_of_folder,
    photos_of,
)

from faceindex.errors import EmptyStoreError, InvalidInputError, NoFaceError, NotFoundError, PolicyError
from faceindex.fusion import FusionCalibration, fuse
from faceindex.matching import FusedResult, fusion_policy, load_fusion_calibration


@pytest.fixture()
def store(faces_dir, tmp_path_factory, tmp_path) -> Path:
    return fresh_copy(faces_dir, tmp_path_factory, tmp_path)


def test_search_by_person_finds_each_persons_unseen_photo_and_nobody_else(store: Path):
    with open_engine(store, mode="read") as engine:
        single = engine.policy.threshold(engine.store.gallery_size())
        for name in PEOPLE:
            person = person_of_folder(engine, name)
            probes = set(engine.people.store.faces_of(person))
            result = engine.search_person(person, "case 7")
            assert isinstance(result, FusedResult) and result.source == "assigned" and result.probes == len(probes)
            found = result.face.candidates
            assert {folder(c.path) for c in found} == {name}, f"{name}: {[(c.path, c.score) for c in found]}"
            assert any(c.collection == "later" for c in found), f"{name}'s unseen photo not found"
            assert not probes & {c.face_id for c in found}  # the probes are not their own candidates
            # The fused threshold is calibrated for this many probes: never below the single-probe one.
            assert result.face.threshold >= single and result.face.threshold_fmr is not None
            assert all(c.fmr is not None and c.score >= result.face.threshold for c in found)
        events = engine.audit.events(action="search.fused")
        assert len(events) == len(PEOPLE) and {e.purpose for e in events} == {"case 7"}
        assert events[0].params["route"] == "person" and events[0].params["source"] == "assigned"


def test_confirmed_faces_are_the_probes_once_there_are_any(store: Path):
    with open_engine(store) as engine:
        person = person_of_folder(engine, "Angelina_Jolie")
        faces = sorted(engine.people.store.faces_of(person))
        engine.people.confirm(person, faces[:3])
        engine.people.name(person, "Angelina")
        result = engine.search_person("Angelina", "case 8")
        assert (result.source, result.probes, result.name) == ("confirmed", 3, "Angelina")
        assert {f["face_id"] for f in result.probe_faces} == set(faces[:3])
        # Her other (auto) faces are candidates now, marked as hers.
        theirs = [c for c in result.face.candidates if c.person == person]
        assert {c.face_id for c in theirs} <= set(faces[3:]) and len(theirs) >= 4
        assert all(c.person_name == "Angelina" for c in theirs)
        assert all(folder(c.path) == "Angelina_Jolie" for c in result.face.candidates)


def lfw(faces_dir: Path, name: str) -> list[Path]:
    """LFW DevTrain photos of a person (250 x 250: quick to analyse; never ingested into the test store)."""
    return sorted((faces_dir / "lfw-devtrain/images" / name).iterdir())


def blank(tmp_path: Path) -> Path:
    """A photo without a face (plain grey; a real no-face photo costs seconds of the CNN's second look)."""
    from PIL import Image

    path = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), (128, 128, 128)).save(path)
    return path


def test_same_person_photos_are_fused_and_a_stranger_among_them_is_flagged(store: Path, faces_dir: Path,
                                                                            tmp_path: Path):
    jennifer = lfw(faces_dir, "Jennifer_Aniston")
    nonface = blank(tmp_path)
    with open_engine(store, mode="read") as engine:
        result = engine.search_same_person([str(p) for p in jennifer[:3]], "case 9")
        assert result.route == "photos" and result.probes == 3 and not result.warnings
        assert {folder(c.path) for c in result.face.candidates} == {"Jennifer_Aniston"}
        assert len(result.face.candidates) >= 4  # of her 6 photos in people/
        mixed = engine.search_same_person([str(jennifer[0]), str(lfw(faces_dir, "Matt_Damon")[0]),
                                           str(nonface)], "case 9")
        assert mixed.probes == 2 and [s["photo"] for s in mixed.skipped] == [str(nonface)]
        assert len(mixed.warnings) == 1 and "may not show one person" in mixed.warnings[0]
        with pytest.raises(NoFaceError):
            engine.search_same_person([str(nonface)], "case 9")
        with pytest.raises(PolicyError):
            engine.search_same_person([str(jennifer[0])], "  ")


def test_fused_scores_of_strangers_stay_below_the_calibrated_threshold(store: Path):
    """Real faceprints of the store: sets of 2-4 faces of one person against every face of the other people.
    With ~1 100 stranger scores a calibrated FMR of 1e-3 allows ~1 above the threshold; dlib faceprints of these
    distinct people score far lower, so none is. Also: one probe is exactly the single-probe policy."""
    with open_engine(store, mode="read") as engine:
        fusion = engine.fusion_calibration
        assert fusion is not None and fusion.model_id == engine.pipeline.model_id
        assert fusion_policy(engine.policy, fusion, 1) is engine.policy
        ids = {name: faces_of_folder(engine, name) for name in PEOPLE}
        vectors = {f: v for f, v in engine.catalog.face_vectors([f for faces in ids.values() for f in faces])}
        above = total = 0
        for name, faces in ids.items():
            others = np.stack([vectors[f] for n, fs in ids.items() if n != name for f in fs])
            for m in (2, 3, 4):
                probe = fuse(np.stack([vectors[f] for f in faces[:m]]))
                limit = fusion_policy(engine.policy, fusion, m).threshold(1000)
                scores = others @ probe
                above += int((scores >= limit).sum())
                total += len(scores)
        assert total > 1000 and above == 0
    # More probes than the largest bucket: its calibration, shifted up by the modelled drift.
    policy = fusion_policy(engine.policy, fusion, 40)
    top = fusion.buckets[max(fusion.buckets)]
    assert policy.threshold(10_000) == pytest.approx(top.threshold_for_gallery(10_000) + fusion.drift, abs=1e-9)
    assert FusionCalibration.from_json(fusion.to_json()).buckets.keys() == fusion.buckets.keys()
    assert load_fusion_calibration("no-such-model") is None
    uncalibrated = fusion_policy(engine.policy, None, 3)
    assert uncalibrated.fmr(0.99) is None and uncalibrated.threshold(10) > engine.policy.threshold(10)


def test_bad_input_is_a_clear_error(store: Path, tmp_path: Path):
    with open_engine(store) as engine:
        with pytest.raises(NotFoundError, match="no person with id 9999"):
            engine.search_person(9999, "case")
        with pytest.raises(NotFoundError, match="no person named"):
            engine.search_person("Nobody", "case")
        person = person_of_folder(engine, "Leonardo_DiCaprio")
        for face in list(engine.people.store.faces_of(person)):
            engine.people.reject(person, face)
        with pytest.raises(NoFaceError, match="no faces"):
            engine.search_person(person, "case")
        with pytest.raises(InvalidInputError):
            engine.search_same_person([], "case")
    with open_engine(tmp_path / "empty") as engine:
        with pytest.raises(NotFoundError):
            engine.search_person(1, "case")  # no people at all in an empty store
        with pytest.raises(EmptyStoreError):
            engine.search_same_person([str(photos_of(Path(__file__).parents[2] / "shared/faces", "Matt_Damon")[0])],
                                      "case")


def test_cli_search_person_json_like_search_and_exit_codes(store: Path, faces_dir: Path, tmp_path: Path):
    with open_engine(store, mode="read") as engine:
        person = person_of_folder(engine, "Katy_Perry")
    data = json.loads(cli("search", "--person", person, "--purpose", "cli case", "--json", "--store", store))
    assert {"probe", "gallery_size", "faces", "fused"} <= set(data)
    face = data["faces"][0]
    assert {"threshold", "threshold_fmr", "expected_false_candidates", "candidates", "match", "note"} <= set(face)
    assert face["match"] and {folder(c["path"]) for c in face["candidates"]} == {"Katy_Perry"}
    assert data["fused"]["source"] == "assigned" and data["fused"]["person"] == person
    text = cli("search", "--person", person, "--purpose", "cli case", "--store", store)
    assert "none confirmed yet" in text and "fused-score calibration" in text
    jennifer = lfw(faces_dir, "Jennifer_Aniston")
    out = cli("search", jennifer[0], jennifer[1], blank(tmp_path), "--same-person",
              "--purpose", "cli case", "--json", "--store", store, code=1)  # one photo not used: done in part
    data = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    assert data["fused"]["probes"] == 2 and data["fused"]["skipped"][0]["reason"] == "no face found"
    assert {folder(c["path"]) for c in data["faces"][0]["candidates"]} == {"Jennifer_Aniston"}
    assert "error (not_found)" in cli("search", "--person", "424242", "--purpose", "x", "--store", store, code=2)
    assert "not both" in cli("search", jennifer[0], "--person", person, "--purpose", "x", "--store", store, code=2)
    assert "give probe photo" in cli("search", "--purpose", "x", "--store", store, code=2)
