"""The audit log's actions as typed events (see faceindex.events for what the field kinds allow).

Field names and keys are the JSON the log has always stored for each action: do not rename them (the hash
chain covers them, and readers of exported logs rely on them). tests/data/audit_events_v1.jsonl holds events
written before these types existed; test_audit checks every one maps to its type and back unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from faceindex.events import Event, param, tallies, tally


@dataclass(frozen=True, kw_only=True)
class CollectionCreated(Event):
    action: ClassVar[str] = "collection.create"
    collection: str = param("text")
    basis: str = param("text")
    jurisdictions: list[str] = param("texts", default=())
    retention_days: int | None = param("count", default=None)


@dataclass(frozen=True, kw_only=True)
class Deletion(Event):
    """Base of the events of the one deletion primitive (`privacy.deletion.delete_images`): it fills the counts."""

    images: int = tally()
    faces: int = tally()


@dataclass(frozen=True, kw_only=True)
class CollectionDeleted(Deletion):
    action: ClassVar[str] = "collection.delete"
    collection: str = param("text")


@dataclass(frozen=True, kw_only=True)
class ImageRemoved(Deletion):
    action: ClassVar[str] = "image.remove"
    named: int = param("count", key="images")
    """How many image records the reference named (an image id or a path held in several collections)."""


@dataclass(frozen=True, kw_only=True)
class Erased(Deletion):
    action: ClassVar[str] = "erase"
    route: str = param("text")
    erasure: int = param("id")
    """The erasure job's id (its journal row)."""
    details: dict = param("details")
    """The plan's route parameters (ids, threshold, gallery size, jurisdiction code: never a name or a path)."""
    resumed: bool | None = param("flag", omit_none=True, default=None)
    collections: int = tally()
    subjects: int = tally()


@dataclass(frozen=True, kw_only=True)
class Purged(Erased):
    action: ClassVar[str] = "purge"


@dataclass(frozen=True, kw_only=True)
class ErasurePlanned(Event):
    """An erasure plan was made (and shown): a preview by selfie is a face search, audited like one."""

    action: ClassVar[str] = "erasure.plan"
    route: str = param("text")
    details: dict = param("details")
    faces: int = tally()
    images: int = tally()
    collections: int = tally()
    subjects: int = tally()
    also_found_by_search: int = tally()


@dataclass(frozen=True, kw_only=True)
class Ingested(Event):
    action: ClassVar[str] = "ingest"
    collection: str = param("text")
    paths: int = param("count")
    paths_sha256: str = param("digest")
    """Digest of the sorted paths: folder names can be personal data and the log can never be erased."""
    report: dict = tallies()


@dataclass(frozen=True, kw_only=True)
class Searched(Event):
    action: ClassVar[str] = "search"
    probes: int = param("count")
    top_k: int = param("count")
    threshold: float = param("score")
    faces: int = tally()
    candidates: int = tally()


@dataclass(frozen=True, kw_only=True)
class Verified(Event):
    action: ClassVar[str] = "verify"
    threshold: float = param("score")
    pairs: int = tally()


@dataclass(frozen=True, kw_only=True)
class Reindexed(Event):
    action: ClassVar[str] = "reindex"
    faces: int = tally()


@dataclass(frozen=True, kw_only=True)
class SubjectEnrolled(Event):
    action: ClassVar[str] = "subject.enrol"
    subject_id: int = param("id")
    new: bool = param("flag")
    collection_id: int | None = param("id", default=None)
    faces: int = tally()
    photos_skipped: int = tally()


@dataclass(frozen=True, kw_only=True)
class ConsentGiven(Event):
    action: ClassVar[str] = "consent.give"
    subject_id: int = param("id")
    consent_id: int = param("id")
    scope: str | None = param("text", default=None)


@dataclass(frozen=True, kw_only=True)
class ConsentWithdrawn(ConsentGiven):
    action: ClassVar[str] = "consent.withdraw"


@dataclass(frozen=True, kw_only=True)
class OptedOut(Event):
    action: ClassVar[str] = "opt-out"
    optout_id: int = param("id")
    scheme: str = param("text")
    threshold: float = param("score")
    faces_matched: int = tally()


@dataclass(frozen=True, kw_only=True)
class OptOutWithdrawn(Event):
    action: ClassVar[str] = "opt-out.withdraw"
    optout_id: int = param("id")


@dataclass(frozen=True, kw_only=True)
class AccessReported(Event):
    action: ClassVar[str] = "access-report"
    subject_ids: list[int] = param("ids")
    threshold: float = param("score")
    images: int = tally()
    faces: int = tally()


@dataclass(frozen=True, kw_only=True)
class Exported(Event):
    action: ClassVar[str] = "export"
    what: str = param("text")
    events: int = tally()


@dataclass(frozen=True, kw_only=True)
class Redacted(Event):
    action: ClassVar[str] = "redact"
    subject_id: int = param("id")
    faces: int = tally()
    kept: int = tally()
    blurred: int = tally()


@dataclass(frozen=True, kw_only=True)
class KeyCreated(Event):
    action: ClassVar[str] = "key.create"
    name: str = param("text")
    role: str = param("text")


@dataclass(frozen=True, kw_only=True)
class KeyRevoked(KeyCreated):
    action: ClassVar[str] = "key.revoke"
