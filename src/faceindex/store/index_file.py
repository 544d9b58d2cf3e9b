"""On-disk format of the vector index: one self-checking file, written atomically.

Layout (little-endian)::

    b"FIVX\\0\\0\\0\\1" | u64 meta_len | meta JSON | labels int64[rows] | FAISS index bytes
    | u64 payload_len | u32 crc32(meta + payload) | b"FIVXEND\\0"

The trailer makes truncation and bit rot detectable before the index is trusted; CRC32 because
the threat is accidental damage (a crash, a bad disk), not tampering, and it runs at GB/s.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import faiss
import numpy as np

from faceindex.errors import InvalidInputError, StoreError

FORMAT = 1
_MAGIC = b"FIVX\x00\x00\x00\x01"
_END = b"FIVXEND\x00"
_META_LEN = struct.Struct("<Q")
_TRAILER = struct.Struct("<QI8s")
_MAX_META = 1 << 20  # meta is a few hundred bytes; a larger length means a damaged header


def temp_path(path: Path) -> Path:
    """Where ``write`` stages ``path``: hidden, same directory (so ``os.replace`` is atomic)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write(path: Path, meta: dict, labels: np.ndarray, index: faiss.Index) -> None:
    """Write atomically: temp file, fsync, ``os.replace``, fsync of the directory; StoreError on I/O failure.

    Temp files left by earlier crashed saves are deleted first: they may still hold faceprints
    erased since. The FAISS index is streamed (no second in-memory copy of ~0.8 GB per 1 M faces).
    """
    try:
        meta_bytes = json.dumps({"format": FORMAT, "rows": len(labels)} | meta, sort_keys=True).encode()
    except (TypeError, ValueError) as e:
        raise InvalidInputError(f"index metadata (watermark) must be JSON-serialisable: {e}") from e
    tmp = temp_path(path)
    try:
        for stale in path.parent.glob(f".{path.name}.tmp-*"):
            stale.unlink(missing_ok=True)
        with open(tmp, "wb") as f:
            f.write(_MAGIC + _META_LEN.pack(len(meta_bytes)) + meta_bytes)
            out = _Crc(f, zlib.crc32(meta_bytes))
            out.write(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
            writer = faiss.PyCallbackIOWriter(out.write)
            faiss.write_index(index, writer)
            del writer  # its destructor flushes the last buffered block into `out`
            f.write(_TRAILER.pack(out.n, out.crc, _END))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # makes the rename itself durable
        finally:
            os.close(dir_fd)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"could not write vector index {path}: {e}") from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read(path: Path) -> tuple[dict, np.ndarray, faiss.Index]:
    """Read and verify a file written by ``write``: (meta, labels, index); StoreError if unusable."""
    try:
        with open(path, "rb") as f:
            return _read(f, path)
    except StoreError:
        raise
    except (OSError, RuntimeError, ValueError, KeyError, TypeError, AttributeError, struct.error) as e:
        raise StoreError(f"vector index {path} is unreadable ({type(e).__name__}: {e}); rebuild it") from e


def _read(f: BinaryIO, path: Path) -> tuple[dict, np.ndarray, faiss.Index]:
    size = os.fstat(f.fileno()).st_size
    head = f.read(len(_MAGIC) + _META_LEN.size)
    if len(head) < len(_MAGIC) + _META_LEN.size or not head.startswith(_MAGIC):
        raise StoreError(f"{path} is not a faceindex vector index (bad header)")
    (meta_len,) = _META_LEN.unpack(head[len(_MAGIC) :])
    if meta_len > min(size, _MAX_META):
        raise StoreError(f"{path} is corrupt (meta length {meta_len})")
    meta_bytes = f.read(meta_len)
    meta = json.loads(meta_bytes)
    if meta.get("format") != FORMAT:
        raise StoreError(f"{path} has unknown format {meta.get('format')!r}")
    payload_start, payload_end = f.tell(), size - _TRAILER.size
    if payload_end < payload_start:
        raise StoreError(f"{path} is truncated")
    f.seek(payload_end)
    n_bytes, crc, end = _TRAILER.unpack(f.read(_TRAILER.size))
    if end != _END or payload_start + n_bytes != payload_end:
        raise StoreError(f"{path} is truncated or corrupt (trailer)")
    f.seek(payload_start)
    src = _Crc(f, zlib.crc32(meta_bytes), limit=n_bytes)
    labels = np.frombuffer(src.read(8 * meta["rows"]), dtype=np.int64).copy()
    if len(labels) != meta["rows"]:
        raise StoreError(f"{path} is truncated (labels)")
    index = faiss.read_index(faiss.PyCallbackIOReader(src.read))
    if src.n != n_bytes or src.crc != crc:
        raise StoreError(f"{path} is corrupt (checksum mismatch)")
    if index.ntotal != len(labels):
        raise StoreError(f"{path} is inconsistent ({index.ntotal} vectors for {len(labels)} labels)")
    return meta, labels, index


class _Crc:
    """Wraps a file: counts bytes and keeps a running CRC32 of what is written or read.

    Reads are bounded to ``limit`` bytes so FAISS cannot read into the trailer.
    """

    def __init__(self, f: BinaryIO, crc: int, *, limit: int | None = None):
        self.f, self.crc, self.n, self.limit = f, crc, 0, limit

    def write(self, data: bytes) -> None:
        self.f.write(data)
        self.crc = zlib.crc32(data, self.crc)
        self.n += len(data)

    def read(self, size: int) -> bytes:
        if self.limit is not None:
            size = max(0, min(size, self.limit - self.n))
        data = self.f.read(size)
        self.crc = zlib.crc32(data, self.crc)
        self.n += len(data)
        return data
