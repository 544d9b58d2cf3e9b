"""Catalog migrations owned by the service: API keys, browser sessions, one-time login links, ingest jobs.

Only hashes of secrets are stored: an API key, a session token or a login-link token found in a copy
of the catalog cannot be used to log in.

The service owns its set: the store never applies it by itself. `ensure_service_schema` registers it on an
engine's (or a bare catalog's) store and applies it where it can: call it at the service's start-up and
before the CLI's key commands use the tables. On a read-only store written before these tables existed it
returns False, and reads then mean "no keys, no jobs".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from faceindex.store.migrations import MigrationSet

if TYPE_CHECKING:
    from faceindex.engine import Engine
    from faceindex.store.catalog import Catalog

_ROLES = "'admin', 'curator', 'searcher', 'auditor', 'privacy-officer'"

MIGRATIONS: list[tuple[str, str]] = [
    (
        "0100_api_keys",
        f"""
        CREATE TABLE api_keys (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE CHECK (length(trim(name)) > 0),
            role TEXT NOT NULL CHECK (role IN ({_ROLES})),
            key_hash TEXT NOT NULL UNIQUE,
            hint TEXT NOT NULL,
            created_at TEXT NOT NULL,
            revoked_at TEXT,
            last_used_at TEXT
        );
        """,
    ),
    (
        "0101_web_sessions",
        """
        CREATE TABLE web_sessions (
            token_hash TEXT PRIMARY KEY,
            key_id INTEGER NOT NULL REFERENCES api_keys(id) ON DELETE CASCADE,
            csrf_token TEXT NOT NULL,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL
        );
        CREATE INDEX web_sessions_key ON web_sessions(key_id);
        CREATE TABLE login_tokens (
            token_hash TEXT PRIMARY KEY,
            key_id INTEGER NOT NULL REFERENCES api_keys(id) ON DELETE CASCADE,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            used_at TEXT
        );
        """,
    ),
    (
        # Ingest jobs survive a restart: queued/running ones are resumed, finished ones can still be polled.
        # `paths` is kept only while a job is unfinished (it is what a resume needs), then emptied.
        "0102_ingest_jobs",
        """
        CREATE TABLE ingest_jobs (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            collection TEXT NOT NULL,
            actor TEXT NOT NULL,
            paths TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
            total INTEGER,
            done INTEGER NOT NULL DEFAULT 0,
            counts TEXT NOT NULL DEFAULT '{}',
            skipped TEXT NOT NULL DEFAULT '[]',
            error TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            started_at TEXT,
            finished_at TEXT,
            seconds REAL
        );
        CREATE INDEX ingest_jobs_created ON ingest_jobs(created_at);
        """,
    ),
]

SERVICE_MIGRATIONS = MigrationSet("service", MIGRATIONS)


def ensure_service_schema(engine_or_catalog: Engine | Catalog) -> bool:
    """Register the service's migrations on this store and apply them if it exists and is writable.

    Returns True when the service tables are there afterwards. False: the store does not exist yet (its first
    write creates them, the set being registered) or is read-only and older: read keys and jobs as none.
    Writes nothing else (no erasure resumed, no purge): safe before a read-only command such as `keys list`.
    """
    catalog = getattr(engine_or_catalog, "catalog", engine_or_catalog)
    catalog.use_migrations(SERVICE_MIGRATIONS)
    return catalog.upgrade()

