"""Shared `Annotated` dependencies of the routes: the service state and permission-checked callers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Path, Query

from faceindex.service.auth import Principal, Require
from faceindex.service.schemas import ErrorResponse
from faceindex.service.state import ServiceState, get_state

MAX_INT = 2**63 - 1
"""SQLite's largest INTEGER: a bigger number reaching sqlite3 is an OverflowError (a 500), so ids, offsets and
sequence numbers are validated against it (a 422 naming the field)."""
IdPath = Annotated[int, Path(ge=0, le=MAX_INT, description="Record id.")]
OptionalId = Annotated[int | None, Query(ge=0, le=MAX_INT)]
Offset = Annotated[int, Query(ge=0, le=MAX_INT)]

StateDep = Annotated[ServiceState, Depends(get_state)]
AnyRole = Annotated[Principal, Depends(Require())]
CanReadCollections = Annotated[Principal, Depends(Require("collections:read"))]
CanWriteCollections = Annotated[Principal, Depends(Require("collections:write"))]
CanIngest = Annotated[Principal, Depends(Require("ingest"))]
CanSearch = Annotated[Principal, Depends(Require("search"))]
CanListImages = Annotated[Principal, Depends(Require("images:list"))]
CanViewImages = Annotated[Principal, Depends(Require("images:view"))]
CanDeleteImages = Annotated[Principal, Depends(Require("images:delete"))]
CanStats = Annotated[Principal, Depends(Require("stats"))]
CanAudit = Annotated[Principal, Depends(Require("audit:read"))]
CanPrivacy = Annotated[Principal, Depends(Require("privacy"))]
CanKeys = Annotated[Principal, Depends(Require("keys"))]
CanReadPeople = Annotated[Principal, Depends(Require("people:read"))]
CanWritePeople = Annotated[Principal, Depends(Require("people:write"))]
CanSetGrouping = Annotated[Principal, Depends(Require("people:grouping"))]

_ERR = {"model": ErrorResponse}
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {**_ERR, "description": "No valid API key or session."},
    403: {**_ERR, "description": "Role lacks the permission, policy refusal, or missing CSRF token."},
    422: {**_ERR, "description": "Invalid input."},
    429: {**_ERR, "description": "Rate limit exceeded (see Retry-After)."},
}
"""Error responses every authenticated route documents."""
NOT_FOUND = {404: {**_ERR, "description": "No such record."}}
UPLOAD_ERRORS = {413: {**_ERR, "description": "Upload over the byte or pixel limit."},
                 415: {**_ERR, "description": "Not a supported image format (judged by content)."}}
MEDIA_UPLOAD_ERRORS = {413: {**_ERR, "description": "Upload over the byte or pixel limit (a video: over "
                                                     "max_video_upload_bytes)."},
                       415: {**_ERR, "description": "Neither a supported image nor a video format (judged by "
                                                    "content)."},
                       422: {**_ERR, "description": "A video that cannot be read (bad_video: truncated, audio only, "
                                                    "unknown codec), named with its file."}}
"""The ingest upload route's errors: it takes photos and videos (the probe routes take photos only)."""
