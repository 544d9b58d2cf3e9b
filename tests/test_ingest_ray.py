"""`faceindex add --ray` on a real multi-node Ray cluster (a head and two worker nodes started with `ray start` on
this machine): it records what a local ingest records, also when a worker node is killed mid-job; an unreachable
cluster is a clear error. Real photos, real models, real Ray: nothing here is mocked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceindex.engine import Engine
from faceindex.ingest.ray_localcluster import LocalRayCluster, free_port

pytest.importorskip("ray.data")
pytestmark = pytest.mark.slow

REPO_SRC = Path(__file__).resolve().parents[1] / "src"
ENV = {**os.environ, "PYTHONPATH": str(REPO_SRC)}
LFW_PHOTOS = 15  # small (250x250) portraits of 15 people: the bulk of the folder, quick to analyse
MODEL_LOAD_CPU_S = 1.3
"""CPU seconds an analysing actor spends importing faceindex and loading the models (~1.1 s measured here);
the folder's analysis then takes ~1.8 s of CPU per actor of two, the window in which the node is killed."""


@pytest.fixture(scope="module")
def photos(faces_dir, tmp_path_factory) -> Path:
    """~20 real photos (portraits, a group photo, a photo without a face) and four files a local ingest skips or
    copies: text, a truncated JPEG, a 4x4 image and an exact copy of a portrait."""
    folder = tmp_path_factory.mktemp("photos")
    people = sorted(p for p in (faces_dir / "lfw-devtrain" / "images").iterdir() if p.is_dir())[:LFW_PHOTOS]
    for person in people:
        first = sorted(person.glob("*.jpg"))[0]
        shutil.copy(first, folder / first.name)
    for extra in ("groups/dlib__2008_002079.jpg", "nonfaces/dlib__dog.jpg", "people/Barack_Obama"):
        source = faces_dir / extra
        source = sorted(source.glob("*.jpg"))[0] if source.is_dir() else source
        shutil.copy(source, folder / source.name)
    (folder / "sub").mkdir()
    (folder / "sub" / "notes.txt").write_text("not a photo\n")
    group = (faces_dir / "groups/dlib__2008_002079.jpg").read_bytes()
    (folder / "sub" / "truncated.jpg").write_bytes(group[: len(group) // 3])
    Image.new("RGB", (4, 4), (128, 90, 70)).save(folder / "sub" / "tiny.png")
    shutil.copy(folder / sorted(p.name for p in folder.glob("*.jpg"))[0], folder / "sub" / "copy.jpg")
    return folder


def add(photos: Path, store: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(command(photos, store, *extra), env={**ENV, **(env or {})}, capture_output=True, text=True,
                          timeout=600)


def command(photos: Path, store: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "faceindex", "add", str(photos), "-c", "c", "--basis", "consent",
            "--purpose", "ray test", "--store", str(store), "--json", *extra]


def counts(done: subprocess.CompletedProcess, status: int = 1) -> dict:
    """The JSON report; status 1 = the bad files were skipped (listed), the rest indexed; 0 = nothing was skipped."""
    assert done.returncode == status, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def local(photos, tmp_path_factory) -> tuple[dict, dict]:
    """The reference: a local ingest of the folder on one process (its report and what its store holds)."""
    store = tmp_path_factory.mktemp("local") / "store"
    return counts(add(photos, store, "--workers", "1")), snapshot(store)


@pytest.fixture(scope="module")
def cluster():
    with LocalRayCluster(workers=2) as running:
        yield running


def snapshot(store: Path) -> dict:
    """Per file (by its path relative to the folder): its record and its faces (box, rejection, faceprint)."""
    with Engine(store) as engine:
        conn = engine.catalog.conn
        images = conn.execute("SELECT id, uri, sha256, status, error, n_faces, width, height FROM images").fetchall()
        uris = [r["uri"] for r in images]
        assert len(uris) == len(set(uris))
        out = {}
        for row in images:
            faces = conn.execute("SELECT box_left, box_top, box_right, box_bottom, rejected, embedding FROM faces "
                                 "WHERE image_id = ? ORDER BY box_left, box_top, box_right, box_bottom",
                                 (row["id"],)).fetchall()
            name = row["uri"].rsplit("/", 2)
            name = name[-1] if name[-2] != "sub" else "sub/" + name[-1]
            out[name] = {"record": (row["sha256"], row["status"], row["error"], row["n_faces"], row["width"],
                                    row["height"]),
                         "faces": [(tuple(f[:5]), None if f["embedding"] is None
                                    else np.frombuffer(f["embedding"], np.float32)) for f in faces]}
        return out


def assert_same(got: dict, expected: dict) -> None:
    assert sorted(got) == sorted(expected)
    for name, want in expected.items():
        have = got[name]
        assert have["record"] == want["record"], name
        assert [f[0] for f in have["faces"]] == [f[0] for f in want["faces"]], name
        for (_, a), (_, b) in zip(have["faces"], want["faces"], strict=True):
            assert (a is None) == (b is None), name
            if a is not None:
                np.testing.assert_allclose(a, b, atol=1e-5, rtol=0, err_msg=name)


def test_ray_ingest_on_two_worker_nodes_equals_local_ingest(photos, local, cluster, tmp_path):
    expected_report, expected = local
    assert expected_report["indexed"] >= LFW_PHOTOS and expected_report["copied"] == 1
    assert expected_report["faces"] >= LFW_PHOTOS + 3  # the group photo holds several
    reasons = " | ".join(r["reason"] for r in expected_report["skipped_files"])
    assert "not an image" in reasons and "image too small" in reasons
    store = tmp_path / "store"
    report = counts(add(photos, store, "--ray", cluster.address, env=cluster.env))
    for key in ("files", "indexed", "copied", "faces", "rejected_faces", "skipped", "failed"):
        assert report[key] == expected_report[key], key
    assert sorted(map(str, report["skipped_files"])) == sorted(map(str, expected_report["skipped_files"]))
    assert_same(snapshot(store), expected)
    # idempotent: nothing new; the files that could not be indexed are tried again and reported again (exit 1),
    # never counted as unchanged
    again = counts(add(photos, store, "--ray", cluster.address, env=cluster.env), status=1)
    assert again["indexed"] == again["copied"] == again["failed"] == 0
    assert again["skipped"] == report["skipped"] and again["unchanged"] + again["skipped"] == report["files"]
    assert_same(snapshot(store), expected)
    verify = subprocess.run([sys.executable, "-m", "faceindex", "audit", "verify", "--store", str(store)], env=ENV,
                            capture_output=True, text=True, timeout=300)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_a_worker_node_killed_mid_job_loses_and_duplicates_nothing(photos, local, cluster, tmp_path):
    _, expected = local
    store = tmp_path / "store"
    victim = cluster.node_ports[-1]
    job = subprocess.Popen(command(photos, store, "--ray", cluster.address), env={**ENV, **cluster.env},
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        actor = wait_for_actor_on(cluster, victim, job)
        wait_for_cpu(actor, MODEL_LOAD_CPU_S, job)  # past loading its models: analysing the photos it holds
        assert job.poll() is None, "the job ended before the node could be killed mid-job"
        killed = cluster.kill_node(victim)
        assert actor in killed
        stdout, stderr = job.communicate(timeout=600)
    finally:
        if job.poll() is None:
            job.kill()
    assert "Traceback" not in stderr and job.returncode in (1, 2), stderr[-3000:]
    # Ray restarts the actor elsewhere and retries its blocks, so the job normally completes. Should it stop (exit 2,
    # the cluster named) or leave files unanalysed (`failed`), what it committed is kept and a re-run completes it.
    if job.returncode == 2 or json.loads(stdout)["failed"]:
        assert "Ray cluster" in stderr or job.returncode == 1, stderr[-3000:]
        assert counts(add(photos, store, "--ray", cluster.address, env=cluster.env))["failed"] == 0
    assert_same(snapshot(store), expected)  # every file once, faces once, faceprints as a local ingest's


def wait_for_actor_on(cluster: LocalRayCluster, node_port: int, job: subprocess.Popen, timeout: float = 300) -> int:
    """The pid of the analysing actor running on the worker node `node_port` (once the job has started it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and job.poll() is None:
        if actors := cluster.actors_on(node_port):
            return actors[0]
        time.sleep(0.2)
    pytest.fail(f"no analysing actor appeared on the worker node (job exit {job.poll()})")


def wait_for_cpu(pid: int, seconds: float, job: subprocess.Popen, timeout: float = 300) -> None:
    """Until process `pid` has used `seconds` more CPU time than when this was called."""
    start, deadline = cpu_seconds(pid), time.monotonic() + timeout
    while cpu_seconds(pid) - start < seconds and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as fh:
        fields = fh.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def test_an_unreachable_cluster_is_a_clear_error_and_writes_nothing(photos, tmp_path):
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    done = add(photos, tmp_path / "store", "--ray", address)
    assert done.returncode == 2
    assert f"cannot reach the Ray cluster at {address}" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "store").exists()
    bad = add(photos, tmp_path / "store", "--ray", "nowhere")
    assert bad.returncode == 2 and "--ray 'nowhere'" in bad.stderr and "Traceback" not in bad.stderr


def test_without_ray_installed_the_error_names_the_extra(photos, tmp_path):
    script = ("import sys; sys.modules['ray'] = None; from faceindex.cli import app; "
              f"sys.argv = {command(photos, tmp_path / 'store', '--ray', 'local')!r}[2:]; app(prog_name='faceindex')")
    done = subprocess.run([sys.executable, "-c", script], env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "pip install 'faceindex[cluster]'" in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and not (tmp_path / "store").exists()
