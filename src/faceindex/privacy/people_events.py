"""Typed audit events of the people operations (people.operations reports them through the Engine's `audit`).

The people layer sits below privacy and does not import it: it hands (action, params, counts) to a callback,
and the Engine records them as these types, which limit them to ids, counts and short text (a name an
operator gives a person is never in the log: only the person's id).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from faceindex.privacy.events import Event, param, tally


@dataclass(frozen=True, kw_only=True)
class PeopleClustered(Event):
    action: ClassVar[str] = "people.cluster"
    collection: str | None = param("text", omit_none=True, default=None)
    faces: int = tally()
    grouped: int = tally()
    new_people: int = tally()


@dataclass(frozen=True, kw_only=True)
class PersonNamed(Event):
    action: ClassVar[str] = "people.name"
    person: int = param("id")


@dataclass(frozen=True, kw_only=True)
class PeopleMerged(Event):
    action: ClassVar[str] = "people.merge"
    person: int = param("id")
    other: int = param("id")
    faces: int = tally()


@dataclass(frozen=True, kw_only=True)
class PersonSplit(Event):
    action: ClassVar[str] = "people.split"
    person: int = param("id")
    other: int = param("id")
    faces: int = tally()


@dataclass(frozen=True, kw_only=True)
class PersonFaceRejected(Event):
    action: ClassVar[str] = "people.reject"
    person: int = param("id")
    face: int = param("id")
    faces: int = tally()


@dataclass(frozen=True, kw_only=True)
class PersonFacesConfirmed(Event):
    action: ClassVar[str] = "people.confirm"
    person: int = param("id")
    faces: int = tally()


@dataclass(frozen=True, kw_only=True)
class GroupingChanged(Event):
    action: ClassVar[str] = "people.grouping"
    collection: str = param("text")
    allowed: str = param("text")
    faces: int = tally()


def record_people_event(record, action: str, params: dict, counts: dict) -> None:
    """Build the typed event for a people action and hand it to `record` (e.g. Engine._record)."""
    from faceindex.privacy.events import EVENT_TYPES

    record(EVENT_TYPES[action].from_parts(None, params, counts))
