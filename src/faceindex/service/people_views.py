"""What the people API and the people pages share: views of people, and operator decisions made all-or-none.

Both route modules (routes_people for /api/v1/people, routes_ui_people for the pages) call these, so each
action has one implementation; the decisions themselves (and their audit events) belong to the people layer,
reached through `engine.people`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from faceindex.engine import Engine
from faceindex.errors import ConflictError, EmptyStoreError, NotFoundError, PolicyError
from faceindex.people.operations import PeopleOps
from faceindex.people.store import Person, PersonFace
from faceindex.service.jobs import CLUSTER, CLUSTER_FULL, Job
from faceindex.service.principal import Principal
from faceindex.service.schemas_people import (
    GroupingPublic,
    PersonDetail,
    PersonFacePublic,
    PersonPage,
    PersonPublic,
)
from faceindex.service.shared import find_collection
from faceindex.service.state import ServiceState
from faceindex.store import reads


def can_list_faces(principal: Principal) -> bool:
    """Which roles see a person's faces (photos, boxes, file names): those that may browse the collection.

    A searcher sees people's names and sizes (to search by person) but, as everywhere else, photos only of
    its own search results: a person page must not turn a search tool into a browsing tool.
    """
    return principal.can("images:list")


def person_public(person: Person, cover: int | None = None) -> PersonPublic:
    return PersonPublic(id=person.id, name=person.name, size=person.size, confirmed=person.confirmed,
                        cover_face_id=cover)


def face_public(face: PersonFace) -> PersonFacePublic:
    return PersonFacePublic(face_id=face.face_id, image_id=face.image_id, box=[int(v) for v in face.box],
                            state=face.state, confidence=face.confidence, collection=face.collection, path=face.path)


def people_page(engine: Engine, *, unnamed: bool = False, min_size: int = 2, query: str | None = None,
                limit: int = 50, offset: int = 0) -> PersonPage:
    """People biggest first, filtered (no name yet; at least `min_size` faces; name contains `query`, any case).

    The people layer answers every person at once and the page is cut here: fine for the thousands of people
    a photo library has (one aggregate query); a store with millions of people would want paging in SQL.
    """
    ops = engine.people
    people = ops.store.people(min_size=min_size, named=False if unnamed else None)
    if query:
        needle = query.casefold()
        people = [p for p in people if p.name and needle in p.name.casefold()]
    shown = people[offset:offset + limit]
    covers = ops.store.covers([p.id for p in shown])
    return PersonPage(items=[person_public(p, covers.get(p.id)) for p in shown], total=len(people), limit=limit,
                      offset=offset)


def person_detail(engine: Engine, principal: Principal, person_id: int, *, limit: int = 500,
                  offset: int = 0) -> PersonDetail:
    """One person with a page of its faces (None for roles that may not list photos)."""
    ops = engine.people
    person = ops.show(person_id)
    covers = ops.store.covers([person_id])
    faces = person.faces or []
    shown = [face_public(f) for f in faces[offset:offset + limit]] if can_list_faces(principal) else None
    return PersonDetail(**person_public(person, covers.get(person_id)).model_dump(), faces=shown,
                        faces_total=len(faces), limit=limit, offset=offset)


def summary(ops: PeopleOps, person_id: int) -> PersonPublic:
    person = ops.show(person_id)
    return person_public(person, ops.store.covers([person_id]).get(person_id))


# -- decisions ------------------------------------------------------------------------------------------
@contextmanager
def deciding(engine: Engine, *person_ids: int) -> Iterator[PeopleOps]:
    """People operations that land all together or not at all, with a clear conflict for a vanished person.

    Everything inside runs in one catalog transaction (the people layer's own transactions join it), so a
    merge of five people that fails on the fourth leaves all five as they were, audit events included.
    A person that no longer exists because someone merged it away meanwhile (two operators merging the same
    people at once: the store's write lock lets one win) is a 409 naming where it went, not a bare 404.
    """
    ops = engine.people
    ops.store.ready()  # migrations run their own transaction: before ours
    try:
        with engine.catalog.transaction():
            yield ops
    except NotFoundError as exc:
        for person_id in person_ids:
            into = ops.store.merged_into(person_id)
            if into is not None and not ops.store.exists(person_id):
                raise ConflictError(f"person {person_id} was merged into person {into} meanwhile (by another "
                                    "operator or an earlier request): nothing was changed; reload and decide "
                                    "again") from exc
        raise


def merge(engine: Engine, keep: int, others: Sequence[int]) -> PersonPublic:
    """Fold `others` into `keep`, all or none (each merge audited as its own people.merge event)."""
    with deciding(engine, keep, *others) as ops:
        for other in dict.fromkeys(others):  # a person named twice is merged once
            ops.merge(keep, other)
    return summary(ops, keep)


def rename(engine: Engine, person_id: int, name: str | None) -> PersonPublic:
    with deciding(engine, person_id) as ops:
        ops.name(person_id, name)
    return summary(ops, person_id)


def split(engine: Engine, person_id: int, faces: Sequence[int]) -> tuple[PersonPublic, PersonPublic]:
    with deciding(engine, person_id) as ops:
        new_id = ops.split(person_id, faces)
    return summary(ops, person_id), summary(ops, new_id)


def reject(engine: Engine, person_id: int, faces: Sequence[int]) -> PersonPublic:
    """Reject faces from a person (each never rejoins it), all or none; each rejection audited."""
    with deciding(engine, person_id) as ops:
        for face in dict.fromkeys(faces):
            ops.reject(person_id, face)
    return summary(ops, person_id)


def confirm(engine: Engine, person_id: int, faces: Sequence[int] | None) -> tuple[int, PersonPublic]:
    with deciding(engine, person_id) as ops:
        n = ops.confirm(person_id, faces)
    return n, summary(ops, person_id)


# -- grouping --------------------------------------------------------------------------------------------
def grouping_states(engine: Engine) -> list[GroupingPublic]:
    ops = engine.people
    return [GroupingPublic(collection_id=c.id, collection=c.name, allowed=ops.store.collection_grouping(c.name)[1])
            for c in engine.catalog.list_collections()] if ops.store.available else []


def submit_cluster(state: ServiceState, principal: Principal, collection: str | None, *, full: bool = False) -> Job:
    """Queue a grouping run after checking what can be checked at once (the collection exists, allows grouping,
    has faces), so a plain mistake is an immediate error and not a failed job to poll for."""
    with state.gate.read(principal) as engine:
        ops = engine.people
        ops.store.ready()
        if collection is not None:
            found = find_collection(engine, collection)
            _, allowed = ops.store.collection_grouping(found.name)
            if not allowed:
                raise PolicyError(f"collection {found.name!r} does not allow grouping faces into people "
                                  "(PUT /api/v1/people/grouping/{collection} switches it on, if its purpose allows)")
            scope = [found]
        else:
            scope = [c for c in engine.catalog.list_collections() if ops.store.collection_grouping(c.name)[1]]
        if not any(reads.collection_counts(engine.catalog, c.id)[1] for c in scope):
            where = f"collection {scope[0].name!r}" if collection is not None else "the collections that allow grouping"
            raise EmptyStoreError(f"no faces to group in {where}: ingest photos first")
    return state.jobs.submit(CLUSTER_FULL if full else CLUSTER, "" if collection is None else found.name, [],
                             principal.actor)
