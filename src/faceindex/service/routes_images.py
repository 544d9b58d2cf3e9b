"""Images and faces: list, get, thumbnail and crop (re-encoded, authorised roles only), delete.

Photos are addressed by catalog id, never by a path the client sends, so there is no path to traverse.
"""

from __future__ import annotations

import sqlite3
from typing import Annotated

from fastapi import APIRouter, Query, Response
from starlette.concurrency import run_in_threadpool

from faceindex.engine import Engine
from faceindex.errors import ForbiddenError, NotFoundError
from faceindex.privacy.erasure import ErasurePlan
from faceindex.service.auth import Principal
from faceindex.service.deps import ERRORS, NOT_FOUND, CanDeleteImages, CanListImages, CanViewImages, StateDep
from faceindex.service.media import face_crop, thumbnail
from faceindex.service.routes_collections import sweep
from faceindex.service.schemas import DeletedPublic, FacePage, FacePublic, ImageDetailPublic, ImagePage, ImagePublic
from faceindex.service.state import ServiceState

router = APIRouter(prefix="/api/v1", tags=["images"], responses={**ERRORS, **NOT_FOUND})
JPEG = {200: {"content": {"image/jpeg": {}}, "description": "A JPEG re-encoded from the photo's pixels."}}
NO_STORE = {"Cache-Control": "private, no-store"}

IMAGE_SQL = "SELECT i.*, c.name AS collection FROM images i JOIN collections c ON c.id = i.collection_id"
FACE_SQL = ("SELECT f.id, f.image_id, f.box_left, f.box_top, f.box_right, f.box_bottom, f.detector, f.det_score,"
            " f.size_px, f.blur, f.rejected, f.model_id, f.created_at FROM faces f")


def image_public(row: sqlite3.Row) -> ImagePublic:
    return ImagePublic(id=row["id"], collection=row["collection"], path=row["uri"], sha256=row["sha256"],
                       size_bytes=row["size_bytes"], width=row["width"], height=row["height"], format=row["format"],
                       captured_at=row["captured_at"], ingested_at=row["ingested_at"], status=row["status"],
                       error=row["error"], n_faces=row["n_faces"])


def faces_public(engine: Engine, rows: list[sqlite3.Row]) -> list[FacePublic]:
    subjects = engine.privacy.subject_names([r["id"] for r in rows])
    return [FacePublic(id=r["id"], image_id=r["image_id"],
                       box=[r["box_left"], r["box_top"], r["box_right"], r["box_bottom"]], detector=r["detector"],
                       det_score=r["det_score"], size_px=r["size_px"], blur=r["blur"], rejected=r["rejected"],
                       model_id=r["model_id"], subject=subjects.get(r["id"]), created_at=r["created_at"])
            for r in rows]


def get_image_row(engine: Engine, image_id: int) -> sqlite3.Row:
    row = engine.catalog.conn.execute(IMAGE_SQL + " WHERE i.id = ?", (image_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"no image with id {image_id}")
    return row


def get_face_row(engine: Engine, face_id: int) -> sqlite3.Row:
    row = engine.catalog.conn.execute(FACE_SQL + " WHERE f.id = ?", (face_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"no face with id {face_id}")
    return row


def check_view(state: ServiceState, principal: Principal, image_id: int) -> None:
    """A searcher sees only photos its own recent searches returned; other viewing roles see all."""
    if principal.role == "searcher" and not state.grants.allows(principal.key_id, image_id):
        raise ForbiddenError("a searcher may only view photos that its own searches returned")


def image_detail(engine: Engine, image_id: int) -> ImageDetailPublic:
    row = get_image_row(engine, image_id)
    faces = engine.catalog.conn.execute(FACE_SQL + " WHERE f.image_id = ? ORDER BY f.id", (image_id,)).fetchall()
    return ImageDetailPublic(**image_public(row).model_dump(), faces=faces_public(engine, faces))


@router.get("/images", response_model=ImagePage)
def list_images(principal: CanListImages, state: StateDep, collection: str | None = None,
                limit: Annotated[int, Query(ge=1, le=500)] = 50, offset: Annotated[int, Query(ge=0)] = 0):
    """Images, optionally of one collection, in id order."""
    with state.gate.use(principal) as engine:
        where, params = "", ()
        if collection is not None:
            where, params = " WHERE i.collection_id = ?", (engine.catalog.get_collection(collection).id,)
        total = engine.catalog.count("SELECT count(*) FROM images i" + where, params)
        rows = engine.catalog.conn.execute(IMAGE_SQL + where + " ORDER BY i.id LIMIT ? OFFSET ?",
                                           (*params, limit, offset)).fetchall()
    return ImagePage(items=[image_public(r) for r in rows], total=total, limit=limit, offset=offset)


@router.get("/images/{image_id}", response_model=ImageDetailPublic)
def get_image(image_id: int, principal: CanViewImages, state: StateDep):
    """One image with all its faces (boxes, quality verdicts, enrolled subject names; never faceprints)."""
    check_view(state, principal, image_id)
    with state.gate.use(principal) as engine:
        return image_detail(engine, image_id)


@router.get("/images/{image_id}/thumbnail", response_class=Response, responses=JPEG)
def image_thumbnail(image_id: int, principal: CanViewImages, state: StateDep,
                    size: Annotated[int, Query(ge=32, le=4096)] = 512, focus: int | None = None):
    """The photo as a JPEG, longest side `size` px. With `focus=<face id>` every other face is obscured
    (as shown in a subject access report)."""
    check_view(state, principal, image_id)
    with state.gate.use(principal) as engine:
        row = get_image_row(engine, image_id)
        settings = engine.settings
        others = []
        if focus is not None:
            boxes = engine.catalog.conn.execute(
                "SELECT id, box_left, box_top, box_right, box_bottom FROM faces WHERE image_id = ?", (image_id,))
            others = [tuple(b[1:]) for b in boxes if b[0] != focus]
    data = thumbnail(row["uri"], settings, min(size, state.config.thumbnail_max_px), others)
    return Response(data, media_type="image/jpeg", headers=NO_STORE)


@router.delete("/images/{image_id}", response_model=DeletedPublic)
def delete_image(image_id: int, principal: CanDeleteImages, state: StateDep):
    """Remove an image and its faces from the catalog and the index (a file the service stored goes too)."""
    with state.gate.use(principal) as engine:
        get_image_row(engine, image_id)
        faces = engine.remove_image(image_id)
    sweep(state)
    return DeletedPublic(images_removed=1, faces_removed=faces)


@router.get("/faces", response_model=FacePage)
def list_faces(principal: CanListImages, state: StateDep, collection: str | None = None, image_id: int | None = None,
               limit: Annotated[int, Query(ge=1, le=500)] = 100, offset: Annotated[int, Query(ge=0)] = 0):
    """Faces (boxes and quality, never faceprints), optionally of one collection or image."""
    with state.gate.use(principal) as engine:
        clauses, params = [], []
        if collection is not None:
            clauses.append("f.image_id IN (SELECT id FROM images WHERE collection_id = ?)")
            params.append(engine.catalog.get_collection(collection).id)
        if image_id is not None:
            clauses.append("f.image_id = ?")
            params.append(image_id)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        total = engine.catalog.count("SELECT count(*) FROM faces f" + where, tuple(params))
        rows = engine.catalog.conn.execute(FACE_SQL + where + " ORDER BY f.id LIMIT ? OFFSET ?",
                                           (*params, limit, offset)).fetchall()
        items = faces_public(engine, rows)
    return FacePage(items=items, total=total, limit=limit, offset=offset)


@router.get("/faces/{face_id}", response_model=FacePublic)
def get_face(face_id: int, principal: CanViewImages, state: StateDep):
    with state.gate.use(principal) as engine:
        row = get_face_row(engine, face_id)
        check_view(state, principal, row["image_id"])
        return faces_public(engine, [row])[0]


@router.get("/faces/{face_id}/crop", response_class=Response, responses=JPEG)
def face_crop_route(face_id: int, principal: CanViewImages, state: StateDep,
                    size: Annotated[int, Query(ge=32, le=1024)] = 256):
    """The face with a margin around it, as a JPEG about `size` px on its long side."""
    with state.gate.use(principal) as engine:
        face = get_face_row(engine, face_id)
        check_view(state, principal, face["image_id"])
        image = get_image_row(engine, face["image_id"])
        settings = engine.settings
    box = (face["box_left"], face["box_top"], face["box_right"], face["box_bottom"])
    data = face_crop(image["uri"], settings, box, image["width"], image["height"], out_side=size)
    return Response(data, media_type="image/jpeg", headers=NO_STORE)


def remove_face(engine: Engine, face_id: int) -> int:
    """Erase one face through the privacy layer: journaled, byte-identical copies included, index rewritten
    and the SQLite files scrubbed of its faceprint; audited as an erasure by id, never by name."""
    get_face_row(engine, face_id)
    eraser = engine.privacy.eraser
    plan = ErasurePlan("face", face_ids=eraser.with_copies([face_id]), params={"face_id": face_id})
    return eraser.execute(plan).faces


@router.delete("/faces/{face_id}", response_model=DeletedPublic)
async def delete_face(face_id: int, principal: CanDeleteImages, state: StateDep):
    """Remove one face (e.g. a bystander) while keeping the rest of its photo."""

    def run():
        with state.gate.use(principal) as engine:
            return remove_face(engine, face_id)

    removed = await run_in_threadpool(run)
    await run_in_threadpool(sweep, state)
    return DeletedPublic(faces_removed=removed)
