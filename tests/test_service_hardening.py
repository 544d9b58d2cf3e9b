"""The service items of the security and first-use campaign (issue 9): each test failed before its fix.

Real store, real photos, real models (tests/test_service_support.py); nothing of the face pipeline is mocked.
"""

from __future__ import annotations

import asyncio
import io
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import urljoin

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from test_service_support import (
    NONFACE,
    Service,
    gallery_service,
    login,
    officer,
    probe,
    start_service,
    uploaded_as,
)

from faceindex.service.config import ServiceConfig
from faceindex.service.keys import BOOTSTRAP_NAME, KeyStore
from faceindex.service.server import bind_refusal, uvicorn_options

SERVICE_DIR = Path(__file__).resolve().parents[1] / "src" / "faceindex" / "service"
GROUP = "groups/deepface__couple.jpg"


@pytest.fixture(scope="module")
def svc(tmp_path_factory, faces_dir) -> Service:
    yield from gallery_service(tmp_path_factory.mktemp("hardening-store"), faces_dir)



def images_of(svc: Service, who: str) -> list[dict]:
    items = svc.client.get("/api/v1/images", headers=svc.auth("admin"), params={"limit": 500}).json()["items"]
    return [i for i in items if uploaded_as(i["path"]).startswith(who)]


def audit_actions(svc: Service, action: str) -> list[dict]:
    return svc.client.get("/api/v1/audit", headers=svc.auth("auditor"), params={"action": action,
                                                                                "limit": 1000}).json()


def csrf_of(page_text: str) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', page_text).group(1)


# -- item 3: a plan is bound to the request that made it -------------------------------------------------
def test_a_failed_second_try_never_leaves_the_first_plan_confirmable(svc, faces_dir):
    first = svc.client.post("/api/v1/erasures/plans/selfie", headers=officer(svc), data={"case": "C-1"},
                            files={"photo": ("a.jpg", probe(faces_dir, "Elon_Musk").read_bytes())})
    assert first.status_code == 201 and first.json()["faces"] >= 1, first.text
    second = svc.client.post("/api/v1/erasures/plans/selfie", headers=officer(svc), data={"case": "C-2"},
                             files={"photo": ("dog.jpg", (faces_dir / NONFACE).read_bytes())})
    assert second.status_code >= 400  # no face in the second person's selfie
    # What the page's stale "Erase these now" button would send: refused, nothing erased.
    stale = svc.client.post(f"/api/v1/erasures/plans/{first.json()['plan_id']}", headers=officer(svc))
    assert stale.status_code == 404
    assert all(i["n_faces"] >= 1 for i in images_of(svc, "Elon_Musk")) and len(images_of(svc, "Elon_Musk")) == 2
    # The page itself hides a shown plan as soon as a new request starts.
    script = (SERVICE_DIR / "static" / "app.js").read_text()
    assert 'if (form.dataset.then === "plan") clearPlan(form);' in script


# -- item 11: credentials before bodies; requests without a key are limited per address ---------------------
def test_an_upload_without_credentials_is_refused_before_its_body_is_read(svc):
    app, read = svc.client.app, {"bytes": 0}
    size, chunk = 90 * 2**20, b"\0" * 2**20

    async def receive():
        read["bytes"] += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": read["bytes"] < size}

    sent = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/api/v1/collections/1/uploads", "raw_path": b"",
             "query_string": b"", "root_path": "", "scheme": "http", "server": ("testserver", 80),
             "client": ("198.51.100.7", 5000), "http_version": "1.1", "app": app,
             "headers": [(b"content-type", b"multipart/form-data; boundary=x"),
                         (b"content-length", str(size).encode())]}
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 401 and read["bytes"] == 0


def test_requests_without_credentials_are_rate_limited_per_address(tmp_path):
    service = start_service(tmp_path / "store", ServiceConfig(anonymous_per_minute=1))
    try:
        codes = [service.client.get("/login").status_code for _ in range(11)]
        assert codes[:10] == [200] * 10 and codes[10] == 429
        assert service.client.get("/api/v1/health").status_code == 200  # liveness is never limited
        assert service.client.get("/api/v1/me", headers=service.auth("auditor")).status_code == 200  # keys have theirs
    finally:
        service.close()


# -- item 12: key checks and health do not wait for the engine ------------------------------------------------
def _while_engine_busy(svc: Service, requests) -> tuple[list, bool]:
    """Run `requests()` while another thread holds the engine (as a long ingest step or search would);
    returns its answers and whether the engine was still held when they came."""
    held, release, state = threading.Event(), threading.Event(), svc.client.app.state.service

    def hold():
        with state.gate.write():
            held.set()
            release.wait(60)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    try:
        answers = requests()
        still_held = holder.is_alive() and not release.is_set()
    finally:
        release.set()
        holder.join()
    return answers, still_held


def _writers_waiting(svc: Service, n: int) -> list[threading.Thread]:
    """Threads whose requests need the engine's write gate (deleting an image that does not exist: a 404 once
    they get it, no side effect): while the gate is held, each one holds a worker of the thread pool."""
    return [threading.Thread(target=svc.client.delete, args=("/api/v1/images/999999999",),
                             kwargs={"headers": svc.auth("admin")}) for _ in range(n)]


def test_searches_run_while_a_writer_holds_the_engine(svc, faces_dir):
    photo = ("p.jpg", probe(faces_dir, "Barack_Obama").read_bytes())
    answers, still_held = _while_engine_busy(svc, lambda: [
        svc.client.post("/api/v1/search", headers=svc.auth("searcher"), data={"purpose": "during a write"},
                        files={"photo": photo}),
        svc.client.get("/api/v1/stats", headers=svc.auth("admin"))])
    search, stats = answers
    assert search.status_code == 200 and search.json()["faces"][0]["candidates"], search.text
    assert stats.status_code == 200 and still_held


def test_key_checks_do_not_wait_for_the_engine_nor_for_a_full_thread_pool(svc):
    def requests():
        blocked = _writers_waiting(svc, 60)
        for thread in blocked:  # more than the thread pool's 40 workers, all waiting on the engine
            thread.start()
        return [svc.client.get("/api/v1/me", headers=svc.auth("curator")),
                svc.client.get("/api/v1/me", headers={"Authorization": "Bearer fik_wrong"}), blocked]

    (me, wrong, blocked), still_held = _while_engine_busy(svc, requests)
    for thread in blocked:
        thread.join()
    assert me.status_code == 200 and me.json()["role"] == "curator" and wrong.status_code == 401 and still_held


def test_health_answers_while_every_worker_thread_waits_for_the_engine(svc):
    def requests():
        blocked = _writers_waiting(svc, 60)
        for thread in blocked:  # more than the thread pool's 40 workers, all waiting on the engine
            thread.start()
        health = svc.client.get("/api/v1/health")
        return [health, blocked]

    (health, blocked), still_held = _while_engine_busy(svc, requests)
    for thread in blocked:
        thread.join()
    assert health.status_code == 200 and health.json()["status"] == "ok" and still_held


def test_default_limits_bite_below_what_the_server_does():
    config = ServiceConfig()
    # ~510 searches/min measured on the campaign machine (issue 9 item 12): one key may use a quarter.
    assert config.rate_per_minute <= 510 / 4 and config.rate_burst <= 60


# -- item 14: ids in URLs, never names ---------------------------------------------------------------
def test_a_subject_named_like_a_path_cannot_make_a_click_act_on_another(svc):
    aniston = [f["id"] for i in images_of(svc, "Jennifer_Aniston") for f in svc.client.get(
        f"/api/v1/images/{i['id']}", headers=svc.auth("admin")).json()["faces"]]
    jolie = [f["id"] for i in images_of(svc, "Angelina_Jolie") for f in svc.client.get(
        f"/api/v1/images/{i['id']}", headers=svc.auth("admin")).json()["faces"]]
    for name, faces in (("Victim", jolie), ("../subjects/Victim", aniston)):
        made = svc.client.post("/api/v1/subjects", headers=officer(svc),
                               json={"name": name, "face_ids": faces, "consent_evidence": "form"})
        assert made.status_code == 201, made.text
    with TestClient(svc.client.app) as browser:
        login(browser, key=svc.keys["privacy-officer"])
        page = browser.get("/privacy")
        evil_row = re.search(r"<td>\.\./subjects/Victim</td>.*?data-api=\"([^\"]+)\"", page.text, re.S).group(1)
        target = urljoin("http://testserver/privacy", evil_row)  # what the browser's fetch resolves it to
        clicked = browser.post(target, headers={"X-CSRF-Token": csrf_of(page.text)},
                               json={"status": "withdrawn", "evidence": "letter"})
    assert clicked.status_code == 200, clicked.text
    subjects = {s["name"]: s for s in svc.client.get("/api/v1/subjects", headers=officer(svc)).json()}
    assert subjects["Victim"]["consent"] == "given" and subjects["Victim"]["faces"] == len(jolie)
    assert subjects["../subjects/Victim"]["consent"] == "withdrawn"


def test_collection_pages_and_forms_address_collections_by_id(svc):
    with TestClient(svc.client.app) as browser:
        login(browser, key=svc.keys["curator"])
        cid = svc.client.get("/api/v1/collections", headers=svc.auth("curator")).json()[0]["id"]
        page = browser.get("/collections", params={"selected": cid})
    assert f'href="/collections/{cid}"' in page.text and f'<option value="{cid}" selected>' in page.text
    assert 'data-then="select:collection"' in page.text and 'data-then="select-created"' in page.text
    digits = svc.client.post("/api/v1/collections", headers=svc.auth("curator"),
                             json={"name": "2024", "basis": "consent", "purpose": "p"})
    assert digits.status_code == 422  # digits address a collection by id


# -- item 15: login links and the bind check -------------------------------------------------------
def test_a_newer_login_link_ends_the_older_one(svc):
    keys = KeyStore(svc.engine)
    key = keys.get("auditor-1")
    old, new = keys.issue_login_token(key), keys.issue_login_token(key)
    with TestClient(svc.client.app) as browser:
        assert login(browser, token=old).status_code == 401
        assert login(browser, token=new).status_code == 303


def test_the_bind_check_ignores_the_admin_key_whose_secret_nobody_holds(tmp_path):
    service = start_service(tmp_path / "store")
    try:
        with service.engine.catalog.transaction():
            service.engine.catalog.conn.execute("DELETE FROM api_keys")  # a store as its first `serve` finds it
        keys = KeyStore(service.engine)
        assert keys.bootstrap_login()
        assert [k.name for k in keys.list() if k.active] == [BOOTSTRAP_NAME]
        assert "needs an admin key whose secret you hold" in bind_refusal("0.0.0.0", keys)
        assert bind_refusal("127.0.0.1", keys) is None
        keys.create("ops", "admin")
        assert bind_refusal("0.0.0.0", keys) is None
    finally:
        service.close()


# -- item 16: an erasure by image names a catalogued image, never a file -----------------------------------
def test_an_erasure_plan_by_image_takes_an_id_never_a_path(svc, faces_dir, tmp_path):
    image = images_of(svc, "Barack_Obama")[0]
    copy = tmp_path / "elsewhere.jpg"  # same bytes as a catalogued photo, at a path the store never saw
    shutil.copyfile(image["path"], copy)
    by_path = svc.client.post("/api/v1/erasures/plans", headers=officer(svc),
                              json={"route": "image", "value": str(copy)})
    assert by_path.status_code == 400 and "image id" in by_path.json()["error"]["message"]
    by_id = svc.client.post("/api/v1/erasures/plans", headers=officer(svc),
                            json={"route": "image", "value": str(image["id"])})
    assert by_id.status_code == 201 and by_id.json()["images"] >= 1


# -- item 17: X-Forwarded-For only from a configured proxy -------------------------------------------------
def test_forwarded_headers_are_ignored_unless_a_proxy_is_configured(svc):
    import uvicorn
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    def loaded(config: ServiceConfig):
        server_config = uvicorn.Config(svc.client.app, **uvicorn_options(config))
        server_config.load()
        return server_config.loaded_app

    def wraps_proxy(app) -> bool:
        while app is not None:
            if isinstance(app, ProxyHeadersMiddleware):
                return True
            app = getattr(app, "app", None)
        return False

    assert not wraps_proxy(loaded(ServiceConfig()))
    assert wraps_proxy(loaded(ServiceConfig(trusted_proxies=["10.0.0.2"])))


# -- item 18: bounded memory per request -------------------------------------------------------------------
def test_a_highly_compressible_huge_png_is_refused_before_decoding(svc):
    out = io.BytesIO()
    Image.new("L", (6000, 5000), 0).save(out, "PNG")  # 30 MP in a few tens of KB
    assert len(out.getvalue()) < 200_000
    refused = svc.client.post("/api/v1/search", headers=svc.auth("searcher"), data={"purpose": "p"},
                              files={"photo": ("bomb.png", out.getvalue())})
    assert refused.status_code == 413 and "pixel limit" in refused.json()["error"]["message"]
    state = svc.client.app.state.service
    assert state.config.max_concurrent_decodes == 2 and state.decodes._initial_value == 2


# -- item 19: logins, photo views and erasure previews are audited -----------------------------------------
def test_logins_photo_views_and_erasure_previews_are_audited(svc, faces_dir):
    before = {a: len(audit_actions(svc, a)) for a in ("login", "image.view", "erasure.plan")}
    with TestClient(svc.client.app) as browser:
        assert login(browser, key=svc.keys["curator"]).status_code == 303
    image = images_of(svc, "Barack_Obama")[0]
    assert svc.client.get(f"/api/v1/images/{image['id']}/thumbnail", headers=svc.auth("admin")).status_code == 200
    planned = svc.client.post("/api/v1/erasures/plans/selfie", headers=officer(svc), data={"case": "AUD-1"},
                              files={"photo": ("s.jpg", probe(faces_dir, "Barack_Obama").read_bytes())})
    assert planned.status_code == 201
    logins, views, previews = (audit_actions(svc, a) for a in ("login", "image.view", "erasure.plan"))
    assert len(logins) == before["login"] + 1 and logins[-1]["actor"] == "key:curator-1"
    assert len(views) == before["image.view"] + 1 and views[-1]["params"] == {"image_id": image["id"],
                                                                             "view": "thumbnail"}
    assert len(previews) == before["erasure.plan"] + 1 and previews[-1]["purpose"] == "AUD-1"
    assert svc.client.get("/api/v1/audit/verify", headers=svc.auth("auditor")).json()["ok"]


# -- item 20: a photo swapped after ingest is not shown ---------------------------------------------------
def test_a_photo_swapped_for_a_symlink_is_not_shown(svc):
    target, other = images_of(svc, "Angelina_Jolie")[0], images_of(svc, "Barack_Obama")[0]
    path, kept = Path(target["path"]), Path(target["path"] + ".kept")
    path.rename(kept)
    path.symlink_to(other["path"])
    try:
        shown = svc.client.get(f"/api/v1/images/{target['id']}/thumbnail", headers=svc.auth("admin"))
        assert shown.status_code == 410 and shown.json()["error"]["code"] == "photo_changed"
        path.unlink()
        shutil.copyfile(other["path"], path)  # other content written over it, no link at all
        assert svc.client.get(f"/api/v1/images/{target['id']}/thumbnail",
                              headers=svc.auth("admin")).status_code == 410
    finally:
        path.unlink(missing_ok=True)
        kept.rename(path)
    assert svc.client.get(f"/api/v1/images/{target['id']}/thumbnail", headers=svc.auth("admin")).status_code == 200


# -- usability: a group probe is shown with numbered boxes -------------------------------------------------
def test_a_group_probe_is_shown_with_its_faces_numbered_from_one(svc, faces_dir):
    with TestClient(svc.client.app) as browser:
        login(browser, key=svc.keys["searcher"])
        page = browser.get("/search")
        result = browser.post("/search", data={"purpose": "group", "csrf_token": csrf_of(page.text)},
                              files={"photo": ("group.jpg", (faces_dir / GROUP).read_bytes())})
    assert result.status_code == 200, result.text
    numbers = [int(n) for n in re.findall(r'class="face-number" data-face="(\d+)"', result.text)]
    headings = re.findall(r'<h3 id="face-(\d+)">Face', result.text)
    assert len(numbers) >= 2 and numbers == list(range(1, len(numbers) + 1)) and len(headings) == len(numbers)
    assert 'src="data:image/jpeg;base64,' in result.text


# -- issue 10 item 3: no SQL in the service's route modules, no route module imports another ----------------
def test_route_modules_hold_no_sql_and_import_no_other_route_module():
    adapters = ["routes_admin", "routes_collections", "routes_images", "routes_privacy", "routes_search",
                "routes_ui", "routes_ui_pages", "keys", "jobs", "job_records", "shared"]
    for name in adapters:
        source = (SERVICE_DIR / f"{name}.py").read_text()
        assert ".conn" not in source and not re.search(r"\b(SELECT|INSERT|UPDATE|DELETE FROM)\b", source), name
        if name.startswith("routes_"):
            assert not re.search(r"from faceindex\.service\.routes_|import routes_", source), name
    assert "ErasurePlan(" not in (SERVICE_DIR / "routes_images.py").read_text()


# -- item 5 (service side): the plan shows what search finds beyond it, and takes faces to add --------------
def test_a_selfie_plan_lists_what_search_finds_beyond_it_and_takes_faces_to_add(svc, faces_dir):
    selfie = ("s.jpg", probe(faces_dir, "Angelina_Jolie").read_bytes())
    plain = svc.client.post("/api/v1/erasures/plans/selfie", headers=officer(svc), data={"case": "INC-1"},
                            files={"photo": selfie})
    assert plain.status_code == 201, plain.text
    body = plain.json()
    assert "also_found_by_search" in body and body["search_threshold"] is not None and body["included_faces"] == []
    extra = images_of(svc, "Barack_Obama")[0]
    extra_face = svc.client.get(f"/api/v1/images/{extra['id']}", headers=svc.auth("admin")).json()["faces"][0]["id"]
    wider = svc.client.post("/api/v1/erasures/plans/selfie", headers=officer(svc),
                            data={"case": "INC-1", "include_faces": f"{extra_face}"}, files={"photo": selfie})
    assert wider.status_code == 201, wider.text
    assert wider.json()["included_faces"] == [extra_face] and wider.json()["faces"] == body["faces"] + 1
    bad = svc.client.post("/api/v1/erasures/plans/selfie", headers=officer(svc),
                          data={"include_faces": "12; DROP"}, files={"photo": selfie})
    assert bad.status_code == 400 and "include_faces" in bad.json()["error"]["message"]
    by_json = svc.client.post("/api/v1/erasures/plans", headers=officer(svc),
                              json={"route": "image", "value": str(extra["id"]), "include_faces": [extra_face]})
    assert by_json.status_code == 201 and by_json.json()["included_faces"] == [extra_face]
