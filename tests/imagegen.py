"""Build hostile and edge-case image files in memory for the decoder tests (no pixels are ever huge)."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic...): they carry the image size.
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def encode(img: Image.Image, fmt: str, **save_args) -> bytes:
    """`img` saved in `fmt` ("PNG", "JPEG", ...) as bytes."""
    buf = io.BytesIO()
    img.save(buf, fmt, **save_args)
    return buf.getvalue()


def exif_bytes(orientation: int | None = None, taken: str | None = None) -> bytes:
    """An EXIF block (as Pillow's `exif=` save argument wants it) with Orientation and/or DateTimeOriginal."""
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    if taken is not None:
        exif.get_ifd(0x8769)[0x9003] = taken
    return exif.tobytes()


def png_chunk(tag: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", zlib.crc32(tag + payload))


def png_header_bomb(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height 8-bit RGB, followed by a few bytes of junk image data.

    Only a decoder that trusts the header and allocates the pixels would notice anything (gigabytes).
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + png_chunk(b"IEND", b""))


def png_1bit_bomb(width: int, height: int) -> bytes:
    """A valid, fully decodable black 1-bit PNG: a few hundred KB that decode to width*height pixels.

    The compressed stream is built row-chunk by row-chunk so the raw bitmap never exists in memory.
    """
    row = b"\0" * (1 + (width + 7) // 8)  # filter byte + packed bits
    rows_per_chunk = 256
    squeeze = zlib.compressobj(9)
    parts = [squeeze.compress(row * rows_per_chunk) for _ in range(height // rows_per_chunk)]
    parts += [squeeze.compress(row * (height % rows_per_chunk)), squeeze.flush()]
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", b"".join(parts))
            + png_chunk(b"IEND", b""))


def _jpeg_segments(data: bytes):
    """(offset, marker, length) of each header segment of a JPEG, up to the start of scan."""
    pos = 2  # after SOI
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        length = struct.unpack_from(">H", data, pos + 2)[0]
        yield pos, marker, length
        if marker == 0xDA:
            return
        pos += 2 + length


def jpeg_with_size(data: bytes, width: int, height: int) -> bytes:
    """`data` with the frame header patched to claim width x height (the scan data is left as it was)."""
    for pos, marker, _length in _jpeg_segments(data):
        if marker in _SOF_MARKERS:
            return data[:pos + 5] + struct.pack(">HH", height, width) + data[pos + 9:]
    raise ValueError("no SOF segment")


def jpeg_with_exif(data: bytes, exif: bytes) -> bytes:
    """`data` with its EXIF APP1 segment replaced by `exif` (b"Exif\\0\\0..."), pixels untouched (no re-encode)."""
    kept, pos = [], 2
    for pos, marker, length in _jpeg_segments(data):
        if marker == 0xDA:
            break
        segment = data[pos:pos + 2 + length]
        if not (marker == 0xE1 and segment[4:10] == b"Exif\0\0"):
            kept.append(segment)
    app1 = b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif
    return b"\xff\xd8" + app1 + b"".join(kept) + data[pos:]


def webp_with_size(data: bytes, width: int, height: int) -> bytes:
    """A lossless WebP (`data`, simple VP8L layout) with its header patched to claim width x height (<= 16384)."""
    assert data[12:16] == b"VP8L", "expects a simple lossless WebP"
    bits = int.from_bytes(data[21:25], "little")
    bits = (bits & ~0xFFFFFFF) | (width - 1) | (height - 1) << 14  # 14-bit width-1, then 14-bit height-1
    return data[:21] + bits.to_bytes(4, "little") + data[25:]
