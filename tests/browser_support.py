"""What the browser tests share: Debian's Chromium and its flags, and an app served by uvicorn on a loopback port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync"]
"""Without the background-networking flags Chromium keeps trying to reach Google's hosts on this closed network."""


@contextmanager
def served(app, *, lifespan: str = "on") -> Iterator[str]:
    """`app` under a real uvicorn server on a free 127.0.0.1 port; yields its base URL, stops it on exit."""
    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False,
                                           lifespan=lifespan))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start within 30 s"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


@contextmanager
def signed_in_page(live_url: str, path: str, key: str) -> Iterator[tuple[object, list[str]]]:
    """Chromium (headless, 1280x900) signed in with `key` on `live_url + path`; yields the page and the list the
    page's console errors are collected in (a test asserts it stays empty), closes the browser on exit."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        problems: list[str] = []
        page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
        page.goto(f"{live_url}{path}")
        page.fill("input[name=key]", key)
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_url}{path}")
        try:
            yield page, problems
        finally:
            browser.close()


def screenshot(page, path: Path) -> None:
    """A full-page screenshot once every image on the page has loaded (a half-loaded page is no documentation)."""
    page.wait_for_function("() => [...document.querySelectorAll('img')].every(i => i.complete && i.naturalWidth)")
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)


def fits_a_phone(page) -> bool:
    """Whether the page needs no sideways scrolling at a phone's width (390 px)."""
    page.set_viewport_size({"width": 390, "height": 844})
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
