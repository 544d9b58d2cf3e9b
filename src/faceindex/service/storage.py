"""The service's own tables (api_keys, web_sessions, login_tokens, ingest_jobs): every SQL statement on them.

Functions take the Catalog whose connection to use, so the caller decides: key checks run on a connection
of the calling thread (ServiceDB) and never wait for the engine; audited changes (key creation, revocation)
run on the engine's catalog, in the same transaction as their audit event.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path

from faceindex.errors import ConflictError
from faceindex.store.catalog import Catalog
from faceindex.store.catalog_sql import chunks, marks
from faceindex.store.sql_dialect import IntegrityError

# -- API keys -----------------------------------------------------------------------------------------
Row = sqlite3.Row


def insert_key(catalog: Catalog, name: str, role: str, key_hash: str, hint: str, created_at: str) -> int:
    """Insert a key; returns its id. ConflictError when the name is taken."""
    try:
        cur = catalog.conn.execute(
            "INSERT INTO api_keys (name, role, key_hash, hint, created_at) VALUES (?, ?, ?, ?, ?)",
            (name, role, key_hash, hint, created_at))
    except IntegrityError as exc:
        raise ConflictError(f"a key named {name!r} already exists") from exc
    return int(cur.lastrowid)


def keys(catalog: Catalog) -> list[sqlite3.Row]:
    return catalog.conn.execute("SELECT * FROM api_keys ORDER BY id").fetchall()


def key_by_id(catalog: Catalog, key_id: int) -> sqlite3.Row | None:
    return catalog.conn.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,)).fetchone()


def key_by_name(catalog: Catalog, name: str) -> sqlite3.Row | None:
    return catalog.conn.execute("SELECT * FROM api_keys WHERE name = ?", (name,)).fetchone()


def active_key_by_hash(catalog: Catalog, key_hash: str) -> sqlite3.Row | None:
    return catalog.conn.execute("SELECT * FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL",
                                (key_hash,)).fetchone()


def count_active_keys(catalog: Catalog, role: str | None = None, *, except_name: str | None = None) -> int:
    sql, params = "SELECT count(*) FROM api_keys WHERE revoked_at IS NULL", []
    if role:
        sql, params = sql + " AND role = ?", [role]
    if except_name:
        sql, params = sql + " AND name != ?", [*params, except_name]
    return catalog.count(sql, tuple(params))


def revoke_key(catalog: Catalog, key_id: int, at: str) -> None:
    """Mark a key revoked and delete its sessions and login links (call inside a transaction)."""
    catalog.conn.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ?", (at, key_id))
    catalog.conn.execute("DELETE FROM web_sessions WHERE key_id = ?", (key_id,))
    catalog.conn.execute("DELETE FROM login_tokens WHERE key_id = ?", (key_id,))


def touch_key(catalog: Catalog, key_id: int, at: str) -> None:
    catalog.conn.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (at, key_id))


# -- browser sessions ---------------------------------------------------------------------------------
def insert_session(catalog: Catalog, token_hash: str, key_id: int, csrf: str, created_at: str,
                   expires_at: str) -> None:
    """Add a session, deleting expired ones first (one transaction)."""
    with catalog.transaction():
        catalog.conn.execute("DELETE FROM web_sessions WHERE expires_at < ?", (created_at,))
        catalog.conn.execute("INSERT INTO web_sessions VALUES (?, ?, ?, ?, ?)",
                             (token_hash, key_id, csrf, created_at, expires_at))


def live_session(catalog: Catalog, token_hash: str, now: str) -> sqlite3.Row | None:
    """The key row plus `csrf_token` of a live session whose key is not revoked, or None."""
    return catalog.conn.execute(
        "SELECT k.*, s.csrf_token FROM web_sessions s JOIN api_keys k ON k.id = s.key_id"
        " WHERE s.token_hash = ? AND s.expires_at > ? AND k.revoked_at IS NULL", (token_hash, now)).fetchone()


def delete_session(catalog: Catalog, token_hash: str) -> None:
    catalog.conn.execute("DELETE FROM web_sessions WHERE token_hash = ?", (token_hash,))


# -- one-time login links -----------------------------------------------------------------------------
def replace_login_token(catalog: Catalog, token_hash: str, key_id: int, created_at: str, expires_at: str) -> None:
    """Issue a login link for a key, ending every earlier unused link of that key (one transaction)."""
    with catalog.transaction():
        catalog.conn.execute("DELETE FROM login_tokens WHERE key_id = ? AND used_at IS NULL", (key_id,))
        catalog.conn.execute("INSERT INTO login_tokens VALUES (?, ?, ?, ?, NULL)",
                             (token_hash, key_id, created_at, expires_at))


def redeem_login_token(catalog: Catalog, token_hash: str, now: str) -> sqlite3.Row | None:
    """The key row of a live unused token, marking it used and ending the key's other links; else None."""
    with catalog.transaction():
        row = catalog.conn.execute(
            "SELECT k.* FROM login_tokens t JOIN api_keys k ON k.id = t.key_id WHERE t.token_hash = ?"
            " AND t.used_at IS NULL AND t.expires_at > ? AND k.revoked_at IS NULL", (token_hash, now)).fetchone()
        if row is None:
            return None
        catalog.conn.execute("UPDATE login_tokens SET used_at = ? WHERE token_hash = ?", (now, token_hash))
        catalog.conn.execute("DELETE FROM login_tokens WHERE key_id = ? AND used_at IS NULL", (row["id"],))
    return row


# -- ingest jobs --------------------------------------------------------------------------------------
JOB_COLUMNS = ("id", "kind", "collection", "actor", "paths", "status", "total", "done", "counts", "skipped", "error",
               "attempts", "created_at", "started_at", "finished_at", "seconds")
_JSON = {"paths", "counts", "skipped", "error"}


def save_job(catalog: Catalog, job: dict) -> None:
    """Insert or replace one job row (a dict with JOB_COLUMNS; JSON columns given as Python values)."""
    values = [json.dumps(job[c]) if c in _JSON else job[c] for c in JOB_COLUMNS]
    catalog.conn.execute(
        f"INSERT OR REPLACE INTO ingest_jobs ({', '.join(JOB_COLUMNS)}) VALUES ({', '.join('?' * len(JOB_COLUMNS))})",
        values)


def job_progress(catalog: Catalog, job_id: str, total: int | None, done: int) -> None:
    catalog.conn.execute("UPDATE ingest_jobs SET total = ?, done = ? WHERE id = ?", (total, done, job_id))


def load_jobs(catalog: Catalog, keep_finished: int) -> list[dict]:
    """Every unfinished job and the newest `keep_finished` finished ones, oldest first; older rows are deleted."""
    conn = catalog.conn
    conn.execute("DELETE FROM ingest_jobs WHERE status NOT IN ('queued', 'running') AND id NOT IN "
                 "(SELECT id FROM ingest_jobs WHERE status NOT IN ('queued', 'running') "
                 " ORDER BY created_at DESC LIMIT ?)", (keep_finished,))
    rows = conn.execute(f"SELECT {', '.join(JOB_COLUMNS)} FROM ingest_jobs ORDER BY created_at").fetchall()
    return [{c: (json.loads(r[c]) if c in _JSON and r[c] is not None else r[c]) for c in JOB_COLUMNS} for r in rows]


def delete_jobs(catalog: Catalog, job_ids: Iterable[str]) -> None:
    for chunk in chunks(job_ids):  # job ids are text
        catalog.conn.execute(f"DELETE FROM ingest_jobs WHERE id IN ({marks(chunk)})", chunk)


class ServiceDB:
    """The catalog the service's own tables are read and written through (key checks, sessions, login links).

    Its own Catalog, not the engine's: the catalog gives each thread its own reader connection (WAL: readers
    never wait for the writer nor for each other), so checking a key never waits for a search or an ingest.
    The few writes here are single statements (marking a key used, ending a session: autocommit, serialised
    by SQLite's busy timeout) or short transactions under the store's write lock (sessions, login links).
    Opened on first use; `close()` at shutdown (a later use opens it again).
    """

    def __init__(self, source: Catalog | Path):
        """`source`: the engine's catalog (this one opens its twin: the same database, SQLite or PostgreSQL), or
        the path of a catalog file."""
        self._source = source if isinstance(source, Catalog) else Path(source)
        self._catalog: Catalog | None = None
        self._lock = threading.Lock()

    def catalog(self) -> Catalog:
        with self._lock:
            if self._catalog is None:
                if isinstance(self._source, Catalog):
                    self._catalog = self._source.twin()
                    self._catalog.open_for_writing()
                else:
                    self._catalog = Catalog(self._source)
            return self._catalog

    def close(self) -> None:
        with self._lock:
            if self._catalog is not None:
                self._catalog.close()
                self._catalog = None
