"""Tests for faceindex.pipeline.decode: formats, modes, EXIF orientation and time, draft mode, hostile files."""

from __future__ import annotations

import io
import os
import warnings
from datetime import datetime

import numpy as np
import pytest
from imagegen import (
    encode,
    exif_bytes,
    jpeg_with_exif,
    jpeg_with_size,
    png_1bit_bomb,
    png_header_bomb,
    webp_with_size,
)
from PIL import Image, ImageFile, JpegImagePlugin

from faceindex.errors import ImageError, ImageTooLargeError, InvalidInputError
from faceindex.pipeline.decode import DecodedImage, decode_image, read_exif_capture_time, sniff_format

BIG_JPEG = "people/George_Clooney/deepface__img40.jpg"  # 3061x4600, 14 MP
SMALL_JPEG = "people/Barack_Obama/face_recognition__obama.jpg"


@pytest.fixture(scope="module")
def photo(faces_dir) -> Image.Image:
    """A small real photo, 72x48 RGB: not square, so every rotation and flip gives a different array."""
    with Image.open(faces_dir / SMALL_JPEG) as im:
        # Through numpy so no metadata (EXIF) of the source file rides along.
        return Image.fromarray(np.array(im.convert("RGB").resize((72, 48))))


@pytest.fixture(scope="module")
def medium_jpeg(faces_dir) -> bytes:
    """A real photo re-encoded as a 1200x900 JPEG, big enough for draft mode at detect_max_side=300."""
    with Image.open(faces_dir / BIG_JPEG) as im:
        im.draft("RGB", (1200, 1800))
        return encode(im.convert("RGB").resize((1200, 900)), "JPEG", quality=90)


def upright_by_spec(stored: np.ndarray, orientation: int) -> np.ndarray:
    """The upright picture for a stored array, written from the EXIF 2.3 definition of tag 0x0112
    (where the stored 0th row / 0th column belong), independently of Pillow's transpose table."""
    return {
        1: stored,                          # row0 top,    col0 left
        2: stored[:, ::-1],                 # row0 top,    col0 right
        3: stored[::-1, ::-1],              # row0 bottom, col0 right
        4: stored[::-1],                    # row0 bottom, col0 left
        5: stored.transpose(1, 0, 2),       # row0 left,   col0 top
        6: np.rot90(stored, -1),            # row0 right,  col0 top
        7: np.rot90(stored, -1)[::-1],      # row0 right,  col0 bottom
        8: np.rot90(stored, 1),             # row0 left,   col0 bottom
    }[orientation]


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def check_array(d: DecodedImage) -> None:
    arr = d.detection
    assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3
    assert arr.flags["C_CONTIGUOUS"] and arr.flags["WRITEABLE"]


# --- formats and pixel modes -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cases(photo: Image.Image) -> dict[str, tuple[bytes, str, np.ndarray, float]]:
    """name -> (file bytes, expected format, expected RGB array, allowed mean abs difference)."""
    rgb = np.array(photo)
    grey = np.array(photo.convert("L"))
    grey3 = np.repeat(grey[:, :, None], 3, axis=2)
    palette = photo.quantize(32)
    ramp16 = (np.arange(48 * 72, dtype=np.uint32).reshape(48, 72) * 19).astype(np.uint16)  # 0..65531
    ramp16_as8 = np.round(ramp16 / 65535 * 255).astype(np.uint8)
    alpha = np.zeros((48, 72), np.uint8)
    alpha[:, 36:] = 255  # left half fully transparent, right half opaque
    on_white = np.where(alpha[:, :, None] == 0, 255, rgb).astype(np.uint8)
    rgba = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    la = Image.fromarray(np.dstack([grey, alpha]), "LA")
    trns = photo.quantize(32)
    trns.info["transparency"] = 0  # palette index 0 transparent
    trns_expected = np.array(trns.convert("RGB"))
    trns_expected[np.array(trns) == 0] = 255
    floats = np.linspace(0.0, 1.0, 48 * 72, dtype=np.float32).reshape(48, 72)
    return {
        "jpeg": (encode(photo, "JPEG", quality=95, subsampling=0), "JPEG", rgb, 3.0),
        "png-rgb": (encode(photo, "PNG"), "PNG", rgb, 0),
        "png-palette": (encode(palette, "PNG"), "PNG", np.array(palette.convert("RGB")), 0),
        "png-palette-transparent": (encode(trns, "PNG", transparency=0), "PNG", trns_expected, 0),
        "png-rgba-on-white": (encode(rgba, "PNG"), "PNG", on_white, 0),
        "png-la-on-white": (encode(la, "PNG"), "PNG", np.where(alpha[:, :, None] == 0, 255, grey3), 0),
        "png-grey": (encode(photo.convert("L"), "PNG"), "PNG", grey3, 0),
        "png-16bit-grey": (encode(Image.fromarray(ramp16), "PNG"), "PNG", np.dstack([ramp16_as8] * 3), 0),
        "jpeg-grey": (encode(photo.convert("L"), "JPEG", quality=95), "JPEG", grey3, 3.0),
        "jpeg-cmyk": (encode(photo.convert("CMYK"), "JPEG", quality=95), "JPEG", rgb, 4.0),
        "tiff": (encode(photo, "TIFF", compression="tiff_lzw"), "TIFF", rgb, 0),
        "tiff-float": (encode(Image.fromarray(floats), "TIFF"), "TIFF",
                       np.dstack([np.round(floats * 255).astype(np.uint8)] * 3), 0),
        "tiff-int32-16bit-range": (encode(Image.fromarray(ramp16.astype(np.int32)), "TIFF"), "TIFF",
                                   np.dstack([ramp16_as8] * 3), 0),
        "bmp": (encode(photo, "BMP"), "BMP", rgb, 0),
        "webp-lossless": (encode(photo, "WEBP", lossless=True), "WEBP", rgb, 0),
        "webp-lossy": (encode(photo, "WEBP", quality=90), "WEBP", rgb, 6.0),
        "gif": (encode(palette, "GIF"), "GIF", np.array(palette.convert("RGB")), 0),
    }


CASE_NAMES = ["jpeg", "png-rgb", "png-palette", "png-palette-transparent", "png-rgba-on-white", "png-la-on-white",
              "png-grey", "png-16bit-grey", "jpeg-grey", "jpeg-cmyk", "tiff", "tiff-float",
              "tiff-int32-16bit-range", "bmp", "webp-lossless", "webp-lossy", "gif"]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_format_and_mode_decode_to_expected_rgb(cases, name):
    data, fmt, expected, tolerance = cases[name]
    d = decode_image(data)
    check_array(d)
    assert (d.format, d.width, d.height, d.scale) == (fmt, 72, 48, 1.0)
    assert d.detection.shape == (48, 72, 3)
    if tolerance == 0:
        np.testing.assert_array_equal(d.detection, expected)
    else:
        assert mean_abs_diff(d.detection, expected) <= tolerance
    assert d.full() is d.detection  # small image: nothing to decode twice


def test_case_table_is_complete(cases):
    assert sorted(cases) == sorted(CASE_NAMES)


def test_animated_gif_gives_first_frame(faces_dir):
    path = faces_dir / "people/Elon_Musk/dlib__elon-musk-smoke.gif"
    with Image.open(path) as im:
        assert im.n_frames > 1
        first = np.array(im.convert("RGB"))  # frame 0; the GIF has no transparency
    d = decode_image(path)
    assert d.format == "GIF" and (d.width, d.height) == (first.shape[1], first.shape[0])
    np.testing.assert_array_equal(d.detection, first)


def test_wrong_extension_is_sniffed(photo, tmp_path):
    path = tmp_path / "really-a-png.jpg"
    path.write_bytes(encode(photo, "PNG"))
    d = decode_image(path)
    assert d.format == "PNG"
    np.testing.assert_array_equal(d.detection, np.array(photo))
    assert decode_image(str(path)).format == "PNG"  # str paths too


def test_sniff_format():
    assert sniff_format(b"\xff\xd8\xff\xe0\x00\x10JFIF") == "JPEG"
    assert sniff_format(b"\x89PNG\r\n\x1a\n\x00\x00") == "PNG"
    assert sniff_format(b"GIF89a\x01\x00") == "GIF"
    assert sniff_format(b"RIFF\x10\x00\x00\x00WEBPVP8 ") == "WEBP"
    assert sniff_format(b"II*\x00\x08\x00") == sniff_format(b"MM\x00*\x00\x00") == "TIFF"
    assert sniff_format(b"BM" + b"\0" * 12 + (40).to_bytes(4, "little")) == "BMP"
    assert sniff_format(b"BMW owners club newsletter, issue 3") is None  # "BM" alone is not enough
    assert sniff_format(b"") is None and sniff_format(b"\xff\xd8") is None
    assert sniff_format(b"<html>") is None and sniff_format(b"\x00\x00\x00\x1cftypavif") is None
    assert sniff_format(b"\x00\x00\x00\x1cftypheic") == "HEIF"  # iPhone photos, read by pillow-heif


# --- EXIF orientation ------------------------------------------------------------------------------------

@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_png_exact(photo, orientation):
    stored = np.array(photo)
    d = decode_image(encode(photo, "PNG", exif=exif_bytes(orientation=orientation)))
    expected = upright_by_spec(stored, orientation)
    np.testing.assert_array_equal(d.detection, expected)
    assert (d.height, d.width) == expected.shape[:2] == ((72, 48) if orientation >= 5 else (48, 72))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_jpeg_detection_and_full_agree(medium_jpeg, orientation):
    data = jpeg_with_exif(medium_jpeg, exif_bytes(orientation=orientation))  # same pixels, new EXIF
    with Image.open(io.BytesIO(medium_jpeg)) as im:
        stored = np.array(im)  # 900x1200 as stored
    d = decode_image(data, detect_max_side=300)
    full = d.full()
    np.testing.assert_array_equal(full, upright_by_spec(stored, orientation))
    assert (d.height, d.width) == full.shape[:2]
    assert d.scale == 4.0 and max(d.detection.shape[:2]) == 300
    # The detection image is the full image shrunk: same content in the same place.
    shrunk = np.array(Image.fromarray(full).resize(d.detection.shape[1::-1], Image.Resampling.BOX))
    assert mean_abs_diff(d.detection, shrunk) < 4.0


def test_real_photo_with_orientation_6(faces_dir):
    path = faces_dir / "single/insightface__image_T1.jpeg"
    with Image.open(path) as im:
        assert im.getexif()[0x0112] == 6
        stored_w, stored_h = im.size
    d = decode_image(path)
    assert (d.width, d.height) == (stored_h, stored_w)
    assert d.detection.shape == (stored_w, stored_h, 3)


def test_invalid_orientation_is_ignored(photo):
    d = decode_image(encode(photo, "PNG", exif=exif_bytes(orientation=9)))
    np.testing.assert_array_equal(d.detection, np.array(photo))


# --- draft mode for large JPEGs ------------------------------------------------------------------------

def test_big_jpeg_uses_draft_for_detection_and_full_resolution_for_full(faces_dir, monkeypatch):
    loaded_sizes = []
    original_load = ImageFile.ImageFile.load

    def spy_load(self):  # load() runs again as a no-op later (convert()), so compare sets of sizes
        loaded_sizes.append(self.size)
        return original_load(self)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "load", spy_load, raising=False)
    d = decode_image(faces_dir / BIG_JPEG)  # 3061x4600
    assert set(loaded_sizes) == {(1531, 2300)}  # libjpeg decoded at 1/2 scale, never at full size
    assert d.scale == pytest.approx(4600 / 1600)
    assert d.detection.shape == (1600, round(3061 / d.scale), 3)
    assert (d.width, d.height) == (3061, 4600)
    full = d.full()
    assert set(loaded_sizes) == {(1531, 2300), (3061, 4600)} and full.shape == (4600, 3061, 3)
    calls = len(loaded_sizes)
    assert d.full() is full and len(loaded_sizes) == calls  # cached, not decoded again
    # Coordinates map with one scale: a detection pixel and the full pixels it covers look alike.
    y, x = 800, 500
    patch = full[round(y * d.scale):round((y + 1) * d.scale), round(x * d.scale):round((x + 1) * d.scale)]
    assert np.abs(patch.reshape(-1, 3).mean(0) - d.detection[y, x]).max() < 25
    shrunk = np.array(Image.fromarray(full).reduce(4).resize(d.detection.shape[1::-1]))
    assert mean_abs_diff(d.detection, shrunk) < 4.0


def test_jpeg_under_twice_the_detection_size_is_decoded_once(faces_dir, monkeypatch):
    """No draft step fits a 2500 px JPEG shrunk to 1600 px, so its full-size pixels are decoded for detection:
    full() reuses them instead of decoding the file again, and gives what a decode of its own gives."""
    path = faces_dir / "people/Angelina_Jolie/deepface__img4.jpg"  # 2500x1728
    loaded = []
    original_load = ImageFile.ImageFile.load

    def spy_load(self):  # load() runs again as a no-op on a loaded image: count the images it ran on
        loaded.append(self)
        return original_load(self)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "load", spy_load, raising=False)
    d = decode_image(path)
    assert {im.size for im in loaded} == {(2500, 1728)} and d.scale == pytest.approx(2500 / 1600)
    decoded_files = {id(im) for im in loaded}
    full = d.full()
    assert {id(im) for im in loaded} == decoded_files and full.shape == (1728, 2500, 3)  # no second decode
    monkeypatch.undo()
    with Image.open(path) as im:
        np.testing.assert_array_equal(full, np.array(im.convert("RGB")))
    assert d.full() is full


@pytest.mark.parametrize("orientation", (1, 6, 8))
def test_full_reused_pixels_are_turned_upright(medium_jpeg, orientation):
    """The kept full-size pixels get the EXIF turn too (scale 1.5: decoded at full size, no draft)."""
    data = jpeg_with_exif(medium_jpeg, exif_bytes(orientation=orientation))
    with Image.open(io.BytesIO(medium_jpeg)) as im:
        stored = np.array(im)  # 900x1200 as stored
    d = decode_image(data, detect_max_side=800)
    assert d.scale == 1.5 and d._full_image is not None
    np.testing.assert_array_equal(d.full(), upright_by_spec(stored, orientation))


def test_small_image_is_not_upscaled(photo):
    d = decode_image(encode(photo, "PNG"), detect_max_side=1600)
    assert d.detection.shape == (48, 72, 3) and d.scale == 1.0


def test_non_jpeg_is_downscaled_too(photo):
    d = decode_image(encode(photo, "PNG"), detect_max_side=36)
    assert d.detection.shape == (24, 36, 3) and d.scale == 2.0
    assert d.full().shape == (48, 72, 3)
    np.testing.assert_array_equal(d.full(), np.array(photo))


# --- EXIF capture time -----------------------------------------------------------------------------------

def test_capture_time_from_real_photos(faces_dir):
    assert decode_image(faces_dir / "nonfaces/dlib__dog.jpg").captured_at == datetime(2014, 9, 19, 16, 8, 30)
    # This camera wrote "2009:09:09 20:27:09.60:04:00": the standard part is kept.
    with Image.open(faces_dir / "people/Barack_Obama/face_recognition__obama2.jpg") as im:
        assert read_exif_capture_time(im) == datetime(2009, 9, 9, 20, 27, 9)


@pytest.mark.parametrize(("taken", "expected"), [
    ("2021:03:04 05:06:07", datetime(2021, 3, 4, 5, 6, 7)),
    ("0000:00:00 00:00:00", None),
    ("2021:02:30 10:00:00", None),
    ("    :  :     :  :  ", None),
    ("yesterday", None),
])
def test_capture_time_parsing(medium_jpeg, taken, expected):
    d = decode_image(jpeg_with_exif(medium_jpeg, exif_bytes(taken=taken)))
    assert d.captured_at == expected


def test_capture_time_absent(photo):
    assert decode_image(encode(photo, "PNG")).captured_at is None
    assert read_exif_capture_time(photo) is None


def test_capture_time_in_png_and_webp(photo):
    for fmt in ("PNG", "WEBP"):
        data = encode(photo, fmt, exif=exif_bytes(taken="2019:12:31 23:59:58"))
        assert decode_image(data).captured_at == datetime(2019, 12, 31, 23, 59, 58)


# --- hostile and broken input ----------------------------------------------------------------------------

def test_truncated_jpeg(faces_dir):
    data = (faces_dir / SMALL_JPEG).read_bytes()
    for cut in (len(data) // 2, len(data) - 2):  # mid-scan; only the end-of-image marker missing
        with pytest.raises(ImageError, match="^truncated JPEG$"):
            decode_image(data[:cut])


def test_truncated_big_jpeg_in_draft_mode(faces_dir):
    data = (faces_dir / BIG_JPEG).read_bytes()
    with pytest.raises(ImageError, match="^truncated JPEG$"):
        decode_image(data[: len(data) * 2 // 3])


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # Pillow's TIFF reader notes the cut header too
@pytest.mark.parametrize("fmt", ["PNG", "GIF", "WEBP", "TIFF", "BMP"])
def test_truncated_other_formats(photo, fmt):
    data = encode(photo, fmt)
    with pytest.raises(ImageError, match=f"^truncated {fmt}$"):
        decode_image(data[: len(data) // 2])
    with pytest.raises(ImageError, match=fmt):  # cut inside the header: reported, never a raw error
        decode_image(data[:20])


def test_corrupt_png_checksum(photo):
    data = bytearray(encode(photo, "PNG"))
    data[40] ^= 0xFF  # inside the first IDAT chunk: its CRC no longer matches
    with pytest.raises(ImageError, match="^corrupt PNG"):
        decode_image(bytes(data))


@pytest.mark.parametrize(("content", "reason"), [
    (b"", "empty file"),
    (b"hello, this is a plain text file\nnot a photo\n", "not an image (looks like text)"),
    (b"<!DOCTYPE html><html><body>404 Not Found</body></html>", "not an image (looks like HTML)"),
    (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "not an image (looks like a PDF document)"),
    (b"\x00\x00\x00\x18ftypavif\x00\x00\x00\x00mif1avif", "unsupported image format (AVIF)"),
    (b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1avif", "unsupported image format (AVIF)"),
    (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "unsupported image format (SVG)"),
])
def test_non_images_named_jpg(tmp_path, content, reason):
    path = tmp_path / "photo.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageError) as err:
        decode_image(path)
    assert err.value.message == reason and not isinstance(err.value, ImageTooLargeError)


def test_random_bytes():
    noise = np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    with pytest.raises(ImageError, match=r"^not an image \(unrecognised binary data\)$"):
        decode_image(noise)


def test_unreadable_paths(tmp_path):
    with pytest.raises(ImageError, match="^is a directory"):
        decode_image(tmp_path)
    with pytest.raises(ImageError, match="^file not found$"):
        decode_image(tmp_path / "missing.jpg")
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    with pytest.raises(ImageError, match="^not a regular file$"):
        decode_image(fifo)  # would block forever if opened


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read a mode-000 file")
def test_permission_denied(photo, tmp_path):
    path = tmp_path / "secret.png"
    path.write_bytes(encode(photo, "PNG"))
    path.chmod(0)
    with pytest.raises(ImageError, match="^permission denied$"):
        decode_image(path)


def test_bad_arguments(photo):
    with pytest.raises(TypeError):
        decode_image(12345)
    with pytest.raises(InvalidInputError):
        decode_image(encode(photo, "PNG"), detect_max_side=0)


def test_decoded_image_built_from_an_array():
    # Other stages (and their tests) may build one directly; full() is then the detection array.
    arr = np.zeros((4, 6, 3), np.uint8)
    d = DecodedImage(detection=arr, scale=1.0, width=6, height=4, format="PNG", captured_at=None)
    assert d.full() is arr


# --- limits ----------------------------------------------------------------------------------------------

@pytest.fixture
def no_pixel_decoding(monkeypatch):
    """Fail the test if any image's pixels are decoded."""
    def refuse(self):
        raise AssertionError(f"pixels of a {self.size} image were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


def test_png_header_bomb_rejected_before_decoding(no_pixel_decoding):
    with pytest.raises(ImageTooLargeError, match="100000x100000 = 10,000,000,000 pixels, over the 80,000,000"):
        decode_image(png_header_bomb(100_000, 100_000))


def test_valid_1bit_png_bomb_rejected_before_decoding(no_pixel_decoding):
    bomb = png_1bit_bomb(20_000, 20_000)  # ~60 KB on disk, 400 MP = 1.2 GB as RGB
    assert len(bomb) < 200_000
    with pytest.raises(ImageTooLargeError, match="20000x20000"):
        decode_image(bomb)


def test_jpeg_header_bomb_rejected_before_decoding(photo, no_pixel_decoding):
    with pytest.raises(ImageTooLargeError, match="65000x60000"):
        decode_image(jpeg_with_size(encode(photo, "JPEG"), 65_000, 60_000))


def test_webp_header_bomb_rejected_before_decoding(photo, no_pixel_decoding):
    # 16384x16384 trips Pillow's own hard limit inside the WebP plugin; still our error type.
    with pytest.raises(ImageTooLargeError, match="WEBP"):
        decode_image(webp_with_size(encode(photo, "WEBP", lossless=True), 16_384, 16_384))
    with pytest.raises(ImageTooLargeError, match="10000x10000"):
        decode_image(webp_with_size(encode(photo, "WEBP", lossless=True), 10_000, 10_000))


def test_pixel_limit_is_per_call_and_leaves_pillow_alone(photo):
    before = Image.MAX_IMAGE_PIXELS
    data = encode(photo, "PNG")
    with pytest.raises(ImageTooLargeError, match="72x48 = 3,456 pixels, over the 3,000-pixel limit"):
        decode_image(data, max_pixels=3000)
    assert decode_image(data, max_pixels=3456).width == 72
    assert before == Image.MAX_IMAGE_PIXELS


def test_pixel_limit_above_pillow_default_raises_no_pillow_warning(no_pixel_decoding):
    # 10000x10000 is over Pillow's global warning threshold (89 MP) but within this call's own limit.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(AssertionError, match="decoded"):  # it got as far as decoding: limit passed
            decode_image(png_header_bomb(10_000, 10_000), max_pixels=200_000_000)


def test_byte_limit(photo, tmp_path):
    data = encode(photo, "PNG")
    with pytest.raises(ImageTooLargeError, match=f"file is {len(data):,} bytes, over the 1,000-byte limit"):
        decode_image(data, max_bytes=1000)
    path = tmp_path / "a.png"
    path.write_bytes(data)
    with pytest.raises(ImageTooLargeError, match="over the 1,000-byte limit"):
        decode_image(path, max_bytes=1000)
    assert decode_image(path, max_bytes=len(data)).format == "PNG"


def test_errors_keep_the_cause(faces_dir):
    data = (faces_dir / SMALL_JPEG).read_bytes()
    with pytest.raises(ImageError) as err:
        decode_image(data[:5000])
    assert isinstance(err.value.__cause__, OSError)  # Pillow's error kept for logs, not raised raw
    assert err.value.code == "bad_image" and err.value.http_status == 422
