"""Web pages through a logged-in browser session (TestClient): every page renders for its roles, the search
form shows the right person first, actions go through the API with the CSRF token."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from test_service_support import GALLERY, Service, gallery_service, login, probe


@pytest.fixture(scope="module")
def svc(tmp_path_factory, faces_dir) -> Service:
    yield from gallery_service(tmp_path_factory.mktemp("ui-store"), faces_dir)


@pytest.fixture
def browser(svc):
    """A separate client with its own cookie jar, logged in as admin."""
    with TestClient(svc.client.app) as client:
        assert login(client, svc.keys["admin"]).status_code == 303
        yield client


def csrf_of(page_text: str) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', page_text).group(1)


def test_search_page_shows_the_right_person_first(svc, browser, faces_dir):
    page = browser.get("/search")
    assert page.status_code == 200 and 'name="purpose"' in page.text and 'id="dropzone"' in page.text
    for who in GALLERY:
        path = probe(faces_dir, who)
        result = browser.post("/search", data={"purpose": "UI case", "csrf_token": csrf_of(page.text)},
                              files={"photo": (path.name, path.read_bytes())})
        assert result.status_code == 200
        first = re.search(r'data-rank="1".*?<span class="file"[^>]*>([^<]+)</span>', result.text, re.S)
        assert first and who in first.group(1), who
        assert "<rect" in result.text and "candidates for human review" in result.text.lower()
    forged = browser.post("/search", data={"purpose": "x"}, files={"photo": ("p.jpg", path.read_bytes())})
    assert forged.status_code == 403
    nonimage = browser.post("/search", data={"purpose": "x", "csrf_token": csrf_of(page.text)},
                            files={"photo": ("p.jpg", b"GIF? no")})
    assert nonimage.status_code == 415 and "not a JPEG" in nonimage.text


def test_collections_collection_and_image_pages(svc, browser):
    page = browser.get("/collections")
    assert page.status_code == 200 and ">people</a>" in page.text and 'id="create-collection"' in page.text
    assert 'id="upload-form"' in page.text and 'data-job="' in page.text and "7 indexed" in page.text
    people = re.search(r'href="/collections/(\d+)">people</a>', page.text)  # links carry ids, never names
    detail = browser.get(f"/collections/{people.group(1)}")
    assert detail.status_code == 200 and detail.text.count("/thumbnail?size=240") == 7
    image_id = re.search(r'href="/images/(\d+)"', detail.text).group(1)
    image = browser.get(f"/images/{image_id}")
    assert image.status_code == 200 and "<rect" in image.text and f"/api/v1/images/{image_id}/thumbnail" in image.text
    assert "Delete face" in image.text and "Delete image" in image.text
    missing = browser.get("/images/99999")
    assert missing.status_code == 404 and "text/html" in missing.headers["content-type"]
    assert browser.get("/collections/99999").status_code == 404


def test_audit_keys_privacy_pages(svc, browser):
    audit = browser.get("/audit")
    assert audit.status_code == 200 and "Chain verified" in audit.text and "collection.create" in audit.text
    assert "search" in browser.get("/audit", params={"action": "search"}).text
    keys = browser.get("/keys")
    assert keys.status_code == 200 and "curator-1" in keys.text and "fik_" in keys.text
    assert svc.keys["curator"] not in keys.text  # only the hint, never the key
    privacy = browser.get("/privacy")
    assert privacy.status_code == 200 and 'id="erase-form"' in privacy.text and 'id="access-form"' in privacy.text


def test_pages_follow_roles(svc):
    with TestClient(svc.client.app) as client:
        assert login(client, svc.keys["searcher"]).headers["location"] == "/search"
        nav = client.get("/search").text
        assert 'href="/search"' in nav and 'href="/collections"' not in nav and 'href="/audit"' not in nav
        for url in ("/collections", "/audit", "/keys", "/privacy"):
            assert client.get(url).status_code == 403, url
    with TestClient(svc.client.app) as client:
        assert login(client, svc.keys["auditor"]).headers["location"] == "/audit"
        assert client.get("/search").status_code == 403 and client.get("/collections").status_code == 200
    with TestClient(svc.client.app) as client:
        page = client.get("/collections", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"] == "/login?next=%2Fcollections"


def test_ui_actions_use_the_api_with_csrf(svc, browser):
    token = csrf_of(browser.get("/collections").text)
    made = browser.post("/api/v1/collections", headers={"X-CSRF-Token": token},
                        json={"name": "from-ui", "basis": "legitimate-interests", "purpose": "p",
                              "jurisdictions": ["FR"]})
    assert made.status_code == 201
    assert "from-ui" in browser.get("/collections").text
    assert browser.delete("/api/v1/collections/from-ui", headers={"X-CSRF-Token": token}).status_code == 200


def test_static_assets_and_login_page_are_public(svc):
    with TestClient(svc.client.app) as client:
        for path in ("/static/app.css", "/static/app.js", "/static/favicon.svg", "/login"):
            assert client.get(path).status_code == 200, path
        for asset in ("/static/app.css", "/static/app.js"):  # nothing loaded from elsewhere
            assert "http://" not in client.get(asset).text and "https://" not in client.get(asset).text


def test_image_page_says_how_many_faces_were_too_small_to_identify(svc, browser):
    from faceindex.pipeline.types import Face

    people = re.search(r'href="/collections/(\d+)">people</a>', browser.get("/collections").text)
    detail = browser.get(f"/collections/{people.group(1)}")
    image_id = int(re.search(r'href="/images/(\d+)"', detail.text).group(1))
    before = browser.get(f"/images/{image_id}").text
    assert "too small to identify" not in before
    # Two faces as detail=thorough records crowd faces: detected, kept without a faceprint, with the reason.
    small = [Face(box=(x, 5, x + 14, 19), score=0.5, detector="dlib-mmod", landmarks=[(x + 7.0, 12.0)] * 5,
                  size_px=14, blur=20.0, rejected="too small (14 px < 32 px)") for x in (5, 25)]
    with svc.engine.catalog.transaction():
        svc.engine.catalog.insert_faces(image_id, small, svc.engine.pipeline.model_id)
    page = browser.get(f"/images/{image_id}").text
    shown = int(re.search(r"<h2>Faces \((\d+)", before).group(1))
    assert f"<h2>Faces ({shown + 2}, 2 too small to identify)</h2>" in page
