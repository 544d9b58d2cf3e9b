"""Retention with a clock the test controls: purge on open, `faceindex purge`, and the BIPA 3-year rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pg_support import BACKENDS
from privacy_support import (
    faces_in,
    found_people,
    open_engine,
    privacy_cli,
    scan_store,
    selfie,
)
from typer.testing import CliRunner

from faceindex.privacy.retention import years_before


def at(moment: datetime):
    return lambda: moment


@pytest.mark.parametrize("store", BACKENDS, indirect=True)  # also on PostgreSQL + Milvus Lite
def test_expired_images_are_purged_on_open(store, root):
    start = datetime.now(UTC)
    with open_engine(store) as engine:
        engine.ingest([root / "photos/press/Rose_Leslie"], "short-lived", basis="contract", purpose="event",
                      retention_days=30)
        rose = [r[0] for r in engine.catalog.conn.execute(
            "SELECT f.id FROM faces f JOIN images i ON i.id = f.image_id JOIN collections c ON c.id = i.collection_id"
            " WHERE c.name = 'short-lived'")]
        assert len(rose) == 1
        vectors = engine.privacy.faceprints(rose)
    with open_engine(store, clock=at(start + timedelta(days=29))) as engine:
        assert engine.privacy.purged is None  # not yet expired: nothing written
        assert engine.catalog.count("SELECT count(*) FROM images i JOIN collections c ON c.id = i.collection_id"
                                    " WHERE c.name = 'short-lived'") == 1
    with open_engine(store, clock=at(start + timedelta(days=31))) as engine:
        purged = engine.privacy.purged
        assert (purged.images, purged.faces) == (1, 1)
        event = engine.audit.events(action="purge")[-1]
        assert event.params["route"] == "retention" and event.counts["images"] == 1
        # The collection without a retention period keeps its copy of the same photo.
        assert found_people(engine, selfie(root, "Rose_Leslie")) == {"Rose_Leslie", "group"}
        assert engine.catalog.find_collection("short-lived") is not None  # empty, policy kept
        assert rose[0] not in faces_in(engine, "Rose_Leslie")
    # The press copy of the photo holds the same faceprint bytes (same file), so scan once it is gone too.
    with open_engine(store) as engine:
        engine.privacy.erase(engine.privacy.plan_erasure(image=str(root / "photos/press/Rose_Leslie/"
                                                                    "face_recognition__img1.jpg")))
    assert scan_store(store, vectors) == []


def test_bipa_purges_three_years_after_last_interaction(store, root):
    start = datetime.now(UTC)
    with open_engine(store, clock=at(start)) as engine:
        engine.ingest([root / "photos/press/Jack_Dorsey", root / "photos/press/Mark_Zuckerberg"], "illinois",
                      basis="consent", purpose="badges", jurisdictions=["US-IL"])
        ids = {r[0]: r[1] for r in engine.catalog.conn.execute(
            "SELECT f.id, i.uri FROM faces f JOIN images i ON i.id = f.image_id JOIN collections c"
            " ON c.id = i.collection_id WHERE c.name = 'illinois'")}
        mark = [f for f, uri in ids.items() if "/Mark_Zuckerberg/" in uri]
        jack = [f for f, uri in ids.items() if "/Jack_Dorsey/" in uri]
        engine.privacy.subjects.enrol("Mark", face_ids=mark, consent_evidence="badge form")
    a_year_later = start + timedelta(days=365)
    with open_engine(store, clock=at(a_year_later)) as engine:  # Mark comes back: a new interaction
        engine.privacy.subjects.consent("Mark", "given", evidence="renewal")
    with open_engine(store, clock=at(years_before(start, -3) - timedelta(days=1))) as engine:
        assert engine.privacy.purged is None
    with open_engine(store, clock=at(years_before(start, -3) + timedelta(days=1))) as engine:
        assert engine.privacy.purged.faces == len(jack) == 4  # never enrolled: 3 years after capture
        left = {r[0] for r in engine.catalog.conn.execute("SELECT id FROM faces")}
        assert not left & set(jack) and set(mark) <= left
        assert faces_in(engine, "Jack_Dorsey")  # the press collection is not under BIPA
    with open_engine(store, clock=at(years_before(a_year_later, -3) + timedelta(days=1))) as engine:
        assert engine.privacy.purged.faces == len(mark) == 4
        assert engine.privacy.subjects.get("Mark").faces == 0


def test_purge_command_and_store_wide_bipa_mode(store):
    runner = CliRunner()
    result = runner.invoke(privacy_cli(), ["purge", "--bipa", "on", "--json", "--store", str(store)])
    assert result.exit_code == 0, result.output
    assert '"bipa_mode": true' in result.output
    with open_engine(store) as engine:
        assert engine.privacy.retention.bipa_mode
        assert engine.audit.events(action="purge")[-1].counts["faces"] == 0  # an explicit purge is audited
    with open_engine(store, clock=at(datetime.now(UTC) + timedelta(days=3 * 366))) as engine:
        assert engine.stats()["faces"] == 0  # store-wide BIPA: every unenrolled face is past 3 years


def test_years_before_handles_leap_day():
    assert years_before(datetime(2024, 2, 29, tzinfo=UTC), 3) == datetime(2021, 2, 28, tzinfo=UTC)
