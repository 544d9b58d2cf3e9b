"""A video hit in real headless Chromium: the track's frame with the face boxed, the timecode, and the video
playing from that moment through the service's range requests. The screenshot goes to test-artifacts/."""

from __future__ import annotations

import pytest
import video_support as vs
from browser_support import CHROMIUM, served
from test_browser import artifacts, browser  # noqa: F401 - the browser fixture is shared

from faceindex.config import Settings
from faceindex.engine import Engine
from faceindex.service.app import create_app
from faceindex.service.keys import KeyStore
from faceindex.service.schema import ensure_service_schema

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed at /usr/bin/chromium")

SCREENSHOT = "video-search.png"


@pytest.fixture(scope="module")
def video_server(faces_dir, tmp_path_factory):
    """The real app under uvicorn on a loopback port, over a store holding the Hamilton clip and the made video."""
    made = vs.videos(faces_dir, tmp_path_factory.getbasetemp() / "videos")
    engine = Engine(tmp_path_factory.mktemp("video-browser-store"), Settings(workers=1), actor="test",
                    pipeline=vs.pipeline())
    engine.ingest([faces_dir / "video" / "short_hamilton_clip.mp4", made["made"]], "clips", basis="consent",
                  purpose="browser video test")
    ensure_service_schema(engine)
    _, admin = KeyStore(engine).create("browser-admin", "admin")
    with served(create_app(engine)) as url:
        yield url, admin
    engine.close()


@pytest.mark.slow
def test_video_hit_plays_from_its_moment(video_server, browser, faces_dir, tmp_path):  # noqa: F811
    url, admin = video_server
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(f"{url}/search")
    page.fill("input[name=key]", admin)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/search")
    page.set_input_files("#photo", str(faces_dir / "video" / "lin-manuel-miranda.png"))
    page.fill("input[name=purpose]", "browser video case")
    page.click(".search-form button[type=submit]")
    page.wait_for_selector("#results .cand.video-hit")
    page.wait_for_function("() => [...document.querySelectorAll('.cand img')].every(i => i.complete && i.naturalWidth)")
    first = page.locator(".cand.video-hit").first
    assert first.locator(".timecode").inner_text().startswith("00:00:0")
    first.locator("details.play summary").click()
    video = first.locator("video")
    start = float(video.get_attribute("data-start"))
    assert start > 1.0  # his best track starts after the opening wide shot
    video.evaluate("v => { v.muted = true; v.preload = 'auto'; v.load(); }")
    page.wait_for_function("v => v.readyState >= 1 && v.currentTime > 0", arg=video.element_handle(), timeout=30_000)
    assert video.evaluate("v => v.currentTime") == pytest.approx(start, abs=0.1)  # opens at the hit, not at 0
    assert 9.0 <= video.evaluate("v => v.duration") <= 10.5  # the 9.2 s clip (its audio runs to 10 s)
    for folder in artifacts(tmp_path):
        page.screenshot(path=str(folder / SCREENSHOT), full_page=True)
    assert (tmp_path / SCREENSHOT).stat().st_size > 10_000
