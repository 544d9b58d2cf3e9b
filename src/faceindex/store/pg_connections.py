"""PostgreSQL connections of one catalog (psycopg 3): the same contract as store.connections.Connections.

One database per store. Readers: one autocommit connection per thread, each statement seeing the last
committed state (READ COMMITTED), never waiting for the writer. Writer: one connection, used only inside
`transaction()` by the thread holding the store's write lock, which on PostgreSQL is the local lock (threads,
then `flock` on `<store>/write.lock`) plus a session advisory lock on the server, so processes on different
machines sharing the database take turns too. Nested transactions join the outer one. Reads create nothing:
a missing database, or one without a faceindex schema, is StoreNotFoundError; the first write creates the
schema (and the database itself when the role may). Every connection failure is a StoreError naming the
URL (password redacted) and what failed. SQL is SQLite's dialect, translated by store.sql_dialect.

One difference callers see: a statement that fails inside a transaction aborts the whole transaction on
PostgreSQL (SQLite keeps it open). No caller goes on after a failed statement: the error ends the
`transaction()` block, which rolls back, on both.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from faceindex.errors import StoreBusyError, StoreError, StoreNotFoundError
from faceindex.store.connections import RoutedConnection
from faceindex.store.pg_connection import PgConnection, configure, is_postgres_url, psycopg_module, reason, redact
from faceindex.store.sql_dialect import POSTGRESQL
from faceindex.store.write_lock import DEFAULT_TIMEOUT_S, StoreWriteLock
from faceindex.store.writer_scope import WriterScope

log = logging.getLogger(__name__)

__all__ = ["PgConnections", "is_postgres_url", "redact"]

CONNECT_TIMEOUT_S = 10
SCHEMA_FORMAT = 1
"""Layout of faceindex's PostgreSQL schema (sql_dialect's translation: types, identity ids, triggers), kept in
the catalog's meta as `pg_schema_format`; a database of another format is refused, never half-read."""
ADVISORY_KEY = 0x66616365_696E6478 & 0x7FFF_FFFF_FFFF_FFFF
"""The advisory lock of a store's writer (`pg_try_advisory_lock`); one database per store, so one key."""


class _ClusterWriteLock(StoreWriteLock):
    """The store's local write lock, plus the server's advisory lock while the outermost hold lasts."""

    def __init__(self, root: Path, timeout: float, owner: PgConnections):
        super().__init__(root, timeout)
        self._pg = owner

    def _flock(self) -> None:
        super()._flock()
        try:
            self._pg.take_advisory(time.monotonic() + self.timeout)
        except BaseException:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_UN)
            raise

    def release(self) -> None:
        if self._depth == 1:
            self._pg.give_advisory()
        super().release()


class PgConnections(WriterScope):
    """The connections to one PostgreSQL catalog, opened lazily (see the module docstring)."""

    dialect = POSTGRESQL

    def __init__(self, url: str, root: Path, *, migrate: Callable[[PgConnection], list[str]],
                 pending: Callable[[PgConnection], list[str]], lock_timeout: float = DEFAULT_TIMEOUT_S):
        self.url, self.path = url, Path(root) / "catalog.postgresql"  # `path`: for messages only, no such file
        self.location = redact(url)
        self.lock = _ClusterWriteLock(Path(root), lock_timeout, self)
        self._migrate, self._pending = migrate, pending
        self._writer: PgConnection | None = None
        self._lock_conn: PgConnection | None = None
        self._local = threading.local()
        self._all: list[PgConnection] = []
        self._guard = threading.Lock()
        self._checked = False
        self._exists = False
        self._shape: tuple | None = None
        self._advisory = False
        self._checked_format = False
        self.depth = 0
        self.router = RoutedConnection(self)

    # -- state ----------------------------------------------------------------------------------
    writable = True
    """A server database is written through the server: a role without the right fails at the first write."""

    @property
    def exists(self) -> bool:
        """True once the database holds a faceindex schema (its `_migrations` table)."""
        if not self._exists:
            conn = self._connect(missing_ok=True)
            if conn is None:
                return False
            try:
                self._exists = self._has_schema(conn)
            finally:
                conn.close()
        return self._exists

    def shape(self) -> tuple[frozenset[str], tuple]:
        """(tables with a generated id, primary keys): what the statement translation needs, read once."""
        if self._shape is None:
            conn = self._connect()
            try:
                # raw psycopg: these two queries must not go through the translation that needs their answer
                identity = frozenset(r[0] for r in conn.raw.execute(
                    "SELECT table_name FROM information_schema.columns WHERE table_schema = current_schema()"
                    " AND column_name = 'id' AND is_identity = 'YES'").fetchall())
                keys: dict[str, list[str]] = {}
                for table, column in conn.raw.execute(
                        "SELECT tc.table_name, k.column_name FROM information_schema.table_constraints tc"
                        " JOIN information_schema.key_column_usage k ON k.constraint_name = tc.constraint_name"
                        " AND k.table_schema = tc.table_schema WHERE tc.constraint_type = 'PRIMARY KEY'"
                        " AND tc.table_schema = current_schema() ORDER BY tc.table_name, k.ordinal_position"):
                    keys.setdefault(table, []).append(column)
            finally:
                conn.close()
            self._shape = (identity, tuple((t, tuple(c)) for t, c in sorted(keys.items())))
        return self._shape

    def current(self) -> PgConnection:
        if self._writer is not None and self.lock.held_by_me:
            return self._writer
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.raw.closed:
            conn = self._open_reader()
            self._local.conn = conn
        return conn

    # -- opening --------------------------------------------------------------------------------
    def _connect(self, *, missing_ok: bool = False, database: str | None = None) -> PgConnection | None:
        psycopg = psycopg_module()
        extra = {"dbname": database} if database else {}
        try:
            raw = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S, **extra)
        except psycopg.Error as exc:
            why = reason(exc)
            if "does not exist" in why and "database" in why:
                if missing_ok:
                    return None
                raise StoreNotFoundError(f"no store at {self.location}: the database does not exist. Create it "
                                         "(createdb), or let a command that writes (`faceindex add ...`) create it"
                                         ) from exc
            raise StoreError(f"PostgreSQL at {self.location}: connect failed: {why}") from exc
        except Exception as exc:  # a malformed URL: psycopg raises ProgrammingError, or ValueError from libpq
            raise StoreError(f"PostgreSQL at {self.location}: connect failed: {reason(exc)}") from exc
        configure(raw)
        return PgConnection(raw, self)

    @staticmethod
    def _has_schema(conn: PgConnection) -> bool:
        """Whether the database holds a faceindex catalog; StoreError for one it must not touch (other tables,
        or a faceindex schema of another layout)."""
        found = conn.execute("SELECT to_regclass('_migrations') IS NOT NULL").fetchone()[0]
        if not found and conn.execute("SELECT count(*) FROM information_schema.tables"
                                      " WHERE table_schema = current_schema()").fetchone()[0]:
            raise StoreError(f"the database at {conn._owner.location} holds tables but no faceindex catalog: give "
                             "each store a database of its own (CREATE DATABASE ...), empty at first")
        if found and conn.execute("SELECT to_regclass('meta') IS NOT NULL").fetchone()[0]:
            row = conn.execute("SELECT value FROM meta WHERE key = 'pg_schema_format'").fetchone()
            held = row[0] if row else None
            if held is not None and held != str(SCHEMA_FORMAT):
                newer = held.isdigit() and int(held) > SCHEMA_FORMAT
                raise StoreError(
                    f"the catalog at {conn._owner.location} has PostgreSQL schema format {held}, this faceindex "
                    f"reads format {SCHEMA_FORMAT}: " + ("it was written by a newer faceindex; upgrade faceindex "
                    "(pip install -U faceindex)" if newer else "it was written by another faceindex; use a new "
                    "database for this one (and `faceindex add` the photos again), or the faceindex that wrote it"))
        return bool(found)

    def _open_reader(self) -> PgConnection:
        if not self.exists:
            self._connect().close()  # a missing database: StoreNotFoundError saying so
            raise StoreNotFoundError(f"no store at {self.location} (the database has no faceindex catalog): check "
                                     "--catalog-url / FACEINDEX_CATALOG_URL, or create one with `faceindex add ...`")
        if not self._checked:
            self._check_schema()
        conn = self._connect()
        if not self._checked_format:
            self._has_schema(conn)  # a reader refuses a schema of another format too
            self._checked_format = True
        with self._guard:
            self._all.append(conn)
        return conn

    def schema_changed(self) -> None:
        self._checked = False
        self._shape = None

    def pending_now(self) -> list[str]:
        conn = self._connect()
        try:
            return self._pending(conn)
        finally:
            conn.close()

    def _create_database(self) -> None:
        """Create the URL's database (first write to a new store), through the server's `postgres` database."""
        name = urlsplit(self.url).path.lstrip("/")
        if not name:
            raise StoreError(f"PostgreSQL at {self.location}: the URL names no database (postgresql://host/NAME)")
        admin = self._connect(database="postgres")
        try:
            from psycopg import sql

            admin.raw.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            log.info("created database %s at %s", name, self.location)
        except psycopg_module().Error as exc:
            if "already exists" not in str(exc):
                raise StoreError(f"PostgreSQL at {self.location}: the database does not exist and could not be "
                                 f"created ({reason(exc)}); create it (createdb {name}) or use a role that may"
                                 ) from exc
        finally:
            admin.close()

    def open_for_writing(self) -> None:
        """Connect the writer, create the database if missing, and apply migrations, under the write lock. A
        writer whose connection was lost (a server restart) is replaced: a long-running service carries on."""
        if self._writer is not None and not self._writer.raw.closed:
            return
        with self.lock:
            if self._writer is not None and not self._writer.raw.closed:
                return
            self._writer = None
            writer = self._connect(missing_ok=True)
            if writer is None:
                self._create_database()
                writer = self._connect()
                if not self._advisory:  # the lock could not be taken before the database existed
                    self.take_advisory(time.monotonic() + self.lock.timeout)
            try:
                self._has_schema(writer)  # refuses a database that holds something else
                self._migrate(writer)
                writer.execute("INSERT INTO meta VALUES ('pg_schema_format', ?) ON CONFLICT (key) DO NOTHING",
                               (str(SCHEMA_FORMAT),))
            except BaseException:
                writer.close()
                raise
            self._shape = None  # tables may be new
            with self._guard:
                self._all.append(writer)
            self._writer = writer
            self._exists = self._checked = True

    # -- the advisory lock (called by _ClusterWriteLock) ------------------------------------------
    def take_advisory(self, deadline: float) -> None:
        if self._lock_conn is None or self._lock_conn.raw.closed:
            conn = self._connect(missing_ok=True)
            if conn is None:  # no database yet: nothing to serialise on the server until it exists
                return
            self._lock_conn = conn
        while not self._lock_conn.execute("SELECT pg_try_advisory_lock(?)", (ADVISORY_KEY,)).fetchone()[0]:
            if time.monotonic() >= deadline:
                raise StoreBusyError(f"another faceindex process (on this or another machine) has been writing to "
                                     f"the catalog at {self.location} for a while; try again when it has finished")
            time.sleep(0.05)
        self._advisory = True

    def give_advisory(self) -> None:
        if self._advisory and self._lock_conn is not None:
            self._advisory = False
            try:
                self._lock_conn.execute("SELECT pg_advisory_unlock(?)", (ADVISORY_KEY,))
            except StoreError:
                log.warning("the advisory lock's connection to %s was lost (the server released the lock)",
                            self.location)
                self._lock_conn = None

    # -- writing: transaction() and write_lock() come from WriterScope ---------------------------
    def _rollback(self) -> None:
        if not self._writer.raw.closed:  # a connection the server dropped has nothing to roll back
            self._writer.raw.execute("ROLLBACK")

    def close(self) -> None:
        with self._guard:
            conns, self._all = self._all, []
        if self._lock_conn is not None:
            conns.append(self._lock_conn)
            self._lock_conn = None
        for conn in conns:
            try:
                conn.close()
            except Exception as exc:  # closing a dead connection must not hide the caller's own error
                log.debug("closing a PostgreSQL connection failed: %s", exc)
        self._writer = None
        self._local = threading.local()
        self._checked = False
        self.lock.close()

