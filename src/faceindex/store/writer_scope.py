"""What both catalog connection layers share: one writer used only under the store's write lock, nested transactions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class WriterScope:
    """`transaction()` and `write_lock()` over a subclass's `lock`, `_writer` and `open_for_writing()`.

    A subclass names its BEGIN statement (`BEGIN_SQL`: SQLite takes the database lock at once with BEGIN
    IMMEDIATE; PostgreSQL's row locks need only BEGIN) and may override `_rollback` (PostgreSQL skips it on a
    connection the server already closed). `depth` counts the nesting of the thread holding the write lock: an
    inner transaction joins the outer one, so only the outermost commits or rolls back.
    """

    BEGIN_SQL = "BEGIN"
    depth = 0
    _writer: Any

    def open_for_writing(self) -> None:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def _rollback(self) -> None:
        self._writer.execute("ROLLBACK")

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """BEGIN … COMMIT on the writer, under the write lock; nested uses join the outer one."""
        if self.lock.held_by_me and self.depth:
            self.depth += 1
            try:
                yield self._writer
            finally:
                self.depth -= 1
            return
        self.open_for_writing()
        with self.lock:
            self._writer.execute(self.BEGIN_SQL)
            self.depth = 1
            try:
                yield self._writer
            except BaseException:
                self._rollback()
                raise
            else:
                self._writer.execute("COMMIT")
            finally:
                self.depth = 0

    @contextmanager
    def write_lock(self) -> Iterator[Any]:
        """Hold the write lock without a transaction (e.g. while the index file is rewritten)."""
        self.open_for_writing()
        with self.lock:
            yield self._writer
