"""Web pages: search, collections with ingest progress, images with their faces, audit viewer, keys.

Pages read through the engine like the API does; actions (create, upload, delete, revoke) are sent by
static/app.js to the JSON API with the session's CSRF token, so each action has one implementation.
The search page posts a plain form instead, so it also works without JavaScript.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from faceindex.errors import FaceIndexError
from faceindex.service.auth import Principal, Require
from faceindex.service.deps import StateDep
from faceindex.service.keys import ROLES, KeyStore
from faceindex.service.routes_collections import collection_public
from faceindex.service.routes_images import check_view, image_detail
from faceindex.service.routes_search import run_search
from faceindex.service.routes_ui import render
from faceindex.service.uploads import display_name, read_upload
from faceindex.store.migrations import LEGAL_BASES

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 48


def page(permission: str):
    return Annotated[Principal, Depends(Require(permission))]


def _candidate_view(engine, result) -> list[dict]:
    """Faces of a search result with, per candidate, the photo's size (to draw its box) and file name."""
    faces = []
    ids = [c.image_id for f in result.faces or [] for c in f.candidates]
    sizes = {}
    if ids:
        marks = ",".join("?" * len(ids))
        sizes = {r[0]: (r[1], r[2]) for r in engine.catalog.conn.execute(
            f"SELECT id, width, height FROM images WHERE id IN ({marks})", ids)}
    for face in result.faces or []:
        cands = [{**c.__dict__, "name": display_name(c.path), "size": sizes.get(c.image_id, (1, 1))}
                 for c in face.candidates]
        faces.append({"face": face, "candidates": cands})
    return faces


@router.get("/search", response_class=HTMLResponse)
def search_page(request: Request, principal: page("search")):
    return render(request, "search.html", principal, result=None, purpose="", error=None)


@router.post("/search", response_class=HTMLResponse)
async def search_submit(request: Request, principal: page("search"), state: StateDep,
                        photo: Annotated[UploadFile, File()], purpose: Annotated[str, Form(max_length=500)] = "",
                        top_k: Annotated[int | None, Form(ge=1, le=100)] = None):
    try:
        upload = await read_upload(photo, state.config)
        result = await run_in_threadpool(run_search, state, principal, upload, purpose, top_k=top_k)
    except FaceIndexError as exc:
        return render(request, "search.html", principal, status_code=exc.http_status, result=None, purpose=purpose,
                      error=exc.message)

    def view():
        with state.gate.use(principal) as engine:
            return _candidate_view(engine, result)

    faces = await run_in_threadpool(view)
    return render(request, "search.html", principal, result=result, faces=faces, purpose=purpose, error=None)


@router.get("/collections", response_class=HTMLResponse)
def collections_page(request: Request, principal: page("collections:read"), state: StateDep):
    with state.gate.use(principal) as engine:
        collections = [collection_public(engine, c) for c in engine.catalog.list_collections()]
    jobs = [j.to_dict() for j in state.jobs.list()[:20]] if principal.can("ingest") else []
    return render(request, "collections.html", principal, collections=collections, jobs=jobs, bases=LEGAL_BASES,
                  folders=[str(p) for p in state.config.allowed_folders])


@router.get("/collections/{name}", response_class=HTMLResponse)
def collection_page(request: Request, name: str, principal: page("collections:read"), state: StateDep,
                    offset: Annotated[int, Query(ge=0)] = 0):
    with state.gate.use(principal) as engine:
        collection = collection_public(engine, engine.catalog.get_collection(name))
        cid = engine.catalog.get_collection(name).id
        total = engine.catalog.count("SELECT count(*) FROM images WHERE collection_id = ?", (cid,))
        images = [dict(r) for r in engine.catalog.conn.execute(
            "SELECT id, uri, status, error, n_faces FROM images WHERE collection_id = ? ORDER BY id LIMIT ? OFFSET ?",
            (cid, PAGE_SIZE, offset))]
    for image in images:
        image["name"] = display_name(image["uri"])
    return render(request, "collection.html", principal, collection=collection, images=images, total=total,
                  offset=offset, page_size=PAGE_SIZE, show_images=principal.can("images:list"))


@router.get("/images/{image_id}", response_class=HTMLResponse)
def image_page(request: Request, image_id: int, principal: page("images:view"), state: StateDep,
               focus: int | None = None):
    check_view(state, principal, image_id)
    with state.gate.use(principal) as engine:
        image = image_detail(engine, image_id)
    return render(request, "image.html", principal, image=image, name=display_name(image.path), focus=focus)


@router.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request, principal: page("audit:read"), state: StateDep,
               after: Annotated[int | None, Query(ge=0)] = None, action: str | None = None):
    with state.gate.use(principal) as engine:
        problems = engine.audit.verify()
        total = engine.catalog.count("SELECT coalesce(max(seq), 0) FROM audit_events")
        start = max(0, total - 100) if after is None else after
        events = [e.to_dict() for e in engine.audit.events(action=action or None, after=start, limit=100)]
    return render(request, "audit.html", principal, events=list(reversed(events)), problems=problems, total=total,
                  after=start, action=action or "")


@router.get("/keys", response_class=HTMLResponse)
def keys_page(request: Request, principal: page("keys"), state: StateDep):
    with state.gate.use(principal) as engine:
        keys = KeyStore(engine).list()
    return render(request, "keys.html", principal, keys=keys, roles=ROLES)


@router.get("/privacy", response_class=HTMLResponse)
def privacy_page(request: Request, principal: page("privacy"), state: StateDep):
    with state.gate.use(principal) as engine:
        privacy = engine.privacy
        subjects = [s.to_dict() for s in privacy.subjects.list()]
        optouts, bipa = [o.to_dict() for o in privacy.opt_outs()], privacy.retention.bipa_mode
        collections = [c.name for c in engine.catalog.list_collections()]
    return render(request, "privacy.html", principal, subjects=subjects, optouts=optouts, bipa=bipa,
                  collections=collections)
