"""Scrubbing after erasure: WAL checkpoint, VACUUM, derived files, and the residue scan that proves it."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from faceindex.errors import StoreError
from faceindex.privacy.context import PrivacyContext
from faceindex.store.face_store import CATALOG_FILE
from faceindex.store.sql_dialect import OperationalError

log = logging.getLogger(__name__)

DERIVED_DIRS = ("crops", "thumbs")
"""Folders of the store where derived images may live, named `face-<id>.<ext>` or `image-<id>.<ext>`.
faceindex itself writes none (the service re-encodes thumbnails per request); erasure still sweeps them
so that anything following the convention never outlives the face or image it shows."""

LOCK_FILE = "erasure.lock"
_CHUNK = 64 * 2**20  # the residue scan reads files in 64 MiB windows


class ErasureLock:
    """An exclusive advisory lock on `<store>/erasure.lock` (flock: released by the OS when its process dies)."""

    def __init__(self, root: Path, *, wait: bool):
        self.path, self.wait, self.held, self._fd = Path(root) / LOCK_FILE, wait, False, -1

    def __enter__(self) -> ErasureLock:
        try:
            import fcntl
        except ImportError:  # no flock (Windows): one process per store is then the operator's responsibility
            self.held = True
            return self
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | (0 if self.wait else fcntl.LOCK_NB))
            self.held = True
        except BlockingIOError:
            self.held = False
        return self

    def __exit__(self, *exc) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing releases the flock


class Scrubber:
    """Makes an erasure complete on disk once its catalog rows are gone."""

    def __init__(self, ctx: PrivacyContext):
        self.store = ctx.store
        self.catalog = ctx.catalog

    def delete_derived(self, face_ids: list[int], image_ids: list[int]) -> int:
        """Delete files of DERIVED_DIRS showing any of these faces or images; returns files deleted."""
        doomed = {f"face-{i}" for i in face_ids} | {f"image-{i}" for i in image_ids}
        deleted = 0
        for name in DERIVED_DIRS:
            folder = self.store.root / name
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                if path.is_file() and path.name.split(".", 1)[0] in doomed:
                    path.unlink()
                    deleted += 1
        return deleted

    def checkpoint(self, tries: int = 20) -> bool:
        """Copy the WAL into the database and truncate it to 0 bytes; False if a reader kept it busy."""
        return self.catalog.checkpoint(tries)

    def not_held_elsewhere(self, vectors: list[bytes]) -> list[bytes]:
        """Drop faceprints that a face still in the catalog holds byte for byte (the same photo kept in a
        collection the erasure did not cover): those bytes are rightly still in the store's files."""
        wanted = set(vectors)
        held: set[bytes] = set()
        for _, block in self.catalog.iter_embeddings():
            held.update(b for b in (row.tobytes() for row in block) if b in wanted)
        return [v for v in vectors if v not in held]

    def vacuum(self) -> bool:
        """Rewrite the catalog without free pages, then checkpoint; False if another connection blocked it.
        On PostgreSQL the checkpoint is itself the VACUUM of the store's database."""
        if not self.catalog.capabilities.proves_erasure_bytes:
            return self.checkpoint()
        try:
            self.catalog.conn.execute("VACUUM")
        except OperationalError as exc:
            log.warning("VACUUM failed: %s", exc)
            return False
        return self.checkpoint()

    def scrub(self, vectors: list[bytes], *, vacuum: bool) -> tuple[bool, bool, int]:
        """Leave no erased faceprint in any file of the store. Returns (complete, verified, shared).

        `shared` counts erased faceprints that faces outside the erasure still hold byte for byte (the
        same photo kept in another collection): they rightly stay, and are not searched for.

        secure_delete zeroes deleted rows in the database file, but the WAL keeps the old page images
        until a checkpoint, so the WAL is checkpointed and truncated. Then the store's files are scanned
        for the erased faceprints; a hit in the catalog (a page freed when secure_delete was off, e.g. by
        another tool) triggers VACUUM, a hit in the index a rebuild. After a crash the faceprints are no
        longer known, so a resumed erasure always VACUUMs (cost: one copy of the catalog).

        `verified` is True only when both the catalog and the vector backend can prove erasure byte by byte
        (the embedded SQLite file and FAISS files): never with the catalog on PostgreSQL, whose pages, WAL and
        backups faceindex cannot read (the erasure result carries the catalog's residue note).
        On Milvus the store's files (a Milvus Lite directory inside the store included) are scanned
        all the same, but a server's segments lie elsewhere and Lite's are compressed, where a scan that finds
        nothing proves nothing: never reported verified (the erasure result carries the backend's residue note).
        """
        caps = self.store.vector_capabilities
        proves = caps.proves_erasure_bytes and self.catalog.capabilities.proves_erasure_bytes
        if not self.checkpoint() or (vacuum and not self.vacuum()):
            log.warning("catalog busy (another reader); the erasure's scrub finishes at the next open")
            return False, False, 0
        erased = len(vectors)
        vectors = self.not_held_elsewhere(vectors)
        shared = erased - len(vectors)
        if not vectors:  # nothing left to look for: every erased faceprint is held by a face kept on purpose
            return True, (bool(erased) or vacuum) and proves, shared
        residue = find_residue(self.store.root, vectors)
        if any(name.startswith(CATALOG_FILE) for name in residue) and not self.vacuum():
            return False, False, shared
        if any(not name.startswith(CATALOG_FILE) for name in residue):
            self.store.rebuild_index()
        if residue:
            residue = find_residue(self.store.root, vectors)
            if residue:
                raise StoreError(f"erased faceprints still found in {sorted(residue)}")
        return True, proves, shared




def find_residue(root: Path, needles: list[bytes]) -> dict[str, int]:
    """How many of the byte strings `needles` occur in each file under `root` (relative name -> count).

    Each needle is looked up by its first 8 bytes in every file (vectorised over the 8 byte alignments),
    then confirmed in full; files are read in 64 MiB windows, so memory stays flat on large stores.
    """
    needles = [n for n in needles if len(n) >= 8]
    if not needles:
        return {}
    by_key: dict[bytes, list[bytes]] = {}
    for n in needles:
        by_key.setdefault(n[:8], []).append(n)
    keys = np.frombuffer(b"".join(by_key), dtype=np.uint64)
    overlap = max(len(n) for n in needles) - 1
    found: dict[str, int] = {}
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
        hits = 0
        with open(path, "rb") as handle:
            tail, block = b"", handle.read(_CHUNK)
            while block:
                following = handle.read(_CHUNK)
                data = tail + block
                # Matches starting in the last `overlap` bytes may not fit yet: count them with the next window.
                limit = len(data) - overlap if following else len(data)
                hits += _count_in(data, by_key, keys, limit)
                tail, block = data[limit:], following
        if hits:
            found[str(path.relative_to(root))] = hits
    return found


def _count_in(data: bytes, by_key: dict[bytes, list[bytes]], keys: np.ndarray, limit: int) -> int:
    """Occurrences of the needles in `data` that start before offset `limit`."""
    raw = np.frombuffer(data, dtype=np.uint8)
    hits = 0
    for shift in range(8):
        words = (len(raw) - shift) // 8
        if words <= 0:
            break
        view = raw[shift:shift + words * 8].view(np.uint64)
        for word in np.nonzero(np.isin(view, keys))[0]:
            pos = shift + 8 * int(word)
            if pos < limit:
                hits += sum(data[pos:pos + len(n)] == n for n in by_key[data[pos:pos + 8]])
    return hits
