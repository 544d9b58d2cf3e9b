"""The catalog's SQL on two databases: SQLite's dialect as written, translated mechanically for PostgreSQL.

Why translate rather than abstract: every layer that owns tables (store, privacy, people, service) writes its
own SQL through `catalog.conn`, in the portable subset of SQLite's dialect that PostgreSQL also speaks
(joins, sub-selects, `ON CONFLICT … DO UPDATE`, partial indexes). What differs is small and mechanical, so
one translator here keeps every query in one place and SQLite's behaviour and files exactly as they were:

- statements (`translate`): `?` placeholders become `%s` (a literal `%` becomes `%%`), `INSERT OR IGNORE`
  becomes `ON CONFLICT DO NOTHING`, `INSERT OR REPLACE` an upsert on the table's primary key, and an
  `INSERT` into a table with a generated `id` gains `RETURNING id`, which gives the cursor its `lastrowid`.
  Anything else SQLite-only (scalar `max(a, b)`, `sum(x = y)`, `UPDATE OR IGNORE`) is written portably at
  its call site instead; `translate` refuses the forms it cannot carry over, so a new one fails in the tests.
- schema (`translate_ddl`): INTEGER → BIGINT (SQLite's integers are 64-bit), REAL → DOUBLE PRECISION,
  BLOB → BYTEA, `INTEGER PRIMARY KEY [AUTOINCREMENT]` → an identity column (ids never reused, as with
  AUTOINCREMENT), and the `RAISE(ABORT, …)` triggers that keep the audit log append-only → PL/pgSQL. A step
  whose SQL does not translate carries its PostgreSQL text explicitly (`DialectSQL`).
- rows (`Row`): index by position or by column name and `keys()`, as `sqlite3.Row`, so callers do not care
  which database answered.
- errors: `IntegrityError`, `OperationalError` and `DatabaseError` here are sqlite3's classes, and the
  PostgreSQL connection raises subclasses of them (`PgIntegrityError` …), so one `except IntegrityError`
  catches a duplicate name on either database.
"""

from __future__ import annotations

import re
import sqlite3
from functools import lru_cache

SQLITE = "sqlite"
POSTGRESQL = "postgresql"

IntegrityError = sqlite3.IntegrityError
OperationalError = sqlite3.OperationalError
DatabaseError = sqlite3.DatabaseError


class PgIntegrityError(sqlite3.IntegrityError):
    """A constraint PostgreSQL refused (unique, foreign key, check, the audit log's append-only trigger)."""


class PgOperationalError(sqlite3.OperationalError):
    """A PostgreSQL statement that could not run (lock not available, statement cancelled, ...)."""


class PgDatabaseError(sqlite3.DatabaseError):
    """Any other error PostgreSQL reported for a statement."""


class DialectSQL(str):
    """A migration step's SQL with an explicit PostgreSQL version. The str value is SQLite's script, so code
    that treats steps as plain strings is unchanged; `postgresql` is used on PostgreSQL instead of
    translating."""

    postgresql: str

    def __new__(cls, sqlite: str, postgresql: str) -> DialectSQL:
        obj = super().__new__(cls, sqlite)
        obj.postgresql = postgresql
        return obj


def dialect_of(conn) -> str:
    """SQLITE for a sqlite3 connection, else the connection's own `dialect` attribute."""
    return getattr(conn, "dialect", SQLITE)


# -- statements ---------------------------------------------------------------------------------------------------
_STRING_OR_NAME = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")
_INSERT = re.compile(r"^\s*INSERT\s+(OR\s+(IGNORE|REPLACE)\s+)?INTO\s+(\w+)\s*(\(([^)]*)\))?", re.IGNORECASE)
_UNSUPPORTED = (
    (re.compile(r"^\s*(UPDATE|DELETE)\s+OR\s+\w+", re.IGNORECASE), "UPDATE OR …: add a NOT EXISTS condition"),
    (re.compile(r"\bPRAGMA\b", re.IGNORECASE), "PRAGMA"),
    (re.compile(r"\bsqlite_\w+", re.IGNORECASE), "sqlite_* tables"),
)


def _placeholders(sql: str) -> str:
    """`?` → `%s` and `%` → `%%` outside string literals and quoted names."""
    out, pos = [], 0
    for match in _STRING_OR_NAME.finditer(sql):
        out.append(sql[pos:match.start()].replace("%", "%%").replace("?", "%s"))
        out.append(match.group().replace("%", "%%"))
        pos = match.end()
    out.append(sql[pos:].replace("%", "%%").replace("?", "%s"))
    return "".join(out)


@lru_cache(maxsize=4096)
def translate(sql: str, identity_tables: frozenset[str] = frozenset(),
              primary_keys: tuple[tuple[str, tuple[str, ...]], ...] = ()) -> tuple[str, bool]:
    """(PostgreSQL statement, returns_id) for one statement in SQLite's dialect.

    `identity_tables`: tables whose `id` the database generates (an INSERT into one gains RETURNING id).
    `primary_keys`: (table, key columns) pairs, for `INSERT OR REPLACE`. ValueError for a form that has no
    mechanical translation (write it portably at the call site)."""
    for pattern, what in _UNSUPPORTED:
        if pattern.search(_STRING_OR_NAME.sub("''", sql)):
            raise ValueError(f"SQL not portable to PostgreSQL ({what}): {sql.strip()[:120]}")
    returns_id = False
    match = _INSERT.match(sql)
    if match:
        verb, table, columns = (match.group(2) or "").upper(), match.group(3), match.group(5)
        if match.group(1):
            sql = sql[:match.start(1)] + sql[match.end(1):]
        sql = sql.rstrip().rstrip(";")
        if verb == "IGNORE":
            sql += " ON CONFLICT DO NOTHING"
        elif verb == "REPLACE":
            keys = dict(primary_keys).get(table.lower())
            if not keys or not columns:
                raise ValueError(f"INSERT OR REPLACE INTO {table} needs a column list and a primary key")
            names = [c.strip() for c in columns.split(",")]
            updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in names if c.lower() not in keys)
            sql += f" ON CONFLICT ({', '.join(keys)}) " + (f"DO UPDATE SET {updates}" if updates else "DO NOTHING")
        if table.lower() in identity_tables and not re.search(r"\bRETURNING\b", sql, re.IGNORECASE):
            sql += " RETURNING id"
            returns_id = True
    return _placeholders(sql), returns_id


_PLAIN_INSERT = re.compile(r"^\s*INSERT\s+INTO\s+(\w+)\s*\(([^)]*)\)\s*VALUES\s*\(\s*\?(?:\s*,\s*\?)*\s*\)\s*;?\s*$",
                           re.IGNORECASE)


def copy_target(sql: str) -> tuple[str, tuple[str, ...]] | None:
    """(table, columns) of a plain `INSERT INTO t (a, b) VALUES (?, ?)`, whose rows may go by COPY instead; None
    for any other form (OR IGNORE / OR REPLACE, INSERT … SELECT, literals, RETURNING): those keep their
    statement, since COPY has no conflict clause and takes only values."""
    match = _PLAIN_INSERT.match(sql)
    if not match:
        return None
    columns = tuple(c.strip().lower() for c in match.group(2).split(","))
    if len(columns) != match.group(0).count("?"):  # one placeholder per column, nothing else
        return None
    return match.group(1).lower(), columns


# -- schema -------------------------------------------------------------------------------------------------------
_TRIGGER = re.compile(
    r"CREATE\s+TRIGGER\s+(\w+)\s+BEFORE\s+(UPDATE|DELETE|INSERT)\s+ON\s+(\w+)\s+BEGIN\s+SELECT\s+"
    r"RAISE\s*\(\s*ABORT\s*,\s*'((?:[^']|'')*)'\s*\)\s*;\s*END\s*;", re.IGNORECASE)
_TYPES = (
    (re.compile(r"\bINTEGER\s+PRIMARY\s+KEY(\s+AUTOINCREMENT)?\b", re.IGNORECASE),
     "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b", re.IGNORECASE), "BIGINT"),
    (re.compile(r"\bREAL\b", re.IGNORECASE), "DOUBLE PRECISION"),
    (re.compile(r"\bBLOB\b", re.IGNORECASE), "BYTEA"),
)


def _trigger(match: re.Match) -> str:
    name, event, table, message = match.groups()
    # ERRCODE 23000 (integrity_constraint_violation): reaches the caller as an IntegrityError, as SQLite's
    # RAISE(ABORT) does. A DELETE trigger also refuses TRUNCATE, which skips row triggers on PostgreSQL.
    events = f"{event.upper()} OR TRUNCATE" if event.upper() == "DELETE" else event.upper()
    return (f"CREATE FUNCTION {name}_refuse() RETURNS trigger LANGUAGE plpgsql AS $fn$ BEGIN "
            f"RAISE EXCEPTION '{message}' USING ERRCODE = 'integrity_constraint_violation'; END $fn$;\n"
            f"CREATE TRIGGER {name}_row BEFORE {event.upper()} ON {table} FOR EACH ROW EXECUTE FUNCTION "
            f"{name}_refuse();\n"
            + (f"CREATE TRIGGER {name}_all BEFORE TRUNCATE ON {table} FOR EACH STATEMENT EXECUTE FUNCTION "
               f"{name}_refuse();" if "TRUNCATE" in events else ""))


def translate_ddl(script: str) -> str:
    """A migration step's SQLite script as PostgreSQL (one script, run in one call). ValueError when it holds a
    form with no translation here (another kind of trigger, a virtual table): give that step a DialectSQL."""
    if isinstance(script, DialectSQL):
        return script.postgresql
    if re.search(r"\bCREATE\s+(TRIGGER|VIRTUAL)\b", _STRING_OR_NAME.sub("''", _TRIGGER.sub("", script)),
                 re.IGNORECASE):
        raise ValueError("a migration step holds a trigger or virtual table that has no PostgreSQL translation; "
                         "give the step a DialectSQL with its PostgreSQL text")
    out, pos = [], 0
    for match in list(_STRING_OR_NAME.finditer(script)) + [None]:
        end = match.start() if match else len(script)
        chunk = script[pos:end]
        for pattern, replacement in _TYPES:
            chunk = pattern.sub(replacement, chunk)
        out.append(chunk)
        if match:
            out.append(match.group())
            pos = match.end()
    return _TRIGGER.sub(_trigger, "".join(out))


# -- rows ---------------------------------------------------------------------------------------------------------
class Row(tuple):
    """A result row as `sqlite3.Row` behaves: by position, by column name (case-insensitive), `keys()`."""

    __slots__ = ()
    _names: tuple[str, ...] = ()
    _index: dict[str, int] = {}

    def __getitem__(self, key):
        if isinstance(key, str):
            try:
                return tuple.__getitem__(self, self._index[key.lower()])
            except KeyError:
                raise IndexError(f"No item with that key: {key!r}") from None
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


@lru_cache(maxsize=1024)
def row_class(names: tuple[str, ...]) -> type[Row]:
    """The Row class of one result shape (column names), made once and reused by every cursor of that shape."""
    index: dict[str, int] = {}
    for i, name in enumerate(names):
        index.setdefault(name.lower(), i)  # the first of two equal names wins, as in sqlite3.Row
    return type("Row", (Row,), {"__slots__": (), "_names": names, "_index": index})
