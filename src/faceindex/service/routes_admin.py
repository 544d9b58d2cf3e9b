"""Health, the caller's identity, store statistics, the audit log and API key management."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from faceindex import __version__
from faceindex.errors import ConflictError
from faceindex.service.deps import ERRORS, MAX_INT, NOT_FOUND, AnyRole, CanAudit, CanKeys, CanStats, IdPath, StateDep
from faceindex.service.keys import KeyStore
from faceindex.service.schemas import (
    AuditEventPublic,
    AuditVerifyPublic,
    HealthPublic,
    KeyCreate,
    KeyCreatedPublic,
    KeyPublic,
    MePublic,
    StatsPublic,
)
from faceindex.store import reads

router = APIRouter(prefix="/api/v1")


@router.get("/health", response_model=HealthPublic, tags=["meta"])
async def health():
    """Liveness check; needs no key and tells nothing about the store.

    `async` on purpose: it answers on the event loop, not in the thread pool that searches may fill."""
    return HealthPublic(status="ok", version=__version__)


@router.get("/me", response_model=MePublic, tags=["meta"], responses=ERRORS)
async def me(principal: AnyRole):
    """Who the caller is and what its role may do (answered on the event loop: no store access)."""
    return MePublic(name=principal.name, role=principal.role, via=principal.via, permissions=principal.permissions)


@router.get("/stats", response_model=StatsPublic, tags=["meta"], responses=ERRORS)
def stats(principal: CanStats, state: StateDep):
    """Counts of collections, images, faces and skipped files; the model and the index type."""
    with state.gate.read(principal) as engine:
        return engine.stats()


@router.get("/audit", response_model=list[AuditEventPublic], tags=["audit"], responses=ERRORS)
def audit_events(principal: CanAudit, state: StateDep, action: str | None = None,
                 after: Annotated[int, Query(ge=0, le=MAX_INT,
                                             description="Only events with a larger sequence number.")] = 0,
                 limit: Annotated[int, Query(ge=1, le=1000)] = 200):
    """Audit events in order. Events record who did what, why and how many, never a photo or faceprint."""
    with state.gate.read(principal) as engine:
        return [e.to_dict() for e in engine.audit.events(action=action, after=after, limit=limit)]


@router.get("/audit/verify", response_model=AuditVerifyPublic, tags=["audit"], responses=ERRORS)
def audit_verify(principal: CanAudit, state: StateDep):
    """Check the hash chain: any edited, deleted, inserted or reordered event is reported."""
    with state.gate.read(principal) as engine:
        problems = engine.audit.verify()
        events = reads.audit_count(engine.catalog)
        head = engine.catalog.get_meta("audit_head")
    return AuditVerifyPublic(ok=not problems, events=events, head=head, problems=problems)


@router.get("/keys", response_model=list[KeyPublic], tags=["keys"], responses=ERRORS)
def list_keys(principal: CanKeys, state: StateDep):
    """Every API key (active and revoked) with its role; never a secret or a hash."""
    with state.gate.read(principal) as engine:
        return [KeyPublic(**k.__dict__, active=k.active) for k in KeyStore(engine).list()]


@router.post("/keys", response_model=KeyCreatedPublic, status_code=201, tags=["keys"], responses=ERRORS)
def create_key(body: KeyCreate, principal: CanKeys, state: StateDep):
    """Create a key. The response holds the secret once; only its hash is stored."""
    with state.gate.write(principal) as engine:
        key, secret = KeyStore(engine).create(body.name, body.role)
    return KeyCreatedPublic(**key.__dict__, active=key.active, key=secret)


@router.delete("/keys/{key_id}", response_model=KeyPublic, tags=["keys"], responses={**ERRORS, **NOT_FOUND})
def revoke_key(key_id: IdPath, principal: CanKeys, state: StateDep):
    """Revoke a key: its requests and browser sessions stop working at once."""
    with state.gate.write(principal) as engine:
        keys = KeyStore(engine)
        target = keys.get(key_id)
        if target.id == principal.key_id and target.active and keys.count_active("admin") == 1:
            raise ConflictError("refusing to revoke the last active admin key (create another admin first)")
        key = keys.revoke(key_id)
    return KeyPublic(**key.__dict__, active=key.active)
