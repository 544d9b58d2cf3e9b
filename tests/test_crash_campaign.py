"""kill -9 at seeded random moments of `add`, `forget` and the service's ingest job, then check the store is whole.

Beyond test_ingest.py (one kill after 3 commits) and test_privacy_crash.py (kills at named failpoints), these kill
real child processes at times drawn from a seeded generator, so the kills land anywhere: store creation,
migrations, model loading, mid-commit, index save, erasure. After each: SQLite integrity, no duplicate image or
face, the index agrees with the catalog, the audit chain verifies, an interrupted erasure is finished on the next
open, and completing the work gives the same store an uninterrupted run gives. FACEINDEX_FUZZ_RUNS scales the kills.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from fuzz_support import fuzz_runs
from privacy_support import faces_in, fresh_copy, open_engine, scan_store

from faceindex.engine import Engine
from faceindex.privacy.erasure import FAILPOINT_ENV
from faceindex.store.vector_index import VectorIndex

SEED = int(os.environ.get("FACEINDEX_CRASH_SEED", "9"))
KILLS = max(2, fuzz_runs(80) * 3 // 80)
"""Kills per scenario (3 by default; the full campaign ran 47 in all)."""
PEOPLE = ["John_Salley", "Katy_Perry", "John_Savage"]
SRC = str(Path(__file__).resolve().parents[1] / "src")


def _env(**extra: str) -> dict:
    return {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "FACEINDEX_WORKERS": "1", **extra}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "faceindex", *args]


def _kill_after(cmd: list[str], delay: float, ready=None, **env: str) -> bool:
    """Start `cmd` in its own process group and SIGKILL the group `delay` s after it started (or, with `ready`,
    `delay` s after ready() first holds). True if it was still running when killed."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(**env),
                            start_new_session=True)
    try:
        if ready is not None:
            deadline = time.monotonic() + 300
            while not ready() and proc.poll() is None:
                assert time.monotonic() < deadline, "the child never got ready"
                time.sleep(0.005)
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


def _photos(faces_dir: Path, dest: Path) -> int:
    for person in PEOPLE:
        shutil.copytree(faces_dir / "people" / person, dest / person)
    for path in dest.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)  # shared/ is read-only; copies keep the mode
    return sum(1 for p in dest.rglob("*") if p.is_file())


def check_whole(store: Path) -> dict:
    """The invariants that must hold after any crash; returns counts of what the store holds."""
    db = sqlite3.connect(f"file:{store / 'catalog.sqlite'}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        q = lambda sql: db.execute(sql).fetchone()[0]  # noqa: E731
        assert q("SELECT count(*) FROM (SELECT 1 FROM images GROUP BY collection_id, uri HAVING count(*) > 1)") == 0
        assert q("SELECT count(*) FROM (SELECT 1 FROM faces GROUP BY image_id, box_left, box_top, box_right, "
                 "box_bottom HAVING count(*) > 1)") == 0, "a face was stored twice"
        assert q("SELECT count(*) FROM faces f LEFT JOIN images i ON i.id = f.image_id WHERE i.id IS NULL") == 0
        counts = {"images": q("SELECT count(*) FROM images"),
                  "faces": q("SELECT count(*) FROM faces WHERE embedding IS NOT NULL")}
    finally:
        db.close()
    with open_engine(store) as engine:  # opening runs the resumptions (an interrupted erasure finishes here)
        assert engine.audit.verify() == []
        assert engine.catalog.count("SELECT count(*) FROM erasure_jobs") == 0
        assert len(engine.store.index()) == engine.stats()["faces"]
    return counts


def test_add_killed_at_seeded_random_moments_loses_and_duplicates_nothing(faces_dir, tmp_path):
    n_files = _photos(faces_dir, tmp_path / "photos")
    rng = random.Random(SEED)
    store = tmp_path / "store"
    cmd = _cli("add", str(tmp_path / "photos"), "--collection", "c", "--basis", "consent", "--purpose", "crash",
               "--store", str(store), "--json")
    killed_mid_run = 0
    for delay in sorted(rng.uniform(0.2, 9.0) for _ in range(KILLS)):
        if _kill_after(cmd, delay) and (store / "catalog.sqlite").exists():
            killed_mid_run += 1
            check_whole(store)
    assert killed_mid_run >= 1, "no kill landed while `add` ran"
    print(f"add: {killed_mid_run} of {KILLS} kills landed mid-run")
    done = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    counts = check_whole(store)
    assert counts["images"] == n_files
    index, watermark = VectorIndex.load(store / "index.faiss")
    assert len(index) == counts["faces"] and watermark["max_face_id"] >= counts["faces"]
    again = json.loads(subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=600).stdout)
    assert again["unchanged"] == n_files and again["indexed"] == 0


def test_every_face_of_a_killed_add_has_an_ingest_event(faces_dir, tmp_path):
    _photos(faces_dir, tmp_path / "photos")
    store = tmp_path / "store"
    cmd = _cli("add", str(tmp_path / "photos"), "--collection", "c", "--basis", "consent", "--purpose", "crash",
               "--store", str(store), "--json")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(),
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not _images(store) >= 3:
            assert time.monotonic() < deadline and proc.poll() is None, "add never committed 3 images"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    subprocess.run(cmd, check=True, capture_output=True, env=_env(), timeout=600)
    with open_engine(store) as engine:
        # Issue 9 item 19: each committed batch has its "ingest.batch" event (in its transaction); "faces" counts
        # the faces of copies too.
        recorded = sum(e.counts.get("faces", 0) for e in engine.audit.events(action="ingest.batch"))
        assert recorded == engine.stats()["faces"]


def _images(store: Path) -> int:
    if not (store / "catalog.sqlite").exists():
        return 0
    db = sqlite3.connect(f"file:{store / 'catalog.sqlite'}?mode=ro", uri=True)
    try:
        return db.execute("SELECT count(*) FROM images").fetchone()[0]
    except sqlite3.OperationalError:  # the schema is not there yet
        return 0
    finally:
        db.close()


def test_forget_killed_at_seeded_random_moments_erases_all_or_nothing(faces_dir, tmp_path_factory, tmp_path):
    """Each kill leaves the collection either whole or gone (finished on the next open), never half-erased."""
    rng = random.Random(SEED + 1)
    baseline = fresh_copy(faces_dir, tmp_path_factory, tmp_path / "baseline")
    with open_engine(baseline) as engine:
        canada = faces_in(engine, "John_Simm")
        vectors = engine.privacy.faceprints(canada)
    assert canada
    cmd = lambda store: _cli("forget", "--collection", "canada", "--yes", "--store", str(store))  # noqa: E731
    start = time.monotonic()
    subprocess.run(cmd(baseline), check=True, capture_output=True, env=_env(), timeout=600)
    duration = time.monotonic() - start
    with open_engine(baseline) as engine:
        expected = engine.stats()
    outcomes = []
    for trial in range(KILLS):
        store = fresh_copy(faces_dir, tmp_path_factory, tmp_path / f"trial{trial}")
        if trial % 2:  # anywhere in the run (most such kills land while it starts up)
            was_running = _kill_after(cmd(store), rng.uniform(0.3, 1.0) * duration)
        elif trial == 0:  # at the erasure's failpoint right after its plan commits: mid-erasure on any machine
            was_running = _kill_after(cmd(store), rng.uniform(0.0, 0.02), ready=lambda s=store: _planned(s),
                                      **{FAILPOINT_ENV: "erasure:planned"})
        else:  # within 20 ms of the erasure plan being committed: the erasure itself (where the timing allows)
            was_running = _kill_after(cmd(store), rng.uniform(0.0, 0.02), ready=lambda s=store: _planned(s))
        interrupted = _planned(store)  # the plan is still there: killed mid-erasure, the next open finishes it
        check_whole(store)
        with open_engine(store) as engine:
            left = faces_in(engine, "John_Simm")
            erased = engine.audit.events(action="erase")
        assert left in ([], canada), f"half-erased: {len(left)} of {len(canada)} faces left"
        if not left:
            assert len(erased) == 1 and scan_store(store, vectors) == []
        outcomes.append((was_running, "resumed" if interrupted else "erased" if not left else "untouched"))
        if left:  # killed before the plan was committed: run it again, to the end
            subprocess.run(cmd(store), check=True, capture_output=True, env=_env(), timeout=600)
        with open_engine(store) as engine:
            assert engine.stats() == expected and faces_in(engine, "John_Simm") == []
        assert scan_store(store, vectors) == []
    assert any(running for running, _ in outcomes), outcomes
    assert any(state == "resumed" for _, state in outcomes), f"no kill landed mid-erasure: {outcomes}"
    print(f"forget: kills (was running, state after reopen): {outcomes}")


def _planned(store: Path) -> bool:
    """Whether an erasure plan has been committed (its row in erasure_jobs is visible to another connection)."""
    db = sqlite3.connect(f"file:{store / 'catalog.sqlite'}?mode=ro", uri=True, timeout=0.1)
    try:
        return db.execute("SELECT count(*) FROM erasure_jobs").fetchone()[0] > 0
    except sqlite3.OperationalError:  # locked by the writer for a moment
        return False
    finally:
        db.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    """`faceindex serve` on loopback in a child process group."""

    def __init__(self, store: Path, key: str):
        self.port, self.key = _free_port(), key
        self.proc = subprocess.Popen(_cli("serve", "--store", str(store), "--port", str(self.port)),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(),
                                     start_new_session=True)
        deadline = time.monotonic() + 120
        while True:
            try:
                self.call("GET", "/api/v1/health")
                return
            except OSError:
                assert self.proc.poll() is None and time.monotonic() < deadline, "serve did not start"
                time.sleep(0.2)

    def call(self, method: str, path: str, body: bytes | None = None, ctype: str = "application/json") -> dict:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=body, method=method,
                                     headers={"Authorization": f"Bearer {self.key}", "Content-Type": ctype})
        with urllib.request.urlopen(req, timeout=60) as response:
            return json.loads(response.read())

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def _multipart(files: list[Path]) -> tuple[bytes, str]:
    boundary = "fuzzcampaignboundary"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{p.parent.name}-{p.name}"\r\n'
             f"Content-Type: application/octet-stream\r\n\r\n".encode() + p.read_bytes() + b"\r\n" for p in files]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_service_ingest_job_killed_then_resumed_loses_and_duplicates_nothing(faces_dir, tmp_path):
    n_files = _photos(faces_dir, tmp_path / "photos")
    files = sorted(p for p in (tmp_path / "photos").rglob("*") if p.is_file())
    store = tmp_path / "store"
    made = subprocess.run(_cli("keys", "create", "--role", "curator", "--name", "crash", "--store", str(store),
                               "--json"), capture_output=True, text=True, env=_env(), timeout=120, check=True)
    key = json.loads(made.stdout)["key"]
    rng = random.Random(SEED + 2)
    server = _Server(store, key)
    try:
        server.call("POST", "/api/v1/collections", json.dumps(
            {"name": "c", "basis": "consent", "purpose": "crash test"}).encode())
        job = server.call("POST", "/api/v1/collections/c/uploads", *_multipart(files))
        kill_at = rng.randint(1, n_files - 2)  # files done when the server dies
        deadline = time.monotonic() + 300
        while server.call("GET", f"/api/v1/jobs/{job['id']}")["done"] < kill_at:
            assert time.monotonic() < deadline, "the job made no progress"
            time.sleep(0.05)
    finally:
        server.kill()
    check_whole(store)
    server = _Server(store, key)  # the restarted service resumes the interrupted job
    try:
        deadline = time.monotonic() + 300
        while (resumed := server.call("GET", f"/api/v1/jobs/{job['id']}"))["status"] not in ("done", "failed"):
            assert time.monotonic() < deadline, "the resumed job did not finish"
            time.sleep(0.2)
    finally:
        server.kill()
    assert resumed["status"] == "done", resumed
    print(f"service: killed after {kill_at} of {n_files} files, resumed job done")
    counts = check_whole(store)
    assert counts["images"] == n_files
    with Engine(store) as engine:
        assert engine.stats()["faces"] == counts["faces"] >= n_files - 2


def test_concurrent_add_runs_on_one_new_store_wait_or_fail_cleanly(faces_dir, tmp_path):
    """Four `add` runs at once (two on the same folder): a second writer waits, or fails with a clear message
    and a non-zero exit; never a traceback, nothing half-done."""
    _photos(faces_dir, tmp_path / "photos")
    store = tmp_path / "store"
    cmds = [_cli("add", str(tmp_path / "photos" / person), "--collection", "c", "--basis", "consent", "--purpose",
                 "race", "--store", str(store), "--json") for person in PEOPLE + PEOPLE[:1]]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
             for cmd in cmds]
    results = [(p.wait(timeout=600), p.stdout.read(), p.stderr.read()) for p in procs]
    for proc in procs:
        proc.stdout.close()
        proc.stderr.close()
    for code, _out, err in results:
        assert "Traceback" not in err, err[-3000:]
        assert code == 0 or ("busy" in err.lower() or "another" in err.lower()), (code, err[-1000:])
    assert any(code == 0 for code, _, _ in results)
    counts = check_whole(store)
    indexed = sum(json.loads(out)["indexed"] for code, out, _ in results if code == 0)
    assert counts["images"] == indexed
