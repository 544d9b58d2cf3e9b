"""Images and faces: list, get, thumbnail and crop (re-encoded, authorised roles only, audited), delete.

Photos are addressed by catalog id, never by a path the client sends, so there is no path to traverse; a
photo is shown only while its file is still the catalogued one (media.catalogued_bytes).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from starlette.concurrency import run_in_threadpool

from faceindex.service.deps import (
    ERRORS,
    NOT_FOUND,
    CanDeleteImages,
    CanListImages,
    CanViewImages,
    IdPath,
    Offset,
    OptionalId,
    StateDep,
)
from faceindex.service.media import catalogued_bytes, face_crop, thumbnail
from faceindex.service.schemas import DeletedPublic, FacePage, FacePublic, ImageDetailPublic, ImagePage
from faceindex.service.shared import (
    audit_view,
    check_view,
    erase_face,
    face_row,
    faces_public,
    find_collection,
    image_detail,
    image_public,
    image_row,
    sweep,
)
from faceindex.store import reads

router = APIRouter(prefix="/api/v1", tags=["images"], responses={**ERRORS, **NOT_FOUND})
JPEG = {200: {"content": {"image/jpeg": {}}, "description": "A JPEG re-encoded from the photo's pixels."},
        410: {"description": "The photo file changed since it was indexed (replaced or a symlink): not shown."}}
NO_STORE = {"Cache-Control": "private, no-store"}
COLLECTION = Query(description="Collection id (digits) or name.")


@router.get("/images", response_model=ImagePage)
def list_images(principal: CanListImages, state: StateDep, collection: Annotated[str | None, COLLECTION] = None,
                limit: Annotated[int, Query(ge=1, le=500)] = 50, offset: Offset = 0):
    """Images, optionally of one collection, in id order."""
    with state.gate.read(principal) as engine:
        collection_id = None if collection is None else find_collection(engine, collection).id
        total, rows = reads.images_page(engine.catalog, collection_id, limit, offset)
    return ImagePage(items=[image_public(r) for r in rows], total=total, limit=limit, offset=offset)


@router.get("/images/{image_id}", response_model=ImageDetailPublic)
def get_image(image_id: IdPath, principal: CanViewImages, state: StateDep):
    """One image with all its faces (boxes, quality verdicts, enrolled subject names; never faceprints)."""
    check_view(state, principal, image_id)
    with state.gate.read(principal) as engine:
        return image_detail(engine, image_id)


@router.get("/images/{image_id}/thumbnail", response_class=Response, responses=JPEG)
def image_thumbnail(image_id: IdPath, principal: CanViewImages, state: StateDep,
                    size: Annotated[int, Query(ge=32, le=4096)] = 512, focus: OptionalId = None):
    """The photo as a JPEG, longest side `size` px. With `focus=<face id>` every other face is obscured
    (as shown in a subject access report). Each view is recorded in the audit log."""
    check_view(state, principal, image_id)
    with state.gate.read(principal) as engine:
        row = image_row(engine, image_id)
        settings = engine.settings
        faces = reads.faces_of_image(engine.catalog, image_id) if focus is not None else []
        others = [(f["box_left"], f["box_top"], f["box_right"], f["box_bottom"]) for f in faces if f["id"] != focus]
    with state.decodes:
        data = thumbnail(catalogued_bytes(row["uri"], row["sha256"], settings.max_bytes), settings,
                         min(size, state.config.thumbnail_max_px), others)
    audit_view(state, principal, image_id, "thumbnail")
    return Response(data, media_type="image/jpeg", headers=NO_STORE)


@router.delete("/images/{image_id}", response_model=DeletedPublic)
def delete_image(image_id: IdPath, principal: CanDeleteImages, state: StateDep):
    """Remove an image and its faces from the catalog and the index (a file the service stored goes too)."""
    with state.gate.write(principal) as engine:
        image_row(engine, image_id)
        faces = engine.remove_image(image_id)
    sweep(state)
    return DeletedPublic(images_removed=1, faces_removed=faces)


@router.get("/faces", response_model=FacePage)
def list_faces(principal: CanListImages, state: StateDep, collection: Annotated[str | None, COLLECTION] = None,
               image_id: OptionalId = None, limit: Annotated[int, Query(ge=1, le=500)] = 100,
               offset: Offset = 0):
    """Faces (boxes and quality, never faceprints), optionally of one collection or image."""
    with state.gate.read(principal) as engine:
        collection_id = None if collection is None else find_collection(engine, collection).id
        total, rows = reads.faces_page(engine.catalog, collection_id=collection_id, image_id=image_id, limit=limit,
                                       offset=offset)
        items = faces_public(engine, rows)
    return FacePage(items=items, total=total, limit=limit, offset=offset)


@router.get("/faces/{face_id}", response_model=FacePublic)
def get_face(face_id: IdPath, principal: CanViewImages, state: StateDep):
    with state.gate.read(principal) as engine:
        row = face_row(engine, face_id)
        check_view(state, principal, row["image_id"])
        return faces_public(engine, [row])[0]


@router.get("/faces/{face_id}/crop", response_class=Response, responses=JPEG)
def face_crop_route(face_id: IdPath, principal: CanViewImages, state: StateDep,
                    size: Annotated[int, Query(ge=32, le=1024)] = 256):
    """The face with a margin around it, as a JPEG about `size` px on its long side (each view audited)."""
    with state.gate.read(principal) as engine:
        face = face_row(engine, face_id)
        check_view(state, principal, face["image_id"])
        image = image_row(engine, face["image_id"])
        settings = engine.settings
    box = (face["box_left"], face["box_top"], face["box_right"], face["box_bottom"])
    with state.decodes:
        data = face_crop(catalogued_bytes(image["uri"], image["sha256"], settings.max_bytes), settings, box,
                         image["width"], image["height"], out_side=size)
    audit_view(state, principal, image["id"], "crop")
    return Response(data, media_type="image/jpeg", headers=NO_STORE)


@router.delete("/faces/{face_id}", response_model=DeletedPublic)
async def delete_face(face_id: IdPath, principal: CanDeleteImages, state: StateDep):
    """Remove one face (e.g. a bystander) while keeping the rest of its photo."""

    def run():
        with state.gate.write(principal) as engine:
            face_row(engine, face_id)
            return erase_face(engine, face_id)

    removed = await run_in_threadpool(run)
    await run_in_threadpool(sweep, state)
    return DeletedPublic(faces_removed=removed)
