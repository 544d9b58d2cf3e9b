"""Inputs that stopped or fooled ingest: 1-pixel images, non-UTF-8 names, HEIC photos, symbolic links, bad files."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from imagegen import jpeg_with_size, png_header_bomb
from PIL import Image

from faceindex.config import Settings
from faceindex.engine import Engine
from faceindex.errors import ImageError
from faceindex.ingest.scanner import BYTES_URI_PREFIX, path_to_uri, scan, uri_to_path
from faceindex.pipeline.analyse import FacePipeline
from faceindex.pipeline.decode import DecodedImage

REPO_SRC = Path(__file__).resolve().parents[1] / "src"
THIN = {"1x1.png": (1, 1), "1x500.png": (1, 500), "500x1.png": (500, 1)}  # name: (width, height)


def a_photo(faces_dir: Path, person: str = "Katy_Perry", n: int = 0) -> Path:
    return sorted((faces_dir / "people" / person).glob("*.jpg"))[n]


def write_thin_images(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, (width, height) in THIN.items():
        Image.fromarray(np.full((height, width, 3), 128, np.uint8)).save(folder / name)
        out[name] = folder / name
    return out


@pytest.fixture(scope="module")
def pipeline() -> FacePipeline:
    return FacePipeline(Settings(workers=1))


# -- 1-pixel images (issue 9 item 6) ---------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(1, 500, 3), (500, 1, 3), (1, 1, 3)])
def test_thin_arrays_reach_dlib_turned_without_a_stride_error(pipeline, shape):
    """The turned-photo retry gave dlib a view with a negative column stride on 1-pixel-high images."""
    pixels = np.full(shape, 128, np.uint8)
    decoded = DecodedImage(detection=pixels, scale=1.0, width=shape[1], height=shape[0], format="PNG", _full=pixels)
    assert pipeline.analyse(decoded).faces == []


def test_thin_images_are_skipped_by_ingest_with_a_reason_and_hold_no_face_for_analyse_and_search(pipeline, faces_dir,
                                                                                                  tmp_path):
    thin = write_thin_images(tmp_path / "photos")
    shutil.copy(a_photo(faces_dir), tmp_path / "photos" / "real.jpg")
    for path in thin.values():
        assert pipeline.analyse(path).faces == []  # a valid image without a face, not a RuntimeError
    with Engine(tmp_path / "store", Settings(workers=1), pipeline=pipeline) as engine:
        report = engine.ingest([tmp_path / "photos"], "c", basis="consent", purpose="test")
        reasons = dict(report.skipped)
        assert report.indexed == 1 and set(reasons) == {str(p.resolve()) for p in thin.values()}
        assert all("too small to hold a face" in r for r in reasons.values())
        results = engine.search(list(thin.values()), purpose="test")
        assert [(r.faces, r.error) for r in results] == [([], None)] * 3


def test_a_thin_probe_is_answered_by_the_service_not_a_500(faces_dir, tmp_path):
    from test_service_support import start_service

    thin = write_thin_images(tmp_path / "probes")
    service = start_service(tmp_path / "store")
    try:
        service.engine.ingest([a_photo(faces_dir)], "c", basis="consent", purpose="test")
        for path in thin.values():
            response = service.client.post("/api/v1/search", headers=service.auth("searcher"),
                                           data={"purpose": "case 1"},
                                           files={"photo": (path.name, path.read_bytes(), "image/png")})
            assert response.status_code == 200, response.text
            assert response.json()["faces"] == []
    finally:
        service.close()


# -- file names that are not UTF-8 (issue 9 item 7) ------------------------------------------------------------
def test_a_non_utf8_file_name_is_indexed_with_a_lossless_provenance(faces_dir, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(a_photo(faces_dir, n=0), folder / "plain.jpg")
    raw = os.path.join(os.fsencode(folder), b"\xff\xfe.jpg")
    shutil.copy(a_photo(faces_dir, n=1), raw)
    store = tmp_path / "store"
    cmd = [sys.executable, "-m", "faceindex", "add", str(folder), "--collection", "c", "--basis", "consent",
           "--purpose", "test", "--store", str(store), "--workers", "1", "--json"]
    env = {**os.environ, "PYTHONPATH": str(REPO_SRC)}
    for run in range(2):  # the second run must find both unchanged, not stop on the name
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        counts = json.loads(done.stdout.strip().splitlines()[-1])
        assert (counts["indexed"], counts["unchanged"], counts["skipped"]) == ((2, 0, 0) if run == 0 else (0, 2, 0))
    with Engine(store) as engine:
        uris = sorted(r[0] for r in engine.catalog.conn.execute("SELECT uri FROM images"))
        odd = next(u for u in uris if u.startswith(BYTES_URI_PREFIX))
        assert os.fsencode(uri_to_path(odd)) == os.fsencode(Path(raw.decode("utf-8", "surrogateescape")).resolve())
        assert uri_to_path(odd).read_bytes() == Path(os.fsdecode(raw)).read_bytes()
        assert path_to_uri(os.fsdecode(raw)) == odd
        results = engine.search([os.fsdecode(raw)], purpose="test")
        paths = [c.path for c in results[0].faces[0].candidates]
        assert paths[0] == odd
        json.dumps(results[0].to_dict())  # printable as JSON


def test_a_uri_of_a_utf8_name_is_the_plain_path(tmp_path):
    path = tmp_path / "Zoë.jpg"
    path.write_bytes(b"x")
    assert path_to_uri(path) == str(path.resolve()) and uri_to_path(path_to_uri(path)) == path.resolve()


# -- HEIC (usability) ------------------------------------------------------------------------------------------
def test_heic_photos_are_decoded_and_their_faces_found(faces_dir, tmp_path):
    original = a_photo(faces_dir, "Barack_Obama")
    heic = tmp_path / "photos" / "IMG_0001.HEIC"
    heic.parent.mkdir()
    buffer = io.BytesIO()
    Image.open(original).save(buffer, format="HEIF", quality=90)
    heic.write_bytes(buffer.getvalue())
    shutil.copy(original, tmp_path / "photos" / "original.jpg")
    with Engine(tmp_path / "store", Settings(workers=1)) as engine:
        report = engine.ingest([tmp_path / "photos"], "c", basis="consent", purpose="test")
        assert report.skipped == [] and report.indexed == 2
        row = engine.catalog.find_image(engine.catalog.find_collection("c").id, str(heic.resolve()))
        assert row["format"] == "HEIF" and row["n_faces"] >= 1
        with Image.open(original) as im:
            assert (row["width"], row["height"]) == im.size
        found = engine.search([heic], purpose="test")[0].faces
        paths = {c.path for f in found for c in f.candidates}
        assert {str(heic.resolve()), str((tmp_path / "photos" / "original.jpg").resolve())} <= paths


def test_a_turned_heic_is_upright_like_the_same_jpeg_and_counts_as_turned(faces_dir):
    from faceindex.pipeline.decode import decode_image

    photo = Image.open(a_photo(faces_dir, "Barack_Obama")).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways, "turn 90° clockwise to view"
    decoded = {}
    for fmt in ("HEIF", "JPEG"):
        buffer = io.BytesIO()
        photo.save(buffer, format=fmt, exif=exif.tobytes(), quality=95)
        decoded[fmt] = decode_image(buffer.getvalue())
    heif, jpeg = decoded["HEIF"], decoded["JPEG"]
    assert (heif.width, heif.height) == (jpeg.width, jpeg.height) == (photo.height, photo.width)
    assert np.abs(heif.detection.astype(int) - jpeg.detection.astype(int)).mean() < 8  # same pixels, two codecs
    assert heif.exif_turned and jpeg.exif_turned  # no sideways retry on a photo its tag already turned


def test_a_damaged_heic_is_skipped_with_a_reason(faces_dir, pipeline, tmp_path):
    buffer = io.BytesIO()
    Image.open(a_photo(faces_dir)).save(buffer, format="HEIF")
    data = buffer.getvalue()
    with pytest.raises(ImageError, match="HEIF"):
        pipeline.analyse(data[: len(data) // 2])


# -- symbolic links (usability) --------------------------------------------------------------------------------
def make_link_tree(root: Path, photo: Path) -> dict[str, Path]:
    """photos/a/x.jpg; photos/alias -> a; photos/a/loop -> ..; photos/out -> outside/; photos/y.jpg -> outside/y.jpg."""
    (root / "photos" / "a").mkdir(parents=True)
    (root / "outside").mkdir()
    shutil.copy(photo, root / "photos" / "a" / "x.jpg")
    shutil.copy(photo, root / "outside" / "y.jpg")
    links = {"alias": root / "photos" / "alias", "loop": root / "photos" / "a" / "loop",
             "out": root / "photos" / "out", "y": root / "photos" / "y.jpg", "dead": root / "photos" / "dead.jpg"}
    links["alias"].symlink_to("a")
    links["loop"].symlink_to("..")
    links["out"].symlink_to(root / "outside")
    links["y"].symlink_to(root / "outside" / "y.jpg")
    links["dead"].symlink_to(root / "nowhere.jpg")
    return links


def test_symlinks_are_followed_inside_the_declared_folders_and_reported_outside(faces_dir, tmp_path):
    links = make_link_tree(tmp_path, a_photo(faces_dir))
    found = list(scan([tmp_path / "photos"]))  # a loop would never end
    taken = [f.uri for f in found if f.error is None]
    assert taken == [str((tmp_path / "photos" / "a" / "x.jpg").resolve())]  # once, although reachable 3 ways
    reasons = {f.path.name: f.error for f in found if f.error}
    assert set(reasons) == {"out", "y.jpg", "dead.jpg"}
    assert "outside the declared folders" in reasons["out"] and "outside the declared folders" in reasons["y.jpg"]
    assert reasons["dead.jpg"] == "broken symbolic link"
    both = [f.uri for f in scan([tmp_path / "photos", tmp_path / "outside"]) if f.error is None]
    assert sorted(both) == sorted([str((tmp_path / "photos" / "a" / "x.jpg").resolve()),
                                   str((tmp_path / "outside" / "y.jpg").resolve())])
    with Engine(tmp_path / "store", Settings(workers=1)) as engine:
        report = engine.ingest([tmp_path / "photos"], "c", basis="consent", purpose="test")
        assert report.indexed == 1 and len(report.skipped) == 3
        assert engine.stats()["skipped"] == 3  # recorded with their reasons, not skipped without a word
        assert str(links["out"]) in dict(report.skipped)


# -- malformed files of every kind -----------------------------------------------------------------------------
def malformed_files(folder: Path, photo: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    data = photo.read_bytes()
    rng = np.random.default_rng(9)
    mutated = bytearray(data)
    for i in rng.integers(200, len(data), 40):
        mutated[i] ^= 0xA5
    png = io.BytesIO()
    Image.open(photo).save(png, format="PNG")
    heic = io.BytesIO()
    Image.open(photo).resize((64, 64)).save(heic, format="HEIF")
    files = {
        "zero.jpg": b"",
        "truncated.jpg": data[: len(data) // 4],
        "mutated.jpg": bytes(mutated),
        "bomb.png": png_header_bomb(60_000, 60_000),
        "huge-header.jpg": jpeg_with_size(data, 65_000, 65_000),
        "one-pixel.gif": _encoded(Image.new("RGB", (1, 1)), "GIF"),
        "truncated.heic": heic.getvalue()[: len(heic.getvalue()) // 2],
        "text.png": b"hello " * 100,
        "png-named.jpg": png.getvalue(),  # wrong extension: sniffed, indexed
    }
    out = {}
    for name, content in files.items():
        (folder / name).write_bytes(content)
        out[name] = folder / name
    raw = os.path.join(os.fsencode(folder), b"bad\xffname.jpg")
    with open(raw, "wb") as fh:
        fh.write(data[:100])
    out["non-utf8"] = Path(os.fsdecode(raw))
    os.mkfifo(folder / "pipe.jpg")  # reading it would block forever
    out["pipe.jpg"] = folder / "pipe.jpg"
    return out


def _encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def test_every_kind_of_malformed_file_is_skipped_with_a_reason(faces_dir, tmp_path):
    files = malformed_files(tmp_path / "photos", a_photo(faces_dir, "Barack_Obama"))
    with Engine(tmp_path / "store", Settings(workers=1)) as engine:
        report = engine.ingest([tmp_path / "photos"], "c", basis="consent", purpose="test")
        reasons = dict(report.skipped)
        assert report.failed == [] and report.files == len(files)
        assert report.indexed + len(report.skipped) == len(files)
        assert str(files["png-named.jpg"].resolve()) not in reasons
        assert all(reasons.values())
        for name, fragment in [("zero.jpg", "empty"), ("truncated.jpg", "truncated"), ("bomb.png", "pixel limit"),
                               ("huge-header.jpg", "pixel limit"), ("one-pixel.gif", "too small"),
                               ("truncated.heic", "HEIF"), ("text.png", "not an image"),
                               ("pipe.jpg", "not a regular file")]:
            assert fragment in reasons[str(files[name].resolve())], name
        assert "truncated" in reasons[path_to_uri(files["non-utf8"])]
        rows = engine.catalog.conn.execute("SELECT count(*) FROM images").fetchone()[0]
        assert rows == len(files)
