"""Append-only, hash-chained audit log: typed events written in the same transaction as the change."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from faceindex.store.catalog import Catalog, utcnow

GENESIS = "0" * 64

ACTIONS = (
    "collection.create", "collection.delete", "ingest", "search", "verify", "image.remove", "reindex",
    "subject.enrol", "consent.give", "consent.withdraw", "erase", "opt-out", "access-report", "purge",
    "export", "redact", "key.create", "key.revoke",
)


@dataclass
class AuditEvent:
    """One thing that happened. `params` and `counts` never hold a faceprint or a photo."""

    action: str
    actor: str = "cli"
    purpose: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    seq: int | None = None
    at: str | None = None
    prev_hash: str | None = None
    hash: str | None = None

    def payload(self) -> str:
        body = {"seq": self.seq, "at": self.at, "actor": self.actor, "action": self.action,
                "purpose": self.purpose, "params": self.params, "counts": self.counts, "prev": self.prev_hash}
        return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def compute_hash(self) -> str:
        return hashlib.sha256(self.payload().encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": self.at, "actor": self.actor, "action": self.action,
                "purpose": self.purpose, "params": self.params, "counts": self.counts,
                "prev_hash": self.prev_hash, "hash": self.hash}


def _row_event(row: sqlite3.Row) -> AuditEvent:
    return AuditEvent(action=row["action"], actor=row["actor"], purpose=row["purpose"],
                      params=json.loads(row["params"]), counts=json.loads(row["counts"]), seq=row["seq"],
                      at=row["at"], prev_hash=row["prev_hash"], hash=row["hash"])


class AuditLog:
    """Writes and checks the chain. Call `record` inside the catalog transaction of the change.

    The head (last seq and hash) is also kept in the catalog's meta table, so deleting the newest
    events is detected too; an attacker who rewrites the whole database consistently is not, which
    is why `export` exists: ship the head hash elsewhere to anchor it.
    """

    def __init__(self, catalog: Catalog):
        self.catalog = catalog

    def record(self, event: AuditEvent) -> AuditEvent:
        if event.action not in ACTIONS:
            raise ValueError(f"unknown audit action {event.action!r}")
        with self.catalog.transaction() as conn:
            head = conn.execute("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1").fetchone()
            event.seq = (head["seq"] + 1) if head else 1
            event.prev_hash = head["hash"] if head else GENESIS
            event.at = event.at or utcnow()
            event.hash = event.compute_hash()
            conn.execute(
                "INSERT INTO audit_events (seq, at, actor, action, purpose, params, counts, prev_hash, hash)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (event.seq, event.at, event.actor, event.action, event.purpose,
                 json.dumps(event.params, sort_keys=True, ensure_ascii=False),
                 json.dumps(event.counts, sort_keys=True), event.prev_hash, event.hash),
            )
            self.catalog.set_meta("audit_head", f"{event.seq}:{event.hash}")
        return event

    def events(self, *, action: str | None = None, limit: int | None = None, after: int = 0) -> list[AuditEvent]:
        sql = "SELECT * FROM audit_events WHERE seq > ?"
        params: list[Any] = [after]
        if action:
            sql += " AND action = ?"
            params.append(action)
        sql += " ORDER BY seq"
        if limit:
            sql += " LIMIT ?"
            params.append(limit)
        return [_row_event(r) for r in self.catalog.conn.execute(sql, params)]

    def verify(self) -> list[str]:
        """Return the problems found (empty list = intact): edited, deleted, inserted or reordered events."""
        problems: list[str] = []
        prev_hash, expected_seq = GENESIS, 1
        rows = self.catalog.conn.execute("SELECT * FROM audit_events ORDER BY rowid").fetchall()
        for row in rows:
            event = _row_event(row)
            if event.seq != expected_seq:
                problems.append(f"event seq {event.seq}: expected seq {expected_seq} (deleted, inserted or "
                                "reordered events)")
            if event.prev_hash != prev_hash:
                problems.append(f"event seq {event.seq}: chain broken (previous hash does not match)")
            if event.compute_hash() != event.hash:
                problems.append(f"event seq {event.seq}: contents edited (hash mismatch)")
            prev_hash, expected_seq = event.hash, event.seq + 1
        head = self.catalog.get_meta("audit_head")
        last = f"{rows[-1]['seq']}:{rows[-1]['hash']}" if rows else None
        if head != last:
            problems.append(f"head mismatch: catalog records {head}, log ends at {last} (events removed at the end?)")
        return problems
