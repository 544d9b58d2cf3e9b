"""People: faces grouped into persons. List, show, name, merge, split, reject, confirm, the review queue,
grouping runs (a background job) and each collection's grouping switch, under /api/v1/people.

Roles: searchers (and privacy officers) see people's names and sizes; curators group, name, merge, split,
reject and confirm; whether a collection may be grouped is also a privacy officer's call. A person's faces
(photos, boxes, file names) go only to roles that may list photos. Every change is one audited decision of
the people layer (ids only in the log, never a name); a request that changes several things (merge five
people, reject three faces) lands all of it or none.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from faceindex.people.operations import REVIEW_BELOW
from faceindex.service import people_views as views
from faceindex.service.deps import (
    ERRORS,
    NOT_FOUND,
    CanReadCollections,
    CanReadPeople,
    CanSetGrouping,
    CanWritePeople,
    IdPath,
    Offset,
    StateDep,
)
from faceindex.service.schemas import JobPublic
from faceindex.service.schemas_people import (
    ClusterBody,
    ConfirmBody,
    ConfirmedPublic,
    FacesBody,
    GroupingBody,
    GroupingChangedPublic,
    GroupingPublic,
    MergeBody,
    NameBody,
    PersonDetail,
    PersonPage,
    PersonPublic,
    ReviewItem,
    SplitPublic,
)
from faceindex.service.shared import find_collection

router = APIRouter(prefix="/api/v1/people", tags=["people"], responses={**ERRORS, **NOT_FOUND})
CONFLICT = {409: {**ERRORS[422], "description": "The person changed meanwhile (merged away by another operator), "
                  "the name is taken, or the decision contradicts an earlier one."}}
BAD = {400: {**ERRORS[422], "description": "A decision that cannot be made (merge with itself, split off every face, "
             "an empty name, faces not of this person)."}}


# -- static paths first: /people/review must not be read as /people/{person_id} -----------------------------
@router.get("", response_model=PersonPage)
def list_people(principal: CanReadPeople, state: StateDep,
                unnamed: Annotated[bool, Query(description="Only people without a name yet.")] = False,
                min_size: Annotated[int, Query(ge=1, le=1_000_000, description="At least this many faces "
                                               "(1 includes people seen once, kept apart by default).")] = 2,
                q: Annotated[str | None, Query(max_length=200, description="Name contains this (any case).")] = None,
                limit: Annotated[int, Query(ge=1, le=500)] = 50, offset: Offset = 0):
    """People, biggest first, with a face to show for each (`cover_face_id`)."""
    with state.gate.read(principal) as engine:
        return views.people_page(engine, unnamed=unnamed, min_size=min_size, query=q, limit=limit, offset=offset)


@router.get("/review", response_model=list[ReviewItem])
def review_queue(principal: CanWritePeople, state: StateDep, limit: Annotated[int, Query(ge=1, le=500)] = 50,
                 below: Annotated[float, Query(ge=0.0, le=1.0, description="Confidence under which an automatic "
                                               "assignment is listed.")] = REVIEW_BELOW):
    """Automatic assignments the grouping was least sure of, least confident first: confirm or reject each."""
    with state.gate.read(principal) as engine:
        ops = engine.people
        queue = ops.review(limit, below)
        people = {pid: views.summary(ops, pid) for pid in {pid for pid, _ in queue}}
    return [ReviewItem(person=people[pid], face=views.face_public(face)) for pid, face in queue]


@router.post("/cluster", response_model=JobPublic, status_code=202, responses={403: ERRORS[403], 409: ERRORS[422]})
def cluster(principal: CanWritePeople, state: StateDep, body: ClusterBody | None = None):
    """Group the faces not yet in a person, as a background job (poll GET /api/v1/jobs/{id}): they join
    existing people or form new ones. Never undoes a name, merge, split, rejection or confirmation. 409
    `empty_store` when there is nothing to group; 403 `policy` for a collection that does not allow it."""
    return views.submit_cluster(state, principal, body.collection if body else None,
                                full=bool(body and body.full)).to_dict()


@router.get("/grouping", response_model=list[GroupingPublic])
def grouping_states(principal: CanReadCollections, state: StateDep):
    """Whether each collection's faces may be grouped into people (a processing purpose of its own)."""
    with state.gate.read(principal) as engine:
        return views.grouping_states(engine)


@router.put("/grouping/{collection}", response_model=GroupingChangedPublic)
def set_grouping(collection: Annotated[str, Path(description="Collection id (digits) or name.")],
                 body: GroupingBody, principal: CanSetGrouping, state: StateDep):
    """Allow or forbid grouping a collection's faces (audited). Forbidding takes its faces out of every person
    at once; people left without faces go, with their names."""
    with state.gate.write(principal) as engine:
        found = find_collection(engine, collection)
        removed = engine.people.set_grouping(found.name, body.allowed)
    return GroupingChangedPublic(collection_id=found.id, collection=found.name, allowed=body.allowed,
                                 faces_removed=removed)


# -- one person ----------------------------------------------------------------------------------------------
@router.get("/{person_id}", response_model=PersonDetail)
def get_person(person_id: IdPath, principal: CanReadPeople, state: StateDep,
               limit: Annotated[int, Query(ge=1, le=5000, description="Faces per page.")] = 500,
               offset: Offset = 0):
    """One person and a page of its faces (photo id, box, state, confidence). Faces are null for a searcher."""
    with state.gate.read(principal) as engine:
        return views.person_detail(engine, principal, person_id, limit=limit, offset=offset)


@router.put("/{person_id}/name", response_model=PersonPublic, responses={**BAD, **CONFLICT})
def name_person(person_id: IdPath, body: NameBody, principal: CanWritePeople, state: StateDep):
    """Name a person (or clear the name with null). Only an operator names a person; names are unique."""
    with state.gate.write(principal) as engine:
        return views.rename(engine, person_id, body.name)


@router.post("/{person_id}/merge", response_model=PersonPublic, responses={**BAD, **CONFLICT})
def merge_people(person_id: IdPath, body: MergeBody, principal: CanWritePeople, state: StateDep):
    """Move every face of `others` into this person; they are removed (their ids then answer 404 saying where
    they went). This person's name stays; an unnamed one takes the first name among the others."""
    with state.gate.write(principal) as engine:
        return views.merge(engine, person_id, body.others)


@router.post("/{person_id}/split", response_model=SplitPublic, status_code=201, responses={**BAD, **CONFLICT})
def split_person(person_id: IdPath, body: FacesBody, principal: CanWritePeople, state: StateDep):
    """Move some faces into a new person. Both sides become confirmed: grouping never joins them again."""
    with state.gate.write(principal) as engine:
        person, new_person = views.split(engine, person_id, body.faces)
    return SplitPublic(person=person, new_person=new_person)


@router.post("/{person_id}/reject", response_model=PersonPublic, responses={**BAD, **CONFLICT})
def reject_faces(person_id: IdPath, body: FacesBody, principal: CanWritePeople, state: StateDep):
    """These faces are not this person: they leave it and never join it again (they may join someone else)."""
    with state.gate.write(principal) as engine:
        return views.reject(engine, person_id, body.faces)


@router.post("/{person_id}/confirm", response_model=ConfirmedPublic, responses={**BAD, **CONFLICT})
def confirm_faces(person_id: IdPath, principal: CanWritePeople, state: StateDep, body: ConfirmBody | None = None):
    """Confirm faces of this person (all when `faces` is absent): confirmed faces anchor later grouping runs."""
    with state.gate.write(principal) as engine:
        n, person = views.confirm(engine, person_id, body.faces if body else None)
    return ConfirmedPublic(confirmed=n, person=person)
