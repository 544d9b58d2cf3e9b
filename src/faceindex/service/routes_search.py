"""Search by uploaded photo (1:N) and verify two photos (1:1)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from faceindex.service.deps import ERRORS, UPLOAD_ERRORS, CanSearch, StateDep
from faceindex.service.schemas import SearchPublic, VerifyPublic
from faceindex.service.shared import run_search
from faceindex.service.uploads import read_upload
from faceindex.service.video_media import with_video_urls

router = APIRouter(prefix="/api/v1", tags=["search"], responses={**ERRORS, **UPLOAD_ERRORS})


@router.post("/search", response_model=SearchPublic)
async def search(principal: CanSearch, state: StateDep,
                 photo: Annotated[UploadFile, File(description="Probe photo.")],
                 purpose: Annotated[str, Form(max_length=500, description="Purpose or case reference (audited).")],
                 top_k: Annotated[int | None, Form(ge=1, le=100, description="Candidates per face.")] = None,
                 face: Annotated[int | None, Form(ge=0, description="Only this face (0 = largest).")] = None,
                 threshold: Annotated[float | None, Form(ge=-1, le=1, description="Admin only.")] = None):
    """Find where the faces of an uploaded photo appear. Results are candidates for human review.

    The answer has the shape of `faceindex search --json`: one entry per face found in the probe, each with
    its threshold and that threshold's false-match rate, and candidates above it (or "no match").
    """
    upload = await read_upload(photo, state.config)
    result = await run_in_threadpool(run_search, state, principal, upload, purpose, top_k=top_k, face=face,
                                     threshold=threshold)
    # Returned as is (validated by the tests against SearchPublic, which documents it): a photo candidate keeps
    # exactly the shape of `faceindex search --json`, without a `video: null` the response model would add.
    return JSONResponse(with_video_urls(result.to_dict()))


@router.post("/verify", response_model=VerifyPublic)
async def verify(principal: CanSearch, state: StateDep,
                 photo_a: Annotated[UploadFile, File(description="First photo.")],
                 photo_b: Annotated[UploadFile, File(description="Second photo.")]):
    """Do the main faces (a large face near the centre) of two photos show the same person? (1:1: gallery of 1.)"""
    first = await read_upload(photo_a, state.config)
    second = await read_upload(photo_b, state.config)

    def run():
        with state.decodes, state.gate.read(principal) as engine:
            return engine.verify(first.data, second.data)

    result = await run_in_threadpool(run)
    return VerifyPublic(same_person=result.same_person, score=result.score, threshold=result.threshold,
                        fmr=result.fmr)
