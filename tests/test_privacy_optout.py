"""Opt-out on real photos: protected template only, indexed faces erased, re-ingest drops the person."""

from __future__ import annotations

import numpy as np
import pytest
from pg_support import BACKENDS
from privacy_support import faces_in, found_people, open_engine, scan_store, selfie

from faceindex.errors import NotFoundError, PolicyError
from faceindex.privacy.optout import BITS, KEY_FILE, TemplateKey, estimate_cosine


@pytest.mark.parametrize("store", BACKENDS, indirect=True)  # also on PostgreSQL + Milvus Lite
def test_opt_out_then_reingest_indexes_none_of_that_person(store, root):
    photo = selfie(root, "Jack_Dorsey")
    with open_engine(store) as engine:
        jack = faces_in(engine, "Jack_Dorsey")
        gallery_vectors = engine.privacy.faceprints(jack)
        selfie_vector = engine.analyse(str(photo)).accepted[0].embedding
        result = engine.privacy.opt_out(str(photo), reference="request 42")
        assert result.erasure.faces == 4 and result.threshold >= 0.94
        assert faces_in(engine, "Jack_Dorsey") == []
        # Same folders again, into a new collection, so every photo is analysed afresh (no unchanged-skip).
        report = engine.ingest([root / "photos/press"], "press-again", basis="legitimate-interests",
                               purpose="re-ingest test")
        assert report.opted_out_faces == 4  # counted ...
        again = [r[0] for r in engine.catalog.conn.execute(
            "SELECT f.id FROM faces f JOIN images i ON i.id = f.image_id JOIN collections c ON c.id = i.collection_id"
            " WHERE c.name = 'press-again' AND i.uri LIKE '%/Jack_Dorsey/%'")]
        assert again == []  # ... never stored, not even as a rejected face
        assert found_people(engine, photo) == set()
        assert found_people(engine, selfie(root, "Mark_Zuckerberg")) == {"Mark_Zuckerberg"}
        assert len(faces_in(engine, "Mark_Zuckerberg")) == 8  # others are indexed twice as expected
        ingest = engine.audit.events(action="ingest")[-1]
        assert ingest.counts["opted_out_faces"] == 4
        optout = engine.audit.events(action="opt-out")[-1]
        assert optout.purpose == "request 42" and optout.counts == {"faces_matched": 4}
        template = bytes(engine.catalog.conn.execute("SELECT template FROM optout_templates").fetchone()[0])
        assert len(template) == BITS // 8
        assert engine.audit.verify() == []
    # Neither the selfie's faceprint nor the erased ones are in any file; the photo itself was not kept.
    assert scan_store(store, np.vstack([gallery_vectors, selfie_vector])) == []
    head = photo.read_bytes()[2048:6144]
    assert not any(head in p.read_bytes() for p in store.rglob("*") if p.is_file())


def test_opt_out_survives_reopen_and_needs_its_key(store, root, tmp_path):
    with open_engine(store) as engine:
        engine.privacy.opt_out(str(selfie(root, "Rose_Leslie")))
    with open_engine(store) as engine:  # the filter is asked for at each ingest
        assert engine.privacy.ingest_filter() is not None
        report = engine.ingest([root / "photos/press/Rose_Leslie"], "rose", basis="contract", purpose="p")
        assert (report.opted_out_faces, report.faces) == (1, 0)
    (store / KEY_FILE).rename(tmp_path / "moved.key")
    with open_engine(store) as engine, pytest.raises(PolicyError, match="key"):
        engine.ingest([root / "photos/press/Jack_Dorsey"], "jack", basis="contract", purpose="p")


def test_opt_out_recorded_after_an_engine_opened_is_applied_by_its_next_ingest(store, root):
    """The filter is asked for per ingest, not installed on the Engine at open: a long-running engine (the
    service) honours an opt-out that another process recorded after it opened."""
    with open_engine(store) as running:
        with open_engine(store) as other:
            other.privacy.opt_out(str(selfie(root, "Rose_Leslie")))
        report = running.ingest([root / "photos/press/Rose_Leslie"], "rose", basis="contract", purpose="p")
        assert (report.opted_out_faces, report.faces) == (1, 0)


def test_template_estimates_cosine_and_depends_on_key(store):
    with open_engine(store) as engine:
        vectors = engine.privacy.faceprints(faces_in(engine, "Jack_Dorsey") + faces_in(engine, "John_Simm"))
    key, other = TemplateKey(b"k" * 32), TemplateKey(b"o" * 32)
    templates = key.protect(vectors)
    estimate = estimate_cosine(templates, templates)
    truth = vectors @ vectors.T
    assert np.abs(estimate - truth).max() < 0.03  # 4096 bits: error std ~0.006 near the threshold
    assert np.array_equal(TemplateKey(b"k" * 32).protect(vectors), templates)  # deterministic per key
    # Under another key the same faces share no more bits than chance: templates are unlinkable across stores.
    cross = estimate_cosine(templates, other.protect(vectors))
    assert np.abs(np.diag(cross)).max() < 0.15
    assert not any(v.tobytes()[:16] in templates.tobytes() for v in vectors)


def test_withdrawn_opt_out_deletes_its_template_and_lets_ingest_index_the_person_again(store, root):
    with open_engine(store) as engine:
        first = engine.privacy.opt_out(str(selfie(root, "Rose_Leslie")), reference="request 7")
        second = engine.privacy.opt_out(str(selfie(root, "Jack_Dorsey")))
        listed = engine.privacy.opt_outs()
        assert [(r.id, r.reference) for r in listed] == [(first.optout_id, "request 7"), (second.optout_id, None)]
        assert all("template" not in r.to_dict() for r in listed)
        template = bytes(engine.catalog.conn.execute(
            "SELECT template FROM optout_templates WHERE id = ?", (first.optout_id,)).fetchone()[0])
        engine.privacy.withdraw_opt_out(first.optout_id, "consent given at the event desk")
        assert [r.id for r in engine.privacy.opt_outs()] == [second.optout_id]
        # Rose is indexed again; Jack's opt-out still holds.
        report = engine.ingest([root / "photos/press/Rose_Leslie", root / "photos/press/Jack_Dorsey"], "again",
                               basis="contract", purpose="p")
        assert report.faces == len(list((root / "photos/press/Rose_Leslie").iterdir()))
        assert report.opted_out_faces == 4
        event = engine.audit.events(action="opt-out.withdraw")[-1]
        assert event.params == {"optout_id": first.optout_id} and event.purpose == "consent given at the event desk"
        with pytest.raises(NotFoundError):
            engine.privacy.withdraw_opt_out(first.optout_id)
        engine.privacy.withdraw_opt_out(second.optout_id)
        assert engine.privacy.ingest_filter() is None  # no template left: ingest runs without the filter
        assert engine.audit.verify() == []
    # The withdrawn template's bytes left every file of the store (secure_delete + WAL checkpoint).
    assert not any(template in p.read_bytes() for p in store.rglob("*") if p.is_file())
