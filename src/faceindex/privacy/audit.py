"""Append-only, hash-chained audit log: typed events written in the same transaction as the change."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from faceindex.events import EVENT_TYPES, Event, check_value
from faceindex.privacy import actions as _actions  # noqa: F401  (registers the actions' event types)
from faceindex.store.catalog import Catalog, utcnow

GENESIS = "0" * 64


def actions() -> tuple[str, ...]:
    """Every action the log accepts: those with a typed event (faceindex.events, or one another layer defines)."""
    return tuple(EVENT_TYPES)


@dataclass
class AuditEvent:
    """One recorded event as the log stores it (what `events()` returns). New events are written from the typed
    events of `faceindex.events`; one built by hand is checked the same way (plain counts, ids, short text)."""

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

    def record(self, event: Event | AuditEvent, *, actor: str | None = None) -> AuditEvent:
        """Append one event. A typed `Event` needs the `actor` (who did it: passed per call, never a shared
        setting); a hand-built AuditEvent carries its own and has its params and counts checked value by value.
        Raises ValueError for an unknown action and PolicyError for a value the log must not hold."""
        if isinstance(event, Event):
            if not actor:
                raise ValueError("an audit event needs the actor who did it")
            event = AuditEvent(event.action, actor=actor, purpose=event.purpose, params=event.params(),
                               counts=event.counts())
        else:
            if event.action not in EVENT_TYPES:
                raise ValueError(f"unknown audit action {event.action!r}")
            check_value("actor", event.actor, kind="text")
            check_value("purpose", event.purpose, kind="purpose")
            event.params = {k: check_value(k, v) for k, v in event.params.items()}
            event.counts = {k: check_value(k, v, kind="count") for k, v in event.counts.items()}
        check_value("actor", event.actor, kind="text")
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
        """Return the problems found (empty list = intact), each naming the event(s) concerned.

        - edited: an event's stored hash no longer matches its contents;
        - edited and re-hashed: the next event's `prev_hash` no longer matches it;
        - deleted: a gap in the sequence numbers, or the log ends before the recorded head;
        - inserted: an event the chain skips over, or events after the recorded head;
        - reordered: an event chained after another event than the one before it.
        """
        problems: list[str] = []
        rows = self.catalog.conn.execute("SELECT * FROM audit_events ORDER BY seq").fetchall()
        events = [_row_event(r) for r in rows]
        seq_of_hash = {e.hash: e.seq for e in events}
        chained_to = {e.prev_hash for e in events}  # hashes some event names as its predecessor
        for n, event in enumerate(events):
            if event.compute_hash() != event.hash:
                problems.append(f"event seq {event.seq}: contents edited (hash mismatch)")
            expected_seq = events[n - 1].seq + 1 if n else 1
            if event.seq != expected_seq:
                gap = f"{expected_seq}" if event.seq == expected_seq + 1 else f"{expected_seq}..{event.seq - 1}"
                problems.append(f"event seq {gap} missing (deleted); the log jumps to seq {event.seq}")
                continue
            expected_prev = events[n - 1].hash if n else GENESIS
            if event.prev_hash == expected_prev:
                continue
            if n >= 2 and event.prev_hash == events[n - 2].hash and events[n - 1].hash not in chained_to:
                problems.append(f"event seq {events[n - 1].seq}: inserted (seq {event.seq} chains to seq "
                                f"{events[n - 2].seq}, skipping it)")
            elif event.prev_hash in seq_of_hash:
                problems.append(f"event seq {event.seq}: reordered (it was chained after seq "
                                f"{seq_of_hash[event.prev_hash]}, now follows seq {expected_seq - 1})")
            else:
                problems.append(f"event seq {event.seq}: chain broken: the event before it (seq {expected_seq - 1}) "
                                "was edited and re-hashed, or replaced")
        head = self.catalog.get_meta("audit_head")
        last = f"{events[-1].seq}:{events[-1].hash}" if events else None
        if head != last:
            head_seq = int(head.split(":")[0]) if head else 0
            last_seq = events[-1].seq if events else 0
            if head_seq < last_seq:
                problems.append(f"events seq {head_seq + 1}..{last_seq} come after the recorded head seq {head_seq} "
                                "(inserted)")
            elif head_seq > last_seq:
                problems.append(f"events seq {last_seq + 1}..{head_seq} missing at the end (deleted)")
            else:
                problems.append(f"event seq {last_seq}: differs from the recorded head (edited or replaced)")
        return problems
