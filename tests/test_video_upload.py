"""Videos uploaded through the service: indexed by a job, found with time spans, deleted with their collection."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
import video_support as vs
from fastapi.testclient import TestClient
from test_service_support import jpeg_bytes, login, start_service

from faceindex.config import Settings
from faceindex.engine import Engine
from faceindex.service.config import ServiceConfig

REQUEST_LIMIT = 150_000
"""Below the made video (~207 KB) and above the probe photos: the upload route must take the video anyway."""
VIDEO_LIMIT = 300_000


@pytest.fixture(scope="module")
def made(faces_dir, tmp_path_factory):
    return vs.videos(faces_dir, tmp_path_factory.getbasetemp() / "videos")


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    config = ServiceConfig(max_request_bytes=REQUEST_LIMIT, max_video_upload_bytes=VIDEO_LIMIT)
    svc = start_service(tmp_path_factory.mktemp("video-upload") / "store", config)
    response = svc.client.post("/api/v1/collections", headers=svc.auth("curator"),
                               json={"name": "clips", "basis": "consent", "purpose": "video upload tests"})
    assert response.status_code == 201, response.text
    svc.collection_id = response.json()["id"]
    yield svc
    svc.close()


def upload(svc, files: list[tuple[str, bytes, str]], role: str = "curator", collection: str = "clips"):
    return svc.client.post(f"/api/v1/collections/{collection}/uploads", headers=svc.auth(role),
                           files=[("files", f) for f in files])


def kept_files(svc) -> list:
    """Files under the store's uploads and staging folders (what an upload left on disk)."""
    return sorted(p for d in ("uploads", "uploads-staging") if (svc.store / d).is_dir()
                  for p in (svc.store / d).rglob("*") if p.is_file())


def hits(svc, faces_dir, person: str) -> list[dict]:
    with open(vs.probe(faces_dir, person), "rb") as handle:
        response = svc.client.post("/api/v1/search", headers=svc.auth("searcher"), data={"purpose": "case U"},
                                   files={"photo": ("probe.jpg", handle.read(), "image/jpeg")})
    assert response.status_code == 200, response.text
    return [c for f in response.json()["faces"] for c in f["candidates"]]


def test_disguised_damaged_or_oversize_uploads_are_refused_and_nothing_is_kept(service, made):
    data = made["made"].read_bytes()
    fake = upload(service, [("clip.mp4", b"not a video at all, only text " * 40, "video/mp4")])
    assert fake.status_code == 415 and fake.json()["error"]["code"] == "unsupported_media_type"
    truncated = upload(service, [("cut.mp4", data[:100_000], "video/mp4")])  # the index (moov) is at the end
    assert truncated.status_code == 422 and truncated.json()["error"]["code"] == "bad_video"
    assert "cut.mp4" in truncated.json()["error"]["message"]
    audio = upload(service, [("talk.mp4", made["audio.mp4"].read_bytes(), "video/mp4")])
    assert audio.status_code == 422 and "audio only" in audio.json()["error"]["message"]
    # a good video followed by a bad photo: the whole request is refused, the staged video too
    mixed = upload(service, [("ok.mp4", data, "video/mp4"), ("bad.jpg", b"\xff\xd8\xff" + b"x" * 50, "image/jpeg")])
    assert mixed.status_code in (415, 422), mixed.text
    big = upload(service, [("big.mp4", data + b"\0" * (VIDEO_LIMIT - len(data) + 1), "video/mp4")])
    assert big.status_code == 413 and big.json()["error"]["code"] == "upload_too_large"
    assert kept_files(service) == []


def test_the_per_video_limit_applies_below_the_request_limit(tmp_path, made):
    svc = start_service(tmp_path / "store", ServiceConfig(max_video_upload_bytes=100_000))
    try:
        svc.client.post("/api/v1/collections", headers=svc.auth("curator"),
                        json={"name": "clips", "basis": "consent", "purpose": "limit test"})
        response = upload(svc, [("clip.mp4", made["made"].read_bytes(), "video/mp4")])
        assert response.status_code == 413, response.text
        assert "max_video_upload_bytes" in response.json()["error"]["message"]
        assert kept_files(svc) == []
    finally:
        svc.close()


def test_a_searcher_may_not_upload(service, made):
    response = upload(service, [("clip.mp4", made["made"].read_bytes(), "video/mp4")], role="searcher")
    assert response.status_code == 403
    assert kept_files(service) == []


def test_an_uploaded_video_is_indexed_and_found_with_its_time_spans(service, made, faces_dir):
    data = made["made"].read_bytes()
    assert len(data) > REQUEST_LIMIT  # the upload route's raised body limit is what lets it in
    response = upload(service, [("interview.mp4", data, "application/octet-stream"),
                                ("photo.jpg", jpeg_bytes(), "image/jpeg")])
    assert response.status_code == 202, response.text
    job = service.wait_job(response.json()["id"])
    assert job["status"] == "done" and job["total"] == 2 and job["done"] == 2, job
    assert job["counts"]["faces"] >= 3, job["counts"]  # three tracks, one to three faceprints each
    kept = [p for p in kept_files(service) if p.suffix == ".mp4"]
    assert len(kept) == 1 and kept[0].name.endswith("-interview.mp4")
    assert hashlib.sha256(kept[0].read_bytes()).digest() == hashlib.sha256(data).digest()
    assert not list((service.store / "uploads-staging").iterdir())

    found = hits(service, faces_dir, "Jennifer_Aniston")
    assert found and all(h["path"].endswith("interview.mp4") for h in found)
    assert found[0]["video"]["play"].startswith(f"/api/v1/images/{found[0]['image_id']}/video#t=")
    spans = [(s["start"], s["end"]) for s in found[0]["video"]["spans"]]
    assert spans == [("00:00:00.000", "00:00:03.000"), ("00:00:08.000", "00:00:10.500")]
    assert len(vs.thumbnails(service.store)) == 3


def test_the_upload_form_takes_videos(service):
    with TestClient(service.client.app) as client:  # its own cookie jar
        assert login(client, service.keys["curator"]).status_code == 303
        page = client.get("/collections").text
    assert 'accept="image/*,video/*' in page
    assert "videos (mp4, mov, m4v, mkv, webm, avi, MPEG-TS) up to 293 KiB each" in page


def test_erasing_one_person_deletes_the_stores_copy_of_the_video(service, faces_dir):
    """A video is not redacted frame by frame: the erased person must not stay in the store's own copy."""
    plan = service.engine.privacy.plan_erasure(selfie=str(vs.probe(faces_dir, "Matt_Damon")), case="DSR-U")
    result = service.engine.privacy.erase(plan)
    assert result.uploads_deleted == 1
    assert [p.suffix for p in kept_files(service)] == [".jpg"]
    assert len(vs.tracks(service.store)) == 2  # Jennifer Aniston's tracks stay in the catalog


def test_deleting_the_collection_deletes_the_uploaded_video_and_its_thumbnails(service):
    assert vs.thumbnails(service.store) and kept_files(service)
    response = service.client.delete("/api/v1/collections/clips", headers=service.auth("curator"))
    assert response.status_code == 200, response.text
    assert kept_files(service) == []
    assert vs.thumbnails(service.store) == set() and vs.tracks(service.store) == []


def test_retention_purge_deletes_an_uploaded_video(tmp_path, made):
    svc = start_service(tmp_path / "store")
    try:
        svc.client.post("/api/v1/collections", headers=svc.auth("curator"),
                        json={"name": "kept", "basis": "consent", "purpose": "retention test", "retention_days": 1})
        response = upload(svc, [("clip.mov", made["clip.mov"].read_bytes(), "video/quicktime")], collection="kept")
        assert response.status_code == 202, response.text
        job = svc.wait_job(response.json()["id"])
        assert job["status"] == "done" and job["counts"]["tracks"] == 1, job
        assert [p.suffix for p in kept_files(svc)] == [".mov"] and vs.thumbnails(svc.store)
    finally:
        svc.close()
    later = datetime.now(UTC) + timedelta(days=2)
    with Engine(svc.store, Settings(workers=1), pipeline=vs.pipeline(), clock=lambda: later) as engine:
        engine.start_writes()  # the start-up work purges what has expired
        assert engine.stats()["images"] == 0
    assert [p for p in (svc.store / "uploads").rglob("*") if p.is_file()] == []
    assert vs.thumbnails(svc.store) == set()
