"""Load on a real `faceindex serve` (loopback only): one searcher alone, then N searchers plus an ingest job.

Reports search latency p50/p99, throughput, errors by status (429 apart) and the latency of /api/v1/health
probed throughout, for both phases in the same run, and the ratios loaded / alone. Bounded in requests and
in time (--budget-s): a phase that runs out of time stops and says so.

    python bench/bench_load.py                      # 8 searchers x 15 searches, 30-photo ingest job
    python bench/bench_load.py --searchers 16 --searches 30 --ingest-photos 60

The server is a child process on 127.0.0.1 over a fresh store in a temporary folder; nothing else is touched.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import benchlib

REPO = Path(__file__).resolve().parents[1]


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def env() -> dict:
    # PYTHONFAULTHANDLER: a crash of the server (a signal in native code) prints every thread's stack to its log.
    return {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "PYTHONFAULTHANDLER": "1"}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "faceindex", *args], capture_output=True, text=True, env=env(),
                          check=True, timeout=300)


def create_key(store: Path, role: str) -> str:
    out = cli("keys", "create", "--role", role, "--name", f"{role}-{secrets.token_hex(3)}", "--store", str(store),
              "--json")
    return json.loads(out.stdout)["key"]


def multipart(fields: dict[str, str], files: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    boundary = "benchload" + secrets.token_hex(8)
    body = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
                    for k, v in fields.items())
    body += b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n"
                     for field, name, data in files)
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


class Client:
    """One keep-alive HTTP connection to the server (one per thread)."""

    def __init__(self, port: int, key: str | None):
        self.port, self.key = port, key
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.last_error = ""

    def call(self, method: str, path: str, body: bytes | None = None, ctype: str = "application/json"):
        headers = {"Content-Type": ctype} if body is not None else {}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        try:
            self.conn.request(method, path, body=body, headers=headers)
            response = self.conn.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.last_error = type(exc).__name__
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            return 0, b""  # connection-level failure, counted as status 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SERVER_LOG = Path(tempfile.gettempdir()) / "faceindex-bench-load-serve.log"
"""The server's own output of the last run (kept after the run: read it when requests failed)."""


def start_server(store: Path, port: int) -> subprocess.Popen:
    with SERVER_LOG.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "faceindex", "serve", "--store", str(store), "--host",
                                 "127.0.0.1", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, env=env(),
                                start_new_session=True)
    deadline = time.monotonic() + 120
    while Client(port, None).call("GET", "/api/v1/health")[0] != 200:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("faceindex serve did not start")
        time.sleep(0.2)
    return proc


def wait_job(client: Client, job_id: str, deadline: float) -> dict:
    while time.monotonic() < deadline:
        status, body = client.call("GET", f"/api/v1/jobs/{job_id}")
        job = json.loads(body) if status == 200 else {}
        if job.get("status") in ("done", "failed"):
            return job
        time.sleep(0.2)
    return {"status": "timed out"}


class HealthProbe(threading.Thread):
    """GET /api/v1/health every `every_s` seconds until stopped; latencies in ms."""

    def __init__(self, port: int, every_s: float = 0.2):
        super().__init__(daemon=True)
        self.client, self.every_s = Client(port, None), every_s
        self.latencies: list[float] = []
        self.failures = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            start = time.perf_counter()
            status, _ = self.client.call("GET", "/api/v1/health")
            self.latencies.append((time.perf_counter() - start) * 1000)
            self.failures += status != 200
            self.stop.wait(self.every_s)


def run_phase(port: int, keys: list[str], probes: list[bytes], searches: int, deadline: float,
              ingest: tuple[Client, list[tuple[str, str, bytes]]] | None = None) -> dict:
    """`len(keys)` searcher threads doing `searches` searches each (plus, if given, one upload job meanwhile)."""
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    lock = threading.Lock()
    health = HealthProbe(port)
    health.start()
    job_result: dict = {}

    def searcher(key: str, offset: int) -> None:
        client = Client(port, key)
        for i in range(searches):
            if time.monotonic() > deadline:
                return
            body, ctype = multipart({"purpose": "load benchmark"}, [("photo", "probe.jpg",
                                                                    probes[(offset + i) % len(probes)])])
            start = time.perf_counter()
            status, _ = client.call("POST", "/api/v1/search", body, ctype)
            with lock:  # a connection-level failure is counted by its exception's name
                statuses[str(status) if status else f"0 ({client.last_error})"] += 1
                if status == 200:
                    latencies.append((time.perf_counter() - start) * 1000)

    def ingester(client: Client, files: list[tuple[str, str, bytes]]) -> None:
        start = time.perf_counter()
        body, ctype = multipart({}, files)
        status, answer = client.call("POST", "/api/v1/collections/load/uploads", body, ctype)
        job = wait_job(client, json.loads(answer)["id"], deadline) if status == 202 else {"status": f"HTTP {status}"}
        job_result.update(status=job.get("status"), files=len(files), seconds=time.perf_counter() - start,
                          faces=job.get("counts", {}).get("faces"))

    threads = [threading.Thread(target=searcher, args=(key, n)) for n, key in enumerate(keys)]
    if ingest is not None:
        threads.append(threading.Thread(target=ingester, args=ingest))
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    health.stop.set()
    health.join()
    done = sum(statuses.values())
    return {"searchers": len(keys), "requests": done, "ok": statuses["200"], "wall_s": wall,
            "per_s": statuses["200"] / wall if wall else 0.0,
            "errors": {s: n for s, n in sorted(statuses.items()) if s != "200"},
            "timed_out": done < len(keys) * searches,
            "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
            "health_p50_ms": percentile(health.latencies, 50), "health_p99_ms": percentile(health.latencies, 99),
            "health_max_ms": max(health.latencies, default=float("nan")), "health_failures": health.failures,
            "ingest": job_result or None}


def photo_files(faces: Path, count: int, max_bytes: int = 400_000) -> list[Path]:
    """`count` photos of people/ (smaller than max_bytes, so a search costs what a typical probe does)."""
    found = sorted(p for p in (faces / "people").rglob("*.jpg") if p.stat().st_size <= max_bytes)
    if len(found) < count:
        raise SystemExit(f"only {len(found)} photos under {faces / 'people'}")
    return found[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--searchers", type=int, default=8, help="concurrent searchers in the loaded phase")
    parser.add_argument("--searches", type=int, default=15, help="searches per searcher (and for the lone one)")
    parser.add_argument("--gallery", type=int, default=30, help="photos indexed before the phases")
    parser.add_argument("--ingest-photos", type=int, default=30, help="photos of the ingest job run under load")
    parser.add_argument("--budget-s", type=float, default=600, help="wall-clock limit of each phase (s)")
    parser.add_argument("--faces", type=Path, default=REPO.parent / "shared" / "faces")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    photos = photo_files(args.faces, args.gallery + args.ingest_photos)
    gallery, extra = photos[:args.gallery], photos[args.gallery:]
    probes = [p.read_bytes() for p in gallery[1::3]]  # photos of indexed people: searches that find candidates
    tmp = Path(tempfile.mkdtemp(prefix="faceindex-bench-load-"))
    store, port = tmp / "store", free_port()
    server = None
    try:
        admin = create_key(store, "admin")
        searcher_keys = [create_key(store, "searcher") for _ in range(args.searchers)]
        server = start_server(store, port)
        curator = Client(port, admin)
        status, body = curator.call("POST", "/api/v1/collections", json.dumps(
            {"name": "load", "basis": "consent", "purpose": "load benchmark"}).encode())
        assert status == 201, body
        upload, ctype = multipart({}, [("files", f"{p.parent.name}-{p.name}", p.read_bytes()) for p in gallery])
        status, body = curator.call("POST", "/api/v1/collections/load/uploads", upload, ctype)
        assert status == 202, body
        first = wait_job(curator, json.loads(body)["id"], time.monotonic() + args.budget_s)
        assert first["status"] == "done", first
        # One search first: it loads the models, a cost of the first request only, kept out of both phases.
        run_phase(port, searcher_keys[:1], probes, 1, time.monotonic() + args.budget_s)
        alone = run_phase(port, searcher_keys[:1], probes, args.searches, time.monotonic() + args.budget_s)
        loaded = run_phase(port, searcher_keys, probes, args.searches, time.monotonic() + args.budget_s,
                           ingest=(Client(port, admin),
                                   [("files", f"{p.parent.name}-{p.name}", p.read_bytes()) for p in extra]))
        if server.poll() is not None:
            print(f"faceindex serve exited during the run (code {server.returncode}); its output: {SERVER_LOG}")
    finally:
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)
    report(args, alone, loaded)


def report(args, alone: dict, loaded: dict) -> None:
    print(f"machine: {benchlib.machine_line()}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M %Z')}; gallery {args.gallery} photos; "
          f"{args.searches} searches per searcher")
    print("| phase | searchers | ok / sent | searches/s | p50 ms | p99 ms | errors | health p50 / p99 / max ms |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in (("alone", alone), (f"{args.searchers} searchers + ingest job", loaded)):
        errors = ", ".join(f"{k}: {v}" for k, v in r["errors"].items()) or "none"
        print(f"| {name} | {r['searchers']} | {r['ok']} / {r['requests']} | {r['per_s']:.2f} | {r['p50_ms']:.0f} | "
              f"{r['p99_ms']:.0f} | {errors}{' (timed out)' if r['timed_out'] else ''} | "
              f"{r['health_p50_ms']:.0f} / {r['health_p99_ms']:.0f} / {r['health_max_ms']:.0f} |")
    ingest = loaded["ingest"] or {}
    print(f"ingest job under load: {ingest.get('status')}, {ingest.get('files')} photos, {ingest.get('faces')} faces, "
          f"{ingest.get('seconds', float('nan')):.1f} s")
    print(f"ratios loaded / alone: p50 {loaded['p50_ms'] / alone['p50_ms']:.2f}x, "
          f"p99 {loaded['p99_ms'] / alone['p99_ms']:.2f}x, throughput {loaded['per_s'] / alone['per_s']:.2f}x, "
          f"health p99 {loaded['health_p99_ms'] / alone['health_p99_ms']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"alone": alone, "loaded": loaded}, indent=2))


if __name__ == "__main__":
    main()
