"""What both catalog connection layers share: one writer under the store's write lock, nested transactions, the
schema check a reader makes once."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)


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

    def pending_now(self) -> list[str]:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def _refuse_upgrade(self, missing: list[str]) -> None:
        """Raise when this store cannot apply the `missing` migrations a read needs (a read-only copy)."""

    def _check_schema(self) -> None:
        """Once per process: migrations a reader needs, applied through the writer (or refused, see above)."""
        with self._guard:
            if self._checked:
                return
            missing = self.pending_now()
        if missing:
            self._refuse_upgrade(missing)
            log.info("upgrading the store schema at %s: %s", self.location, ", ".join(missing))
            self.open_for_writing()
        self._checked = True

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
