"""Fused searches for the service (by a person's faces, by several photos of one person): what the REST route
and the web page share. The engine does the search and audits it; this adds the service's rules around it."""

from __future__ import annotations

from faceindex.errors import ForbiddenError, InvalidInputError
from faceindex.matching import FusedResult
from faceindex.service.principal import Principal
from faceindex.service.search_views import candidate_rows
from faceindex.service.state import ServiceState
from faceindex.service.uploads import Upload

MAX_PHOTOS = 12
"""Photos one same-person search may fuse (REST and web page): each is decoded and analysed in the request (~1 s
on 2 cores), and the fused calibration's buckets are measured up to about a dozen probes."""


def check_photo_count(n: int) -> None:
    """The rule both the REST route and the web page apply before reading any photo."""
    if not 1 <= n <= MAX_PHOTOS:
        raise InvalidInputError(f"send 1 to {MAX_PHOTOS} photos of the person (got {n})")


def probe_names(uploads: list[Upload]) -> list[str]:
    """`upload:<name>` for each photo, in order; a name sent twice gets ` (2)`, ` (3)`… so that each skipped or
    used photo of the result names exactly one upload (two files called `photo.jpg` are common)."""
    names, seen = [], {}
    for u in uploads:
        seen[u.name] = seen.get(u.name, 0) + 1
        names.append(f"upload:{u.name}" + (f" ({seen[u.name]})" if seen[u.name] > 1 else ""))
    return names


def _check_threshold(principal: Principal, threshold: float | None) -> None:
    if threshold is not None and principal.role != "admin":
        # As for a search by photo: a lower threshold means more false candidates, so only an admin moves it.
        raise ForbiddenError("only an admin may override the match threshold")


def _grant(state: ServiceState, principal: Principal, result: FusedResult) -> FusedResult:
    """Let a searcher view the photos of the candidates it got (never the probe faces: a person's own photos
    stay hidden from a searcher, as on the person page)."""
    state.grants.grant(principal.key_id, [c.image_id for c in result.face.candidates])
    return result


def search_person(state: ServiceState, principal: Principal, person: int | str, purpose: str, *,
                  top_k: int | None = None, threshold: float | None = None) -> FusedResult:
    """Search with a person's faces fused into one probe (blocking); audited by the engine as the caller."""
    _check_threshold(principal, threshold)
    with state.gate.read(principal) as engine:
        result = engine.search_person(person, purpose, top_k=top_k, threshold=threshold)
    return _grant(state, principal, result)


def search_same_person(state: ServiceState, principal: Principal, uploads: list[Upload], purpose: str, *,
                       top_k: int | None = None, threshold: float | None = None,
                       face: int | None = None) -> FusedResult:
    """Search with several uploaded photos of one person fused into one probe (blocking). One decode slot is
    held for all of them: the photos are analysed one after another, so one request never takes more."""
    check_photo_count(len(uploads))
    _check_threshold(principal, threshold)
    with state.decodes, state.gate.read(principal) as engine:
        result = engine.search_same_person([u.data for u in uploads], purpose, top_k=top_k, threshold=threshold,
                                           face=face, probe_names=probe_names(uploads))
    return _grant(state, principal, result)


def candidate_view(engine, result: FusedResult) -> list[dict]:
    """The fused probe as the search page lists a probe face: its candidates with each photo's size (to draw the
    box), file name and video hit."""
    return [{"face": result.face, "candidates": candidate_rows(engine, result.face.candidates)}]
