"""API keys, browser sessions and one-time login links, stored in the catalog as hashes only.

A key is `fik_` followed by 43 URL-safe characters (256 random bits). Because it carries that much
entropy, a single SHA-256 is enough to store it: there is nothing to brute-force, so a slow
password hash would only slow every request down. The plaintext is shown once, at creation.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from faceindex.errors import InvalidInputError, NotFoundError
from faceindex.privacy.actions import KeyCreated, KeyRevoked
from faceindex.privacy.audit import AuditLog
from faceindex.service import storage
from faceindex.store.catalog import Catalog, utcnow

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
    def from_row(cls, row: storage.Row) -> ApiKey:
        return cls(row["id"], row["name"], row["role"], row["hint"], row["created_at"], row["revoked_at"],
                   row["last_used_at"])


class KeyStore:
    """Key, session and login-link records (SQL in service/storage.py), over an engine or a bare catalog.

    Given an Engine, key creation and revocation are audited under the engine's actor in the same
    transaction. Given a Catalog (a request thread's own connection, see storage.ServiceDB), it serves the
    hot path (authenticate, sessions, login links) without touching the engine; changes made through it
    are audited with actor `service` unless one is passed.
    """

    def __init__(self, owner: Engine | Catalog, actor: str | None = None):
        if isinstance(owner, Catalog):
            self.catalog, self.actor = owner, actor or "service"
        else:
            self.catalog, self.actor = owner.catalog, actor or owner.actor
        self.audit = AuditLog(self.catalog)

    # -- keys -------------------------------------------------------------------------------
    def create(self, name: str, role: str) -> tuple[ApiKey, str]:
        """Create a key; returns it with its secret, which is not stored and cannot be shown again."""
        name = (name or "").strip()
        if not name or len(name) > 100:
            raise InvalidInputError("a key needs a name of 1 to 100 characters")
        if role not in ROLES:
            raise InvalidInputError(f"role must be one of {', '.join(ROLES)}; got {role!r}")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        with self.catalog.transaction():
            key_id = storage.insert_key(self.catalog, name, role, hash_secret(secret), secret[:10] + "…", utcnow())
            self.audit.record(KeyCreated(name=name, role=role), actor=self.actor)
        return self.get(key_id), secret

    def list(self) -> list[ApiKey]:
        return [ApiKey.from_row(r) for r in storage.keys(self.catalog)]

    def get(self, ref: int | str) -> ApiKey:
        """A key by id or by name."""
        if isinstance(ref, int) or str(ref).isdigit():
            row = storage.key_by_id(self.catalog, int(ref))
        else:
            row = storage.key_by_name(self.catalog, str(ref))
        if row is None:
            raise NotFoundError(f"no API key {ref!r}")
        return ApiKey.from_row(row)

    def revoke(self, ref: int | str) -> ApiKey:
        """Revoke a key and end its browser sessions and login links at once."""
        key = self.get(ref)
        if not key.active:
            return key
        with self.catalog.transaction():
            storage.revoke_key(self.catalog, key.id, utcnow())
            self.audit.record(KeyRevoked(name=key.name, role=key.role), actor=self.actor)
        return self.get(key.id)

    def count_active(self, role: str | None = None, *, held_secrets_only: bool = False) -> int:
        """Active keys (of one role). `held_secrets_only` leaves out the `initial-admin` key made at the first
        start, whose secret was never shown to anyone: it must not count as an admin able to use the API."""
        return storage.count_active_keys(self.catalog, role, except_name=BOOTSTRAP_NAME if held_secrets_only else None)

    def authenticate(self, secret: str) -> ApiKey | None:
        """The active key with this secret, or None."""
        if not secret.startswith(KEY_PREFIX) or len(secret) > 200:
            return None
        row = storage.active_key_by_hash(self.catalog, hash_secret(secret))
        return ApiKey.from_row(row) if row else None

    def touch(self, key: ApiKey) -> None:
        """Record use at most every 5 minutes: a write per request would contend with ingest for the lock."""
        now = datetime.now(UTC)
        if key.last_used_at and datetime.fromisoformat(key.last_used_at) > now - timedelta(minutes=5):
            return
        storage.touch_key(self.catalog, key.id, now.isoformat(timespec="seconds"))

    # -- browser sessions -------------------------------------------------------------------
    def open_session(self, key: ApiKey, hours: float) -> tuple[str, str]:
        """Start a session for a key; returns (cookie token, CSRF token)."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        storage.insert_session(self.catalog, hash_secret(token), key.id, csrf, utcnow(), _later(hours))
        return token, csrf

    def session(self, token: str) -> tuple[ApiKey, str] | None:
        """(key, CSRF token) of a live session whose key is not revoked, or None."""
        if not token or len(token) > 200:
            return None
        row = storage.live_session(self.catalog, hash_secret(token), utcnow())
        return (ApiKey.from_row(row), row["csrf_token"]) if row else None

    def close_session(self, token: str) -> None:
        storage.delete_session(self.catalog, hash_secret(token))

    # -- one-time login links ---------------------------------------------------------------
    def issue_login_token(self, key: ApiKey, hours: float = 24.0) -> str:
        """A fresh one-time login link token for a key; every earlier unused link of that key stops working."""
        token = secrets.token_urlsafe(32)
        storage.replace_login_token(self.catalog, hash_secret(token), key.id, utcnow(), _later(hours))
        return token

    def redeem_login_token(self, token: str) -> ApiKey | None:
        """The key a login token stands for, marking it used (and the key's other links dead); None if unknown,
        used or expired."""
        if not token or len(token) > 200:
            return None
        row = storage.redeem_login_token(self.catalog, hash_secret(token), utcnow())
        return ApiKey.from_row(row) if row else None

    def bootstrap_login(self) -> str | None:
        """A one-time admin login token to print on the console, or None when keys are already in use.

        A store without keys gets an admin key named `initial-admin`. Until that key has been used and
        while it is the only admin, every start issues a fresh link (ending the previous one), so a missed
        link is not a lock-out and an old link found in a scroll-back or log is worthless.
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
