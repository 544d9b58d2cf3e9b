"""Authentication and authorisation: every route refuses missing keys (401) and too-weak keys (403),
browser sessions with HttpOnly/SameSite cookies and CSRF tokens, one-time login links, rate limits."""

from __future__ import annotations

import json
import logging
import re

import fastapi.routing
import pytest
from test_service_support import Service, login, start_service

from faceindex.service.config import ServiceConfig
from faceindex.service.keys import ROLES, KeyStore
from faceindex.service.logs import JsonFormatter

PUBLIC = {"/api/v1/health"}


@pytest.fixture(scope="module")
def svc(tmp_path_factory) -> Service:
    service = start_service(tmp_path_factory.mktemp("auth-store"))
    yield service
    service.close()


def fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def operations(svc: Service):
    schema = svc.client.get("/openapi.json").json()
    for path, methods in schema["paths"].items():
        for method, op in methods.items():
            yield path, method.upper(), op


def test_openapi_is_public_and_documents_roles(svc):
    response = svc.client.get("/openapi.json")
    assert response.status_code == 200
    ops = list(operations(svc))
    assert len(ops) >= 25
    for path, method, op in ops:
        if path in PUBLIC:
            assert op.get("x-public") is True
        else:
            assert op["x-roles"] and "admin" in op["x-roles"], (method, path)
            assert set(op["x-roles"]) <= set(ROLES)
    assert "apiKey" in response.json()["components"]["securitySchemes"]


def test_every_route_refuses_missing_and_too_weak_keys(svc):
    """Walks every path of /openapi.json: no key → 401, a role without the permission → 403."""
    client, checked = svc.client, 0
    for path, method, op in operations(svc):
        url = fill(path)
        anonymous = client.request(method, url)
        if path in PUBLIC:
            assert anonymous.status_code == 200
            continue
        assert anonymous.status_code == 401, (method, path, anonymous.text)
        assert anonymous.json()["error"]["code"] == "unauthorized"
        assert anonymous.headers["www-authenticate"] == "Bearer"
        wrong = client.request(method, url, headers={"Authorization": "Bearer fik_not-a-real-key"})
        assert wrong.status_code == 401, (method, path)
        weak = [r for r in ROLES if r not in op["x-roles"]]
        if op["x-permission"] == "any":
            assert not weak
            continue
        assert weak, f"{method} {path}: every role may call it; mark it x-permission any instead"
        for role in weak:
            refused = client.request(method, url, headers=svc.auth(role))
            assert refused.status_code == 403, (method, path, role, refused.text)
            assert refused.json()["error"]["code"] == "forbidden"
        checked += 1
    assert checked >= 20


def test_web_pages_redirect_to_login_or_refuse_weak_roles(svc):
    """The pages (not in the API document) follow the same rules: a login redirect instead of 401."""
    routes = getattr(fastapi.routing, "iter_route_contexts", lambda routes: routes)(svc.client.app.routes)
    pages = [r for r in routes if getattr(r, "methods", None) and r.path != "/openapi.json"
             and not r.path.startswith("/api/")]
    assert {"/search", "/collections", "/images/{image_id}", "/audit", "/keys", "/privacy"} <= {r.path for r in pages}
    public = {"/login", "/docs", "/"}
    for route in pages:
        for method in route.methods:
            url = fill(route.path)
            response = svc.client.request(method, url, follow_redirects=False)
            if route.path in public:
                assert response.status_code in (200, 303, 403), (method, url)
                continue
            assert response.status_code == 303 and response.headers["location"].startswith("/login?next="), url
    page = svc.client.get("/audit", headers=svc.auth("searcher"))
    assert page.status_code == 403 and "text/html" in page.headers["content-type"] and "may not" in page.text


def test_me_and_key_headers(svc):
    for headers in (svc.auth("auditor"), {"X-API-Key": svc.keys["auditor"]}):
        me = svc.client.get("/api/v1/me", headers=headers).json()
        assert me == {"name": "auditor-1", "role": "auditor", "via": "key",
                      "permissions": ["audit:read", "collections:read", "stats"]}


def test_keys_api_create_list_revoke(svc):
    client, admin = svc.client, svc.auth("admin")
    created = client.post("/api/v1/keys", headers=admin, json={"name": "robot", "role": "searcher"})
    assert created.status_code == 201
    secret = created.json()["key"]
    assert secret.startswith("fik_") and len(secret) > 40 and created.json()["hint"] == secret[:10] + "…"
    listed = client.get("/api/v1/keys", headers=admin).json()
    assert all("key" not in k and "key_hash" not in k for k in listed)
    assert secret not in json.dumps(listed)
    robot = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/me", headers=robot).json()["role"] == "searcher"
    bad_role = client.post("/api/v1/keys", headers=admin, json={"name": "x", "role": "root"})
    assert bad_role.status_code == 422
    clash = client.post("/api/v1/keys", headers=admin, json={"name": "robot", "role": "auditor"})
    assert clash.status_code == 409
    revoked = client.delete(f"/api/v1/keys/{created.json()['id']}", headers=admin).json()
    assert revoked["active"] is False and revoked["revoked_at"]
    assert client.get("/api/v1/me", headers=robot).status_code == 401
    assert client.delete("/api/v1/keys/9999", headers=admin).status_code == 404
    events = client.get("/api/v1/audit", headers=admin, params={"action": "key.create"}).json()
    assert {"name": "robot", "role": "searcher"} in [e["params"] for e in events]
    assert secret not in json.dumps(events)
    stored = svc.engine.catalog.conn.execute("SELECT group_concat(key_hash) FROM api_keys").fetchone()[0]
    assert secret not in stored


def test_last_admin_key_cannot_be_revoked_by_itself(tmp_path):
    service = start_service(tmp_path / "store")
    try:
        admin = service.auth("admin")
        mine = [k for k in service.client.get("/api/v1/keys", headers=admin).json() if k["name"] == "admin-1"][0]
        refused = service.client.delete(f"/api/v1/keys/{mine['id']}", headers=admin)
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "conflict"
        assert service.client.get("/api/v1/me", headers=admin).status_code == 200
    finally:
        service.close()


def test_browser_session_cookie_and_csrf(svc):
    from fastapi.testclient import TestClient

    with TestClient(svc.client.app) as browser:
        answer = login(browser, svc.keys["curator"], next_url="/collections")
        assert answer.status_code == 303 and answer.headers["location"] == "/collections"
        cookie = answer.headers["set-cookie"]
        assert "fi_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
        me = browser.get("/api/v1/me").json()
        assert me["via"] == "session" and me["role"] == "curator"
        page = browser.get("/collections")
        token = re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)
        body = {"name": "web", "basis": "consent", "purpose": "p"}
        forged = browser.post("/api/v1/collections", json=body)
        assert forged.status_code == 403 and forged.json()["error"]["code"] == "csrf"
        wrong = browser.post("/api/v1/collections", json=body, headers={"X-CSRF-Token": "guess"})
        assert wrong.status_code == 403
        made = browser.post("/api/v1/collections", json=body, headers={"X-CSRF-Token": token})
        assert made.status_code == 201
        assert browser.get("/api/v1/jobs").status_code == 200  # reading needs no CSRF token
        out = browser.post("/logout", data={"csrf_token": token}, follow_redirects=False)
        assert out.status_code == 303 and out.headers["location"] == "/login"
        browser.cookies.set("fi_session", re.search(r"fi_session=([^;]+)", cookie).group(1))
        assert browser.get("/api/v1/me").status_code == 401  # the session is gone on the server too


def test_login_refusals_and_open_redirect(svc):
    from fastapi.testclient import TestClient

    with TestClient(svc.client.app) as browser:
        bad = login(browser, "fik_wrong")
        assert bad.status_code == 401 and "Unknown or revoked key" in bad.text
        browser.get("/login")
        forged = browser.post("/login", data={"csrf_token": "other", "key": svc.keys["admin"]},
                              follow_redirects=False)
        assert forged.status_code == 403 and "fi_session" not in forged.headers.get("set-cookie", "")
        away = login(browser, svc.keys["auditor"], next_url="//evil.example/")
        assert away.status_code == 303 and away.headers["location"] == "/"


def test_one_time_login_link(tmp_path):
    service = start_service(tmp_path / "store")
    try:
        with service.engine.catalog.transaction():
            service.engine.catalog.conn.execute("DELETE FROM api_keys")
        keys = KeyStore(service.engine)
        token = keys.bootstrap_login()
        assert token and [k.name for k in keys.list()] == ["initial-admin"]
        again = keys.bootstrap_login()  # not used yet: a new link on the next start
        assert again and again != token
        from fastapi.testclient import TestClient

        with TestClient(service.client.app) as stale:
            # issue 9 item 15: a newer link ends the older one (it may sit in a scroll-back or a log)
            assert login(stale, token=token).status_code == 401
        with TestClient(service.client.app) as browser:
            entered = login(browser, token=again)
            assert entered.status_code == 303 and entered.headers["location"] == "/search"
            assert browser.get("/api/v1/me").json()["role"] == "admin"
        with TestClient(service.client.app) as other:
            assert login(other, token=again).status_code == 401  # one time only
        assert keys.bootstrap_login() is None  # the admin key has been used: no more links
    finally:
        service.close()


def test_rate_limit_per_key(tmp_path):
    service = start_service(tmp_path / "store", ServiceConfig(rate_burst=3, rate_per_minute=1))
    try:
        codes = [service.client.get("/api/v1/me", headers=service.auth("auditor")).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        limited = service.client.get("/api/v1/me", headers=service.auth("auditor"))
        assert limited.json()["error"]["code"] == "rate_limited" and int(limited.headers["retry-after"]) >= 1
        assert service.client.get("/api/v1/me", headers=service.auth("curator")).status_code == 200  # per key
    finally:
        service.close()


def test_error_shape_security_headers_and_json_logs(svc, caplog):
    client = svc.client
    with caplog.at_level(logging.INFO, logger="faceindex.access"):
        missing = client.get("/api/v1/nowhere", headers=svc.auth("admin"))
        wrong_method = client.put("/api/v1/health")
        client.get("/api/v1/me", headers=svc.auth("admin"), params={"token": "secret-in-query"})
    assert missing.status_code == 404 and set(missing.json()["error"]) == {"code", "message"}
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["code"] == "method_not_allowed"
    headers = client.get("/api/v1/health").headers
    assert "default-src 'self'" in headers["content-security-policy"] and "frame-ancestors 'none'" in (
        headers["content-security-policy"])
    assert headers["x-content-type-options"] == "nosniff" and headers["cache-control"] == "no-store"
    assert headers["referrer-policy"] == "no-referrer" and headers["x-request-id"]
    assert "no-store" not in client.get("/static/app.css").headers.get("cache-control", "")
    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records if r.name == "faceindex.access"]
    me = [line for line in lines if line["path"] == "/api/v1/me"][-1]
    assert me["status"] == 200 and me["key"] == "admin-1" and me["role"] == "admin" and me["ms"] >= 0
    text = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    assert svc.keys["admin"] not in text and "secret-in-query" not in text


def test_docs_are_served_locally(svc):
    page = svc.client.get("/docs")
    assert page.status_code == 200 and "/docs-static/swagger-ui-bundle.js" in page.text
    assert "cdn" not in page.text.lower()
    assert svc.client.get("/docs-static/swagger-ui-bundle.js").status_code == 200
    assert svc.client.get("/static/docs.js").status_code == 200


def test_failed_authentications_are_rate_limited_per_address(tmp_path):
    service = start_service(tmp_path / "store", ServiceConfig(auth_failures_per_minute=5))
    try:
        bad = {"Authorization": "Bearer fik_guess"}
        codes = [service.client.get("/api/v1/me", headers=bad).status_code for _ in range(11)]
        assert codes == [401] * 10 + [429]
        assert service.client.get("/api/v1/me", headers=service.auth("admin")).status_code == 200
    finally:
        service.close()
