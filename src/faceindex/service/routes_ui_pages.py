"""Web pages: search, collections with ingest progress, images with their faces, audit viewer, keys, privacy.

Pages read through the engine like the API does; actions (create, upload, delete, revoke) are sent by
static/app.js to the JSON API with the session's CSRF token, so each action has one implementation.
The search page posts a plain form instead, so it also works without JavaScript. Links carry ids, never names.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile as StarletteUpload

from faceindex.errors import FaceIndexError
from faceindex.service import people_search
from faceindex.service.auth import Principal, Require
from faceindex.service.deps import MAX_INT, IdPath, Offset, OptionalId, StateDep
from faceindex.service.jobs import CLUSTER_KINDS
from faceindex.service.keys import ROLES, KeyStore
from faceindex.service.search_views import candidate_rows, fused_photos_view, probe_view
from faceindex.service.shared import (
    audit_view,
    check_view,
    collection_public,
    find_collection,
    image_detail,
    render,
    run_search,
)
from faceindex.service.state import ServiceState
from faceindex.service.uploads import display_name, read_upload
from faceindex.store import reads
from faceindex.store.migrations import LEGAL_BASES

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 48


def page(permission: str):
    return Annotated[Principal, Depends(Require(permission))]


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
        with state.gate.read(principal) as engine:
            faces = [{"face": face, "candidates": candidate_rows(engine, face.candidates)}
                     for face in result.faces or []]
            settings = engine.settings
        return faces, probe_view(state, upload, settings)

    faces, probe = await run_in_threadpool(view)
    return render(request, "search.html", principal, result=result, faces=faces, probe=probe, purpose=purpose,
                  error=None)


def _same_person(request: Request, principal: Principal, state: ServiceState, status_code: int = 200,
                 **context) -> HTMLResponse:
    """The same-person search page: its form, and the result or the error when there is one."""
    defaults = {"result": None, "purpose": "", "top_k": None, "face": None, "error": None}
    return render(request, "search_same_person.html", principal, status_code=status_code, **{**defaults, **context},
                  max_photos=people_search.MAX_PHOTOS, upload_limit=byte_size(state.config.max_upload_bytes))


@router.get("/search/same-person", response_class=HTMLResponse)
def same_person_page(request: Request, principal: page("search"), state: StateDep):
    """Search with several photos of one person: their faces fused into one probe (as REST's same-person)."""
    return _same_person(request, principal, state)


@router.post("/search/same-person", response_class=HTMLResponse)
async def same_person_submit(request: Request, principal: page("search"), state: StateDep,
                             purpose: Annotated[str, Form(max_length=500)] = "",
                             top_k: Annotated[int | None, Form(ge=1, le=100)] = None,
                             face: Annotated[int | None, Form(ge=1, le=1000)] = None):
    """The REST route's rules (people_search): 1 to MAX_PHOTOS photos, counted before any is read; a file that is
    not an image stops the search, naming it; photos without a usable face are skipped and listed. `face` is
    numbered from 1, as on the search page and in the CLI (the REST field counts from 0)."""
    # Read from the form itself: a form sent with no file chosen carries one empty part without a file name, which
    # the framework would refuse as "not a file" on a generic page; it is "no photo", said on this page.
    parts = (await request.form()).getlist("photos")
    chosen = [p for p in parts if isinstance(p, StarletteUpload) and (p.filename or p.size)]
    context = {"purpose": purpose, "top_k": top_k, "face": face}  # what was typed stays in the form
    try:
        people_search.check_photo_count(len(chosen))
        uploads = [await read_upload(p, state.config) for p in chosen]
        names = people_search.probe_names(uploads)
        result = await run_in_threadpool(people_search.search_same_person, state, principal, uploads, purpose,
                                         top_k=top_k, face=None if face is None else face - 1)
    except FaceIndexError as exc:
        return _same_person(request, principal, state, exc.http_status, error=exc.message, **context)

    def view():
        with state.gate.read(principal) as engine:
            faces, settings = people_search.candidate_view(engine, result), engine.settings
        return faces, fused_photos_view(state, uploads, names, result, settings)

    faces, shown = await run_in_threadpool(view)
    return _same_person(request, principal, state, result=result, faces=faces, fused=result, photos=shown, **context)


@router.get("/collections", response_class=HTMLResponse)
def collections_page(request: Request, principal: page("collections:read"), state: StateDep,
                     selected: Annotated[int | None, Query(ge=1)] = None):
    """`selected`: the collection the ingest forms start on (the one just created or uploaded to)."""
    with state.gate.read(principal) as engine:
        collections = [collection_public(engine, c) for c in engine.catalog.list_collections()]
    ingests = [j for j in state.jobs.list() if j.kind not in CLUSTER_KINDS]  # grouping runs show on /people
    jobs = [j.to_dict() for j in ingests[:20]] if principal.can("ingest") else []
    return render(request, "collections.html", principal, collections=collections, jobs=jobs, bases=LEGAL_BASES,
                  folders=[str(p) for p in state.config.allowed_folders], selected=selected,
                  upload_limits={"photo": byte_size(state.config.max_upload_bytes),
                                 "video": byte_size(state.config.max_video_upload_bytes)})


def byte_size(n: int) -> str:
    """Bytes as people read them in a hint: '20 MiB', '4 GiB', '512 KiB' (binary units, as the settings are)."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} bytes"


@router.get("/collections/{collection_id}", response_class=HTMLResponse)
def collection_page(request: Request, collection_id: IdPath, principal: page("collections:read"), state: StateDep,
                    offset: Offset = 0):
    with state.gate.read(principal) as engine:
        collection = collection_public(engine, find_collection(engine, collection_id))
        total, rows = reads.images_page(engine.catalog, collection_id, PAGE_SIZE, offset)
    images = [{"id": r["id"], "status": r["status"], "error": r["error"], "n_faces": r["n_faces"],
               "name": display_name(r["uri"])} for r in rows]
    return render(request, "collection.html", principal, collection=collection, images=images, total=total,
                  offset=offset, page_size=PAGE_SIZE, show_images=principal.can("images:list"))


@router.get("/images/{image_id}", response_class=HTMLResponse)
def image_page(request: Request, image_id: IdPath, principal: page("images:view"), state: StateDep,
               focus: OptionalId = None):
    check_view(state, principal, image_id)
    with state.gate.read(principal) as engine:
        image = image_detail(engine, image_id)
    audit_view(state, principal, image_id, "page")
    return render(request, "image.html", principal, image=image, name=display_name(image.path), focus=focus)


@router.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request, principal: page("audit:read"), state: StateDep,
               after: Annotated[int | None, Query(ge=0, le=MAX_INT)] = None, action: str | None = None):
    with state.gate.read(principal) as engine:
        problems = engine.audit.verify()
        total = reads.audit_last_seq(engine.catalog)
        start = max(0, total - 100) if after is None else after
        events = [e.to_dict() for e in engine.audit.events(action=action or None, after=start, limit=100)]
    return render(request, "audit.html", principal, events=list(reversed(events)), problems=problems, total=total,
                  after=start, action=action or "")


@router.get("/keys", response_class=HTMLResponse)
def keys_page(request: Request, principal: page("keys"), state: StateDep):
    with state.gate.read(principal) as engine:
        keys = KeyStore(engine).list()
    return render(request, "keys.html", principal, keys=keys, roles=ROLES)


@router.get("/privacy", response_class=HTMLResponse)
def privacy_page(request: Request, principal: page("privacy"), state: StateDep, person: OptionalId = None):
    """`person`: a person's id to fill the erasure and opt-out forms with ("Erase this person…" on its page)."""
    with state.gate.read(principal) as engine:
        privacy = engine.privacy
        subjects = [s.to_dict() for s in privacy.subjects.list()]
        optouts, bipa = [o.to_dict() for o in privacy.opt_outs()], privacy.retention.bipa_mode
        collections = [c.name for c in engine.catalog.list_collections()]
    return render(request, "privacy.html", principal, subjects=subjects, optouts=optouts, bipa=bipa,
                  collections=collections, person=person)
