"""Helpers of the catalog's SQL: id lists in chunks below SQLite's variable limit, their placeholders, timestamps."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")



ID_CHUNK = 500
"""Ids per IN (...) list: far below SQLite's bound-parameter limit."""


def id_chunks(ids: Iterable[int]) -> Iterator[list[int]]:
    """Ids in lists of at most ID_CHUNK, in the order given."""
    ids = [int(i) for i in ids]
    return (ids[start:start + ID_CHUNK] for start in range(0, len(ids), ID_CHUNK))


def marks(chunk: list[int]) -> str:
    """The `?, ?, ...` placeholders of an IN (...) list."""
    return ",".join("?" * len(chunk))
