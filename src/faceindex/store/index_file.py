"""On-disk format of the vector index: one self-checking file, written atomically.

Layout (little-endian)::

    b"FIVX\\0\\0\\0\\1" | u64 meta_len | meta JSON | labels int64[rows] | FAISS index bytes
    | u64 payload_len | u32 crc32(meta + payload) | b"FIVXEND\\0"

The trailer makes truncation and bit rot detectable before the index is trusted; CRC32 because
the threat is accidental damage (a crash, a bad disk), not tampering, and it runs at GB/s.

Layout "hnsw-sq8-mmap" adds a second file, ``<index file>.vectors``: raw float32 rows (no header),
memory-mapped while in use (VectorFile). The index file's meta records ``vectors: {file, rows,
crc32}``; the vectors file is fsynced (and renamed into place when it is new) before the index file
is, and load verifies the recorded CRC over the recorded rows, so a missing, short, corrupt or
out-of-step vectors file is a StoreError (the store rebuilds from the catalog).
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
import weakref
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


def _private(path: str, flags: int) -> int:
    """`open` opener: new files get mode 0600 whatever the umask (they hold faceprints)."""
    fd = os.open(path, flags, 0o600)
    os.fchmod(fd, 0o600)  # a stale file of the same name may have been made with a wider mode
    return fd


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
        with open(tmp, "wb", opener=_private) as f:
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
    # An IVF index deletes erased rows from its lists; the others keep them as dead (label -1) rows.
    expected = int((labels >= 0).sum()) if isinstance(index, faiss.IndexIVF) else len(labels)
    if index.ntotal != expected:
        raise StoreError(f"{path} is inconsistent ({index.ntotal} vectors for {expected} labels)")
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


# -- memory-mapped float32 vectors (layouts "hnsw-sq8-mmap", "ivf-sq8-mmap") ------------------------------------------
VECTORS_SUFFIX = ".vectors"
_WORK_PREFIX = ".faceindex-vectors.tmp-"
_CRC_CHUNK_ROWS = 1 << 17  # 64 MiB of 128-d float32 per CRC step: bounded page-ins, full speed


def vectors_path(index_path: Path) -> Path:
    """Where the float32 vectors of the index saved at ``index_path`` live: ``<index>.vectors``."""
    return index_path.with_name(index_path.name + VECTORS_SUFFIX)


class VectorFile:
    """Raw float32 rows ``(rows, dim)`` in a memory-mapped file; no header (the index file holds one).

    The file is append-only in normal use: ``rows`` is the valid length, the file may be longer
    (capacity grows geometrically, the tail is sparse zeros). Its pages are page cache, not process
    memory: the kernel reads them in on access and may evict them under pressure.

    Crash safety comes from the index file: ``save`` records (rows, CRC32 of those rows) in the
    atomically-renamed index header after this file is flushed and fsynced. Rows appended later
    lie beyond the recorded length and do not disturb the check; a row zeroed by an erasure after
    the last save makes the CRC mismatch, so a crash between an erasure and the next save yields
    StoreError at load and a rebuild from the catalog, never a silently wrong index.

    A "work" file (``temp=True``) is an unsaved index's file in its working directory; ``save``
    renames it beside the index file (same directory) or copies it (write-new, fsync, rename).
    """

    def __init__(self, path: Path, dim: int, rows: int, *, temp: bool):
        self.path, self.dim, self.rows, self.temp = Path(path), dim, rows, temp
        self._map: np.memmap | None = None
        self._capacity = 0
        # A work file is unlinked when its index is garbage-collected unsaved (it holds faceprints).
        self._finalizer = weakref.finalize(self, Path.unlink, self.path, missing_ok=True) if temp else None
        self._remap()

    @property
    def row_bytes(self) -> int:
        return 4 * self.dim

    @classmethod
    def create(cls, directory: Path, dim: int) -> VectorFile:
        """A new, empty work file in ``directory`` (hidden name with this process's pid)."""
        directory = Path(directory)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f"{_WORK_PREFIX}{os.getpid()}-", dir=directory)
            os.close(fd)
        except OSError as e:
            raise StoreError(f"cannot create a vectors file in {directory}: {e}") from e
        return cls(Path(name), dim, 0, temp=True)

    @classmethod
    def open(cls, path: Path, dim: int, rows: int, crc: int) -> VectorFile:
        """Open the saved vectors file and verify its first ``rows`` rows against ``crc``.

        StoreError when missing, too short or corrupt. Reads the whole valid length once (page
        cache): ~0.3 s per 1 M faces when cached, disk speed when not.
        """
        try:
            size = os.stat(path).st_size
        except OSError as e:
            raise StoreError(f"vectors file {path} is unusable ({e}); rebuild the index") from e
        if rows < 0 or size < rows * 4 * dim:
            raise StoreError(f"vectors file {path} is truncated ({size} bytes for {rows} rows)")
        vf = cls(path, dim, rows, temp=False)
        if vf.crc() != crc:
            vf.close()
            raise StoreError(f"vectors file {path} is corrupt (checksum mismatch); rebuild the index")
        return vf

    def _remap(self) -> None:
        self._map = None  # drop the old mapping first (numpy unmaps when the last view goes)
        try:
            cap = os.stat(self.path).st_size // self.row_bytes
            # A read-only copy of a store is mapped copy-on-write: searchable, never written back.
            mode = "r+" if os.access(self.path, os.W_OK) else "c"
            self._map = np.memmap(self.path, dtype=np.float32, mode=mode, shape=(cap, self.dim)) if cap else None
        except (OSError, ValueError) as e:
            raise StoreError(f"cannot map vectors file {self.path}: {e}") from e
        self._capacity = cap

    def view(self) -> np.ndarray:
        """The valid rows as a writable (rows, dim) float32 memmap view; invalid after ``append``."""
        if self._map is None or self.rows == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._map[: self.rows]

    def append(self, x: np.ndarray) -> None:
        """Append float32 rows (not yet durable: ``sync`` does that)."""
        need = self.rows + len(x)
        if need > self._capacity:
            new_cap = max(need, 2 * self._capacity, 1024)
            try:
                os.truncate(self.path, new_cap * self.row_bytes)  # sparse zeros until written
            except OSError as e:
                raise StoreError(f"cannot grow vectors file {self.path}: {e}") from e
            self._remap()
        self._map[self.rows : need] = x
        self.rows = need

    def zero(self, rows: np.ndarray) -> None:
        """Overwrite rows with zeros and write them back to the file now (msync)."""
        if len(rows):
            self._map[rows] = 0.0
            self._map.flush()

    def sync(self) -> None:
        """Flush dirty pages (msync) and fsync the file, so its data and size are durable."""
        if self._map is not None:
            self._map.flush()
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def crc(self) -> int:
        """CRC32 of the valid rows, computed in 64 MiB steps."""
        crc, v = 0, self.view()
        for lo in range(0, len(v), _CRC_CHUNK_ROWS):
            crc = zlib.crc32(memoryview(np.ascontiguousarray(v[lo : lo + _CRC_CHUNK_ROWS])).cast("B"), crc)
        return crc

    def persist_as(self, target: Path) -> VectorFile:
        """Make the valid rows durable at ``target``; returns the file to keep using (may be ``self``).

        Same file: fsync. A work file in the same directory: fsync + rename (the mapping survives).
        Otherwise: copy to a temp file beside ``target``, fsync, rename; a work file is then deleted.
        Stale staging and work files of dead processes in that directory are removed first (they
        may hold faceprints erased since). The caller fsyncs the directory afterwards.
        """
        target = Path(target)
        if self._capacity > self.rows:  # drop the growth slack: the saved file is exactly the valid rows
            self._map = None
            os.truncate(self.path, self.rows * self.row_bytes)
            self._remap()
        if self.path == target:
            self.sync()
            return self
        _remove_stale(target)
        if self.temp and self.path.parent.resolve() == target.parent.resolve():
            self.sync()
            os.replace(self.path, target)
            self._finalizer.detach()
            self.path, self.temp = target, False
            return self
        tmp = temp_path(target)
        try:
            with open(tmp, "wb", opener=_private) as f:
                v = self.view()
                for lo in range(0, len(v), _CRC_CHUNK_ROWS):
                    f.write(memoryview(np.ascontiguousarray(v[lo : lo + _CRC_CHUNK_ROWS])).cast("B"))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if self.temp:
            self.delete()
        return VectorFile(target, self.dim, self.rows, temp=False)

    def close(self) -> None:
        self._map = None

    def delete(self, *, wipe: bool = False) -> None:
        """Unmap and unlink (only work files are deleted by the index; saved ones are replaced).

        ``wipe``: overwrite the valid rows with zeros and flush first, so the freed disk blocks do not keep
        faceprints (an abandoned build may hold faces erased since); costs one write of the file."""
        if wipe and self._map is not None and self.rows:
            step = _CRC_CHUNK_ROWS
            for lo in range(0, self.rows, step):
                self._map[lo : lo + step] = 0.0
            self._map.flush()
        self.close()
        if self._finalizer is not None:
            self._finalizer.detach()
        self.path.unlink(missing_ok=True)


def _remove_stale(target: Path) -> None:
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        stale.unlink(missing_ok=True)
    for work in _dead_work_files(target.parent):
        work.unlink(missing_ok=True)


def _dead_work_files(directory: Path) -> list[Path]:
    """Work files in ``directory`` whose process is gone (killed mid-build, say)."""
    dead = []
    for work in Path(directory).glob(f"{_WORK_PREFIX}*"):
        try:
            pid = int(work.name[len(_WORK_PREFIX) :].split("-", 1)[0])
        except ValueError:
            continue
        if pid != os.getpid() and not _alive(pid):
            dead.append(work)
    return dead


def remove_dead_work_files(directory: Path) -> int:
    """Zero, then delete the vectors work files of dead processes in ``directory``; returns how many.

    A process killed mid-build leaves its work file: faceprints that may be erased later, outside any index the
    erasure rewrites. Zeroing first (one write of the file, fsynced) keeps them off the freed disk blocks too.
    """
    removed = 0
    for work in _dead_work_files(directory):
        try:
            with open(work, "r+b") as f:
                size = os.fstat(f.fileno()).st_size
                zeros = bytes(min(size, 1 << 24))
                for _ in range(0, size, len(zeros) or 1):
                    f.write(zeros[: size - f.tell()])
                f.flush()
                os.fsync(f.fileno())
            work.unlink()
            removed += 1
        except FileNotFoundError:
            continue  # another process removed it first
        except OSError as e:
            raise StoreError(f"cannot remove the stale vectors work file {work}: {e}") from e
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fsync_dir(directory: Path) -> None:
    """fsync a directory so renames and unlinks inside it are durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
