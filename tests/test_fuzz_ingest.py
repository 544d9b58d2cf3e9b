"""Fuzz of ingest over a folder of generated malformed files: the batch goes on, every skip has a reason.

Files are generated from real photos of ../shared/faces (fuzz_support) and written with lying extensions,
odd names and, in one test, a file name that is not valid UTF-8. The real face pipeline runs on all of them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from fuzz_support import (
    Case,
    bombs,
    exif_garbage,
    fuzz_runs,
    mutations,
    non_images,
    polyglots,
    tiny_images,
    truncations,
)

from faceindex.config import Settings
from faceindex.engine import Engine

GOOD = ["people/Katy_Perry/deepface__img44.jpg", "people/Barack_Obama/face_recognition__obama.jpg"]


def _settings() -> Settings:
    # HOG only: the CNN fallback would spend ~1 s on each faceless junk file of the 2 shared cores, and the
    # fallback is not what this test exercises (decode, skip reasons and the batch going on are).
    return Settings(workers=1, detector="hog")


def _write(folder: Path, cases: list[Case]) -> dict[str, Case]:
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for case in cases:
        path = folder / (case.name + case.ext)
        path.write_bytes(case.data)
        written[str(path.resolve())] = case
    return written


def _copy_good(faces_dir: Path, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for rel in GOOD:
        dest = folder / Path(rel).name
        shutil.copy(faces_dir / rel, dest)
        out.append(dest)
    # A real photo under lying names: content decides, never the extension.
    shutil.copy(faces_dir / GOOD[0], folder / "really-a-jpeg.png")
    shutil.copy(faces_dir / GOOD[1], folder / "no-extension")
    return out + [folder / "really-a-jpeg.png", folder / "no-extension"]


def _ingest(store: Path, folder: Path):
    with Engine(store, _settings()) as engine:
        report = engine.ingest([folder], "fuzz", basis="consent", purpose="fuzz test")
        return report, engine.stats()


def _hostile_cases(faces_dir: Path) -> list[Case]:
    """Every fixed kind that is not a valid image, plus seeded mutations (FACEINDEX_FUZZ_RUNS scales them)."""
    fixed = non_images() + bombs(faces_dir) + truncations(faces_dir) + exif_garbage(faces_dir) + polyglots(faces_dir)
    return fixed + mutations(faces_dir, fuzz_runs(80) // 4, seed=19)


def test_ingest_of_a_hostile_folder_goes_on_and_gives_a_reason_for_every_skip(faces_dir, tmp_path):
    folder = tmp_path / "photos"
    written = _write(folder / "junk", _hostile_cases(faces_dir))
    good = _copy_good(faces_dir, folder)
    report, stats = _ingest(tmp_path / "store", folder)
    assert report.files == len(written) + len(good)
    assert report.indexed + report.copied + len(report.skipped) == report.files
    reasons = dict(report.skipped)
    for path in good:  # the real photos among the junk are indexed (the two lying names are exact copies)
        assert str(path.resolve()) not in reasons
    assert report.faces >= len(good)
    for uri, reason in reasons.items():
        assert uri in written, f"a good photo was skipped: {uri}: {reason}"
        assert reason.strip(), f"no reason for {uri}"
        assert "unexpected" not in reason.lower(), f"{written[uri].name} crashed the pipeline: {reason}"
    for uri, case in written.items():  # every file that is not an image at all must be among the skips
        if case.name.startswith(("bomb-", "zero-", "text", "html", "pdf", "zip", "elf", "heic", "mp4")):
            assert uri in reasons, f"{case.name} was not skipped"
    assert any("pixel limit" in r or "too large" in r for r in reasons.values())
    assert stats["skipped"] == len(reasons)


ONE_ROW = [c for c in tiny_images() if c.name.startswith(("tiny-1x1-", "tiny-300x1-", "tiny-2000x1-"))]


def test_ingest_of_one_pixel_high_images_records_no_crash(tmp_path):
    written = _write(tmp_path / "photos", ONE_ROW)
    report, _stats = _ingest(tmp_path / "store", tmp_path / "photos")
    assert report.files == len(written)
    unexpected = {written[u].name: r for u, r in report.skipped if "unexpected" in r.lower()}
    assert unexpected == {}


NON_UTF8_NAME = b"caf\xe9-\xff\xfe.jpg"
"""A Latin-1 file name (as copied from an old FAT disk or a zip made on Windows): not valid UTF-8."""


@pytest.mark.skipif(os.name != "posix", reason="POSIX file names are bytes; Windows names are always Unicode")
def test_a_file_name_that_is_not_utf8_does_not_stop_the_folder(faces_dir, tmp_path):
    """Issue 9 item 7: one such name stopped ingest of the whole folder, at every re-run."""
    folder = tmp_path / "photos"
    good = _copy_good(faces_dir, folder)
    odd = os.path.join(os.fsencode(folder), NON_UTF8_NAME)
    shutil.copyfile(os.fsencode(faces_dir / GOOD[0]), odd)
    with open(os.path.join(os.fsencode(folder), b"junk-\xe9.jpg"), "wb") as fh:
        fh.write(b"not an image at all")
    report, stats = _ingest(tmp_path / "store", folder)
    assert report.files == len(good) + 2
    assert report.indexed + report.copied == len(good) + 1, report.skipped
    assert len(report.skipped) == 1 and "not an image" in report.skipped[0][1]
    assert stats["images"] + stats["skipped"] == report.files  # stats' "images" counts the indexed ones
