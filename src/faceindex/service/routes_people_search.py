"""Fused searches over the API: by a person of the people grouping, and by several photos of one person.

Same roles as a search by photo (admin, searcher), audited by the engine as the caller; results have the
shape of `faceindex search --json` plus a `fused` object, and are candidates for human review.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from starlette.concurrency import run_in_threadpool

from faceindex.service import people_search
from faceindex.service.deps import ERRORS, NOT_FOUND, UPLOAD_ERRORS, CanSearch, StateDep
from faceindex.service.schemas_people_search import FusedSearchPublic, PersonSearchCreate
from faceindex.service.uploads import read_upload
from faceindex.service.video_media import with_video_urls

router = APIRouter(prefix="/api/v1/search", tags=["search"], responses={**ERRORS, **NOT_FOUND})
MAX_PHOTOS = people_search.MAX_PHOTOS
EMPTY = {409: {**ERRORS[422], "description": "The store holds no faces: nothing was searched (never 'no match')."}}


@router.post("/person", response_model=FusedSearchPublic, responses=EMPTY)
def search_person(body: PersonSearchCreate, principal: CanSearch, state: StateDep):
    """Search with every confirmed face of a person (all its faces when none is confirmed), fused into one
    probe. The threshold and false-match rates are the fused score's own, calibrated for that many probes, so
    `expected_false_candidates` keeps its meaning. The person's own faces are the probe, not candidates."""
    result = people_search.search_person(state, principal, body.person, body.purpose, top_k=body.top_k,
                                         threshold=body.threshold)
    return with_video_urls(result.to_dict())  # video hits name service URLs, never store paths


@router.post("/same-person", response_model=FusedSearchPublic, responses={**EMPTY, **UPLOAD_ERRORS})
async def search_same_person(
        principal: CanSearch, state: StateDep,
        photos: Annotated[list[UploadFile], File(description=f"1 to {MAX_PHOTOS} photos of one person.")],
        purpose: Annotated[str, Form(min_length=1, max_length=500, description="Purpose or case reference "
                                     "(audited).")],
        top_k: Annotated[int | None, Form(ge=1, le=100, description="Candidates to return.")] = None,
        face: Annotated[int | None, Form(ge=0, le=1000, description="This face of each photo (0 = largest); "
                                         "default: its prominent face.")] = None,
        threshold: Annotated[float | None, Form(ge=-1, le=1, description="Admin only.")] = None):
    """Search with several photos of one person, their faces fused into one probe as a search by person does.

    Photos without a usable face are listed in `fused.skipped` and the others are fused; two photos that score
    below the 1:1 threshold against each other are named in `fused.warnings` (they may not show one person).
    """
    people_search.check_photo_count(len(photos))  # before reading any: 13 photos of 20 MiB are refused unread
    uploads = [await read_upload(photo, state.config) for photo in photos]
    result = await run_in_threadpool(people_search.search_same_person, state, principal, uploads, purpose,
                                     top_k=top_k, threshold=threshold, face=face)
    return with_video_urls(result.to_dict())  # video hits name service URLs, never store paths
