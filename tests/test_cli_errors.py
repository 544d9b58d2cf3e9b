"""How every `faceindex` command ends: exit statuses, stores that are missing or empty, Ctrl-C, literal output."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from faceindex.cli import app
from faceindex.cli.common import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_PARTIAL, add_commands, add_row, table
from faceindex.errors import NotFoundError

runner = CliRunner()


def test_help_documents_the_exit_statuses():
    text = " ".join(runner.invoke(app, ["--help"]).output.split())
    for status in (f"{EXIT_PARTIAL} done in part", f"{EXIT_ERROR} nothing done", f"{EXIT_INTERRUPTED} interrupted"):
        assert status in text


def test_table_cells_print_literally():
    console = Console(width=200, record=True, file=open(os.devnull, "w"))  # noqa: SIM115 - closed with console
    tbl = table("path", "note", title="run [1]")
    add_row(tbl, "/photos/[2019] trip/a[b].jpg", "pip install 'faceindex[eval]'")
    console.print(tbl)
    shown = console.export_text()
    assert "/photos/[2019] trip/a[b].jpg" in shown and "pip install 'faceindex[eval]'" in shown
    assert "run [1]" in shown


def test_the_error_boundary_of_every_command():
    def missing() -> None:
        raise NotFoundError("no collection 'press [2019]'")

    def prompt_interrupted() -> None:
        try:  # what typer.confirm does when Ctrl-C hits its question
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise typer.Abort() from None

    def interrupted() -> None:
        raise KeyboardInterrupt

    tiny = typer.Typer()
    add_commands(tiny, [missing, ("prompt", prompt_interrupted), interrupted])
    failed = runner.invoke(tiny, ["missing"])
    assert (failed.exit_code, failed.stderr) == (EXIT_ERROR, "error (not_found): no collection 'press [2019]'\n")
    for name in ("prompt", "interrupted"):
        stopped = runner.invoke(tiny, [name])
        assert stopped.exit_code == EXIT_INTERRUPTED and stopped.stderr.startswith("interrupted; committed work")
        assert stopped.exception is None or isinstance(stopped.exception, SystemExit)  # no traceback


# -- reads never create a store (issue 9 item 2): these need the core branch's read/write Engine opening ------

def test_search_on_a_mistyped_store_fails_naming_it_and_creates_nothing(faces_dir, tmp_path):
    typo = tmp_path / "typo"
    probe = next((faces_dir / "people" / "Angelina_Jolie").glob("*.jpg"))
    result = runner.invoke(app, ["search", str(probe), "--store", str(typo), "--purpose", "p"])
    assert result.exit_code == EXIT_ERROR, result.output
    assert str(typo) in " ".join(result.stderr.split()) and "no match" not in result.output
    assert not typo.exists()


def test_embed_needs_no_store_and_creates_none(faces_dir, tmp_path):
    nowhere = tmp_path / "no-store"
    probe = next((faces_dir / "people" / "Angelina_Jolie").glob("*.jpg"))
    result = runner.invoke(app, ["embed", str(probe), "--json", "--store", str(nowhere)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["faces"] and not nowhere.exists()


def test_search_on_an_empty_store_is_an_error_not_no_match(faces_dir, tmp_path):
    store = tmp_path / "store"
    photos = tmp_path / "photos"
    photos.mkdir()
    for src in sorted((faces_dir / "nonfaces").glob("*.jpg"))[:2]:  # photos without a face: a store of 0 faces
        shutil.copy(src, photos / src.name)
    made = runner.invoke(app, ["add", str(photos), "-c", "things", "--basis", "consent",
                               "--purpose", "t", "--workers", "1", "--store", str(store), "--json"])
    assert made.exit_code == 0, made.output
    assert json.loads(made.stdout)["faces"] == 0
    probe = next((faces_dir / "people" / "Angelina_Jolie").glob("*.jpg"))
    result = runner.invoke(app, ["search", str(probe), "--store", str(store), "--purpose", "p", "--json"])
    assert result.exit_code == EXIT_ERROR, result.output
    assert "no match" not in result.output and result.stdout == ""


# -- partial failures -------------------------------------------------------------------------------------

def test_add_with_an_unreadable_file_indexes_the_rest_and_exits_1(faces_dir, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    good = next((faces_dir / "people" / "John_Salley").glob("*.jpg"))
    shutil.copy(good, photos / "good.jpg")
    (photos / "broken.jpg").write_bytes(good.read_bytes()[:300])  # a truncated JPEG
    result = runner.invoke(app, ["add", str(photos), "-c", "c", "--basis", "consent", "--purpose", "t",
                                 "--workers", "1", "--store", str(tmp_path / "store"), "--json"])
    assert result.exit_code == EXIT_PARTIAL, result.output
    report = json.loads(result.stdout)
    assert report["indexed"] == 1 and report["faces"] >= 1
    assert [Path(s["path"]).name for s in report["skipped_files"]] == ["broken.jpg"]
    assert "1 of 2 file(s) could not be indexed" in " ".join(result.stderr.split())
    stats = runner.invoke(app, ["stats", "--json", "--store", str(tmp_path / "store")])
    assert [Path(s["path"]).name for s in json.loads(stats.stdout)["skipped_files"]] == ["broken.jpg"]


# -- Ctrl-C ------------------------------------------------------------------------------------------------

def images_in(store: Path) -> int:
    with sqlite3.connect(f"file:{store / 'catalog.sqlite'}?mode=ro", uri=True) as db:
        try:
            return db.execute("SELECT count(*) FROM images").fetchone()[0]
        except sqlite3.OperationalError:  # the schema is not there yet
            return 0


def test_ctrl_c_ends_with_one_line_and_status_130_keeping_committed_work(faces_dir, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    # Enough small LFW photos that the run is still going after its first committed batch (32 files).
    for src in sorted((faces_dir / "lfw-devtrain" / "images").rglob("*.jpg"))[:240]:
        shutil.copy(src, photos / src.name)
    total = sum(1 for _ in photos.rglob("*.jpg"))
    store = tmp_path / "store"
    cmd = [sys.executable, "-m", "faceindex", "add", str(photos), "-c", "c", "--basis", "consent", "--purpose",
           "t", "--store", str(store), "--workers", "2", "--json"]  # with the process pool, as by default
    # A session of its own, signalled as a whole: what a terminal's Ctrl-C does to the foreground job.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 240
    try:
        while not ((store / "catalog.sqlite").exists() and images_in(store) >= 1):
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail("ingest never committed a batch")
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert "Traceback" not in err and out == ""
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith("interrupted; committed work is kept"), err  # one line says so
    kept = images_in(store)
    assert 1 <= kept < total, "the interrupt must land mid-run, and what was committed stays"


def test_eval_without_matplotlib_says_the_right_fix_before_any_work(faces_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what an install without matplotlib looks like to import
    labelled = tmp_path / "labelled"
    for person in ("Angelina_Jolie", "John_Salley"):
        (labelled / person).mkdir(parents=True)
        for src in sorted((faces_dir / "people" / person).glob("*.jpg"))[:2]:
            shutil.copy(src, labelled / person / src.name)
    out = tmp_path / "report"
    result = runner.invoke(app, ["eval", str(labelled), "--out", str(out)])
    assert result.exit_code == EXIT_ERROR, result.output
    message = " ".join(result.stderr.split())
    assert "error (missing_dependency)" in message and "pip install matplotlib" in message
    assert "embedding" not in result.output and not out.exists()  # said first: nothing was computed
