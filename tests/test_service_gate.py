"""The engine gate: one writer at a time, the caller's actor on every use, and reads that take no lock once
the store says concurrent reader threads are safe (issue 9 item 12, issue 10 item 6).

A deterministic fake stands in for the Engine here: what is tested is the gate's locking and actor
handling, not the face pipeline (the service tests run the real Engine through the same gate).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace

from faceindex.service.principal import Principal
from faceindex.service.state import EngineGate

ALICE = Principal(1, "alice", "searcher", "key")
BOB = Principal(2, "bob", "curator", "key")


@dataclass
class FakeStore:
    concurrent_reads: bool = False


@dataclass
class FakeEngine:
    """What the gate uses of an Engine: `actor`, `store.concurrent_reads` and (optionally) `acting_as`."""

    actor: str = "service"
    store: FakeStore = field(default_factory=FakeStore)


@dataclass
class ViewingEngine(FakeEngine):
    def acting_as(self, actor: str) -> ViewingEngine:
        return replace(self, actor=actor)


def _held_elsewhere(gate: EngineGate, use) -> bool:
    """Whether `use()` could enter while another thread holds the gate for writing."""
    held, release, entered = threading.Event(), threading.Event(), threading.Event()

    def writer():
        with gate.write(BOB):
            held.set()
            release.wait(30)

    def other():
        with use():
            entered.set()

    thread = threading.Thread(target=writer)
    thread.start()
    held.wait(10)
    reader = threading.Thread(target=other)
    reader.start()
    got_in = entered.wait(5.0)  # a bound for a blocked thread, not a speed assertion
    release.set()
    thread.join()
    reader.join()
    return got_in


def test_reads_wait_for_the_writer_until_the_store_allows_concurrent_readers():
    engine = ViewingEngine()
    gate = EngineGate(engine)
    assert not gate.concurrent_reads
    assert not _held_elsewhere(gate, lambda: gate.read(ALICE))  # one shared connection: serialised
    engine.store.concurrent_reads = True
    assert gate.concurrent_reads
    assert _held_elsewhere(gate, lambda: gate.read(ALICE))  # per-thread connections: no lock of ours
    assert not _held_elsewhere(gate, lambda: gate.write(ALICE))  # still one writer


def test_each_use_carries_its_caller_and_the_shared_engine_keeps_its_actor():
    engine = ViewingEngine(store=FakeStore(concurrent_reads=True))
    gate = EngineGate(engine)
    with gate.read(ALICE) as seen_a, gate.write(BOB) as seen_b:
        assert (seen_a.actor, seen_b.actor, engine.actor) == ("key:alice", "key:bob", "service")
    with gate.read() as unnamed:
        assert unnamed is engine


def test_an_engine_without_acting_as_has_its_actor_swapped_under_the_lock_only():
    engine = FakeEngine(store=FakeStore(concurrent_reads=True))
    gate = EngineGate(engine)
    assert not gate.concurrent_reads  # no per-caller view: reads must not run side by side
    with gate.read(ALICE) as seen:
        assert seen is engine and engine.actor == "key:alice"
    assert engine.actor == "service"
