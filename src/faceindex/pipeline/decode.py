"""Decode untrusted image files into upright RGB arrays, guarded against bombs, oversize and corrupt input."""

from __future__ import annotations

import io
import os
import re
import stat
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from PIL import BmpImagePlugin, GifImagePlugin, Image, JpegImagePlugin, PngImagePlugin, TiffImagePlugin, WebPImagePlugin

from faceindex.errors import ImageError, ImageTooLargeError, InvalidInputError

SUPPORTED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP", "HEIF")

# Header parsers per sniffed format. Calling the plugin directly (rather than Image.open) parses only the
# header and skips Pillow's global decompression-bomb check, which would raise on a huge header before we
# could report its dimensions; our own per-call limit is applied right after instead.
_PLUGINS: dict[str, Callable[..., Image.Image]] = {
    "JPEG": JpegImagePlugin.jpeg_factory, "PNG": PngImagePlugin.PngImageFile, "GIF": GifImagePlugin.GifImageFile,
    "WEBP": WebPImagePlugin.WebPImageFile, "TIFF": TiffImagePlugin.TiffImageFile, "BMP": BmpImagePlugin.BmpImageFile,
}
try:  # iPhone photos (HEIC): pillow-heif is a dependency; without it they are refused with a reason
    from pillow_heif import register_heif_opener
    from pillow_heif.as_plugin import HeifImageFile

    register_heif_opener()  # Image.open elsewhere (thumbnails, tools) reads HEIC too
    _PLUGINS["HEIF"] = HeifImageFile
except ImportError:  # pragma: no cover - a broken install
    pass
# What Pillow's plugins raise on malformed input. Anything else is a bug here and should surface as such.
_PIL_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError, TypeError,
               ZeroDivisionError, RuntimeError)  # RuntimeError: libheif (pillow-heif) on a damaged HEIC

_ORIENTATION = 0x0112
_EXIF_IFD = 0x8769
_DATETIME_ORIGINAL = 0x9003
_SUBSEC_ORIGINAL = 0x9291
# EXIF orientation -> transpose that turns the stored pixels upright (same table as ImageOps.exif_transpose).
_T = Image.Transpose
_UPRIGHT = {2: _T.FLIP_LEFT_RIGHT, 3: _T.ROTATE_180, 4: _T.FLIP_TOP_BOTTOM, 5: _T.TRANSPOSE, 6: _T.ROTATE_270,
            7: _T.TRANSVERSE, 8: _T.ROTATE_90}
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
_BMP_DIB_HEADER_SIZES = {12, 40, 52, 56, 64, 108, 124}
_EXIF_DATETIME = re.compile(r"\s*(\d{4})[:/-](\d{2})[:/-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
# Leading bytes (lower-cased, after whitespace/BOM) of common non-image files, for a helpful message.
_OTHER_FILES = (
    (b"<!doctype html", "not an image (looks like HTML)"),
    (b"<html", "not an image (looks like HTML)"),
    (b"%pdf-", "not an image (looks like a PDF document)"),
    (b"pk\x03\x04", "not an image (looks like a ZIP archive)"),
    (b"8bps", "unsupported image format (Photoshop PSD)"),
)


@dataclass(eq=False)
class DecodedImage:
    """A decoded photo: a small upright RGB copy for face detection now, full resolution on demand.

    Coordinates map as full_x = det_x * scale, full_y = det_y * scale (scale >= 1.0, full-resolution
    pixels per detection pixel). width/height are the upright full-resolution size in pixels.
    """

    detection: np.ndarray
    scale: float
    width: int
    height: int
    format: str
    captured_at: datetime | None = None
    # Encoded file kept for the lazy full-resolution decode (None once not needed).
    _source: bytes | None = field(default=None, repr=False)
    _orientation: int = field(default=1, repr=False)
    _turned_on_decode: bool = field(default=False, repr=False)  # HEIF: libheif applied the photo's rotation
    _full: np.ndarray | None = field(default=None, repr=False)
    # The full-resolution pixels already decoded (stored orientation), when decoding for detection had to
    # decode them anyway: full() converts them instead of decoding the file a second time.
    _full_image: Image.Image | None = field(default=None, repr=False)

    @property
    def exif_turned(self) -> bool:
        """True when an EXIF orientation tag (2-8) turned or mirrored the stored pixels to make them upright.

        Such a photo is trusted to be upright. A tag of 1 is not evidence: editors that rotate the
        pixels often write 1, and so do cameras held sideways without an orientation sensor.
        """
        return self._orientation != 1 or self._turned_on_decode

    def full(self) -> np.ndarray:
        """HxWx3 uint8 RGB at full resolution, EXIF-oriented; decoded on the first call, then cached.

        When the image was not downscaled for detection this is the same array as `detection`.
        """
        if self._full is None:
            if self._full_image is not None:
                self._full = _to_array(_upright(self._full_image, self._orientation))
                self._full_image = self._source = None
            elif self._source is None:
                if self.scale != 1.0:
                    raise ImageError("full-resolution pixels are not available for this image")
                self._full = self.detection
            else:
                im = _open(self._source, self.format)
                with _pil_errors(self.format, self._source):
                    im.load()
                    self._full = _to_array(_upright(_to_rgb(im), self._orientation))
                self._source = None
        return self._full


def decode_image(source: str | os.PathLike | bytes, *, max_pixels: int = 80_000_000,
                 max_bytes: int = 200 * 2**20, detect_max_side: int = 1600) -> DecodedImage:
    """Decode an untrusted image (path or encoded bytes) for face detection.

    max_pixels: limit on width*height read from the header, enforced before any pixel is decoded.
    max_bytes: limit on the encoded size in bytes. detect_max_side: longest side in pixels of
    `detection` (never upscaled). The format is sniffed from the content, never from the file name.
    Raises ImageError (ImageTooLargeError for either limit) with a short reason; never a raw Pillow/OS error.
    """
    if min(max_pixels, max_bytes, detect_max_side) < 1:
        raise InvalidInputError("max_pixels, max_bytes and detect_max_side must be positive")
    data = _read_source(source, max_bytes)
    if not data:
        raise ImageError("empty file")
    fmt = sniff_format(data[:32])
    if fmt is None:
        raise ImageError(_describe_non_image(data[:1024]))
    im = _open(data, fmt)
    raw_w, raw_h = im.size
    if raw_w <= 0 or raw_h <= 0:
        raise ImageError(f"corrupt {fmt} (zero width or height)")
    if raw_w * raw_h > max_pixels:
        raise ImageTooLargeError(f"{fmt} image is {raw_w}x{raw_h} = {raw_w * raw_h:,} pixels, "
                                 f"over the {max_pixels:,}-pixel limit")
    scale = max(1.0, max(raw_w, raw_h) / detect_max_side)
    target = (max(1, round(raw_w / scale)), max(1, round(raw_h / scale)))
    with _pil_errors(fmt, data):
        if fmt == "JPEG" and scale > 1.0:
            # libjpeg can decode at 1/2, 1/4 or 1/8 size via DCT scaling; draft() picks the smallest that is
            # still >= target, so a big photo is never decoded at full size only to be shrunk.
            im.draft(im.mode, target)
        im.load()
        rgb = _to_rgb(im)
        # Decoded at full size although the detector gets less (no draft step fits: a JPEG under 2x the
        # detection size, other formats): keep those pixels for full() rather than decoding them again
        # (~25 ms for a 3 MP JPEG). Held at most ~4x the detection image's pixels (scale < 2), else dropped.
        full_image = rgb if scale > 1.0 and rgb.size == (raw_w, raw_h) and scale < 2.0 else None
        if rgb.size != target:
            rgb = rgb.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
    orientation = _read_orientation(im)
    detection = _to_array(_upright(rgb, orientation))
    width, height = (raw_h, raw_w) if orientation >= 5 else (raw_w, raw_h)
    downscaled = scale > 1.0
    return DecodedImage(detection=detection, scale=scale, width=width, height=height, format=fmt,
                        captured_at=read_exif_capture_time(im), _source=data if downscaled else None,
                        _orientation=orientation, _full=None if downscaled else detection, _full_image=full_image,
                        # pillow-heif turns HEIC pixels upright itself and keeps the tag it honoured here
                        _turned_on_decode=im.info.get("original_orientation") not in (None, 1))


def sniff_format(head: bytes) -> str | None:
    """The image format named by the magic bytes at the start of a file (one of SUPPORTED_FORMATS), or None.

    Give at least the first 32 bytes; the file name is never consulted.
    """
    head = bytes(head[:32])
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS and b"avif" not in head[16:32]:  # AVIF: mif1 + avif
        return "HEIF"
    # "BM" alone is too weak (plain text can start with it): also require a known DIB header size.
    if head[:2] == b"BM" and len(head) >= 18 and struct.unpack_from("<I", head, 14)[0] in _BMP_DIB_HEADER_SIZES:
        return "BMP"
    return None


def read_exif_capture_time(img: Image.Image) -> datetime | None:
    """EXIF DateTimeOriginal (plus SubSecTimeOriginal) as a naive datetime, or None if absent or invalid.

    EXIF records camera wall-clock time without a zone, so it is returned as given, not converted.
    On a not-yet-loaded PNG this decodes the pixels, as Pillow looks for an eXIf chunk after the image data.
    """
    try:
        exif = img.getexif()
        sub_ifd = exif.get_ifd(_EXIF_IFD)
        # Some writers put the tag in IFD0 instead of the Exif sub-IFD.
        value = sub_ifd.get(_DATETIME_ORIGINAL) or exif.get(_DATETIME_ORIGINAL)
        subsec = sub_ifd.get(_SUBSEC_ORIGINAL)
    except _PIL_ERRORS:
        return None  # a damaged EXIF block must not sink an otherwise good photo
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    match = _EXIF_DATETIME.match(value) if isinstance(value, str) else None
    if match is None:
        return None
    try:
        when = datetime(*map(int, match.groups()))
    except ValueError:
        return None  # "0000:00:00 00:00:00" placeholders, impossible dates
    digits = re.match(r"\s*(\d{1,6})", subsec) if isinstance(subsec, str) else None
    return when.replace(microsecond=int(digits.group(1).ljust(6, "0"))) if digits else when


def _read_source(source: str | os.PathLike | bytes, max_bytes: int) -> bytes:
    """The encoded bytes of `source`, refusing anything over max_bytes before reading it."""
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
    elif isinstance(source, str | os.PathLike):
        try:
            info = os.stat(source)
            if stat.S_ISDIR(info.st_mode):
                raise ImageError("is a directory, not an image file")
            if not stat.S_ISREG(info.st_mode):
                raise ImageError("not a regular file")  # FIFOs and devices could block or never end
            _check_bytes(info.st_size, max_bytes)
            with open(source, "rb") as fh:
                data = fh.read(max_bytes + 1)  # one byte over: the file may have grown since stat()
        except FileNotFoundError as e:
            raise ImageError("file not found") from e
        except PermissionError as e:
            raise ImageError("permission denied") from e
        except OSError as e:
            raise ImageError(f"cannot read file ({e.strerror or e})") from e
        except ValueError as e:  # e.g. a NUL byte in the path
            raise ImageError(f"invalid path ({e})") from e
    else:
        raise TypeError(f"decode_image() needs a path or bytes, not {type(source).__name__}")
    _check_bytes(len(data), max_bytes)
    return data


def _check_bytes(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise ImageTooLargeError(f"file is {size:,} bytes, over the {max_bytes:,}-byte limit")


def _describe_non_image(head: bytes) -> str:
    """A short human reason for bytes that are not a supported image."""
    if head[4:8] == b"ftyp":  # ISO media: HEIC/AVIF photos or video
        brand = head[8:12]
        if brand in (b"avif", b"avis") or b"avif" in head[16:32]:  # major brand, or mif1 + compatible avif
            return "unsupported image format (AVIF)"
        return "unsupported image format (HEIC/HEIF)" if brand in _HEIF_BRANDS else "not an image (looks like video)"
    lower = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    for prefix, reason in _OTHER_FILES:
        if lower.startswith(prefix):
            return reason
    if b"<svg" in lower:
        return "unsupported image format (SVG)"
    text = head.decode("utf-8", "replace")
    if sum(ch.isprintable() or ch in "\t\r\n\f" for ch in text) >= 0.95 * len(text):
        return "not an image (looks like text)"
    return "not an image (unrecognised binary data)"


def _open(data: bytes, fmt: str) -> Image.Image:
    """Parse the header of `data` with the plugin for the sniffed `fmt`; no pixels are decoded."""
    if fmt not in _PLUGINS:
        raise ImageError(f"unsupported image format ({fmt}): install pillow-heif to read HEIC/HEIF photos")
    if fmt == "WEBP" and not WebPImagePlugin.SUPPORTED:
        raise ImageError("unsupported image format (WEBP): this Pillow was built without WebP")
    with _pil_errors(fmt, data):
        return _PLUGINS[fmt](io.BytesIO(data), "")


@contextmanager
def _pil_errors(fmt: str, data: bytes) -> Iterator[None]:
    """Turn what Pillow raises on a damaged or hostile file (`data`) into an ImageError with a short reason."""
    try:
        yield
    except Image.DecompressionBombError as e:
        # Some plugins check Pillow's global limit themselves while parsing (GIF frame extents, TIFF tiles).
        raise ImageTooLargeError(f"{fmt} image too large ({e})") from e
    except _PIL_ERRORS as e:
        message = str(e)
        # Pillow words running out of data in many ways; a missing end marker settles the rest.
        lower = message.lower()
        if (isinstance(e, EOFError | struct.error) or "truncated" in lower or "end of file" in lower
                or _lacks_end(data, fmt)):
            raise ImageError(f"truncated {fmt}") from e
        raise ImageError(f"corrupt {fmt} ({message[:100] or type(e).__name__})") from e


def _lacks_end(data: bytes, fmt: str) -> bool:
    """Whether `data` stops before the end its format declares (only used to word an error already raised)."""
    if fmt == "JPEG":
        return not data.rstrip(b"\0").endswith(b"\xff\xd9")  # EOI marker
    if fmt == "GIF":
        return not data.rstrip(b"\0").endswith(b";")  # trailer
    if fmt == "PNG":
        return b"IEND" not in data[-16:]
    if fmt == "WEBP":
        return len(data) < 8 + int.from_bytes(data[4:8], "little")  # RIFF chunk size
    if fmt == "BMP":
        return len(data) < int.from_bytes(data[2:6], "little")  # file size field
    return False


def _read_orientation(im: Image.Image) -> int:
    """EXIF orientation 1-8; 1 when absent, invalid or unreadable."""
    try:
        value = im.getexif().get(_ORIENTATION, 1)
    except _PIL_ERRORS:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _upright(im: Image.Image, orientation: int) -> Image.Image:
    method = _UPRIGHT.get(orientation)
    return im if method is None else im.transpose(method)


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode as 8-bit RGB; transparency is composited on white, as a viewer shows it on a page."""
    if im.mode == "RGB" and "transparency" not in im.info:
        return im
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        # Pillow's own convert() clips these to 0..255 instead of rescaling (a 16-bit PNG would turn white).
        return Image.fromarray(_grey_to_uint8(np.asarray(im), im.mode)).convert("RGB")
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        rgba = im.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return im.convert("RGB")  # L, 1, P, CMYK (Adobe inversion handled by the JPEG decoder), YCbCr, ...


def _grey_to_uint8(grey: np.ndarray, mode: str) -> np.ndarray:
    """16-bit, 32-bit integer or float grey levels as uint8 (HxW).

    I;16 is scaled from 0..65535. I and F do not declare a range, so take the first of 0..1 (F only),
    0..255, 0..65535 that holds every value, else stretch min..max to 0..255.
    """
    values = np.nan_to_num(grey.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(values.min()), float(values.max())
    tops = (65535.0,) if mode.startswith("I;16") else ((1.0,) if mode == "F" else ()) + (255.0, 65535.0)
    top = next((t for t in tops if lo >= 0.0 and hi <= t), None)
    lo, top = (lo, hi) if top is None else (0.0, top)
    values = (values - lo) * np.float32(255.0 / max(top - lo, 1e-12)) + np.float32(0.5)
    return np.clip(values, 0, 255).astype(np.uint8)


def _to_array(im: Image.Image) -> np.ndarray:
    """HxWx3 uint8, C-contiguous and writable (np.asarray on a Pillow image would give a read-only view)."""
    return np.array(im, dtype=np.uint8)
