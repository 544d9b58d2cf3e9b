"""The hash-chained audit log: append-only, verify names every edited, deleted, inserted or reordered event."""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from privacy_support import privacy_cli
from typer.testing import CliRunner

from faceindex.engine import Engine
from faceindex.errors import PolicyError
from faceindex.events import EVENT_TYPES
from faceindex.privacy.actions import Erased, Ingested, KeyCreated, Searched, Verified
from faceindex.privacy.audit import AuditEvent, AuditLog, actions


@pytest.fixture()
def store(tmp_path):
    """Six events, no models needed: collections created, then typed events recorded as the engine does."""
    path = tmp_path / "store"
    with Engine(path) as engine:
        engine.create_collection("a", "consent", "event photos", jurisdictions=["DE"])
        engine.create_collection("b", "contract", "badges", retention_days=30)
        for n, action in enumerate(["subject.enrol", "consent.give", "erase", "purge"], start=1):
            with engine.catalog.transaction():
                engine.audit.record(AuditEvent(action, actor="test", purpose=f"case {n}",
                                               params={"subject_id": n}, counts={"faces": n}))
    return path


def tamper(store, *statements: str, params: tuple = ()) -> None:
    """Edit the catalog behind the engine's back, the way an attacker with file access would."""
    conn = sqlite3.connect(store / "catalog.sqlite", isolation_level=None)
    conn.execute("DROP TRIGGER IF EXISTS audit_no_update")
    conn.execute("DROP TRIGGER IF EXISTS audit_no_delete")
    for sql in statements:
        conn.execute(sql, params if "?" in sql else ())
    conn.close()


def problems(store) -> list[str]:
    with Engine(store) as engine:
        return engine.audit.verify()


def chained_row(store, seq: int, prev_hash: str, action: str = "search") -> tuple:
    """A fabricated event with a correct hash, chained to `prev_hash`."""
    event = AuditEvent(action, actor="intruder", purpose=None, params={}, counts={}, seq=seq, at="2024-01-01T00:00:00",
                       prev_hash=prev_hash)
    event.hash = event.compute_hash()
    return (event.seq, event.at, event.actor, event.action, event.purpose, "{}", "{}", event.prev_hash, event.hash)


INSERT = "INSERT INTO audit_events (seq, at, actor, action, purpose, params, counts, prev_hash, hash) VALUES " \
         "(?, ?, ?, ?, ?, ?, ?, ?, ?)"


def test_untouched_log_verifies_and_records_typed_events(store):
    assert problems(store) == []
    with Engine(store) as engine:
        events = engine.audit.events()
    assert [e.action for e in events] == ["collection.create", "collection.create", "subject.enrol", "consent.give",
                                          "erase", "purge"]
    assert events[0].params["basis"] == "consent" and events[4].counts == {"faces": 3}
    assert all(e.prev_hash == p.hash for p, e in zip(events, events[1:], strict=False))


def test_append_only_triggers_refuse_update_and_delete(store):
    with Engine(store) as engine:
        for sql in ("UPDATE audit_events SET actor = 'x' WHERE seq = 1", "DELETE FROM audit_events WHERE seq = 1"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                engine.catalog.conn.execute(sql)
        with pytest.raises(ValueError):
            engine.audit.record(AuditEvent("not-an-action"))


def test_edit_is_detected(store):
    tamper(store, "UPDATE audit_events SET counts = '{\"faces\": 0}' WHERE seq = 3")
    assert problems(store) == ["event seq 3: contents edited (hash mismatch)"]


def test_edit_with_recomputed_hash_is_detected_at_the_next_event(store):
    with Engine(store) as engine:
        third = engine.audit.events()[2]
    third.purpose = "nothing to see"
    tamper(store, "UPDATE audit_events SET purpose = 'nothing to see', hash = ? WHERE seq = 3",
           params=(third.compute_hash(),))
    found = problems(store)
    assert len(found) == 1 and found[0].startswith("event seq 4: chain broken") and "seq 3" in found[0]


def test_delete_in_the_middle_is_detected(store):
    tamper(store, "DELETE FROM audit_events WHERE seq = 3")
    assert problems(store) == ["event seq 3 missing (deleted); the log jumps to seq 4"]


def test_delete_at_the_end_is_detected(store):
    tamper(store, "DELETE FROM audit_events WHERE seq >= 5")
    assert problems(store) == ["events seq 5..6 missing at the end (deleted)"]


def test_insert_at_the_end_is_detected(store):
    with Engine(store) as engine:
        last = engine.audit.events()[-1]
    tamper(store, INSERT, params=chained_row(store, 7, last.hash))
    assert problems(store) == ["events seq 7..7 come after the recorded head seq 6 (inserted)"]


def test_insert_in_the_middle_is_detected(store):
    with Engine(store) as engine:
        events = engine.audit.events()
    # Make room after seq 2 (shifting later events up), then slip a well-chained fake event in at seq 3.
    shift = ["UPDATE audit_events SET seq = seq + 100 WHERE seq > 2", "UPDATE audit_events SET seq = seq - 99"
             " WHERE seq > 100"]
    tamper(store, *shift)
    tamper(store, INSERT, params=chained_row(store, 3, events[1].hash))
    found = problems(store)
    assert "event seq 3: inserted (seq 4 chains to seq 2, skipping it)" in found
    assert all("seq" in p for p in found)


def test_reorder_is_detected(store):
    swap = ("UPDATE audit_events SET seq = CASE seq WHEN 3 THEN 104 WHEN 4 THEN 103 END WHERE seq IN (3, 4)",
            "UPDATE audit_events SET seq = seq - 100 WHERE seq > 100")
    tamper(store, *swap)
    found = problems(store)
    assert "event seq 3: reordered (it was chained after seq 4, now follows seq 2)" in found
    assert "event seq 4: reordered (it was chained after seq 2, now follows seq 3)" in found
    assert "event seq 5: reordered (it was chained after seq 3, now follows seq 4)" in found
    assert not any("inserted" in p or "deleted" in p for p in found)


def test_cli_list_export_verify(store, tmp_path):
    runner = CliRunner()
    app = privacy_cli()
    listed = runner.invoke(app, ["audit", "list", "--json", "--store", str(store), "--action", "erase"])
    assert listed.exit_code == 0, listed.output
    assert [json.loads(line)["action"] for line in listed.output.splitlines()] == ["erase"]
    ok = runner.invoke(app, ["audit", "verify", "--json", "--store", str(store)])
    assert ok.exit_code == 0 and json.loads(ok.output) == {"ok": True, "events": 6, "problems": []}
    out = tmp_path / "audit.jsonl"
    exported = runner.invoke(app, ["audit", "export", str(out), "--case", "annual review", "--store", str(store)])
    assert exported.exit_code == 0, exported.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 7 and lines[-1]["action"] == "export" and lines[-1]["purpose"] == "annual review"
    assert lines[-1]["hash"] in exported.output  # the head hash to keep elsewhere
    tamper(store, "DELETE FROM audit_events WHERE seq = 2")
    bad = runner.invoke(app, ["audit", "verify", "--store", str(store)])
    assert bad.exit_code == 1 and "seq 2 missing" in bad.output


# -- typed events ---------------------------------------------------------------------------------------------
V1_EVENTS = Path(__file__).parent / "data" / "audit_events_v1.jsonl"
"""Every audited action of `privacy_support.audit_scenario`, exported by the code before events were typed."""


def _load_v1(store: Path) -> list[dict]:
    """A store whose log holds exactly the events the previous code wrote (rows and head as it left them)."""
    events = [json.loads(line) for line in V1_EVENTS.read_text().splitlines()]
    Engine.open(store, mode="write").close()  # creates the store (building an Engine does not)
    conn = sqlite3.connect(store / "catalog.sqlite", isolation_level=None)
    for e in events:
        conn.execute(INSERT, (e["seq"], e["at"], e["actor"], e["action"], e["purpose"],
                              json.dumps(e["params"], sort_keys=True, ensure_ascii=False),
                              json.dumps(e["counts"], sort_keys=True), e["prev_hash"], e["hash"]))
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('audit_head', ?)", (f"{events[-1]['seq']}:{events[-1]['hash']}",))
    conn.close()
    return events


def test_a_log_written_before_typed_events_verifies_and_every_event_maps_to_its_type_unchanged(tmp_path):
    events = _load_v1(tmp_path / "store")
    privacy_actions = {a for a in actions() if EVENT_TYPES[a].__module__.startswith("faceindex.privacy")}
    # (other layers register their own actions, e.g. the service's login and image.view, ingest's ingest.batch:
    # newer than v1)
    assert {e["action"] for e in events} >= privacy_actions - {"key.create", "key.revoke", "erasure.plan"}
    with Engine(tmp_path / "store") as engine:
        assert engine.audit.verify() == []
        for stored in engine.audit.events():
            typed = EVENT_TYPES[stored.action].from_parts(stored.purpose, stored.params, stored.counts)
            assert (typed.params(), typed.counts()) == (stored.params, stored.counts), stored.action
            again = AuditEvent(stored.action, actor=stored.actor, purpose=typed.purpose, params=typed.params(),
                               counts=typed.counts(), seq=stored.seq, at=stored.at, prev_hash=stored.prev_hash)
            assert again.compute_hash() == stored.hash  # the same bytes under the chain
        engine.create_collection("after", "consent", "typed now", jurisdictions=["de"])
        engine.acting_as("officer-1").privacy.purge()
        assert engine.audit.verify() == []
        assert [(e.action, e.actor) for e in engine.audit.events(after=len(events))] == [
            ("collection.create", "cli"), ("purge", "officer-1")]


def test_the_typed_code_writes_every_action_with_the_keys_the_previous_code_wrote(faces_dir, tmp_path_factory,
                                                                                   tmp_path):
    from privacy_support import audit_scenario, fresh_copy, open_engine, pristine

    root = pristine(faces_dir, tmp_path_factory)
    store = fresh_copy(faces_dir, tmp_path_factory, tmp_path)
    with open_engine(store) as engine:
        audit_scenario(engine, root, tmp_path)
        new = engine.audit.events()
        assert engine.audit.verify() == []
    shapes = {(e.action, tuple(sorted(e.params)), tuple(sorted(e.counts))) for e in new}
    for old in (json.loads(line) for line in V1_EVENTS.read_text().splitlines()):
        assert (old["action"], tuple(sorted(old["params"])), tuple(sorted(old["counts"]))) in shapes, old["action"]
    planned = [e for e in new if e.action == "erasure.plan"]  # new: the erasure preview is audited with its case
    assert [e.purpose for e in planned] == ["case 4"] and planned[0].params["route"] == "selfie"


@pytest.mark.parametrize("bad", [
    {"embedding": np.linspace(-1, 1, 128, dtype=np.float32).tolist()},  # a faceprint as a list of floats
    {"embedding": np.ones(128, np.float32)},  # as an array
    {"embedding": np.ones(128, np.float32).tobytes()},  # as bytes
    {"embedding": base64.b64encode(np.ones(128, np.float32).tobytes()).decode()},  # as text
    {"nested": {"a": 1}},
    {"score": np.float32(0.5)},
])
def test_the_log_refuses_anything_but_counts_ids_digests_and_short_text(store, bad):
    with Engine(store) as engine:
        held = len(engine.audit.events())
        with pytest.raises(PolicyError, match="audit field"):
            engine.audit.record(AuditEvent("search", actor="test", purpose="p", params=bad))
        with pytest.raises(PolicyError, match="audit field"):
            Erased(route="selfie", erasure=1, details=bad)
        assert len(engine.audit.events()) == held


def test_typed_event_fields_hold_only_their_kind():
    with pytest.raises(PolicyError, match="count"):
        Searched(probes=-1, top_k=10, threshold=0.9)
    with pytest.raises(PolicyError, match="count"):
        Searched(probes=1.0, top_k=10, threshold=0.9)
    with pytest.raises(PolicyError, match="digest"):
        Ingested(collection="a", paths=1, paths_sha256="/home/alice/photos")
    with pytest.raises(PolicyError, match="text"):
        KeyCreated(name="x" * 201, role="admin")
    with pytest.raises(PolicyError, match="score"):
        Verified(threshold=float("nan"))
    with pytest.raises(ValueError, match="actor"):
        AuditLog(None).record(Verified(threshold=0.9))  # an event needs the actor who did it, per call
    event = Searched(purpose="case 1", probes=1, top_k=10, threshold=np.float64(0.93), faces=1, candidates=2)
    assert event.params() == {"probes": 1, "top_k": 10, "threshold": 0.93}
    assert event.counts() == {"faces": 1, "candidates": 2}


def test_acting_as_is_a_view_with_its_own_actor_sharing_the_store(store):
    with Engine(store, actor="admin") as engine:
        officer = engine.acting_as("officer-1")
        assert officer.store is engine.store and officer.audit is engine.audit
        assert officer.privacy.ctx.store is engine.store and officer.privacy.ctx.actor == "officer-1"
        assert officer.privacy.optouts.cache is engine.privacy.optouts.cache
        with officer:  # closing a view closes nothing
            officer.create_collection("c", "consent", "p")
        engine.create_collection("d", "consent", "p")
        officer.acting_as("officer-2").privacy.export_audit(store.parent / "audit.jsonl")
        assert [(e.action, e.actor) for e in engine.audit.events()[-3:]] == [
            ("collection.create", "officer-1"), ("collection.create", "admin"), ("export", "officer-2")]
        assert engine.actor == "admin" and officer.actor == "officer-1"
        engine.actor = "swapped"  # the older way (one shared engine): privacy events follow the swap too
        engine.privacy.export_audit(store.parent / "audit.jsonl")
        assert engine.audit.events()[-1].actor == "swapped"
