"""Erasure plans tell the whole truth: what an ordinary search finds that erasure leaves, only catalogued images,
ISO 3166 jurisdictions, and every plan audited with its case."""

from __future__ import annotations

import shutil
import sqlite3

import pytest
from privacy_support import add_aniston, faces_in, fresh_copy, open_engine

from faceindex.errors import InvalidInputError, NotFoundError


@pytest.fixture()
def aniston(faces_dir, tmp_path_factory, tmp_path):
    """The shared store plus Jennifer Aniston's five other photos in a collection of their own."""
    store = fresh_copy(faces_dir, tmp_path_factory, tmp_path)
    return store, add_aniston(faces_dir, store, tmp_path / "aniston")


def _found_ids(engine, probe) -> dict[int, float]:
    return {c.face_id: c.score for r in engine.search([str(probe)], "check", top_k=50) for f in r.faces
            for c in f.candidates}


def test_selfie_plan_lists_what_an_ordinary_search_finds_but_erasure_would_leave(aniston):
    store, probe = aniston
    with open_engine(store) as engine:
        hers = set(faces_in(engine, "aniston"))
        assert len(hers) == 5
        plan = engine.privacy.plan_erasure(selfie=str(probe), case="DSR-11")
        summary = engine.privacy.eraser.summary(plan)
        searched = _found_ids(engine, probe)
        # The plan's two lists together are exactly what search returns: nothing found by search is unmentioned.
        assert {m.face_id for m in plan.matches} | {m.face_id for m in plan.also_found_by_search} == set(searched)
        left = plan.also_found_by_search
        assert len(plan.matches) == 3 and len(left) == 2 and {m.face_id for m in left} <= hers
        assert all(plan.search_threshold <= m.score < plan.params["threshold"] for m in left)
        assert all(m.fmr is not None and 0 < m.fmr < 1e-3 for m in left)
        assert plan.search_threshold_fmr is not None
        assert summary["also_found_by_search"] == [
            {"face_id": m.face_id, "image_id": m.image_id, "path": m.path, "collection": "fans", "score": m.score,
             "same_photo_as": [], "via": None, "fmr": m.fmr} for m in left]
        assert summary["search_threshold"] == plan.search_threshold
        assert not set(plan.face_ids) & {m.face_id for m in left}
        # The officer includes them by face id; the erasure then leaves nothing an ordinary search finds.
        plan = engine.privacy.plan_erasure(selfie=str(probe), case="DSR-11", include_faces=[m.face_id for m in left])
        assert plan.also_found_by_search == [] and set(plan.included_faces) == {m.face_id for m in left}
        assert set(plan.face_ids) == hers
        engine.privacy.erase(plan)
        assert _found_ids(engine, probe) == {}
        planned = engine.audit.events(action="erasure.plan")
        assert [(e.purpose, e.counts["also_found_by_search"], e.counts["faces"]) for e in planned] == [
            ("DSR-11", 2, 3), ("DSR-11", 0, 5)]
        assert engine.audit.verify() == []


def test_a_plan_extended_by_unknown_face_ids_is_refused(aniston):
    store, probe = aniston
    with open_engine(store) as engine:
        with pytest.raises(NotFoundError, match="no face with id 999999"):
            engine.privacy.plan_erasure(selfie=str(probe), include_faces=[999999])
        assert engine.audit.events(action="erasure.plan") == []  # a refused plan is not recorded as made


def test_faces_route_erases_single_faces_by_id(aniston):
    store, _ = aniston
    with open_engine(store) as engine:
        one = faces_in(engine, "aniston")[0]
        plan = engine.privacy.plan_erasure(faces=[one], case="curator")
        assert plan.route == "face" and plan.face_ids == [one]
        assert engine.privacy.erase(plan).faces == 1
        assert one not in faces_in(engine, "aniston")


def test_plan_by_image_names_only_catalogued_images_and_never_reads_the_named_file(store, root, tmp_path):
    jack = root / "photos/press/Jack_Dorsey/deepface__img17.jpg"
    twin = tmp_path / "not-in-the-store.jpg"
    shutil.copy(jack, twin)  # same bytes as a catalogued photo, at a path the store has never seen
    with open_engine(store) as engine:
        for ref in (twin, tmp_path / "missing.jpg", "/etc/passwd", "999999"):
            with pytest.raises(NotFoundError, match="no such image in this store|no image with id"):
                engine.privacy.plan_erasure(image=str(ref))
        plan = engine.privacy.plan_erasure(image=str(jack))
        assert len(plan.image_ids) == 1


def test_jurisdictions_are_iso_3166_codes(store):
    with open_engine(store) as engine:
        assert engine.create_collection("bavaria", "consent", "p", jurisdictions=["de-by", " us-il "]).jurisdictions \
            == ("DE-BY", "US-IL")
        for bad in ("GERMANY", "Germany", "XX", "US-XX", "DEU"):
            with pytest.raises(InvalidInputError, match="ISO 3166") as caught:
                engine.create_collection("bad", "consent", "p", jurisdictions=[bad])
            assert "US-IL" in str(caught.value)  # the message shows the format
            with pytest.raises(InvalidInputError, match="ISO 3166"):
                engine.privacy.plan_erasure(jurisdiction=bad)
        with pytest.raises(InvalidInputError, match="did you mean DE"):
            engine.create_collection("bad", "consent", "p", jurisdictions=["germany"])
        assert engine.catalog.find_collection("bad") is None


def test_erasure_by_jurisdiction_names_collections_whose_old_tags_it_cannot_read(store):
    # A store written before tags were validated: one collection tagged "GERMANY" instead of DE.
    conn = sqlite3.connect(store / "catalog.sqlite", isolation_level=None)
    conn.execute("INSERT INTO collections (name, legal_basis, purpose, jurisdictions, created_at)"
                 " VALUES ('old', 'consent', 'p', 'GERMANY', '2024-01-01T00:00:00+00:00')")
    conn.close()
    with open_engine(store) as engine:
        plan = engine.privacy.plan_erasure(jurisdiction="de")
        press = engine.catalog.get_collection("press")
        old = engine.catalog.get_collection("old")
        assert plan.params == {"jurisdiction": "DE"} and plan.collection_ids == [press.id]
        assert plan.unrecognised_jurisdictions == [{"collection": "old", "collection_id": old.id,
                                                    "tags": ["GERMANY"]}]
        assert engine.privacy.eraser.summary(plan)["unrecognised_jurisdictions"] == plan.unrecognised_jurisdictions
