"""kill -9 of a real `faceindex forget` process mid-erasure; reopening the store completes the erasure."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from privacy_support import faces_in, found_people, fresh_copy, open_engine, pristine, scan_store, selfie

from faceindex.privacy.erasure import FAILPOINT_ENV

CLI = "from faceindex.cli import app; app()"  # the `faceindex` console script, in a real child process


def _forget_and_kill(store, failpoint: str, *args: str) -> None:
    """Run the CLI in a child process until it reaches `failpoint`, then SIGKILL it (no cleanup runs)."""
    env = {**os.environ, FAILPOINT_ENV: failpoint}
    child = subprocess.Popen([sys.executable, "-c", CLI, "forget", *args, "--yes", "--store", str(store)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        deadline = time.monotonic() + 120
        seen = ""
        while f"failpoint {failpoint}" not in seen:
            line = child.stderr.readline()
            if not line and child.poll() is not None:
                pytest.fail(f"child exited ({child.returncode}) before {failpoint}: {seen}{child.stderr.read()}")
            seen += line
            assert time.monotonic() < deadline, "child never reached the failpoint"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        assert child.returncode == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
        child.stdout.close()
        child.stderr.close()


@pytest.mark.parametrize("failpoint", ["erasure:planned", "erasure:deleted"])
def test_kill_9_mid_erasure_then_reopen_completes_it(faces_dir, tmp_path_factory, tmp_path, failpoint):
    root = pristine(faces_dir, tmp_path_factory)
    store = fresh_copy(faces_dir, tmp_path_factory, tmp_path)
    with open_engine(store) as engine:
        jack = faces_in(engine, "Jack_Dorsey")
        engine.privacy.subjects.enrol("Jack", face_ids=jack)
        vectors = engine.privacy.faceprints(jack)
        events_before = len(engine.audit.events())
    _forget_and_kill(store, failpoint, "--subject", "Jack")
    if failpoint == "erasure:deleted":
        # Killed after the commit, before the scrub: the -wal file still holds the erased rows' old pages.
        assert (store / "catalog.sqlite-wal").exists()
    with open_engine(store) as engine:  # reopening finishes the job
        assert [r.route for r in engine.privacy.resumed] == ["subject"]
        assert engine.catalog.count("SELECT count(*) FROM erasure_jobs") == 0
        assert faces_in(engine, "Jack_Dorsey") == []
        assert engine.privacy.subjects.find("Jack") is None
        assert found_people(engine, selfie(root, "Jack_Dorsey")) == set()
        assert found_people(engine, selfie(root, "Mark_Zuckerberg")) == {"Mark_Zuckerberg"}
        erased = engine.audit.events(action="erase")
        assert len(erased) == 1 and erased[0].counts["faces"] == 4 and erased[0].seq > events_before
        assert erased[0].params.get("resumed") is (True if failpoint == "erasure:planned" else None)
        assert engine.audit.verify() == []
    assert scan_store(store, vectors) == []
