"""SQLite connections of one catalog: one writer under the store's write lock, one reader per thread."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from faceindex.errors import StoreError, StoreNotFoundError
from faceindex.store.write_lock import DEFAULT_TIMEOUT_S, StoreWriteLock, make_private_file
from faceindex.store.writer_scope import WriterScope

log = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 30.0
"""SQLite's own wait for a lock (busy_timeout): covers autocommit writes outside `transaction()`."""

_PRAGMAS = ("foreign_keys=ON", "secure_delete=ON", "synchronous=NORMAL")

MAX_VARIABLES = 32_766
"""Bound parameters per statement, held to SQLite's compiled-in default whatever the build (Debian's allows
250,000): an unchunked id list then fails in tests here, not first on a user's machine (ids go in chunks of
`catalog_sql.ID_CHUNK`)."""


class RoutedConnection:
    """What `Catalog.conn` returns: a stable object that forwards to the calling thread's connection.

    Inside a transaction held by this thread that is the writer connection (so a statement sees the
    transaction's own changes, and a `conn` captured earlier still writes inside the transaction);
    otherwise the thread's own reader connection, which sees the last committed state and never waits for
    the writer (WAL). Only attribute access is forwarded: cursors are the real sqlite3 ones.
    """

    def __init__(self, owner: Connections):
        self._owner = owner

    def __getattr__(self, name: str):
        return getattr(self._owner.current(), name)

    def execute(self, sql: str, params=()) -> sqlite3.Cursor:
        return self._owner.current().execute(sql, params)

    def executemany(self, sql: str, rows) -> sqlite3.Cursor:
        return self._owner.current().executemany(sql, rows)

    def insert_returning_ids(self, sql: str, rows) -> list[int]:
        """Run one INSERT (SQLite's dialect, into a table with a generated id) for each row; the new ids in row
        order. The batch API of the catalog's writers: the connection decides how a batch is sent. PostgreSQL's
        sends it in one or two round trips (pipelined INSERTs, or COPY: pg_connection); SQLite, in the process,
        runs the statement once per row (its `executemany` cannot return the ids), which costs microseconds."""
        conn = self._owner.current()
        batched = getattr(conn, "insert_returning_ids", None)
        if batched is not None:
            return batched(sql, rows)
        return [int(conn.execute(sql, tuple(row)).lastrowid) for row in rows]


class Connections(WriterScope):
    """The connections to one catalog file, opened lazily.

    Guarantees (what the service relies on to run searches without a global lock):

    - Any number of threads may read at once: each thread gets its own connection (WAL: readers see the
      last committed transaction and are never blocked by the writer, nor block it).
    - All writes go through `transaction()`: one writer connection, used only by the thread that holds
      the store's write lock (a thread RLock, then `flock` on `<store>/write.lock` across processes), so
      one transaction at a time per store, in every process. Nested transactions join the outer one.
    - Nothing is created or written until the first write (`open_for_writing`): a reader on a missing
      file gets StoreNotFoundError; on a read-only file or directory, readers open it read-only.

    `migrate` brings a writable database's schema up to date (called under the write lock); `pending`
    says which migrations a database still lacks (a read on a writable store applies them first; a read-only
    store that lacks some is a StoreError: it was written by an older faceindex).
    """

    BEGIN_SQL = "BEGIN IMMEDIATE"  # take SQLite's write lock at BEGIN, not at the first write (no upgrade deadlock)

    def __init__(self, path: Path, *, migrate: Callable[[sqlite3.Connection], list[str]],
                 pending: Callable[[sqlite3.Connection], list[str]], lock_timeout: float = DEFAULT_TIMEOUT_S):
        self.path = Path(path)
        self.lock = StoreWriteLock(self.path.parent, lock_timeout)
        self._migrate, self._pending = migrate, pending
        self._writer: sqlite3.Connection | None = None
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._guard = threading.Lock()  # opening and closing connections
        self._checked = False  # schema checked (or migrated) once for readers
        self._read_only: bool | None = None
        self.router = RoutedConnection(self)

    # -- state ----------------------------------------------------------------------------------
    @property
    def writable(self) -> bool:
        """False when the file or its directory cannot be written (a read-only copy or mount)."""
        if self._read_only is None:
            directory = self.path.parent
            self._read_only = not (os.access(directory, os.W_OK)
                                   and (not self.path.exists() or os.access(self.path, os.W_OK)))
        return not self._read_only

    @property
    def exists(self) -> bool:
        return self.path.is_file()

    def current(self) -> sqlite3.Connection:
        """The calling thread's connection: the writer inside its transaction, else its reader."""
        if self._writer is not None and self.lock.held_by_me:
            return self._writer
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._open_reader()
            self._local.conn = conn
        return conn

    # -- opening --------------------------------------------------------------------------------
    def _connect(self, target: str, *, uri: bool = False) -> sqlite3.Connection:
        conn = sqlite3.connect(target, isolation_level=None, timeout=BUSY_TIMEOUT_S, check_same_thread=False,
                               uri=uri)
        conn.row_factory = sqlite3.Row
        conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, MAX_VARIABLES)
        for pragma in _PRAGMAS:
            conn.execute(f"PRAGMA {pragma}")
        return conn

    def _open_reader(self) -> sqlite3.Connection:
        if not self.exists:
            raise StoreNotFoundError(
                f"no store at {self.path.parent} (no {self.path.name} there): check --store / FACEINDEX_STORE, "
                "or create one with `faceindex add ...`")
        if not self._checked:
            self._check_schema()
        try:
            conn = self._connect(str(self.path)) if self.writable else self._connect_read_only()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open catalog {self.path}: {exc}") from exc
        with self._guard:
            self._all.append(conn)
        return conn

    def _connect_read_only(self) -> sqlite3.Connection:
        """Read-only URI; `immutable` when SQLite cannot make the WAL index (-shm) beside a read-only file."""
        base = f"file:{self.path.resolve()}?mode=ro"
        try:
            conn = self._connect(base, uri=True)
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError:
            # No -shm and no right to create one: nobody can be writing this copy, so reading it as an
            # immutable file is exact.
            return self._connect(base + "&immutable=1", uri=True)

    @property
    def location(self) -> str:
        """Where the store is, for messages: its directory."""
        return str(self.path.parent)

    def _refuse_upgrade(self, missing: list[str]) -> None:
        if not self.writable:
            raise StoreError(f"the store at {self.path.parent} was written by an older faceindex and is "
                             f"read-only here; open it once with write access to upgrade it "
                             f"({len(missing)} schema steps missing)")

    def schema_changed(self) -> None:
        """More migrations were registered: the next reader opened checks the schema again."""
        self._checked = False

    def pending_now(self) -> list[str]:
        """The migrations the existing database lacks, read on a short-lived connection."""
        probe = self._connect_read_only() if not self.writable else self._connect(str(self.path))
        try:
            return self._pending(probe)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open catalog {self.path}: {exc}") from exc
        finally:
            probe.close()

    def open_for_writing(self) -> None:
        """Create the file (0600) if needed, open the writer and apply migrations, all under the write lock."""
        if self._writer is not None:
            return
        if not self.writable:
            raise StoreError(f"the store at {self.path.parent} is read-only: writing to it needs write access")
        with self.lock:
            if self._writer is not None:
                return
            make_private_file(self.path)
            for suffix in ("-wal", "-shm"):  # an older faceindex left them 0644
                side = self.path.with_name(self.path.name + suffix)
                if side.exists() and side.stat().st_mode & 0o077:
                    os.chmod(side, 0o600)
            try:
                writer = self._connect(str(self.path))
                writer.execute("PRAGMA journal_mode=WAL")
                self._migrate(writer)
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"cannot open catalog {self.path}: {exc}") from exc
            with self._guard:
                self._all.append(writer)
            self._writer = writer
            self._checked = True

    # -- writing: transaction() and write_lock() come from WriterScope ---------------------------

    def close(self) -> None:
        with self._guard:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
        self._writer = None
        self._local = threading.local()
        self._checked = False
        self.lock.close()
