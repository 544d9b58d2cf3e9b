"""Typed audit events: one dataclass per action, whose fields can hold only counts, ids, digests and short text.

"The audit log never holds a faceprint or a photo" is a property of these types, checked when an event is
built: a field declared as a count takes a non-negative int, an id an int, a digest a hex string, a text at
most MAX_TEXT characters, a list only ints or short texts. Bytes, arrays, numpy scalars, floats in lists
and long strings are refused with a PolicyError, so a 128-float faceprint (or its base64) cannot get in.

Each event maps to the `params` and `counts` JSON objects that the log has always stored for its action,
key for key, so the hash chain of stores written before these types existed still verifies.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any, ClassVar

from faceindex.errors import PolicyError

MAX_TEXT = 200
"""Longest text an event field (or the purpose) may hold: room for a case reference or a collection name,
none for a serialised faceprint (512 bytes are 684 characters of base64)."""
MAX_PURPOSE = 500
"""Longest purpose or case reference (typed by a person: a sentence fits, a faceprint does not)."""
MAX_LIST = 100_000
"""Longest id list in one event (an erasure by image lists the ids of every copy of the photo)."""

_KINDS = ("count", "id", "ids", "digest", "text", "texts", "score", "flag", "details", "tally")


def param(kind: str, *, key: str | None = None, omit_none: bool = False, default: Any = MISSING) -> Any:
    """A field stored in the event's `params` as `kind`; `key` renames it in the JSON; `omit_none` leaves it
    out of the JSON when None (keys that the log has only ever written when set)."""
    if kind not in _KINDS:
        raise ValueError(kind)
    meta = {"kind": kind, "part": "params", "key": key, "omit_none": omit_none}
    if kind in ("details", "tally"):
        return field(default_factory=dict, metadata=meta)
    return field(metadata=meta) if default is MISSING else field(default=default, metadata=meta)


def tally(*, key: str | None = None, default: int = 0) -> Any:
    """A count stored in the event's `counts` (defaults to 0: deletions fill theirs in)."""
    return field(default=default, metadata={"kind": "count", "part": "counts", "key": key, "omit_none": False})


def tallies() -> Any:
    """A mapping of counts merged into `counts` (ingest reports a set of counts that grows with the runner)."""
    return field(default_factory=dict, metadata={"kind": "tally", "part": "counts", "key": None, "omit_none": False})


def check_value(name: str, value: Any, *, kind: str | None = None) -> Any:
    """`value` if it is allowed in an audit event (as `kind`, or as any one plain form); else PolicyError.

    Returns the JSON form (tuples become lists, mappings plain dicts). `name` is for the message only.
    """
    def refuse(why: str) -> PolicyError:
        return PolicyError(f"audit field {name!r}: {why} (the audit log holds counts, ids, digests and short "
                           f"text only, never a faceprint or a photo); got {type(value).__name__}")

    if value is None:
        return None
    if kind == "count":
        if type(value) is not int or value < 0:
            raise refuse("a count is a non-negative int")
        return value
    if kind == "id":
        if type(value) is not int:
            raise refuse("an id is an int")
        return value
    if kind == "flag":
        if type(value) is not bool:
            raise refuse("a flag is a bool")
        return value
    if kind == "score":
        if type(value) is not int and not (isinstance(value, float) and math.isfinite(value)):
            raise refuse("a score is one finite number")
        return value if type(value) is int else float(value)  # numpy's float64 is a float: stored as one
    if kind == "digest":
        if type(value) is not str or not 8 <= len(value) <= 128 or any(c not in "0123456789abcdef" for c in value):
            raise refuse("a digest is lower-case hex, 8 to 128 characters")
        return value
    if kind == "purpose":
        if type(value) is not str or len(value) > MAX_PURPOSE:
            raise refuse(f"a purpose is a str of at most {MAX_PURPOSE} characters")
        return value
    if kind == "text":
        if type(value) is not str or len(value) > MAX_TEXT:
            raise refuse(f"a text is a str of at most {MAX_TEXT} characters")
        return value
    if kind in ("ids", "texts"):
        if not isinstance(value, list | tuple) or len(value) > MAX_LIST:
            raise refuse(f"a list of at most {MAX_LIST} items")
        return [check_value(name, v, kind="id" if kind == "ids" else "text") for v in value]
    if kind in ("details", "tally"):
        if not isinstance(value, Mapping):
            raise refuse("a mapping")
        return {check_value(name, k, kind="text"): check_value(f"{name}.{k}", v, kind="count" if kind == "tally"
                                                               else None) for k, v in value.items()}
    # No kind (a legacy event's params, a details mapping): any one of the plain forms above.
    if type(value) is bool or type(value) is int:
        return value
    if isinstance(value, float):
        return check_value(name, value, kind="score")
    if type(value) is str:
        return check_value(name, value, kind="text")
    if isinstance(value, list | tuple):
        if all(type(v) is int for v in value):
            return check_value(name, value, kind="ids")
        return check_value(name, value, kind="texts")
    raise refuse("not a count, id, digest, flag, score or short text")


EVENT_TYPES: dict[str, type[Event]] = {}
"""Action name -> its event class (filled as classes are defined; other layers may define their own)."""


@dataclass(frozen=True, kw_only=True)
class Event:
    """Base of the typed events. A subclass sets `action` and declares its fields with param(), tally()."""

    action: ClassVar[str] = ""
    purpose: str | None = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("action"):
            EVENT_TYPES[cls.action] = cls

    def __post_init__(self):
        object.__setattr__(self, "purpose", check_value("purpose", self.purpose, kind="purpose"))
        for f in fields(self):
            if f.name != "purpose":
                object.__setattr__(self, f.name, check_value(f.name, getattr(self, f.name), kind=f.metadata["kind"]))

    def params(self) -> dict[str, Any]:
        """The `params` JSON object of this event, as the log stores it."""
        return self._part("params")

    def counts(self) -> dict[str, int]:
        """The `counts` JSON object of this event, as the log stores it."""
        return self._part("counts")

    def _part(self, part: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "purpose" or f.metadata["part"] != part:
                continue
            value = getattr(self, f.name)
            if f.metadata["kind"] in ("details", "tally"):
                out.update(value)
            elif not (value is None and f.metadata["omit_none"]):
                out[f.metadata["key"] or f.name] = list(value) if isinstance(value, list) else value
        return out

    def with_counts(self, **counts: int) -> Event:
        """A copy with these count fields set (the deletion primitive fills in what it deleted)."""
        return replace(self, **counts)


# -- the actions -------------------------------------------------------------------------------------------------
# Field names and keys are the JSON the log has always stored for each action: do not rename them (the hash
# chain covers them, and readers of exported logs rely on them).

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
