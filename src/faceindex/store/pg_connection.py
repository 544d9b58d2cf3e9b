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
    copy_target,
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


COPY_MIN_ROWS = 16
"""From this many rows, `insert_returning_ids` sends them by COPY (two round trips whatever the count) rather
than as pipelined INSERTs (one round trip, but one statement executed per row on the server)."""


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
        self._types: dict[str, dict[str, str]] = {}

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
        """Insert many rows with one INSERT statement in SQLite's dialect; their generated ids, in row order.

        Few rows (< COPY_MIN_ROWS): the INSERTs are pipelined, one round trip in all, each returning its id.
        More, for a plain `INSERT INTO t (cols) VALUES (?, ...)`: the ids are drawn from the table's identity
        sequence first (one round trip, exactly as many as rows: no gaps, ascending as the server would have
        given them) and the rows then go by binary COPY with those ids (one stream): the server parses and
        plans nothing per row, which is what makes thousands of rows a second possible. Both run in the
        caller's transaction: a failure rolls back with it (ids drawn and not used are never reused)."""
        text, returns_id = self._translate(sql)
        if not returns_id:
            raise PgDatabaseError(f"no generated id to return: {sql[:80]}")
        rows = [tuple(r) for r in rows]
        if not rows:
            return []
        target = copy_target(sql) if len(rows) >= COPY_MIN_ROWS else None
        with self._errors():
            if target is not None:
                return self._copy_rows(*target, rows)
            ids: list[int] = []
            cur = self.raw.cursor()
            cur.executemany(text, rows, returning=True)
            while True:
                ids.append(int(cur.fetchone()[0]))
                if not cur.nextset():
                    break
            return ids

    def _copy_rows(self, table: str, columns: tuple[str, ...], rows: list[tuple]) -> list[int]:
        from psycopg import sql as pgsql

        types = self._column_types(table, ("id", *columns))
        cur = self.raw.cursor()
        cur.execute("SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
                    (table, len(rows)))
        ids = sorted(int(r[0]) for r in cur.fetchall())
        statement = pgsql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            pgsql.Identifier(table), pgsql.SQL(", ").join(pgsql.Identifier(c) for c in ("id", *columns)))
        with cur.copy(statement) as copy:
            copy.set_types(types)
            for row_id, row in zip(ids, rows, strict=True):
                copy.write_row((row_id, *row))
        return ids

    def _column_types(self, table: str, columns: tuple[str, ...]) -> list[str]:
        """The server's type names of a table's columns (binary COPY must name them), read once per table and
        again when a column is missing (a migration added it since)."""
        known = self._types.get(table, {})
        if any(c not in known for c in columns):
            known = {r[0]: r[1] for r in self.raw.execute(
                "SELECT column_name, udt_name FROM information_schema.columns WHERE table_schema = current_schema()"
                " AND table_name = %s", (table,)).fetchall()}
            self._types[table] = known
        missing = [c for c in columns if c not in known]
        if missing:
            raise PgDatabaseError(f"table {table} has no column {', '.join(missing)}")
        return [known[c] for c in columns]

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
