"""API keys, browser sessions and one-time login links, stored in the catalog as hashes only.

A key is `fik_` followed by 43 URL-safe characters (256 random bits). Because it carries that much
entropy, a single SHA-256 is enough to store it: there is nothing to brute-force, so a slow
password hash would only slow every request down. The plaintext is shown once, at creation.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from faceindex.errors import ConflictError, InvalidInputError, NotFoundError
from faceindex.privacy.audit import AuditEvent
from faceindex.store.catalog import utcnow

if TYPE_CHECKING:
    from faceindex.engine import Engine

ROLES = ("admin", "curator", "searcher", "auditor", "privacy-officer")
KEY_PREFIX = "fik_"
BOOTSTRAP_NAME = "initial-admin"
"""The admin key created on the first `serve` of a store without keys; its secret is never shown,
it is only reachable through the one-time login link printed on the console."""


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _later(hours: float) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ApiKey:
    """A key as listed: never its secret or hash."""

    id: int
    name: str
    role: str
    hint: str
    created_at: str
    revoked_at: str | None
    last_used_at: str | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> ApiKey:
        return cls(row["id"], row["name"], row["role"], row["hint"], row["created_at"], row["revoked_at"],
                   row["last_used_at"])


class KeyStore:
    """Key, session and login-link records over the engine's catalog (call it with the engine lock held)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.conn = engine.catalog.conn

    # -- keys -------------------------------------------------------------------------------
    def create(self, name: str, role: str) -> tuple[ApiKey, str]:
        """Create a key; returns it with its secret, which is not stored and cannot be shown again."""
        name = (name or "").strip()
        if not name or len(name) > 100:
            raise InvalidInputError("a key needs a name of 1 to 100 characters")
        if role not in ROLES:
            raise InvalidInputError(f"role must be one of {', '.join(ROLES)}; got {role!r}")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        catalog = self.engine.catalog
        with catalog.transaction():
            try:
                cur = self.conn.execute(
                    "INSERT INTO api_keys (name, role, key_hash, hint, created_at) VALUES (?, ?, ?, ?, ?)",
                    (name, role, hash_secret(secret), secret[:10] + "…", utcnow()))
            except sqlite3.IntegrityError as exc:
                raise ConflictError(f"a key named {name!r} already exists") from exc
            self.engine.audit.record(AuditEvent("key.create", actor=self.engine.actor,
                                                params={"name": name, "role": role}))
        return self.get(int(cur.lastrowid)), secret

    def list(self) -> list[ApiKey]:
        return [ApiKey.from_row(r) for r in self.conn.execute("SELECT * FROM api_keys ORDER BY id")]

    def get(self, ref: int | str) -> ApiKey:
        """A key by id or by name."""
        if isinstance(ref, int) or str(ref).isdigit():
            row = self.conn.execute("SELECT * FROM api_keys WHERE id = ?", (int(ref),)).fetchone()
        else:
            row = self.conn.execute("SELECT * FROM api_keys WHERE name = ?", (str(ref),)).fetchone()
        if row is None:
            raise NotFoundError(f"no API key {ref!r}")
        return ApiKey.from_row(row)

    def revoke(self, ref: int | str) -> ApiKey:
        """Revoke a key and end its browser sessions and login links at once."""
        key = self.get(ref)
        if not key.active:
            return key
        with self.engine.catalog.transaction():
            self.conn.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ?", (utcnow(), key.id))
            self.conn.execute("DELETE FROM web_sessions WHERE key_id = ?", (key.id,))
            self.conn.execute("DELETE FROM login_tokens WHERE key_id = ?", (key.id,))
            self.engine.audit.record(AuditEvent("key.revoke", actor=self.engine.actor,
                                                params={"name": key.name, "role": key.role}))
        return self.get(key.id)

    def count_active(self, role: str | None = None) -> int:
        sql = "SELECT count(*) FROM api_keys WHERE revoked_at IS NULL"
        return self.engine.catalog.count(sql + (" AND role = ?" if role else ""), (role,) if role else ())

    def authenticate(self, secret: str) -> ApiKey | None:
        """The active key with this secret, or None."""
        if not secret.startswith(KEY_PREFIX) or len(secret) > 200:
            return None
        row = self.conn.execute("SELECT * FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL",
                                (hash_secret(secret),)).fetchone()
        return ApiKey.from_row(row) if row else None

    def touch(self, key: ApiKey) -> None:
        """Record use at most every 5 minutes: a write per request would contend with ingest for the lock."""
        now = datetime.now(UTC)
        if key.last_used_at and datetime.fromisoformat(key.last_used_at) > now - timedelta(minutes=5):
            return
        self.conn.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?",
                          (now.isoformat(timespec="seconds"), key.id))

    # -- browser sessions -------------------------------------------------------------------
    def open_session(self, key: ApiKey, hours: float) -> tuple[str, str]:
        """Start a session for a key; returns (cookie token, CSRF token)."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with self.engine.catalog.transaction():
            self.conn.execute("DELETE FROM web_sessions WHERE expires_at < ?", (utcnow(),))
            self.conn.execute("INSERT INTO web_sessions VALUES (?, ?, ?, ?, ?)",
                              (hash_secret(token), key.id, csrf, utcnow(), _later(hours)))
        return token, csrf

    def session(self, token: str) -> tuple[ApiKey, str] | None:
        """(key, CSRF token) of a live session whose key is not revoked, or None."""
        if not token or len(token) > 200:
            return None
        row = self.conn.execute(
            "SELECT k.*, s.csrf_token FROM web_sessions s JOIN api_keys k ON k.id = s.key_id"
            " WHERE s.token_hash = ? AND s.expires_at > ? AND k.revoked_at IS NULL",
            (hash_secret(token), utcnow())).fetchone()
        return (ApiKey.from_row(row), row["csrf_token"]) if row else None

    def close_session(self, token: str) -> None:
        self.conn.execute("DELETE FROM web_sessions WHERE token_hash = ?", (hash_secret(token),))

    # -- one-time login links ---------------------------------------------------------------
    def issue_login_token(self, key: ApiKey, hours: float = 24.0) -> str:
        token = secrets.token_urlsafe(32)
        self.conn.execute("INSERT INTO login_tokens VALUES (?, ?, ?, ?, NULL)",
                          (hash_secret(token), key.id, utcnow(), _later(hours)))
        return token

    def redeem_login_token(self, token: str) -> ApiKey | None:
        """The key a login token stands for, marking the token used; None if unknown, used or expired."""
        if not token or len(token) > 200:
            return None
        with self.engine.catalog.transaction():
            row = self.conn.execute(
                "SELECT k.* FROM login_tokens t JOIN api_keys k ON k.id = t.key_id WHERE t.token_hash = ?"
                " AND t.used_at IS NULL AND t.expires_at > ? AND k.revoked_at IS NULL",
                (hash_secret(token), utcnow())).fetchone()
            if row is None:
                return None
            self.conn.execute("UPDATE login_tokens SET used_at = ? WHERE token_hash = ?",
                              (utcnow(), hash_secret(token)))
        return ApiKey.from_row(row)

    def bootstrap_login(self) -> str | None:
        """A one-time admin login token to print on the console, or None when keys are already in use.

        A store without keys gets an admin key named `initial-admin`. Until that key has been used and
        while it is the only admin, every start issues a fresh link, so a missed link is not a lock-out.
        """
        keys = self.list()
        if not keys:
            key, _secret = self.create(BOOTSTRAP_NAME, "admin")  # secret deliberately dropped
        else:
            admins = [k for k in keys if k.active and k.role == "admin"]
            if len(admins) != 1 or admins[0].name != BOOTSTRAP_NAME or admins[0].last_used_at is not None:
                return None
            key = admins[0]
        return self.issue_login_token(key)
