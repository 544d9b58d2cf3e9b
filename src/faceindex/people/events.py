"""Typed audit events of the people operations: ids, counts and short text only (a name an operator gives a
person is never in the log, only the person's id). people.operations hands them to the `audit` callback the
Engine wires to the audit log (privacy sits above this layer, so it is not imported here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from faceindex.events import Event, param, tally


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
