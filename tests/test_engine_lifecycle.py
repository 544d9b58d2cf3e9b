"""Engine lifecycle: building does no work, reads never write or create, writes run the start-up work."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from privacy_support import open_engine, pipeline, selfie, settings
from typer.testing import CliRunner

from faceindex.cli import app as cli_app
from faceindex.engine import Engine
from faceindex.errors import EmptyStoreError, StoreError, StoreNotFoundError
from faceindex.privacy import erasure
from faceindex.privacy.erasure import ErasurePlan

REPO_ROOT = Path(__file__).resolve().parents[1]


def files_of(store: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file under the store with its size, mtime and bytes (to prove a read wrote nothing)."""
    return {str(p.relative_to(store)): (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(store.rglob("*")) if p.is_file()}


def test_building_an_engine_touches_no_file(tmp_path):
    target = tmp_path / "not" / "yet"
    Engine(target, settings()).close()
    with Engine(target, settings()):
        pass
    assert not (tmp_path / "not").exists()


@pytest.mark.parametrize("read", ["search", "verify", "stats", "open"])
def test_reads_on_a_missing_store_raise_store_not_found_and_create_nothing(tmp_path, root, read):
    target = tmp_path / "typo"
    probe = str(selfie(root, "Jack_Dorsey"))
    with pytest.raises(StoreNotFoundError) as caught:  # noqa: PT012 - each read is one call
        if read == "open":
            Engine.open(target, settings(), mode="read")
        else:
            with Engine(target, settings(), pipeline=pipeline()) as engine:
                {"search": lambda: engine.search([probe], "case 1"), "verify": lambda: engine.verify(probe, probe),
                 "stats": engine.stats}[read]()
    assert str(target) in caught.value.message and "--store" in caught.value.message
    assert "faceindex add" in caught.value.message
    assert not target.exists()


def test_cli_search_on_a_mistyped_store_fails_and_creates_nothing(tmp_path, root):
    target = tmp_path / "typo"
    result = CliRunner().invoke(cli_app, ["search", str(selfie(root, "Jack_Dorsey")), "--purpose", "case 1",
                                          "--store", str(target)])
    assert result.exit_code != 0
    assert "no store at" in result.output
    assert not target.exists()


def test_search_on_a_store_without_faces_is_an_error_not_no_match(tmp_path, root):
    with open_engine(tmp_path / "store") as engine:
        engine.create_collection("empty", "consent", "nothing yet")
    with open_engine(tmp_path / "store", mode="read") as engine, \
            pytest.raises(EmptyStoreError, match="holds no faces: nothing was searched"):
        engine.search([str(selfie(root, "Jack_Dorsey"))], "case 1")


def test_a_read_writes_nothing_but_its_audit_event(store, root):
    with open_engine(store) as engine:  # leave a catalog that a write open would touch: a stale index file
        engine.catalog.set_meta("index_saved_epoch", "-5")
    before = files_of(store)
    with open_engine(store, mode="read") as engine:
        assert engine.stats()["faces"] > 0
        assert not engine.writes_open
    assert files_of(store) == before  # no index rewrite, no migration, no purge: not one byte
    with open_engine(store, mode="read") as engine:
        engine.search([str(selfie(root, "Jack_Dorsey"))], "case 1")
        assert engine.audit.events(action="search")[-1].purpose == "case 1"  # a search is still audited
        assert not engine.writes_open


_READ_ONLY_SCRIPT = """
import json, sys
from faceindex.config import Settings
from faceindex.engine import Engine
store, probe = sys.argv[1], sys.argv[2]
with Engine.open(store, Settings(workers=1), mode="read") as engine:
    results = engine.search([probe], "case on a read-only copy")
    stats = engine.stats()
print(json.dumps({"paths": sorted(c.path for r in results for f in r.faces for c in f.candidates),
                  "faces": stats["faces"]}))
"""


def test_search_works_on_a_read_only_copy_of_a_store(root, tmp_path):
    copy = tmp_path / "store"
    shutil.copytree(root / "store", copy)
    for path in [*copy.rglob("*"), copy]:
        path.chmod(path.stat().st_mode & ~0o222)
    before = files_of(copy)
    command = [sys.executable, "-c", _READ_ONLY_SCRIPT, str(copy), str(selfie(root, "Jack_Dorsey"))]
    if os.geteuid() == 0:  # root ignores file modes: make the copy a read-only mount in a private namespace
        command = ["unshare", "-m", "sh", "-c", 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && '
                   'shift && exec "$@"', "sh", str(copy), *command]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    finally:
        for path in [copy, *copy.rglob("*")]:
            path.chmod(0o700)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["faces"] > 0
    assert answer["paths"] and all("/Jack_Dorsey/" in p for p in answer["paths"])
    assert "not audited" in done.stderr  # said, not silently skipped
    assert {k: v[2] for k, v in files_of(copy).items()} == {k: v[2] for k, v in before.items()}


def _journal_image_erasure(store: Path, name: str) -> int:
    """Journal an erasure of one person's photos without running it: what a crash right after journaling leaves."""
    with open_engine(store) as engine:
        ids = [r[0] for r in engine.catalog.conn.execute("SELECT id FROM images WHERE uri LIKE ?", (f"%/{name}/%",))]
        return engine.privacy.eraser.journal(ErasurePlan("image", image_ids=ids, params={"image_ids": ids}))


def test_reads_leave_an_interrupted_erasure_pending_and_hide_its_faces(store, root):
    _journal_image_erasure(store, "Jack_Dorsey")
    with open_engine(store, mode="read") as engine:
        assert engine.stats()["pending_erasures"] == 1
        results = engine.search([str(selfie(root, "Jack_Dorsey"))], "case 1")
        assert [c.path for r in results for f in r.faces for c in f.candidates if "/Jack_Dorsey/" in c.path] == []
    with open_engine(store) as engine:  # a write finishes it
        assert [r.route for r in engine.privacy.resumed] == ["image"]
        assert engine.stats()["pending_erasures"] == 0


def test_a_failing_erasure_replay_blocks_writes_with_a_message_not_reads(store, root, monkeypatch):
    _journal_image_erasure(store, "Jack_Dorsey")

    def broken(self, job_id, *, resumed):
        raise sqlite3.OperationalError("too many SQL variables")

    monkeypatch.setattr(erasure.Eraser, "_run", broken)
    with pytest.raises(StoreError, match="could not be finished") as caught:
        open_engine(store)
    assert "reads still work" in caught.value.message
    with open_engine(store, mode="read") as engine:  # reads go on, and say what is pending
        assert engine.stats()["pending_erasures"] == 1
        assert engine.search([str(selfie(root, "Mark_Zuckerberg"))], "case 1")[0].faces[0].candidates
    runner = CliRunner()
    result = runner.invoke(cli_app, ["stats", "--store", str(store), "--json"])
    assert result.exit_code == 0, result.output
    assert '"pending_erasures": 1' in result.output
    monkeypatch.undo()
    with open_engine(store) as engine:  # fixed: the next write finishes it
        assert engine.stats()["pending_erasures"] == 0


def _make_older(store: Path) -> None:
    """Turn the store into one written before the privacy layer's last migration (0005_upload_erasures) existed."""
    conn = sqlite3.connect(store / "catalog.sqlite", isolation_level=None)
    conn.execute("DROP TABLE upload_erasures")
    conn.execute("DELETE FROM _migrations WHERE name = '0005_upload_erasures'")
    conn.close()


def test_a_read_of_an_older_writable_store_upgrades_its_schema_only(store):  # the engine's sets: core + privacy
    _make_older(store)
    with open_engine(store, mode="read") as engine:
        assert engine.stats()["faces"] > 0
        assert engine.catalog.count("SELECT count(*) FROM upload_erasures") == 0  # the table is back
        assert not engine.writes_open  # nothing else of a write start-up ran


def test_a_read_only_copy_of_an_older_store_says_how_to_upgrade_it(store):
    _make_older(store)
    for path in [*store.rglob("*"), store]:
        path.chmod(path.stat().st_mode & ~0o222)
    script = ("import sys\nfrom faceindex.engine import Engine\nfrom faceindex.errors import StoreError\n"
              "try:\n    Engine.open(sys.argv[1], mode='read').stats()\nexcept StoreError as exc:\n"
              "    print(exc.message)\n")
    command = [sys.executable, "-c", script, str(store)]
    if os.geteuid() == 0:
        command = ["unshare", "-m", "sh", "-c", 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && '
                   'shift && exec "$@"', "sh", str(store), *command]
    try:
        done = subprocess.run(command, env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")},
                              capture_output=True, text=True, timeout=120)
    finally:
        for path in [store, *store.rglob("*")]:
            path.chmod(0o700)
    assert done.returncode == 0, done.stderr
    assert "written by an older faceindex" in done.stdout and "write access" in done.stdout
