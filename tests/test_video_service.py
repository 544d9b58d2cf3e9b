"""Video hits over the REST API and the web UI: timecodes, the track thumbnail, the video by byte ranges, roles."""

from __future__ import annotations

import hashlib
import re

import pytest
import video_support as vs
from test_service_support import login, start_service


@pytest.fixture(scope="module")
def service(faces_dir, tmp_path_factory):
    made = vs.videos(faces_dir, tmp_path_factory.getbasetemp() / "videos")
    svc = start_service(tmp_path_factory.mktemp("video-service") / "store")
    svc.engine.ingest([made["made"]], "clips", basis="consent", purpose="video service tests")
    svc.video = made["made"]
    yield svc
    svc.close()


def search(svc, faces_dir, person: str, role: str = "searcher") -> dict:
    with open(vs.probe(faces_dir, person), "rb") as handle:
        response = svc.client.post("/api/v1/search", headers=svc.auth(role), data={"purpose": "case V"},
                                   files={"photo": ("probe.jpg", handle.read(), "image/jpeg")})
    assert response.status_code == 200, response.text
    return response.json()


def test_rest_search_returns_video_hits_with_timecodes_and_urls(service, faces_dir):
    result = search(service, faces_dir, "Jennifer_Aniston")
    hits = [c for f in result["faces"] for c in f["candidates"]]
    assert len(hits) == 2 and all(h["path"].endswith("made.mp4") for h in hits)
    video = hits[0]["video"]
    assert [(s["start"], s["end"]) for s in video["spans"]] == [("00:00:00.000", "00:00:03.000"),
                                                                ("00:00:08.000", "00:00:10.500")]
    assert re.fullmatch(r"/api/v1/tracks/\d+/thumbnail", video["thumbnail"])
    assert video["play"] == f"/api/v1/images/{hits[0]['image_id']}/video#t={video['start_s']:.3f}"
    assert str(service.store) not in str(result)  # no path inside the store leaks


def test_thumbnail_and_video_ranges_for_a_searcher_who_got_the_hit(service, faces_dir):
    hit = [c for f in search(service, faces_dir, "Matt_Damon")["faces"] for c in f["candidates"]][0]
    auth = service.auth("searcher")
    thumb = service.client.get(hit["video"]["thumbnail"], headers=auth)
    assert thumb.status_code == 200 and thumb.content[:3] == b"\xff\xd8\xff"
    url = hit["video"]["play"].split("#")[0]
    data = service.video.read_bytes()
    part = service.client.get(url, headers={**auth, "Range": "bytes=100-1099"})
    assert part.status_code == 206 and part.content == data[100:1100]
    assert part.headers["content-range"] == f"bytes 100-1099/{len(data)}"
    assert part.headers["content-type"] == "video/mp4" and part.headers["accept-ranges"] == "bytes"
    whole = service.client.get(url, headers=auth)
    assert whole.status_code == 200 and hashlib.sha256(whole.content).digest() == hashlib.sha256(data).digest()
    tail = service.client.get(url, headers={**auth, "Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == data[-10:]
    assert service.client.get(url, headers={**auth, "Range": f"bytes={len(data)}-"}).status_code == 416
    views = [e for e in service.engine.audit.events(action="image.view") if e.params.get("view") == "video"]
    assert views, "playing a video is audited"


def test_video_is_served_only_to_roles_that_may_view(service, faces_dir):
    image_id = service.engine.catalog.conn.execute("SELECT image_id FROM videos").fetchone()[0]
    url = f"/api/v1/images/{image_id}/video"
    assert service.client.get(url).status_code == 401
    assert service.client.get(url, headers=service.auth("auditor")).status_code == 403  # no images:view
    # A searcher sees only what its own searches returned: a fresh searcher key has no grant.
    from faceindex.service.keys import KeyStore

    _, secret = KeyStore(service.engine).create("searcher-2", "searcher")
    assert service.client.get(url, headers={"Authorization": f"Bearer {secret}"}).status_code == 403


def test_web_ui_shows_the_frame_and_a_player_from_that_moment(service, faces_dir):
    client = service.client
    login(client, service.keys["admin"])
    page = client.get("/search")
    token = re.search(r'name="csrf_token" value="([^"]*)"', page.text).group(1)
    with open(vs.probe(faces_dir, "Jennifer_Aniston"), "rb") as handle:
        response = client.post("/search", data={"purpose": "case V", "csrf_token": token},
                               files={"photo": ("probe.jpg", handle.read(), "image/jpeg")})
    assert response.status_code == 200
    html = response.text
    assert html.count('class="cand video-hit"') == 2
    assert "00:00:08.000 – 00:00:10.500" in html
    assert re.search(r'<video controls preload="none"[^>]*src="/api/v1/images/\d+/video#t=8\.000"', html)
    assert re.search(r'<img class="track-thumb" src="/api/v1/tracks/\d+/thumbnail"', html)


def test_ingest_job_status_shows_the_video_being_processed(faces_dir, tmp_path):
    import time

    from faceindex.config import Settings
    from faceindex.engine import Engine
    from faceindex.service.jobs import JobManager
    from faceindex.service.schemas import JobPublic

    made = vs.videos(faces_dir, tmp_path / "videos")
    settings = Settings(store=tmp_path / "store", workers=1)
    with Engine(settings=settings) as engine:
        engine.collection("clips", "consent", "t")
    manager = JobManager(settings)
    job = manager.submit("folder", "clips", [made["made"]], "test")
    snapshots = []
    while (current := manager.get(job.id)).status not in ("done", "failed"):
        if current.video is not None:
            snapshots.append(JobPublic(**current.to_dict()).video)
        time.sleep(0.05)
    manager.shutdown()
    assert current.status == "done" and current.counts["tracks"] == 3 and current.video is None
    assert snapshots and all(s.name == "made.mp4" and s.duration == "00:00:10.500" for s in snapshots)
    assert [s.done_s for s in snapshots] == sorted(s.done_s for s in snapshots)


def test_rest_search_answer_matches_its_documented_schema(service, faces_dir):
    from faceindex.service.schemas import SearchPublic

    for person in vs.PROBES:
        result = search(service, faces_dir, person)
        assert SearchPublic.model_validate(result).model_dump(exclude_none=True)["faces"][0]["candidates"]


def test_search_by_several_photos_of_one_person_gives_video_hits_with_urls(service, faces_dir):
    people = faces_dir / "people" / "Jennifer_Aniston"
    files = [("photos", (name, (people / name).read_bytes(), "image/jpeg"))
             for name in ("deepface__img53.jpg", "deepface__img12.jpg")]
    response = service.client.post("/api/v1/search/same-person", headers=service.auth("searcher"),
                                   data={"purpose": "case V"}, files=files)
    assert response.status_code == 200, response.text
    hits = [c for f in response.json()["faces"] for c in f["candidates"] if c.get("video")]
    assert hits and all(h["video"]["play"].startswith(f"/api/v1/images/{h['image_id']}/video#t=") for h in hits)
    assert str(service.store) not in response.text
