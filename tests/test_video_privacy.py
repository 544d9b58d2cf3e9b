"""Privacy reaches videos: erasure removes whole tracks and their thumbnails, opt-out drops tracks at ingest,
the access report lists each appearance with timecodes, retention purges videos; the source is never written."""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import video_support as vs

from faceindex.config import Settings
from faceindex.engine import Engine


@pytest.fixture(scope="module")
def made(faces_dir, tmp_path_factory) -> dict[str, Path]:
    return vs.videos(faces_dir, tmp_path_factory.getbasetemp() / "videos")


@pytest.fixture(scope="module")
def base_store(made, tmp_path_factory) -> Path:
    """The made video indexed once into collection "clips" (consent, DE, kept 30 days); copied per test."""
    store = tmp_path_factory.mktemp("video-privacy") / "store"
    with open_engine(store) as engine:
        engine.ingest([made["made"]], "clips", basis="consent", purpose="video privacy tests",
                      jurisdictions=["DE"], retention_days=30)
    assert len(vs.tracks(store)) == 3 and len(vs.thumbnails(store)) == 3
    return store


@pytest.fixture
def store(base_store, tmp_path) -> Path:
    copy = tmp_path / "store"
    shutil.copytree(base_store, copy)
    return copy


def open_engine(store: Path, **kwargs) -> Engine:
    return Engine(store, Settings(workers=1), pipeline=vs.pipeline(), **kwargs)


def people_in_video(engine: Engine, faces_dir: Path) -> set[str]:
    found = set()
    for person in vs.PROBES:
        result = engine.search([str(vs.probe(faces_dir, person))], "check")[0]
        if any(c.video for f in result.faces for c in f.candidates):
            found.add(person)
    return found


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_erasure_by_selfie_removes_the_persons_tracks_and_thumbnails(store, made, faces_dir):
    source = sha256(made["made"])
    before = {t["id"]: t for t in vs.tracks(store)}
    with open_engine(store) as engine:
        assert people_in_video(engine, faces_dir) == {"Jennifer_Aniston", "Matt_Damon"}
        plan = engine.privacy.plan_erasure(selfie=str(vs.probe(faces_dir, "Matt_Damon")), case="DSR-V")
        result = engine.privacy.erase(plan)
        assert result.complete and result.faces == 1
        assert people_in_video(engine, faces_dir) == {"Jennifer_Aniston"}
    after = vs.tracks(store)
    assert [(round(t["start_s"]), round(t["end_s"])) for t in after] == [(0, 3), (8, 10)]  # Damon's 3-6 s gone
    gone = [t for i, t in before.items() if i not in {a["id"] for a in after}]
    assert len(gone) == 1 and gone[0]["thumbnail"] not in vs.thumbnails(store)
    assert vs.thumbnails(store) == {t["thumbnail"] for t in after}
    assert sha256(made["made"]) == source  # the source video is never modified


def test_erasing_one_faceprint_of_a_track_takes_the_whole_track(store):
    by_track = vs.track_faces(store)
    with open_engine(store) as engine:
        track_id, faces = next(iter(by_track.items()))
        engine.privacy.erase(engine.privacy.plan_erasure(faces=faces[:1]))
    assert track_id not in {t["id"] for t in vs.tracks(store)}
    assert track_id not in vs.track_faces(store) and len(vs.thumbnails(store)) == 2


def test_erasure_by_jurisdiction_removes_every_track_and_thumbnail(store, made):
    with open_engine(store) as engine:
        engine.privacy.erase(engine.privacy.plan_erasure(jurisdiction="DE"))
        assert engine.stats()["images"] == 0
    assert vs.tracks(store) == [] and vs.thumbnails(store) == set()
    assert made["made"].is_file()


def test_retention_purges_videos_with_their_thumbnails(store):
    later = datetime.now(UTC) + timedelta(days=31)
    with open_engine(store, clock=lambda: later) as engine:
        engine.start_writes()  # the start-up work purges what has expired
        assert engine.stats()["images"] == 0
    assert vs.tracks(store) == [] and vs.thumbnails(store) == set()


def test_opt_out_drops_the_persons_tracks_at_ingest(made, faces_dir, tmp_path):
    store = tmp_path / "store"
    with open_engine(store) as engine:
        engine.collection("clips", "consent", "t")
        engine.privacy.opt_out(str(vs.probe(faces_dir, "Matt_Damon")), reference="OPT-1")
        report = engine.ingest([made["made"]], "clips")
        assert report.opted_out_faces == 1 and report.tracks == 2
        assert people_in_video(engine, faces_dir) == {"Jennifer_Aniston"}
        row = engine.catalog.conn.execute("SELECT faces_withheld, n_faces FROM images").fetchone()
        assert tuple(row) == (1, 2)
    assert len(vs.thumbnails(store)) == 2  # no thumbnail was ever written for the opted-out track


def test_access_report_lists_each_video_appearance_with_timecodes(store, faces_dir, tmp_path):
    with open_engine(store) as engine:
        report = engine.privacy.access_report(str(vs.probe(faces_dir, "Jennifer_Aniston")), tmp_path / "report")
    data = json.loads(report.json_path.read_text())
    (video,) = data["images"]
    assert video["media"] == "video" and video["available"] is True
    spans = [(a["start"], a["end"]) for a in video["appearances"]]
    assert spans == [("00:00:00.000", "00:00:03.000"), ("00:00:08.000", "00:00:10.500")]
    assert all("video" in f and f["video"]["start"] in {s for s, _ in spans} for f in video["faces"])
    assert "thumbnail_file" not in json.dumps(data) and "video-thumbnails" not in json.dumps(data)
    page = report.html_path.read_text()
    assert "00:00:08.000 to 00:00:10.500" in page and "data:image/jpeg;base64," in page


def test_video_on_a_postgresql_catalog_ingests_searches_and_erases(made, faces_dir, tmp_path, request):
    """The video tables and their SQL work on the cluster catalog too (PostgreSQL, started by the tests)."""
    pg_url = request.getfixturevalue("pg_url")
    store = tmp_path / "store"
    with Engine(store, Settings(workers=1, catalog_url=pg_url), pipeline=vs.pipeline()) as engine:
        report = engine.ingest([made["made"]], "clips", basis="consent", purpose="t")
        assert report.tracks == 3
        assert people_in_video(engine, faces_dir) == {"Jennifer_Aniston", "Matt_Damon"}
        engine.privacy.erase(engine.privacy.plan_erasure(selfie=str(vs.probe(faces_dir, "Matt_Damon"))))
        assert people_in_video(engine, faces_dir) == {"Jennifer_Aniston"}
        spans = [(a.start_s, a.end_s) for a in engine.videos.appearances_of_images([1]).get(1, [])]
    assert [(round(s), round(e)) for s, e in spans] == [(0, 3), (8, 10)]
    assert len(vs.thumbnails(store)) == 2
