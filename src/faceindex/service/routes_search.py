"""Search by uploaded photo (1:N) and verify two photos (1:1)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from starlette.concurrency import run_in_threadpool

from faceindex.errors import ForbiddenError, ImageError
from faceindex.matching import ProbeResult
from faceindex.service.auth import Principal
from faceindex.service.deps import ERRORS, UPLOAD_ERRORS, CanSearch, StateDep
from faceindex.service.schemas import SearchPublic, VerifyPublic
from faceindex.service.state import ServiceState
from faceindex.service.uploads import Upload, read_upload

router = APIRouter(prefix="/api/v1", tags=["search"], responses={**ERRORS, **UPLOAD_ERRORS})


def run_search(state: ServiceState, principal: Principal, upload: Upload, purpose: str, *, top_k: int | None = None,
               face: int | None = None, threshold: float | None = None) -> ProbeResult:
    """Search with the engine (blocking) and let a searcher view the photos of the candidates it got."""
    if threshold is not None and principal.role != "admin":
        # A lower threshold means more false candidates: only an admin may move it from the calibrated value.
        raise ForbiddenError("only an admin may override the match threshold")
    with state.gate.use(principal) as engine:
        result = engine.search([upload.data], purpose, top_k=top_k, threshold=threshold, face=face,
                               probe_names=[f"upload:{upload.name}"])[0]
    if result.error is not None:
        raise ImageError(f"{upload.name}: {result.error}")
    state.grants.grant(principal.key_id, [c.image_id for f in result.faces or [] for c in f.candidates])
    return result


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
    return result.to_dict()


@router.post("/verify", response_model=VerifyPublic)
async def verify(principal: CanSearch, state: StateDep,
                 photo_a: Annotated[UploadFile, File(description="First photo.")],
                 photo_b: Annotated[UploadFile, File(description="Second photo.")]):
    """Do the main faces (a large face near the centre) of two photos show the same person? (1:1: gallery of 1.)"""
    first = await read_upload(photo_a, state.config)
    second = await read_upload(photo_b, state.config)

    def run():
        with state.gate.use(principal) as engine:
            return engine.verify(first.data, second.data)

    result = await run_in_threadpool(run)
    return VerifyPublic(same_person=result.same_person, score=result.score, threshold=result.threshold,
                        fmr=result.fmr)
