"""Seeded generators of malformed and edge-case image files for the fuzz tests, made from real photos at test time.

Nothing here is committed as data: every case is built from a photo of ../shared/faces when the tests run,
so the same seed gives the same bytes. FACEINDEX_FUZZ_RUNS scales the number of seeded mutations (the CI
default keeps the whole decode fuzz near 200 cases; the campaign that found issue 9 ran 1,000).
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from imagegen import encode, jpeg_with_exif, jpeg_with_size, png_chunk, png_header_bomb, webp_with_size
from PIL import Image

FORMATS = ("JPEG", "PNG", "GIF", "TIFF", "BMP", "WEBP")
SOURCE_PHOTOS = ("people/Katy_Perry/deepface__img44.jpg", "people/Barack_Obama/face_recognition__obama.jpg",
                 "nonfaces/dlib__dog.jpg")
"""Small real photos the cases are derived from (each is shrunk to BASE_SIDE before use)."""
BASE_SIDE = 160
"""Longest side in pixels of the re-encoded bases: mutations of small files decode in milliseconds."""


def fuzz_runs(default: int) -> int:
    """How many seeded mutations to make: FACEINDEX_FUZZ_RUNS when set (the full campaign), else `default`."""
    return max(1, int(os.environ.get("FACEINDEX_FUZZ_RUNS", default)))


@dataclass(frozen=True)
class Case:
    """One generated input. `ext` is the file-name extension used when it is written to disk (maybe a lie)."""

    name: str
    data: bytes
    ext: str = ".jpg"
    must_decode: bool = False  # a valid (if odd) image: decode must succeed, not just fail cleanly


def base_images(faces_dir: Path) -> list[Image.Image]:
    out = []
    for rel in SOURCE_PHOTOS:
        with Image.open(faces_dir / rel) as im:
            im = im.convert("RGB")
            im.thumbnail((BASE_SIDE, BASE_SIDE))
            out.append(im.copy())
    return out


def encoded_bases(faces_dir: Path) -> dict[str, bytes]:
    """The first source photo, small, in every supported format (WEBP lossless so its header can be patched)."""
    im = base_images(faces_dir)[0]
    out = {fmt: encode(im, fmt) for fmt in FORMATS if fmt != "WEBP"}
    with contextlib.suppress(OSError, KeyError):  # Pillow without WebP: decode says so (test_decode)
        out["WEBP"] = encode(im, "WEBP", lossless=True)
    out["JPEG-progressive"] = encode(im, "JPEG", progressive=True, quality=80)
    return out


# -- valid but odd images -------------------------------------------------------------------------
def tiny_images() -> list[Case]:
    """1-pixel, 1xN and Nx1 images in every format: valid files that must decode (issue 9 item 6)."""
    cases = []
    for w, h in ((1, 1), (1, 300), (300, 1), (2, 2), (1, 2000), (2000, 1)):
        im = Image.new("RGB", (w, h), (200, 150, 120))
        for fmt in FORMATS:
            try:
                data = encode(im, fmt, lossless=True) if fmt == "WEBP" else encode(im, fmt)
            except (OSError, KeyError):
                continue
            cases.append(Case(f"tiny-{w}x{h}-{fmt.lower()}", data, "." + fmt.lower(), must_decode=True))
    return cases


def exotic_modes(faces_dir: Path) -> list[Case]:
    """Valid photos in unusual pixel modes (16-bit, CMYK, palette with transparency, grey+alpha)."""
    im = base_images(faces_dir)[0]
    grey16 = Image.fromarray(__import__("numpy").asarray(im.convert("L"), dtype="uint16") * 257)
    return [
        Case("mode-cmyk-jpeg", encode(im.convert("CMYK"), "JPEG"), must_decode=True),
        Case("mode-i16-png", encode(grey16, "PNG"), ".png", must_decode=True),
        Case("mode-i16-tiff", encode(grey16, "TIFF"), ".tif", must_decode=True),
        Case("mode-la-png", encode(im.convert("LA"), "PNG"), ".png", must_decode=True),
        Case("mode-p-transparent-gif", encode(im.convert("P"), "GIF", transparency=0), ".gif", must_decode=True),
        Case("mode-1-bmp", encode(im.convert("1"), "BMP"), ".bmp", must_decode=True),
        Case("mode-f-tiff", encode(im.convert("F"), "TIFF"), ".tif", must_decode=True),
        Case("animated-gif", _animated_gif(im), ".gif", must_decode=True),
    ]


def _animated_gif(im: Image.Image) -> bytes:
    frames = [im.rotate(angle) for angle in (0, 90, 180)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


# -- hostile files --------------------------------------------------------------------------------
def bombs(faces_dir: Path) -> list[Case]:
    """Files whose headers claim gigapixels (a decoder that trusts them allocates gigabytes)."""
    bases = encoded_bases(faces_dir)
    cases = [Case("bomb-png-100000x100000", png_header_bomb(100_000, 100_000), ".png"),
             Case("bomb-png-1x2e9", png_header_bomb(1, 2_000_000_000), ".png"),
             Case("bomb-png-2e9x1", png_header_bomb(2_000_000_000, 1), ".png"),
             Case("bomb-png-max", png_header_bomb(2**31 - 1, 2**31 - 1), ".png"),
             Case("bomb-gif-65535", _gif_bomb(65535, 65535), ".gif"),
             Case("bomb-gif-frame-65535", _gif_bomb(65535, 65535, screen=(10, 10)), ".gif"),
             Case("bomb-jpeg-65535", jpeg_with_size(bases["JPEG"], 65535, 65535)),
             Case("bomb-jpeg-65535x1", jpeg_with_size(bases["JPEG"], 65535, 1)),
             Case("bomb-tiff-huge", _tiff(1_000_000, 1_000_000, strip=b"\0" * 64), ".tif"),
             Case("bomb-bmp-huge", _bmp_header(100_000, 100_000), ".bmp"),
             Case("bomb-bmp-negative-height", _bmp_header(100_000, -100_000), ".bmp")]
    if "WEBP" in bases:
        cases.append(Case("bomb-webp-16384", webp_with_size(bases["WEBP"], 16384, 16384), ".webp"))
    return cases


def _gif_bomb(width: int, height: int, screen: tuple[int, int] | None = None) -> bytes:
    """A GIF whose logical screen (or only its one frame) claims width x height, with a few bytes of LZW data."""
    sw, sh = screen or (width, height)
    head = b"GIF89a" + struct.pack("<HHBBB", sw, sh, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"  # 2-colour table
    frame = b"," + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00"
    return head + frame + b";"


def _tiff(width: int, height: int, strip: bytes, *, ifd_offset: int = 8, extra: bytes = b"") -> bytes:
    """A little-endian grey TIFF with one strip; `extra` bytes are appended (for IFD games)."""
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 0), (277, 3, 1, 1), (278, 4, 1, height), (279, 4, 1, len(strip))]
    ifd_size = 2 + 12 * len(entries) + 4
    strip_at = ifd_offset + ifd_size
    body = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        body += struct.pack("<HHII", tag, typ, count, strip_at if tag == 273 else value)
    body += struct.pack("<I", 0)
    return b"II*\0" + struct.pack("<I", ifd_offset) + body + strip + extra


def _bmp_header(width: int, height: int) -> bytes:
    dib = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(dib) + 16, 0, 0, 14 + len(dib)) + dib + b"\0" * 16


def non_images() -> list[Case]:
    rng = random.Random(9)
    return [
        Case("zero-bytes", b""),
        Case("one-byte", b"\xff"),
        Case("jpeg-magic-only", b"\xff\xd8\xff"),
        Case("png-signature-only", b"\x89PNG\r\n\x1a\n", ".png"),
        Case("gif-signature-only", b"GIF89a", ".gif"),
        Case("tiff-signature-only", b"II*\0", ".tif"),
        Case("riff-webp-empty", b"RIFF\0\0\0\0WEBP", ".webp"),
        Case("text", b"this is not a photo\n" * 40),
        Case("html", b"<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>", ".png"),
        Case("svg", b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script/></svg>', ".jpg"),
        Case("pdf", b"%PDF-1.7\n1 0 obj<<>>endobj\n%%EOF\n"),
        Case("zip", b"PK\x03\x04" + bytes(rng.randrange(256) for _ in range(200))),
        Case("elf", b"\x7fELF\x02\x01\x01" + b"\0" * 200, ".gif"),
        Case("heic", b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + b"\0" * 64, ".heic"),
        Case("mp4", b"\0\0\0\x18ftypisom\0\0\0\0isomiso2" + b"\0" * 64, ".jpg"),
        Case("random-4k", bytes(rng.randrange(256) for _ in range(4096)), ".png"),
        Case("nul-4k", b"\0" * 4096),
        Case("bm-text", b"BM is not a bitmap, it is a sentence that starts with BM", ".bmp"),
        Case("utf16-text", "not an image".encode("utf-16"), ".jpg"),
    ]


def polyglots(faces_dir: Path) -> list[Case]:
    """Valid images with other formats glued on (they decode; the extra bytes must do no harm)."""
    b = encoded_bases(faces_dir)
    return [
        Case("polyglot-jpeg-zip", b["JPEG"] + b"PK\x03\x04" + b"\0" * 100, must_decode=True),
        Case("polyglot-gif-js", b["GIF"] + b"*/=1;alert(1)//", ".gif", must_decode=True),
        Case("polyglot-png-html", b["PNG"] + b"<html><script>alert(1)</script></html>", ".png", must_decode=True),
        Case("polyglot-jpeg-twice", b["JPEG"] + b["JPEG"], must_decode=True),
        Case("polyglot-html-then-jpeg", b"<html>" + b["JPEG"]),
    ]


def exif_garbage(faces_dir: Path) -> list[Case]:
    """JPEGs and TIFFs whose EXIF/IFD structures lie: loops, offsets past the end, huge counts, odd types."""
    jpeg = encoded_bases(faces_dir)["JPEG"]
    tiff_header = b"II*\0" + struct.pack("<I", 8)

    def ifd(entries, next_ifd=0):
        out = struct.pack("<H", len(entries))
        for tag, typ, count, value in entries:
            out += struct.pack("<HHII", tag, typ, count, value)
        return out + struct.pack("<I", next_ifd)

    blocks = {
        "ifd-loop": tiff_header + ifd([(0x0112, 3, 1, 6)], next_ifd=8),
        "exif-subifd-self": tiff_header + ifd([(0x8769, 4, 1, 8)]),
        "offset-past-end": tiff_header + ifd([(0x010F, 2, 100, 0x7FFFFFF0)]),
        "huge-count": tiff_header + ifd([(0x9003, 2, 0xFFFFFFFF, 26)]),
        "orientation-junk": tiff_header + ifd([(0x0112, 3, 1, 0xFFFF)]),
        "orientation-string": tiff_header + ifd([(0x0112, 2, 4, 0x00363636)]),
        "unknown-type": tiff_header + ifd([(0x0112, 99, 1, 6)]),
        "entry-count-lies": tiff_header + struct.pack("<H", 0xFFFF) + b"\0" * 20,
        "datetime-bad": tiff_header + ifd([(0x8769, 4, 1, 26)]) + ifd([(0x9003, 2, 20, 44)])
        + b"9999:99:99 99:99:99\0",
        "big-endian-truncated": b"MM\0*\0\0\0\x08\0",
        "not-tiff": b"garbage garbage garbage",
    }
    cases = [Case(f"exif-{name}", jpeg_with_exif(jpeg, b"Exif\0\0" + block), must_decode=True)
             for name, block in blocks.items()]
    # The same lies in a TIFF file's own IFD, where the pixels depend on them.
    strip = b"\x80" * 64
    cases += [
        Case("tiff-ifd-loop", _tiff(8, 8, strip)[:-4] + struct.pack("<I", 8), ".tif"),
        Case("tiff-strip-past-end", _tiff(8, 8, b""), ".tif"),
        Case("tiff-ifd-offset-past-end", b"II*\0" + struct.pack("<I", 0x7FFFFFFF), ".tif"),
        Case("tiff-zero-size", _tiff(0, 0, strip), ".tif"),
        Case("tiff-bigtiff-junk", b"II+\0\x08\0\0\0" + b"\xff" * 64, ".tif"),
    ]
    return cases


def truncations(faces_dir: Path) -> list[Case]:
    """Every format cut at a few fractions of its length (a download or copy that stopped)."""
    cases = []
    for fmt, data in encoded_bases(faces_dir).items():
        for frac in (0.02, 0.1, 0.5, 0.9, 0.999):
            cut = max(1, int(len(data) * frac))
            cases.append(Case(f"truncated-{fmt.lower()}-{frac}", data[:cut], "." + fmt.split("-")[0].lower()))
    return cases


def mutations(faces_dir: Path, count: int, seed: int = 9) -> list[Case]:
    """`count` seeded byte mutations spread over the formats: flipped bytes, zeroed runs, splices, header hits."""
    bases = list(encoded_bases(faces_dir).items())
    rng = random.Random(seed)
    cases = []
    for i in range(count):
        fmt, data = bases[i % len(bases)]
        buf = bytearray(data)
        how = rng.choice(("flip", "zero-run", "splice", "header", "dup-run"))
        if how == "flip":
            for _ in range(rng.randint(1, 16)):
                buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
        elif how == "zero-run":
            at = rng.randrange(len(buf))
            buf[at:at + rng.randint(1, 512)] = b"\0" * len(buf[at:at + 512])
        elif how == "splice":
            at, other = rng.randrange(len(buf)), rng.choice(bases)[1]
            buf[at:] = other[rng.randrange(len(other)):]
        elif how == "header":  # the first 64 bytes hold sizes, offsets and counts: hit them hardest
            for _ in range(rng.randint(1, 4)):
                buf[rng.randrange(min(64, len(buf)))] = rng.randrange(256)
        else:
            at = rng.randrange(len(buf))
            buf[at:at] = buf[at:at + rng.randint(1, 256)] * rng.randint(2, 50)
        cases.append(Case(f"mutated-{i:04d}-{fmt.lower()}-{how}", bytes(buf), "." + fmt.split("-")[0].lower()))
    return cases


def png_bad_crc(faces_dir: Path) -> Case:
    data = encoded_bases(faces_dir)["PNG"]
    return Case("png-bad-crc", data[:29] + bytes([data[29] ^ 0xFF]) + data[30:], ".png")


def png_deflate_bomb() -> Case:
    """A PNG of about 100 KB whose zlib stream really inflates to 100 Mpx (100 MB): over the default pixel limit."""
    width = height = 10_000  # 100 Mpx claimed and really present in the stream: refused before decoding
    row = b"\0" * (1 + width)
    squeeze = zlib.compressobj(9)
    parts = [squeeze.compress(row * 500) for _ in range(height // 500)] + [squeeze.flush()]
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", b"".join(parts))
            + png_chunk(b"IEND", b""))
    return Case("bomb-png-deflate-100mpx", data, ".png")


def all_cases(faces_dir: Path, mutated: int) -> list[Case]:
    """Every generated case; `mutated` seeded mutations on top of the fixed kinds (about 120 of them)."""
    cases = (tiny_images() + exotic_modes(faces_dir) + bombs(faces_dir) + [png_deflate_bomb()] + non_images()
             + polyglots(faces_dir) + exif_garbage(faces_dir) + truncations(faces_dir) + [png_bad_crc(faces_dir)]
             + mutations(faces_dir, mutated))
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "case names must be unique"
    return cases
