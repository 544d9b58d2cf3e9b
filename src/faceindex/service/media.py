"""Thumbnails and face crops, always re-encoded from decoded pixels.

The service never streams a stored file's bytes: it reads the file only if it is still the catalogued one
(`catalogued_bytes`), decodes it through the same guarded decoder as ingest (format sniffed, bomb limit)
and encodes fresh JPEG pixels. So a catalog path that now points at something else cannot leak that file,
and EXIF metadata (GPS position, camera serial) never leaves.
Nothing is cached on disk, so erasing an image leaves no thumbnail behind.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import stat
from collections.abc import Sequence

from PIL import Image, ImageFilter

from faceindex.config import Settings
from faceindex.errors import NotFoundError
from faceindex.pipeline.decode import decode_image
from faceindex.pipeline.types import Box
from faceindex.service.errors import PhotoChangedError
from faceindex.store.uris import uri_to_path


def open_unswapped(uri: str, what: str) -> int:
    """A read-only descriptor of the catalogued file at `uri` (the caller closes it), if it is still the file the
    catalogue recorded a path for: the path resolves to itself (no symlink on it), the last component is opened
    without following links, and it is a regular file. NotFoundError when it is gone, PhotoChangedError otherwise;
    `what` ("photo", "video") names it in the message. The content check (sha256) is the caller's."""
    path = uri_to_path(uri)  # a name that is not UTF-8 is stored as fsbytes:…
    try:
        if os.path.realpath(path) != str(path):
            raise PhotoChangedError(f"the {what}'s path now leads elsewhere (a symlink); not shown")
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError as exc:
        raise NotFoundError(f"the {what} file is no longer on disk") from exc
    except OSError as exc:  # ELOOP: the file itself was replaced by a symlink
        raise PhotoChangedError(f"the {what} file was replaced since it was indexed; not shown") from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise PhotoChangedError(f"the {what} path is no longer a regular file; not shown")
    return fd


def catalogued_bytes(uri: str, sha256: str | None, max_bytes: int) -> bytes:
    """The bytes of a catalogued photo, only if the file is still the one indexed; else 404 or 410.

    A file swapped after ingest (a symlink put in its place, a folder on its path replaced by a link,
    other content written over it) must not show another photo under this record: the path must resolve
    to itself (no symlink anywhere on it), the final component is opened without following links, and the
    bytes read must hash to the sha256 recorded at ingest. Reading once and decoding those same bytes
    leaves no window between the check and the use.
    """
    with os.fdopen(open_unswapped(uri, "photo"), "rb") as handle:
        data = handle.read(max_bytes + 1)
    if sha256 is None or hashlib.sha256(data).hexdigest() != sha256:
        raise PhotoChangedError("the photo file changed since it was indexed; not shown (re-ingest it)")
    return data


def _encode(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.convert("RGB").save(out, "JPEG", quality=85, optimize=True)
    return out.getvalue()


def _obscure(img: Image.Image, box: tuple[int, int, int, int]) -> None:
    """Pixelate then blur a region in place: other people's faces in a subject-access view."""
    left, top, right, bottom = box
    if right - left < 2 or bottom - top < 2:
        return
    region = img.crop(box)
    small = region.resize((6, 6), Image.Resampling.BILINEAR)
    region = small.resize(region.size, Image.Resampling.NEAREST).filter(ImageFilter.GaussianBlur(3))
    img.paste(region, box)


def thumbnail(data: bytes, settings: Settings, max_side: int, obscure: Sequence[Box] = ()) -> bytes:
    """An upright JPEG of the photo, longest side at most `max_side`; boxes in `obscure` are made unrecognisable."""
    decoded = decode_image(data, max_pixels=settings.max_pixels, max_bytes=settings.max_bytes,
                           detect_max_side=max_side)
    img = Image.fromarray(decoded.detection)
    for box in obscure:
        grow = 0.15 * (box[2] - box[0])  # a margin, so hair and ears do not identify the person either
        scaled = (math.floor((box[0] - grow) / decoded.scale), math.floor((box[1] - grow) / decoded.scale),
                  math.ceil((box[2] + grow) / decoded.scale), math.ceil((box[3] + grow) / decoded.scale))
        _obscure(img, (max(0, scaled[0]), max(0, scaled[1]), min(img.width, scaled[2]), min(img.height, scaled[3])))
    return _encode(img)


def face_crop(data: bytes, settings: Settings, box: Box, width: int, height: int, out_side: int = 256,
              margin: float = 0.3) -> bytes:
    """A JPEG of one face with `margin` (fraction of the box) around it, about `out_side` px on its long side.

    The photo is decoded just large enough for that (JPEG DCT scaling does most of the work), not at full size.
    """
    left, top, right, bottom = box
    pad_x, pad_y = margin * (right - left), margin * (bottom - top)
    region = (max(0, left - pad_x), max(0, top - pad_y), min(width, right + pad_x), min(height, bottom + pad_y))
    region_side = max(region[2] - region[0], region[3] - region[1], 1)
    shrink = max(1.0, region_side / out_side)
    detect_side = max(16, math.ceil(max(width, height) / shrink))
    decoded = decode_image(data, max_pixels=settings.max_pixels, max_bytes=settings.max_bytes,
                           detect_max_side=detect_side)
    img = Image.fromarray(decoded.detection)
    crop = img.crop(tuple(round(v / decoded.scale) for v in region))
    if max(crop.size) > out_side:
        crop.thumbnail((out_side, out_side), Image.Resampling.LANCZOS)
    return _encode(crop)
