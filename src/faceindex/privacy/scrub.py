"""Residue scan: find erased faceprints' bytes in any file of a store (the proof that erasure is complete)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

_CHUNK = 64 * 2**20  # files are read in 64 MiB windows


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
