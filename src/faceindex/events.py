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

    @classmethod
    def from_parts(cls, purpose: str | None, params: Mapping[str, Any], counts: Mapping[str, int]) -> Event:
        """The typed event behind a stored event's params and counts (what `params()`/`counts()` give back);
        PolicyError if they hold a key this action never writes."""
        left = {"params": dict(params), "counts": dict(counts)}
        values: dict[str, Any] = {}
        catch_all: dict[str, str] = {}
        for f in fields(cls):
            if f.name == "purpose":
                continue
            if f.metadata["kind"] in ("details", "tally"):
                catch_all[f.metadata["part"]] = f.name
            elif (key := f.metadata["key"] or f.name) in left[f.metadata["part"]]:
                values[f.name] = left[f.metadata["part"]].pop(key)
        for part, name in catch_all.items():
            values[name], left[part] = left[part], {}
        if left["params"] or left["counts"]:
            unknown = sorted(left["params"]) + sorted(left["counts"])
            raise PolicyError(f"audit action {cls.action!r} has no field {unknown}")
        return cls(purpose=purpose, **values)

    def with_counts(self, **counts: int) -> Event:
        """A copy with these count fields set (the deletion primitive fills in what it deleted)."""
        return replace(self, **counts)
