"""Request (…Create/…Body) and response (…Public) models of the people routes (/api/v1/people).

Built from the people layer's dataclasses field by field, never from rows: a column added to a people table
cannot leak through the API by accident. A person's name is personal data: it is in these answers, never in the
audit log (the people layer records ids only).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from faceindex.people.schema import MAX_NAME
from faceindex.service.deps import MAX_INT

Id = Annotated[int, Field(ge=0, le=MAX_INT)]
"""A face or person id: SQLite's INTEGER range (a bigger number is a 422 naming the field, not a 500)."""
MAX_FACES = 10_000
"""Face ids one request may name (split, reject, confirm): a page of a big person, not a whole store."""
MAX_MERGE = 100
"""People one merge request may fold into another."""


class PersonPublic(BaseModel):
    id: int = Field(description="Use this in URLs (/people/{id}); ids of merged-away people stop working.")
    name: str | None = Field(description="Given by an operator; never guessed. null: not named yet.")
    size: int = Field(description="Faces in this person (auto-assigned and confirmed; rejected ones not counted).")
    confirmed: int = Field(description="Of those, faces an operator confirmed.")
    cover_face_id: int | None = Field(None, description="A face to show for this person (GET /faces/{id}/crop).")


class PersonPage(BaseModel):
    items: list[PersonPublic]
    total: int = Field(description="People matching the filters (all pages).")
    limit: int
    offset: int


class PersonFacePublic(BaseModel):
    face_id: int
    image_id: int = Field(description="The photo: GET /images/{image_id}, or the page /images/{image_id}.")
    box: list[int] = Field(description="left, top, right, bottom in the upright photo's pixels.")
    state: Literal["auto", "confirmed"] = Field(description="auto: the grouping put it here; confirmed: an operator.")
    confidence: float | None = Field(description="Mean cosine to the rest of the person (auto faces); low = review.")
    collection: str
    path: str = Field(description="The photo's provenance (file path or upload name).")


class PersonDetail(PersonPublic):
    faces: list[PersonFacePublic] | None = Field(
        description="This page of the person's faces, in face id order; null for roles that may not list photos "
                    "(a searcher sees names and sizes, and photos only of its own search results).")
    faces_total: int
    limit: int
    offset: int


class NameBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(max_length=MAX_NAME, description="The name; null clears it. Names are unique; "
                             "leading/trailing spaces are trimmed, empty and control characters refused.")


class MergeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    others: list[Id] = Field(min_length=1, max_length=MAX_MERGE,
                              description="People whose faces (and rejections) move into this one; they are removed. "
                                          "All or none: one that cannot merge leaves every one as it was.")


class FacesBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    faces: list[Id] = Field(min_length=1, max_length=MAX_FACES, description="Face ids of this person.")


class ConfirmBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    faces: list[Id] | None = Field(None, min_length=1, max_length=MAX_FACES,
                                    description="Face ids of this person; null or absent: all of them.")


class SplitPublic(BaseModel):
    person: PersonPublic = Field(description="The person the faces left (its remaining faces are now confirmed).")
    new_person: PersonPublic = Field(description="The new person holding the split-off faces (confirmed).")


class ConfirmedPublic(BaseModel):
    confirmed: int
    person: PersonPublic


class ReviewItem(BaseModel):
    person: PersonPublic
    face: PersonFacePublic


class ClusterBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    collection: str | None = Field(None, max_length=200,
                                   description="Only this collection (id or name); absent: every collection "
                                               "that allows grouping.")
    full: bool = Field(False, description="Also look again at every face earlier runs left alone (reads every "
                                          "faceprint: minutes at a million faces); default: only new faces and "
                                          "their neighbourhood.")


class GroupingPublic(BaseModel):
    collection_id: int
    collection: str
    allowed: bool = Field(description="Whether this collection's faces may be grouped into people.")


class GroupingBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    allowed: bool


class GroupingChangedPublic(GroupingPublic):
    faces_removed: int = Field(description="Faces taken out of people because grouping was switched off.")
