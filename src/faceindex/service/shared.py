"""What the route modules share (no route module imports another): response builders, viewing rules, search,
clean-up of uploads, page rendering and the audit of views and logins."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import HTMLResponse

from faceindex.engine import Engine
from faceindex.errors import ForbiddenError, ImageError, NotFoundError
from faceindex.matching import ProbeResult
from faceindex.service.deps import MAX_INT
from faceindex.service.events import PhotoViewed
from faceindex.service.principal import Principal
from faceindex.service.schemas import CollectionPublic, FacePublic, ImageDetailPublic, ImagePublic
from faceindex.service.state import ServiceState
from faceindex.service.uploads import Upload, sweep_uploads
from faceindex.store import reads
from faceindex.store.catalog import Collection


# -- collections, images, faces -------------------------------------------------------------------------
def collection_public(engine: Engine, collection: Collection) -> CollectionPublic:
    images, faces = reads.collection_counts(engine.catalog, collection.id)
    people = engine.people.store
    grouping = people.collection_grouping(collection.name)[1] if people.available else True
    return CollectionPublic(id=collection.id, name=collection.name, basis=collection.legal_basis,
                            purpose=collection.purpose, jurisdictions=list(collection.jurisdictions),
                            retention_days=collection.retention_days, owner=collection.owner,
                            created_at=collection.created_at, images=images, faces=faces, grouping=grouping)


def find_collection(engine: Engine, ref: str | int) -> Collection:
    """A collection by id (digits) or by name. Web pages and their forms always use the id: a URL built
    from a name (`../x`) could be normalised into another route by the browser."""
    if isinstance(ref, int) or str(ref).isdigit():
        found = reads.collection(engine.catalog, int(ref)) if int(ref) <= MAX_INT else None
        if found is None:
            raise NotFoundError(f"no collection with id {ref}")
        return found
    return engine.catalog.get_collection(str(ref))


def image_public(row: reads.Row) -> ImagePublic:
    return ImagePublic(id=row["id"], collection=row["collection"], path=row["uri"], sha256=row["sha256"],
                       size_bytes=row["size_bytes"], width=row["width"], height=row["height"], format=row["format"],
                       captured_at=row["captured_at"], ingested_at=row["ingested_at"], status=row["status"],
                       error=row["error"], n_faces=row["n_faces"], collection_id=row["collection_id"])


def faces_public(engine: Engine, rows: list[reads.Row]) -> list[FacePublic]:
    subjects = engine.privacy.subject_names([r["id"] for r in rows])
    return [FacePublic(id=r["id"], image_id=r["image_id"],
                       box=[r["box_left"], r["box_top"], r["box_right"], r["box_bottom"]], detector=r["detector"],
                       det_score=r["det_score"], size_px=r["size_px"], blur=r["blur"], rejected=r["rejected"],
                       model_id=r["model_id"], subject=subjects.get(r["id"]), created_at=r["created_at"])
            for r in rows]


def image_row(engine: Engine, image_id: int) -> reads.Row:
    row = reads.image(engine.catalog, image_id)
    if row is None:
        raise NotFoundError(f"no image with id {image_id}")
    return row


def face_row(engine: Engine, face_id: int) -> reads.Row:
    row = reads.face(engine.catalog, face_id)
    if row is None:
        raise NotFoundError(f"no face with id {face_id}")
    return row


def image_detail(engine: Engine, image_id: int) -> ImageDetailPublic:
    row = image_row(engine, image_id)
    faces = reads.faces_of_image(engine.catalog, image_id)
    return ImageDetailPublic(**image_public(row).model_dump(), faces=faces_public(engine, faces))


def check_view(state: ServiceState, principal: Principal, image_id: int) -> None:
    """A searcher sees only photos its own recent searches returned; other viewing roles see all."""
    if principal.role == "searcher" and not state.grants.allows(principal.key_id, image_id):
        raise ForbiddenError("a searcher may only view photos that its own searches returned")


def audit_view(state: ServiceState, principal: Principal, image_id: int, what: str) -> None:
    """Record that a caller looked at a photo (`what`: page, thumbnail, crop): who saw whose picture is
    exactly what an audit of a face search tool must answer."""
    with state.gate.write(principal) as engine:
        engine.audit.record(PhotoViewed(image_id=image_id, view=what), actor=principal.actor)


# -- search ---------------------------------------------------------------------------------------------
def run_search(state: ServiceState, principal: Principal, upload: Upload, purpose: str, *, top_k: int | None = None,
               face: int | None = None, threshold: float | None = None) -> ProbeResult:
    """Search with the engine (blocking) and let a searcher view the photos of the candidates it got.

    `face` is 0-based here (the Engine's numbering); the API documents and converts its 1-based form.
    """
    if threshold is not None and principal.role != "admin":
        # A lower threshold means more false candidates: only an admin may move it from the calibrated value.
        raise ForbiddenError("only an admin may override the match threshold")
    with state.decodes, state.gate.read(principal) as engine:
        result = engine.search([upload.data], purpose, top_k=top_k, threshold=threshold, face=face,
                               probe_names=[f"upload:{upload.name}"])[0]
    if result.error is not None:
        raise ImageError(f"{upload.name}: {result.error}")
    state.grants.grant(principal.key_id, [c.image_id for f in result.faces or [] for c in f.candidates])
    return result


# -- clean-up -------------------------------------------------------------------------------------------
def sweep(state: ServiceState) -> int:
    """Delete uploaded photo files that no image record refers to any more (after deletions and erasure).

    Under the write gate: a file saved by an upload is referenced by a pending job before the gate is left.
    """
    with state.gate.write() as engine:
        return sweep_uploads(engine.settings.store, reads.image_uris(engine.catalog), state.jobs.pending_paths())


# -- pages ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NavItem:
    href: str
    label: str
    permission: str


NAV = (NavItem("/search", "Search", "search"), NavItem("/collections", "Collections", "collections:read"),
       NavItem("/people", "People", "people:read"), NavItem("/privacy", "Privacy", "privacy"),
       NavItem("/audit", "Audit", "audit:read"), NavItem("/keys", "Keys", "keys"))
HOME = {"searcher": "/search", "curator": "/collections", "auditor": "/audit", "privacy-officer": "/privacy",
        "admin": "/search"}


def render(request: Request, template: str, principal: Principal | None, status_code: int = 200,
           **context) -> HTMLResponse:
    nav = [item for item in NAV if principal is not None and principal.can(item.permission)]
    return request.app.state.templates.TemplateResponse(
        request, template, {"principal": principal, "nav": nav, "path": request.url.path, **context},
        status_code=status_code)


def erase_face(engine: Engine, face_id: int) -> int:
    """Erase one face through the privacy layer: journaled, byte-identical copies included, index rewritten
    and the SQLite files scrubbed of its faceprint; audited as an erasure by id, never by name.

    """
    return engine.privacy.erase_faces([face_id]).faces
