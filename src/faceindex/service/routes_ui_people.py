"""Web pages of people: the People page (face crops, counts, names, unnamed filter, merge by selection, grouping
runs and each collection's grouping switch), a person's page (every photo, rename, split/reject/confirm by
selecting crops) and the review queue.

Pages are server-rendered and their forms are plain HTML posts carrying the session's CSRF token (they work
without JavaScript); each post calls the same people_views function as the REST route, then redirects back
(post/redirect/get) or shows the page again with the error. Crops come from /api/v1/faces/{id}/crop, which
serves only roles that may see the photo and audits each view; a searcher's pages show names, not faces.
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import Field

from faceindex.errors import FaceIndexError, InvalidInputError
from faceindex.service import people_search
from faceindex.service import people_views as views
from faceindex.service.auth import Principal, Require
from faceindex.service.deps import MAX_INT, IdPath, Offset, StateDep
from faceindex.service.jobs import CLUSTER_KINDS
from faceindex.service.shared import find_collection, render
from faceindex.service.state import ServiceState
from faceindex.service.uploads import display_name

router = APIRouter(include_in_schema=False)
PEOPLE_PAGE = 48
FACES_PAGE = 120
REVIEW_PAGE = 100
FormId = Annotated[int, Field(ge=0, le=MAX_INT)]
NOTICES = {"renamed": "Name saved.", "merged": "People merged into this person.",
           "split": "The selected faces are now a new person.",
           "rejected": "Rejected: those faces will not join this person again.", "confirmed": "Faces confirmed.",
           "cluster": "Grouping started: new people appear here when it has finished.",
           "grouping-on": "Grouping switched on for that collection: group the faces to find its people.",
           "grouping-off": "Grouping switched off for that collection: its faces left every person."}
"""The notices a redirect may ask for (`?done=`): fixed texts, so a link cannot put words on the page."""


def page(permission: str):
    return Annotated[Principal, Depends(Require(permission))]


def _notice(done: str | None) -> str | None:
    return NOTICES.get(done or "")


@router.get("/people", response_class=HTMLResponse)
def people_page(request: Request, principal: page("people:read"), state: StateDep, unnamed: bool = False,
                single: bool = False, q: Annotated[str, Query(max_length=200)] = "", offset: Offset = 0,
                done: str | None = None):
    return _people(request, principal, state, unnamed=unnamed, single=single, q=q, offset=offset,
                   notice=_notice(done))


def _people(request: Request, principal: Principal, state: ServiceState, *, unnamed: bool = False,
            single: bool = False, q: str = "", offset: int = 0, notice: str | None = None, error: str | None = None,
            status_code: int = 200) -> HTMLResponse:
    with state.gate.read(principal) as engine:
        found = views.people_page(engine, unnamed=unnamed, min_size=1 if single else 2, query=q.strip() or None,
                                  limit=PEOPLE_PAGE, offset=offset)
    can_write = principal.can("people:write")
    jobs = [j.to_dict() for j in state.jobs.list() if j.kind in CLUSTER_KINDS][:3] if can_write else []
    filters = {k: v for k, v in (("unnamed", "1" if unnamed else ""), ("single", "1" if single else ""), ("q", q))
               if v}
    grouping = []
    if principal.can("people:grouping"):
        with state.gate.read(principal) as engine:
            grouping = views.grouping_states(engine)
    return render(request, "people.html", principal, status_code=status_code, people=found, unnamed=unnamed,
                  single=single, q=q, can_write=can_write, can_browse=views.can_list_faces(principal), jobs=jobs,
                  grouping=grouping, notice=notice, error=error, page_size=PEOPLE_PAGE, offset=offset,
                  query=urlencode(filters))


@router.post("/people/merge", response_class=HTMLResponse)
def merge_selected(request: Request, principal: page("people:write"), state: StateDep,
                   people: Annotated[list[FormId] | None, Form()] = None):
    """Merge the selected people into the one with the most faces (its id and, if it has one, its name stay)."""
    try:
        chosen = list(dict.fromkeys(people or []))
        if len(chosen) < 2:
            raise InvalidInputError("select at least two people to merge")
        with state.gate.write(principal) as engine, views.deciding(engine, *chosen) as ops:
            sizes = {pid: ops.show(pid).size for pid in chosen}  # a person merged away meanwhile: 409, not 404
            keep = max(chosen, key=lambda pid: (sizes[pid], -pid))
            views.merge(engine, keep, [pid for pid in chosen if pid != keep])
    except FaceIndexError as exc:
        return _people(request, principal, state, error=exc.message, status_code=exc.http_status)
    return RedirectResponse(f"/people/{keep}?done=merged", status_code=303)


@router.post("/people/cluster", response_class=HTMLResponse)
def cluster_now(request: Request, principal: page("people:write"), state: StateDep):
    try:
        views.submit_cluster(state, principal, None)
    except FaceIndexError as exc:
        return _people(request, principal, state, error=exc.message, status_code=exc.http_status)
    return RedirectResponse("/people?done=cluster", status_code=303)


@router.post("/people/grouping/{collection_id}", response_class=HTMLResponse)
def switch_grouping(request: Request, collection_id: IdPath, principal: page("people:grouping"), state: StateDep,
                    allowed: Annotated[Literal["on", "off"], Form()], confirm: Annotated[str, Form()] = ""):
    """Allow or forbid grouping a collection; forbidding (its faces leave every person) must be ticked to confirm."""
    try:
        if allowed == "off" and confirm != "yes":
            raise InvalidInputError("tick the box to confirm: switching grouping off takes the collection's faces "
                                    "out of every person, and people left without faces go with their names")
        with state.gate.write(principal) as engine:
            found = find_collection(engine, collection_id)
            engine.people.set_grouping(found.name, allowed == "on")
    except FaceIndexError as exc:
        return _people(request, principal, state, error=exc.message, status_code=exc.http_status)
    return RedirectResponse(f"/people?done=grouping-{allowed}", status_code=303)


@router.get("/people/review", response_class=HTMLResponse)
def review_page(request: Request, principal: page("people:write"), state: StateDep, done: str | None = None):
    return _review(request, principal, state, notice=_notice(done))


def _review(request: Request, principal: Principal, state: ServiceState, *, notice: str | None = None,
            error: str | None = None, status_code: int = 200) -> HTMLResponse:
    with state.gate.read(principal) as engine:
        queue = engine.people.review(REVIEW_PAGE)
        names = {pid: engine.people.store.name_of(pid) for pid in {pid for pid, _ in queue}}
    items = [{"person": pid, "name": names[pid], "face": views.face_public(f), "file": display_name(f.path)}
             for pid, f in queue]
    return render(request, "people_review.html", principal, status_code=status_code, items=items, notice=notice,
                  error=error)


@router.get("/people/{person_id}", response_class=HTMLResponse)
def person_page(request: Request, person_id: IdPath, principal: page("people:read"), state: StateDep,
                offset: Offset = 0, done: str | None = None,
                new: Annotated[int | None, Query(ge=0, le=MAX_INT)] = None):
    return _person(request, person_id, principal, state, offset=offset, notice=_notice(done), new=new)


def _person(request: Request, person_id: int, principal: Principal, state: ServiceState, *, offset: int = 0,
            notice: str | None = None, new: int | None = None, error: str | None = None,
            status_code: int = 200) -> HTMLResponse:
    with state.gate.read(principal) as engine:
        person = views.person_detail(engine, principal, person_id, limit=FACES_PAGE, offset=offset)
    faces = None if person.faces is None else [{**f.model_dump(), "file": display_name(f.path)} for f in person.faces]
    return render(request, "person.html", principal, status_code=status_code, person=person, faces=faces,
                  can_write=principal.can("people:write"), can_search=principal.can("search"),
                  can_erase=principal.can("privacy"), notice=notice, new=new, error=error,
                  page_size=FACES_PAGE, offset=offset)


@router.post("/people/{person_id}/name", response_class=HTMLResponse)
def rename(request: Request, person_id: IdPath, principal: page("people:write"), state: StateDep,
           name: Annotated[str, Form(max_length=10_000)] = ""):
    try:
        with state.gate.write(principal) as engine:
            views.rename(engine, person_id, name)
    except FaceIndexError as exc:
        return _person_error(request, person_id, principal, state, exc)
    return RedirectResponse(f"/people/{person_id}?done=renamed", status_code=303)


@router.post("/people/{person_id}/faces", response_class=HTMLResponse)
def faces_action(request: Request, person_id: IdPath, principal: page("people:write"), state: StateDep,
                 action: Annotated[Literal["split", "reject", "confirm", "confirm-all"], Form()],
                 faces: Annotated[list[FormId] | None, Form()] = None,
                 back: Annotated[Literal["person", "review"], Form()] = "person"):
    """The buttons under a person's crops (and the review queue's): act on the selected faces."""
    chosen = list(dict.fromkeys(faces or []))
    target = f"/people/{person_id}"
    try:
        if action != "confirm-all" and not chosen:
            raise InvalidInputError("select one or more faces first")
        with state.gate.write(principal) as engine:
            if action == "split":
                _, new_person = views.split(engine, person_id, chosen)
                target += f"?done=split&new={new_person.id}"
            elif action == "reject":
                views.reject(engine, person_id, chosen)
                target += "?done=rejected"
            else:
                views.confirm(engine, person_id, None if action == "confirm-all" else chosen)
                target += "?done=confirmed"
    except FaceIndexError as exc:
        if back == "review":
            return _review(request, principal, state, error=exc.message, status_code=exc.http_status)
        return _person_error(request, person_id, principal, state, exc)
    if back == "review":
        target = "/people/review?done=" + ("rejected" if action == "reject" else "confirmed")
    return RedirectResponse(target, status_code=303)


@router.post("/people/{person_id}/search", response_class=HTMLResponse)
def search_with_person(request: Request, person_id: IdPath, principal: page("search"), state: StateDep,
                       purpose: Annotated[str, Form(max_length=500)] = "",
                       top_k: Annotated[int | None, Form(ge=1, le=100)] = None):
    """"Search with this person" on a person page: the person's faces fused into one probe, results shown on
    the search page (audited by the engine like any search, with the purpose given here)."""
    try:
        result = people_search.search_person(state, principal, person_id, purpose, top_k=top_k)
    except FaceIndexError as exc:
        return render(request, "search.html", principal, status_code=exc.http_status, result=None, purpose=purpose,
                      error=exc.message)
    with state.gate.read(principal) as engine:
        faces = people_search.candidate_view(engine, result)
    return render(request, "search.html", principal, result=result, faces=faces, probe=None, fused=result,
                  purpose=purpose, error=None)


def _person_error(request: Request, person_id: int, principal: Principal, state: ServiceState,
                  exc: FaceIndexError) -> HTMLResponse:
    """The person's page again with the error on it; the People page when the person itself is gone."""
    try:
        return _person(request, person_id, principal, state, error=exc.message, status_code=exc.http_status)
    except FaceIndexError:
        return _people(request, principal, state, error=exc.message, status_code=exc.http_status)
