"""`faceindex keys …` and `faceindex serve`: the real command in a subprocess, its one-time admin link,
its JSON logs, and its refusal to listen beyond loopback without an admin key."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import httpx
from typer.testing import CliRunner

from faceindex.cli import app
from faceindex.cli.service import base_url
from faceindex.engine import Engine
from faceindex.service.keys import KeyStore
from faceindex.service.schema import ensure_service_schema
from faceindex.service.server import is_loopback

runner = CliRunner()


def test_is_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1") and is_loopback("[::1]")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("192.168.1.4")
    assert not is_loopback("example.org")
    assert base_url("::1", 8000, False) == "http://[::1]:8000" and base_url("h", 1, True) == "https://h:1"


def test_keys_create_list_revoke(tmp_path):
    store = str(tmp_path / "store")
    made = runner.invoke(app, ["keys", "create", "--role", "curator", "--name", "bob", "--store", store])
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"fik_[A-Za-z0-9_-]{43}", secret)
    listed = runner.invoke(app, ["keys", "list", "--json", "--store", store])
    keys = json.loads(listed.stdout)
    assert [(k["name"], k["role"], k["active"]) for k in keys] == [("bob", "curator", True)]
    assert secret not in listed.stdout
    as_json = runner.invoke(app, ["keys", "create", "--role", "auditor", "--name", "eve", "--json", "--store", store])
    assert json.loads(as_json.stdout)["key"].startswith("fik_")
    bad = runner.invoke(app, ["keys", "create", "--role", "root", "--name", "x", "--store", store])
    assert bad.exit_code == 2 and "role must be one of" in bad.output
    revoked = runner.invoke(app, ["keys", "revoke", "bob", "--store", store])
    assert revoked.exit_code == 0 and "revoked curator key bob" in revoked.stdout
    keys = json.loads(runner.invoke(app, ["keys", "list", "--json", "--store", store]).stdout)
    assert keys[0]["active"] is False and keys[0]["revoked_at"]
    assert runner.invoke(app, ["keys", "revoke", "nobody", "--store", store]).exit_code == 2


def test_serve_refuses_a_public_address_without_an_admin_key(tmp_path):
    store = str(tmp_path / "store")
    runner.invoke(app, ["keys", "create", "--role", "curator", "--name", "bob", "--store", store])
    refused = runner.invoke(app, ["serve", "--host", "0.0.0.0", "--port", "9", "--store", store])
    assert refused.exit_code == 2 and "needs an admin key whose secret you hold" in " ".join(refused.output.split())


def test_serve_beyond_loopback_is_not_unlocked_by_the_initial_admin_key(tmp_path):
    store = tmp_path / "store"
    with Engine.open(store, mode="write") as engine:
        ensure_service_schema(engine)  # the service's tables, as serve's start-up makes them
        assert KeyStore(engine).bootstrap_login()  # what the first `serve` does: an admin key whose secret nobody holds
    with socket.socket() as taken:  # should the check let it through, serving fails at once instead of running on
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused = runner.invoke(app, ["serve", "--host", "0.0.0.0", "--port", str(port), "--store", str(store)])
    assert refused.exit_code == 2 and "needs an admin key whose secret you hold" in " ".join(refused.output.split())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_prints_a_one_time_admin_link_and_logs_json(tmp_path):
    port = free_port()
    env = {**os.environ, "FACEINDEX_WORKERS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "faceindex", "serve", "--store", str(tmp_path / "store"),
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        link, seen = None, []
        deadline = time.monotonic() + 90
        while link is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                break
            seen.append(line)
            if match := re.search(r"(http://127\.0\.0\.1:\d+/login\?token=[A-Za-z0-9_-]+)", line):
                link = match.group(1)
        assert link, "".join(seen)
        token = link.split("token=")[1]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            while time.monotonic() < deadline:
                try:
                    if client.get("/api/v1/health").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            assert client.get("/api/v1/stats").status_code == 401
            form = client.get("/login", params={"token": token})
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
            entered = client.post("/login", data={"csrf_token": csrf, "token": token, "next": "/"})
            assert entered.status_code == 303 and "HttpOnly" in entered.headers["set-cookie"]
            assert client.get("/api/v1/me").json()["name"] == "initial-admin"
            assert client.get("/api/v1/stats").json()["faces"] == 0
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    access = [r for r in records if r["logger"] == "faceindex.access"]
    assert {"/api/v1/health", "/login", "/api/v1/me"} <= {r["path"] for r in access}
    me = [r for r in access if r["path"] == "/api/v1/me"][0]
    assert me["status"] == 200 and me["key"] == "initial-admin" and me["method"] == "GET"
    assert token not in err.replace(link, "")  # the token is printed once, in the link, never logged
