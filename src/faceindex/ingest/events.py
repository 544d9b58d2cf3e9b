"""The ingest layer's own audit events: one per committed batch (so a killed run leaves no face without an
event), and a collection's detail level changed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from faceindex.events import Event, param, tallies


@dataclass(frozen=True, kw_only=True)
class IngestBatchCommitted(Event):
    """A batch of ingest results committed in the same transaction as this event (see ingest.runner).

    `run` is a random id shared by the batches of one `Engine.ingest` call; a run that ends writes the usual
    "ingest" event after its last batch, so batches with no such event after them are those of a killed run.
    """

    action: ClassVar[str] = "ingest.batch"
    collection: str = param("text")
    run: str = param("digest")
    report: dict = tallies()


@dataclass(frozen=True, kw_only=True)
class CollectionDetailSet(Event):
    """A collection was given the detail level its ingests use (`default`: the store's setting again)."""

    action: ClassVar[str] = "collection.detail"
    collection: str = param("text")
    detail: str = param("text")
