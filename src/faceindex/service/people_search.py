"""Fused searches for the service (by a person's faces, by several photos of one person): what the REST route
and the web page share. The engine does the search and audits it; this adds the service's rules around it."""

from __future__ import annotations

from faceindex.errors import ForbiddenError
from faceindex.matching import FusedResult
from faceindex.service.principal import Principal
from faceindex.service.state import ServiceState
from faceindex.service.uploads import Upload, display_name
from faceindex.store import reads


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
    _check_threshold(principal, threshold)
    with state.decodes, state.gate.read(principal) as engine:
        result = engine.search_same_person([u.data for u in uploads], purpose, top_k=top_k, threshold=threshold,
                                           face=face, probe_names=[f"upload:{u.name}" for u in uploads])
    return _grant(state, principal, result)


def candidate_view(engine, result: FusedResult) -> list[dict]:
    """The fused probe as the search page lists a probe face: its candidates with each photo's size (to draw the
    box) and file name."""
    candidates = result.face.candidates
    sizes = reads.image_sizes(engine.catalog, [c.image_id for c in candidates])
    return [{"face": result.face, "candidates": [{**c.__dict__, "name": display_name(c.path),
                                                  "size": sizes.get(c.image_id, (1, 1))} for c in candidates]}]
