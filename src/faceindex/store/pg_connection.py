"""One PostgreSQL connection (psycopg 3) speaking the sqlite3 surface the catalog's callers use, and URL helpers.

`PgConnection` translates each statement (store.sql_dialect), gives cursors sqlite3's `lastrowid`, rows that
read like `sqlite3.Row`, and errors in sqlite3's classes; a lost connection is a StoreError naming the URL.
psycopg is imported on first use, so a plain install (no `cluster` extra) never needs it.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from faceindex.errors import StoreError
from faceindex.store.sql_dialect import (
    POSTGRESQL,
    PgDatabaseError,
    PgIntegrityError,
    PgOperationalError,
    row_class,
    translate,
)


class Owner(Protocol):
    """What a connection needs from the connections it belongs to."""

    location: str

    def shape(self) -> tuple: ...


def is_postgres_url(url: str | None) -> bool:
    return bool(url) and url.split("://", 1)[0].lower() in ("postgresql", "postgres")


def redact(url: str) -> str:
    """The URL without its password (in the authority or a `password=` parameter), for messages and logs."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        cred, host = netloc.rsplit("@", 1)
        netloc = (cred.split(":", 1)[0] + (":***" if ":" in cred else "")) + "@" + host
    query = urlencode([(k, "***" if k.lower() == "password" else v) for k, v in parse_qsl(parts.query)])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def psycopg_module():
    try:
        import psycopg
    except ImportError as exc:
        raise StoreError("catalog_url names a PostgreSQL database but psycopg is not installed: "
                         "pip install 'faceindex[cluster]'") from exc
    return psycopg


def reason(exc: Exception) -> str:
    text = str(exc).strip().replace("\n", " ")
    return re.sub(r"\s+", " ", text) or type(exc).__name__


class PgCursor:
    """A psycopg cursor with sqlite3's `lastrowid` (from the `RETURNING id` the translation added)."""

    def __init__(self, cursor, returns_id: bool):
        self._cur = cursor
        self.lastrowid = None
        if returns_id:
            ids = cursor.fetchall()
            self.lastrowid = ids[-1][0] if ids else None
            self._done = True
        else:
            self._done = cursor.description is None

    @property
    def rowcount(self) -> int:
        return self._cur.rowcount

    @property
    def description(self):
        return self._cur.description

    def fetchone(self):
        return None if self._done else self._cur.fetchone()

    def fetchall(self) -> list:
        return [] if self._done else self._cur.fetchall()

    def fetchmany(self, size: int = 1) -> list:
        return [] if self._done else self._cur.fetchmany(size)

    def __iter__(self):
        return iter(()) if self._done else iter(self._cur)


class PgConnection:
    """One psycopg connection speaking the sqlite3 surface the catalog's callers use: `execute`, `executemany`,
    `in_transaction`; rows are sql_dialect.Row; errors are sqlite3-compatible (IntegrityError ...)."""

    dialect = POSTGRESQL

    def __init__(self, raw, owner: Owner):
        self.raw, self._owner = raw, owner

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != psycopg_module().pq.TransactionStatus.IDLE

    def _translate(self, sql: str) -> tuple[str, bool]:
        try:
            return translate(sql, *self._owner.shape())
        except ValueError as exc:
            raise PgDatabaseError(str(exc)) from None

    def execute(self, sql: str, params=()) -> PgCursor:
        text, returns_id = self._translate(sql)
        with self._errors():
            cur = self.raw.cursor()
            cur.execute(text, tuple(params) if params is not None else ())
            return PgCursor(cur, returns_id)

    def executemany(self, sql: str, rows) -> PgCursor:
        text, _ = self._translate(sql)
        rows = [tuple(r) for r in rows]
        with self._errors():
            cur = self.raw.cursor()
            if rows:
                cur.executemany(text, rows)
            return PgCursor(cur, False)

    def insert_returning_ids(self, sql: str, rows: list[tuple]) -> list[int]:
        """Run one INSERT per row in a single pipelined round trip; the generated ids, in row order."""
        text, returns_id = self._translate(sql)
        if not returns_id:
            raise PgDatabaseError(f"no generated id to return: {sql[:80]}")
        ids: list[int] = []
        if not rows:
            return ids
        with self._errors():
            cur = self.raw.cursor()
            cur.executemany(text, [tuple(r) for r in rows], returning=True)
            while True:
                ids.append(int(cur.fetchone()[0]))
                if not cur.nextset():
                    break
        return ids

    def script(self, sql: str) -> None:
        """Run a PostgreSQL script as written (several statements, no parameters): migrations."""
        with self._errors():
            self.raw.execute(sql)

    def close(self) -> None:
        self.raw.close()

    @contextmanager
    def _errors(self):
        psycopg = psycopg_module()
        try:
            yield
        except psycopg.errors.IntegrityError as exc:
            raise PgIntegrityError(reason(exc)) from exc
        except psycopg.OperationalError as exc:
            if self.raw.broken or self.raw.closed:
                raise StoreError(f"PostgreSQL at {self._owner.location}: the connection was lost "
                                 f"({reason(exc)}); nothing after the last commit was written") from exc
            raise PgOperationalError(reason(exc)) from exc
        except psycopg.Error as exc:
            raise PgDatabaseError(reason(exc)) from exc



def configure(raw) -> None:
    """Rows as sql_dialect.Row, numeric (what sum() of integers gives) as int or float, bool bound as an
    integer (the catalog's flags are INTEGER columns, as in SQLite)."""
    from psycopg.adapt import Dumper
    from psycopg.types.numeric import NumericLoader

    class _Numeric(NumericLoader):
        def load(self, data):
            value = super().load(data)
            return int(value) if value == value.to_integral_value() else float(value)

    class _BoolAsInt(Dumper):
        oid = raw.adapters.types["int8"].oid

        def dump(self, obj):
            return b"1" if obj else b"0"

    raw.adapters.register_loader("numeric", _Numeric)
    raw.adapters.register_dumper(bool, _BoolAsInt)

    def rows(cursor):
        desc = cursor.description
        if desc is None:
            return tuple
        return row_class(tuple(c.name for c in desc))

    raw.row_factory = rows
