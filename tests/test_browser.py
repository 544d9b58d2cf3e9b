"""The web UI in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright; no browser
download): log in, create a collection, upload photos and watch the ingest finish, search by uploading a
photo and see the right person first. Screenshots go to the pytest tmp dir and to test-artifacts/."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from browser_support import CHROMIUM, LAUNCH_ARGS, served
from test_service_support import NONFACE, REPO_ROOT_ARTIFACTS, upload_name

from faceindex.config import Settings
from faceindex.engine import Engine
from faceindex.service.app import create_app
from faceindex.service.keys import KeyStore
from faceindex.service.schema import ensure_service_schema

GALLERY = {"Jennifer_Aniston": ["deepface__img12.jpg", "deepface__img53.jpg"],
           "Angelina_Jolie": ["deepface__img10.jpg", "deepface__img11.jpg"],
           "Elon_Musk": ["deepface__img18.jpg"]}
PROBE = ("Jennifer_Aniston", "deepface__img55.jpg")

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed at /usr/bin/chromium "
                                "(apt-get install -y chromium)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The real app under uvicorn on a free loopback port, over a fresh store with one admin key."""
    engine = Engine(tmp_path_factory.mktemp("browser-store"), Settings(workers=1), actor="test")
    ensure_service_schema(engine)
    _, admin = KeyStore(engine).create("browser-admin", "admin")
    with served(create_app(engine)) as url:
        yield url, admin
    engine.close()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (pip install playwright) not installed")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True)
        yield chromium
        chromium.close()


def artifacts(tmp_path: Path) -> list[Path]:
    """Where screenshots go: the test's tmp dir, and test-artifacts/ (kept out of git by its own .gitignore)."""
    REPO_ROOT_ARTIFACTS.mkdir(exist_ok=True)
    (REPO_ROOT_ARTIFACTS / ".gitignore").write_text("*\n")
    return [tmp_path, REPO_ROOT_ARTIFACTS]


def shoot(page, name: str, tmp_path: Path) -> None:
    for folder in artifacts(tmp_path):
        page.screenshot(path=str(folder / name), full_page=True)
        assert (folder / name).stat().st_size > 10_000


def test_login_ingest_and_search_in_chromium(server, browser, faces_dir, tmp_path):
    url, admin = server
    uploads = tmp_path / "to-upload"
    uploads.mkdir()
    for who, names in GALLERY.items():
        for name in names:
            source = faces_dir / "people" / who / name
            shutil.copy(source, uploads / upload_name(who, source))
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))

    page.goto(f"{url}/collections")  # not logged in: sent to the login form, then back here
    assert "/login" in page.url
    page.fill("input[name=key]", admin)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/collections")

    page.fill("#create-collection input[name=name]", "archive")  # a first collection: the form must not fall back to it
    page.select_option("#create-collection select[name=basis]", "consent")
    page.fill("#create-collection input[name=purpose]", "browser test")
    page.click("#create-collection button[type=submit]")
    page.wait_for_selector("#collections a:text('archive')")

    page.fill("#create-collection input[name=name]", "people")
    page.select_option("#create-collection select[name=basis]", "consent")
    page.fill("#create-collection input[name=purpose]", "browser test")
    page.fill("#create-collection input[name=jurisdictions]", "DE, FR")
    page.click("#create-collection button[type=submit]")
    page.wait_for_selector("#collections a:text('people')")
    people_id = page.get_attribute("#collections a:text('people')", "href").rsplit("/", 1)[1]
    assert page.input_value("#upload-form select[name=collection]") == people_id  # the one just created

    page.set_input_files("#upload-form input[name=files]", sorted(str(p) for p in uploads.iterdir()))
    page.click("#upload-form button[type=submit]")
    page.wait_for_selector("[data-job][data-status='done']", timeout=120_000)
    assert page.input_value("#upload-form select[name=collection]") == people_id  # still where we uploaded
    assert "5 indexed, 5 faces" in page.inner_text("#jobs")
    shoot(page, "collections.png", tmp_path)

    page.click("a[href='/search']")
    who, name = PROBE
    page.set_input_files("#photo", str(faces_dir / "people" / who / name))
    page.wait_for_selector("#preview", state="visible", timeout=10_000)  # the local preview of the dropped photo
    page.fill("input[name=purpose]", "browser case 1")
    page.click(".search-form button[type=submit]")
    page.wait_for_selector("#results .cand")
    first = page.inner_text(".cand[data-rank='1'] .file")
    assert first.startswith(who), first
    ranks = page.locator(".cand").count()
    assert ranks >= 1 and page.locator(".cand[data-rank='1'] svg rect").count() == 1
    # Functions, not expression strings: Playwright evaluates those with eval(), which the page's CSP forbids.
    page.wait_for_function("() => [...document.querySelectorAll('.cand img')].every(i => i.complete && i.naturalWidth)")
    shoot(page, "search-results.png", tmp_path)

    page.set_viewport_size({"width": 390, "height": 844})  # a phone: no sideways scrolling
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    shoot(page, "search-results-phone.png", tmp_path)

    page.click(".cand[data-rank='1'] a")
    page.wait_for_selector(".faces li")
    assert page.locator(".frame.big svg rect").count() == 1

    # A group probe comes back with its faces boxed and numbered 1, 2, … as the results and the CLI number them.
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{url}/search")
    page.set_input_files("#photo", str(faces_dir / "groups" / "deepface__couple.jpg"))
    page.fill("input[name=purpose]", "browser group case")
    page.click(".search-form button[type=submit]")
    page.wait_for_selector("#probe text.face-number")
    labels = page.locator("#probe text.face-number").all_text_contents()
    assert len(labels) >= 2 and labels == [str(n) for n in range(1, len(labels) + 1)]
    assert page.locator("#probe svg rect").count() == len(labels) == page.locator(".probe-face").count()
    shoot(page, "search-group.png", tmp_path)

    page.goto(f"{url}/audit")
    assert "Chain verified" in page.inner_text("#verify") and "browser case 1" in page.content()
    page.goto(f"{url}/docs")
    page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)  # Swagger UI from local files, under the CSP
    assert "faceindex" in page.inner_text(".swagger-ui .info .title")
    assert not [p for p in problems if "Content Security Policy" in p or "Refused" in p], problems
    context.close()


def test_privacy_officer_erases_by_selfie_and_opens_an_access_report(server, browser, faces_dir, tmp_path):
    """Runs after the search test (same store): the privacy page's two-step erasure and the access report."""
    url, admin = server
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # the "erase permanently?" confirmation
    page.goto(f"{url}/login?next=/privacy")
    page.fill("input[name=key]", admin)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/privacy")

    selfie = faces_dir / "people" / "Angelina_Jolie" / "deepface__img2.jpg"
    with context.expect_page() as popup:
        page.set_input_files("#access-form input[name=photo]", str(selfie))
        page.fill("#access-form input[name=case]", "SAR-browser")
        page.click("#access-form button[type=submit]")
    report = popup.value
    report.wait_for_load_state()
    assert "Subject access report" in report.inner_text("h1") and report.locator("img[data-image-id]").count() >= 1
    for folder in artifacts(tmp_path):
        report.screenshot(path=str(folder / "access-report.png"), full_page=True)
    report.close()

    # Issue 9 item 3: a plan on screen, then a second try whose photo has no face: the first plan and its
    # "Erase these now" button must be gone, not left live beside the error.
    page.set_input_files("#erase-selfie-form input[name=photo]", str(selfie))
    page.click("#erase-selfie-form button[type=submit]")
    page.wait_for_selector("#plan-box [data-confirm-plan]", state="visible")
    page.set_input_files("#erase-selfie-form input[name=photo]", str(faces_dir / NONFACE))
    page.click("#erase-selfie-form button[type=submit]")
    page.wait_for_function("() => document.querySelector('#erase-selfie-form [data-error]').textContent.length > 0")
    assert page.locator("#plan-box").is_hidden() and page.locator("#plan-box [data-confirm-plan]").is_hidden()

    page.set_input_files("#erase-selfie-form input[name=photo]", str(selfie))
    page.check("#erase-selfie-form input[name=expand]")  # one hop: still only her faces here
    page.click("#erase-selfie-form button[type=submit]")
    page.wait_for_selector("#plan-box [data-matches] li img")
    assert "Would erase" in page.inner_text("#plan-box pre")
    matches = page.locator("#plan-box [data-matches] li").count()
    assert matches >= 1 and "Angelina_Jolie" in page.inner_text("#plan-box [data-matches]")
    shoot(page, "erasure-plan.png", tmp_path)
    page.click("#plan-box [data-confirm-plan]")
    page.wait_for_function("() => document.querySelector('#plan-box pre').textContent.startsWith('Erased')")
    assert '"verified": true' in page.inner_text("#plan-box pre")
    context.close()
