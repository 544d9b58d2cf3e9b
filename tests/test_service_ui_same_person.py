"""The web page that searches with several photos of one person (/search/same-person), on real photos through
the real pipeline: two photos of a person find her other photos, a photo without a face is listed as skipped, the
face used from a group photo is shown, "no match" is said only after a search, and bad input (a non-image, too
many photos, no face at all, no purpose, a forged form, the wrong role, an empty store) gets a clear error page.
A real Chromium fills the form and takes the docs' screenshot (docs/screenshots/same-person.png with
FACEINDEX_SCREENSHOTS=docs/screenshots; test-artifacts/ otherwise).

One store for the module: the service gallery (7 photos of 4 people), grouped into people once.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from browser_support import CHROMIUM, fits_a_phone, screenshot, served, signed_in_page
from fastapi.testclient import TestClient
from test_service_people import cluster
from test_service_support import NONFACE, gallery_service, login, start_service

from faceindex.service.people_search import probe_names
from faceindex.service.uploads import Upload

SCREENSHOTS = Path(os.environ.get("FACEINDEX_SCREENSHOTS")
                   or Path(__file__).resolve().parents[1] / "test-artifacts")
JOLIE = ["deepface__img2.jpg", "deepface__img5.jpg"]
"""Two photos of Angelina Jolie the gallery does not hold; the gallery holds two others (img10, img11)."""
ZUCKERBERG = ["deepface__img13.jpg", "deepface__img14.jpg"]
"""Two photos of a person who is not in the gallery at all."""
COUPLE = "groups/deepface__couple.jpg"
"""Angelina Jolie with Brad Pitt: two faces (../shared/faces/MANIFEST.tsv)."""


@pytest.fixture(scope="module")
def svc(tmp_path_factory, faces_dir):
    body = gallery_service(tmp_path_factory.mktemp("same-person-ui-store"), faces_dir)
    service = next(body)
    cluster(service)
    yield service
    next(body, None)


def web_client(svc, role: str) -> tuple[TestClient, str]:
    """A client logged in through the login form as `role`, and its session's CSRF token (from the page)."""
    client = TestClient(svc.client.app)
    assert login(client, svc.keys[role]).status_code == 303
    page = client.get("/search/same-person")
    assert page.status_code == 200, page.text
    return client, re.search(r'name="csrf-token" content="([^"]*)"', page.text).group(1)


def photo(faces_dir: Path, relative: str, name: str | None = None) -> tuple[str, tuple[str, bytes, str]]:
    path = faces_dir / relative
    return ("photos", (name or path.name, path.read_bytes(), "image/jpeg"))


def fused_events(svc) -> list[dict]:
    return [e.to_dict() for e in svc.engine.audit.events(action="search.fused")]


def candidate_files(html: str) -> list[str]:
    """The file names of the candidates, best first (uploaded as `<identity>__<file>`)."""
    return re.findall(r'<li class="cand".*?<span class="file" title="[^"]*">([^<]+)</span>', html, re.S)


def test_two_photos_find_the_persons_other_photos_and_skip_a_photo_without_a_face(svc, faces_dir):
    web, csrf = web_client(svc, "searcher")
    form = web.get("/search/same-person").text
    assert 'name="photos"' in form and "multiple" in form and 'name="purpose"' in form and "required" in form
    assert "prominent face" in form and "1 to 12 photos" in form  # the rules are on the page, before a search
    before = len(fused_events(svc))
    files = [photo(faces_dir, f"people/Angelina_Jolie/{n}") for n in JOLIE] + [photo(faces_dir, NONFACE)]
    result = web.post("/search/same-person", data={"purpose": "case 12-web", "csrf_token": csrf}, files=files)
    assert result.status_code == 200, result.text
    html = result.text
    found = candidate_files(html)
    assert set(found) == {"Angelina_Jolie__deepface__img10.jpg", "Angelina_Jolie__deepface__img11.jpg"}, found
    summary = re.search(r'id="fused-summary">(.*?)</p>', html, re.S).group(1)
    assert re.search(r"2\s+photos\s+of\s+one person", summary) and "1 of 3 photos not used" in summary
    # Each photo sent is shown: the two used with their face boxed, the dog named with the reason it was skipped.
    shown = re.findall(r'<li class="probe-photo( skipped-photo)?" data-photo="([^"]+)"', html)
    assert shown == [("", JOLIE[0]), ("", JOLIE[1]), (" skipped-photo", "dlib__dog.jpg")], shown
    assert re.search(r'skip-reason">skipped: no face found', html)
    assert html.count('<img src="data:image/jpeg;base64,') == 3
    # The calibration line, each candidate's fused score, FMR, best single score and person (grouped, linked).
    line = re.search(r'id="calibration">(.*?)</p>', html, re.S).group(1)
    assert "Threshold 0." in line and "false-match rate" in line and "fused-score calibration for 2 probes" in line
    assert html.count("best single 0.") == 2 and html.count("· FMR ") >= 2
    assert len(re.findall(r'<span class="person"><a href="/people/\d+">person #\d+</a>', html)) == 2
    assert "No match" not in html and 'id="search-error"' not in html
    # Audited as the REST route is: by the engine, as the caller, with the purpose and the probe count.
    events = fused_events(svc)
    assert len(events) == before + 1
    assert events[-1]["actor"] == "key:searcher-1" and events[-1]["purpose"] == "case 12-web"
    assert events[-1]["params"]["route"] == "photos" and events[-1]["params"]["probes"] == 2
    # The searcher may now open the photos it got (and only those: see test_service_people_search).
    image_id = re.search(r'<li class="cand" data-rank="1" data-image-id="(\d+)"', html).group(1)
    assert web.get(f"/api/v1/images/{image_id}/thumbnail").status_code == 200


def test_no_match_is_said_only_after_a_search(svc, faces_dir):
    web, csrf = web_client(svc, "admin")
    files = [photo(faces_dir, f"people/Mark_Zuckerberg/{n}") for n in ZUCKERBERG]
    result = web.post("/search/same-person", data={"purpose": "case 12-nomatch", "csrf_token": csrf}, files=files)
    assert result.status_code == 200, result.text
    assert 'id="no-match"' in result.text and "gallery of 7 faces" in result.text
    assert "The store was searched" in result.text and not candidate_files(result.text)


def test_photos_of_two_people_are_flagged(svc, faces_dir):
    web, csrf = web_client(svc, "searcher")
    files = [photo(faces_dir, f"people/Angelina_Jolie/{JOLIE[0]}"),
             photo(faces_dir, f"people/Mark_Zuckerberg/{ZUCKERBERG[0]}")]
    result = web.post("/search/same-person", data={"purpose": "case 12-two", "csrf_token": csrf}, files=files)
    assert result.status_code == 200, result.text
    warning = re.search(r'class="notice fused-warning" role="alert">Warning: ([^<]*)<', result.text)
    assert warning and f"{JOLIE[0]} and {ZUCKERBERG[0]} score" in warning.group(1), result.text
    assert "they may not show one person" in warning.group(1)


def test_a_group_photo_shows_which_face_was_used(svc, faces_dir):
    """The REST rule: each photo's prominent face, or face N of every photo. Two files of one name stay apart."""
    web, csrf = web_client(svc, "searcher")
    files = [photo(faces_dir, COUPLE, "photo.jpg"), photo(faces_dir, f"people/Angelina_Jolie/{JOLIE[0]}", "photo.jpg")]
    prominent = web.post("/search/same-person", data={"purpose": "case 12-group", "csrf_token": csrf}, files=files)
    assert prominent.status_code == 200, prominent.text
    used = re.search(r'data-photo="photo.jpg" data-face="(\d)">.*?<span class="muted used">face (\d) of 2 used',
                     prominent.text, re.S)
    assert used and used.group(1) == used.group(2), prominent.text
    assert 'data-photo="photo.jpg (2)" data-face="1"' in prominent.text and "its face used" in prominent.text
    second = web.post("/search/same-person", data={"purpose": "case 12-group", "csrf_token": csrf, "face": "2",
                                                    "top_k": "3"},
                      files=files)  # numbered from 1 as on the search page: face 2 is the smaller face
    assert second.status_code == 200, second.text
    assert 'name="face" min="1" max="1000" placeholder="the prominent face" value="2"' in second.text
    assert 'placeholder="default" value="3"' in second.text  # the form keeps what was typed
    assert 'data-photo="photo.jpg" data-face="2"' in second.text and "face 2 of 2 used" in second.text
    assert re.search(r'data-photo="photo.jpg \(2\)">.*?skipped: no face 2 \(the photo has 1\)', second.text, re.S)


def test_bad_input_gets_a_clear_error_page(svc, faces_dir):
    web, csrf = web_client(svc, "searcher")
    good = photo(faces_dir, f"people/Angelina_Jolie/{JOLIE[0]}")
    before = len(fused_events(svc))

    def post(files, **data):
        return web.post("/search/same-person", data={"purpose": "case 12-bad", "csrf_token": csrf, **data},
                        files=files)

    def error_of(response) -> str:
        return re.search(r'id="search-error">([^<]*)<', response.text).group(1)

    nonimage = post([good, ("photos", ("notes.txt", b"these are not pixels", "text/plain"))])
    assert nonimage.status_code == 415 and error_of(nonimage).startswith("notes.txt: not a JPEG")
    assert 'value="case 12-bad"' in nonimage.text  # what was typed is kept
    too_many = post([good] * 13)
    assert too_many.status_code == 400 and "1 to 12 photos" in error_of(too_many) and "got 13" in error_of(too_many)
    nothing = post([("photos", ("", b"", "application/octet-stream"))])  # the form sent with no file chosen
    assert nothing.status_code == 400 and "got 0" in error_of(nothing)
    no_face = post([photo(faces_dir, NONFACE)])
    assert no_face.status_code == 422 and "no usable face" in error_of(no_face) and "dlib__dog.jpg" in error_of(no_face)
    no_purpose = post([good], purpose=" ")
    assert no_purpose.status_code == 403 and "purpose" in error_of(no_purpose)
    for response in (nonimage, too_many, nothing, no_face, no_purpose):
        assert 'id="results"' not in response.text and "No match" not in response.text
    assert len(fused_events(svc)) == before, "nothing was searched, so nothing was audited as a search"
    forged = web.post("/search/same-person", data={"purpose": "x"}, files=[good])
    assert forged.status_code == 403
    curator = TestClient(svc.client.app)  # roles as for a search by photo: admin and searcher
    assert login(curator, svc.keys["curator"]).status_code == 303
    curator_csrf = re.search(r'name="csrf-token" content="([^"]*)"', curator.get("/collections").text).group(1)
    assert curator.get("/search/same-person").status_code == 403
    assert curator.post("/search/same-person", data={"purpose": "x", "csrf_token": curator_csrf},
                        files=[good]).status_code == 403
    anonymous = TestClient(svc.client.app).get("/search/same-person", follow_redirects=False)
    assert anonymous.status_code in (302, 303) and anonymous.headers["location"].startswith("/login")


def test_an_empty_store_is_an_error_never_no_match(tmp_path, faces_dir):
    empty = start_service(tmp_path / "empty-store")
    try:
        web, csrf = web_client(empty, "searcher")
        files = [photo(faces_dir, f"people/Angelina_Jolie/{n}") for n in JOLIE]
        response = web.post("/search/same-person", data={"purpose": "case 12-empty", "csrf_token": csrf},
                            files=files)
        assert response.status_code == 409
        assert "holds no faces" in re.search(r'id="search-error">([^<]*)<', response.text).group(1)
        assert "No match" not in response.text and 'id="results"' not in response.text
    finally:
        empty.close()


def test_two_uploads_of_one_name_are_told_apart():
    """The result names each photo used or skipped: two files called photo.jpg must not read as one."""
    uploads = [Upload(name, b"", "JPEG", 1, 1) for name in ("photo.jpg", "a.jpg", "photo.jpg", "photo.jpg")]
    assert probe_names(uploads) == ["upload:photo.jpg", "upload:a.jpg", "upload:photo.jpg (2)", "upload:photo.jpg (3)"]


@pytest.fixture(scope="module")
def live_url(svc):
    """The module's app served by uvicorn on a free loopback port (the TestClient keeps owning its lifespan)."""
    with served(svc.client.app, lifespan="off") as url:
        yield url


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed at /usr/bin/chromium")
def test_same_person_page_in_chromium(svc, live_url, faces_dir):
    """A searcher picks three photos (one without a face) in a real browser; screenshot for the docs."""
    with signed_in_page(live_url, "/search", svc.keys["searcher"]) as (page, problems):
        page.click("#tab-same-person")
        page.wait_for_url(f"{live_url}/search/same-person")
        page.set_input_files("#photos", [str(faces_dir / NONFACE)] * 13)
        assert "13 photos chosen: at most 12" in page.inner_text("#photos-error")  # said before sending them
        page.set_input_files("#photos", [str(faces_dir / "people/Angelina_Jolie" / n) for n in JOLIE]
                             + [str(faces_dir / NONFACE)])
        assert page.locator("#previews img").count() == 3  # previewed locally before anything is sent
        assert page.inner_text("#photos-error") == ""
        page.fill("input[name=purpose]", "case 12-browser")
        page.click("#same-person-form button[type=submit]")
        page.wait_for_selector("#results")
        assert page.locator("#candidates li.cand").count() == 2
        assert page.locator(".probe-photo.skipped-photo").count() == 1
        screenshot(page, SCREENSHOTS / "same-person.png")
        assert fits_a_phone(page)
    assert not problems, problems
    assert (SCREENSHOTS / "same-person.png").stat().st_size > 20_000
