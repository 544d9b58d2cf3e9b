"""Helpers of the catalog's SQL: id lists in chunks below SQLite's variable limit, their placeholders, timestamps."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import TypeVar

T = TypeVar("T")


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


ID_CHUNK = 500
"""Ids per IN (...) list: far below SQLite's bound-parameter limit."""


def chunks(values: Iterable[T]) -> Iterator[list[T]]:
    """Values (ids, or text keys such as job ids) in lists of at most ID_CHUNK, in the order given."""
    values = list(values)
    return (values[start:start + ID_CHUNK] for start in range(0, len(values), ID_CHUNK))


def id_chunks(ids: Iterable[int]) -> Iterator[list[int]]:
    """Integer ids in lists of at most ID_CHUNK, in the order given."""
    return chunks(int(i) for i in ids)


def marks(chunk: list) -> str:
    """The `?, ?, ...` placeholders of an IN (...) list."""
    return ",".join("?" * len(chunk))
