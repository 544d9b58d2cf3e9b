"""Worker processes that fail never make a file count as done: scripts without a guard, killed and crashing workers."""

from __future__ import annotations

import functools
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from faceindex.config import Settings
from faceindex.engine import Engine
from faceindex.ingest import runner
from faceindex.ingest.scanner import hash_file, path_to_uri
from faceindex.pipeline.parallel import AnalysisOutcome, analyse_file, analyse_stream

REPO_SRC = Path(__file__).resolve().parents[1] / "src"

# The README's Python snippet as a user would save and run it: a plain script, no `if __name__ == "__main__":`.
README_SCRIPT = """\
from faceindex import Engine
from faceindex.config import Settings

with Engine({store!r}, Settings(workers=2)) as engine:
    report = engine.ingest([{photos!r}], "demo", basis="consent", purpose="demo of faceindex")
    print("REPORT", report.indexed, report.unchanged, report.faces, len(report.skipped), len(report.failed))
    for result in engine.search([{probe!r}], purpose="demo search"):
        for face in result.faces:
            for candidate in face.candidates:
                print("CANDIDATE", candidate.path, candidate.score)
"""


def photos_of(faces_dir: Path, person: str, dest: Path) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for src in sorted((faces_dir / "people" / person).glob("*.jpg")):
        shutil.copy(src, dest / src.name)
        out.append(dest / src.name)
    return out


def crash_on_marker(path: str, uri: str) -> AnalysisOutcome:
    """A worker task that kills its own process on files named *crash*: a real worker death (like a segfault in a
    decoder), on one known file. Runs in the spawned workers, which import this module."""
    if "crash" in Path(path).name:
        os._exit(3)
    return analyse_file(path, uri)


def test_readme_snippet_as_a_plain_script_indexes_faces(faces_dir, tmp_path):
    files = photos_of(faces_dir, "Katy_Perry", tmp_path / "photos")
    script = tmp_path / "snippet.py"
    script.write_text(README_SCRIPT.format(store=str(tmp_path / "store"), photos=str(tmp_path / "photos"),
                                           probe=str(files[0])))
    env = {**os.environ, "PYTHONPATH": str(REPO_SRC)}
    first = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    indexed, unchanged, faces, skipped, failed = map(int, first.stdout.split("REPORT ")[1].split()[:5])
    assert (indexed, skipped, failed) == (len(files), 0, 0) and faces >= len(files)
    assert any(line.startswith(f"CANDIDATE {files[0].resolve()} ") for line in first.stdout.splitlines())
    assert '__name__ == "__main__"' in first.stderr  # the warning says how to get the worker processes back
    second = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.split("REPORT ")[1].split()[:2] == ["0", str(len(files))]
    with Engine(tmp_path / "store") as engine:
        statuses = engine.catalog.conn.execute("SELECT status, count(*) FROM images GROUP BY 1").fetchall()
        assert [tuple(r) for r in statuses] == [("indexed", len(files))]


def test_files_recorded_as_worker_failures_by_older_versions_are_analysed_again(faces_dir, tmp_path):
    files = photos_of(faces_dir, "Katy_Perry", tmp_path / "photos")[:3]
    for extra in sorted((tmp_path / "photos").glob("*.jpg"))[3:]:
        extra.unlink()
    with Engine(tmp_path / "store", Settings(workers=1)) as engine:
        target = engine.create_collection("c", "consent", "test")
        with engine.catalog.transaction():  # exactly what the BrokenProcessPool bug left in stores
            for path in files:
                size, sha = hash_file(path)
                engine.catalog.insert_image(target.id, path_to_uri(path), sha256=sha, size_bytes=size,
                                            status="skipped", error="worker failed: BrokenProcessPool")
        report = engine.ingest([tmp_path / "photos"], "c")
        assert (report.indexed, report.unchanged, report.skipped) == (len(files), 0, [])
        assert engine.stats()["faces"] >= len(files)


def test_a_worker_killed_mid_run_loses_no_file(faces_dir, tmp_path):
    files = photos_of(faces_dir, "John_Salley", tmp_path / "photos")
    killed = []

    def kill_a_worker(event, done, total):
        if event == "file" and not killed:
            worker = multiprocessing.active_children()[0]
            os.kill(worker.pid, signal.SIGKILL)
            killed.append(worker.pid)

    with Engine(tmp_path / "store", Settings(workers=2)) as engine:
        report = engine.ingest([tmp_path / "photos"], "c", basis="consent", purpose="t", progress=kill_a_worker)
        assert killed, "no worker process was running"
        assert (report.indexed, report.skipped, report.failed) == (len(files), [], [])
        assert engine.stats()["images"] == len(files) and engine.stats()["skipped"] == 0


def test_a_file_that_kills_its_worker_is_reported_not_recorded_and_a_rerun_indexes_it(faces_dir, tmp_path,
                                                                                       monkeypatch):
    files = photos_of(faces_dir, "Katy_Perry", tmp_path / "photos")[:4]
    for extra in sorted((tmp_path / "photos").glob("*.jpg"))[4:]:
        extra.unlink()
    crasher = files[1].rename(files[1].with_name("crash.jpg"))
    monkeypatch.setattr(runner, "analyse_stream", functools.partial(analyse_stream, task=crash_on_marker))
    with Engine(tmp_path / "store", Settings(workers=2)) as engine:
        report = engine.ingest([tmp_path / "photos"], "c", basis="consent", purpose="t")
        assert report.indexed == 3 and report.skipped == []
        assert [uri for uri, _ in report.failed] == [str(crasher.resolve())]
        assert "worker process died" in report.failed[0][1]
        assert engine.catalog.find_image(engine.catalog.find_collection("c").id, str(crasher.resolve())) is None
        monkeypatch.undo()  # the pool failure is over: the next run must pick the file up
        rerun = engine.ingest([tmp_path / "photos"], "c")
        assert (rerun.indexed, rerun.unchanged, rerun.failed) == (1, 3, [])


def test_analyse_stream_isolates_the_file_that_kills_workers(faces_dir, tmp_path):
    files = photos_of(faces_dir, "Katy_Perry", tmp_path / "photos")[:3]
    crasher = tmp_path / "crash.jpg"
    shutil.copy(files[0], crasher)
    from faceindex.pipeline.analyse import FacePipeline

    pipeline = FacePipeline(Settings(workers=2))
    sources = [(str(p), str(p), p.name) for p in [files[0], crasher, *files[1:]]]
    outcomes = {key: outcome for outcome, key in analyse_stream(sources, pipeline, 2, task=crash_on_marker)}
    assert sorted(outcomes) == sorted(p.name for p in [*files, crasher])
    assert outcomes["crash.jpg"].retry and outcomes["crash.jpg"].analysis is None
    assert all(outcomes[p.name].analysis is not None and not outcomes[p.name].retry for p in files)


def test_pools_that_keep_dying_stop_the_run_with_what_to_do_and_keep_what_was_analysed(faces_dir, tmp_path,
                                                                                         monkeypatch):
    from faceindex.errors import WorkerPoolError
    from faceindex.pipeline import parallel

    files = photos_of(faces_dir, "Katy_Perry", tmp_path / "photos")[:3]
    for extra in sorted((tmp_path / "photos").glob("*.jpg"))[3:]:
        extra.unlink()
    files[2].rename(files[2].with_name("crash.jpg"))
    monkeypatch.setattr(parallel, "MAX_POOL_BREAKS", 0)
    monkeypatch.setattr(runner, "analyse_stream", functools.partial(analyse_stream, task=crash_on_marker))
    with Engine(tmp_path / "store", Settings(workers=2)) as engine:
        with pytest.raises(WorkerPoolError, match="--workers 1"):
            engine.ingest([tmp_path / "photos"], "c", basis="consent", purpose="t")
        statuses = {r[0] for r in engine.catalog.conn.execute("SELECT status FROM images")}
        assert statuses <= {"indexed"}  # nothing recorded as skipped for a worker's death
        monkeypatch.undo()
        rerun = engine.ingest([tmp_path / "photos"], "c")
        assert rerun.indexed + rerun.unchanged == 3 and rerun.failed == [] and engine.stats()["images"] == 3
