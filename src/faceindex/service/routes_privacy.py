"""Privacy operations over the API (privacy officer and admin): subjects and consent, erasure in two steps
(plan, review, confirm), opt-out, subject access report, redaction, retention purge, audit export.

Selfies and photos sent here are read in memory (or a private temporary file deleted before the answer)
and never kept; the privacy layer stores no photo and only a protected template for an opt-out.
"""

from __future__ import annotations

import secrets
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from faceindex.errors import InvalidInputError, NotFoundError
from faceindex.privacy.erasure import ErasurePlan, ErasureResult
from faceindex.service.auth import Principal
from faceindex.service.deps import ERRORS, NOT_FOUND, UPLOAD_ERRORS, CanAudit, CanPrivacy, IdPath, StateDep
from faceindex.service.schemas import (
    ConsentCreate,
    ConsentResultPublic,
    EnrolCreate,
    EnrolPublic,
    ErasurePlanCreate,
    ErasurePlanPublic,
    ErasureResultPublic,
    OptOutPublic,
    OptOutRecordPublic,
    PurgeCreate,
    SubjectDetailPublic,
    SubjectPublic,
)
from faceindex.service.schemas_people_search import PersonOptOutCreate, PersonOptOutPublic, person_ref
from faceindex.service.shared import sweep
from faceindex.service.state import ServiceState
from faceindex.service.uploads import read_upload

router = APIRouter(prefix="/api/v1", tags=["privacy"], responses={**ERRORS, **NOT_FOUND, **UPLOAD_ERRORS})
PLAN_MINUTES = 15
REPORT_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'none'"
"""The access report page has inline styles and data: images but no script; it gets this CSP, not the app's."""


class PendingPlans:
    """Erasure plans awaiting confirmation, by unguessable id, for PLAN_MINUTES, bound to the key that made them.

    Confirming runs exactly the ids that were shown, so a face indexed between review and confirmation is
    not erased unseen, and a selfie need not be sent twice. A plan is single use, and a key has at most one
    pending plan: the newest request (even one that failed) ends the earlier ones.
    """

    def __init__(self):
        self._plans: dict[str, tuple[ErasurePlan, int, float]] = {}
        self._lock = threading.Lock()

    def add(self, plan: ErasurePlan, key_id: int) -> tuple[str, str]:
        plan_id = secrets.token_urlsafe(16)
        with self._lock:
            now = time.monotonic()
            self._plans = {k: v for k, v in self._plans.items() if v[2] > now}
            self._plans[plan_id] = (plan, key_id, now + PLAN_MINUTES * 60)
        expires = datetime.now(UTC) + timedelta(minutes=PLAN_MINUTES)
        return plan_id, expires.isoformat(timespec="seconds")

    def discard(self, key_id: int) -> int:
        """Drop every plan a key still has pending; returns how many.

        Called at the start of each new plan request, before it can fail: a second try (another selfie,
        one with no face) must never leave the first person's plan confirmable, whatever a page still shows.
        """
        with self._lock:
            gone = [k for k, v in self._plans.items() if v[1] == key_id]
            for plan_id in gone:
                del self._plans[plan_id]
        return len(gone)

    def take(self, plan_id: str, key_id: int) -> ErasurePlan:
        with self._lock:
            found = self._plans.get(plan_id)
            if found is None or found[2] < time.monotonic() or found[1] != key_id:
                raise NotFoundError("no such erasure plan (expired, already executed, or made with another key)")
            del self._plans[plan_id]
        return found[0]


def plans(state: ServiceState) -> PendingPlans:
    return state.extra.setdefault("erasure_plans", PendingPlans())


def erasure_public(result: ErasureResult, uploads_deleted: int = 0) -> ErasureResultPublic:
    """`uploads_deleted`: files the sweep deleted after the erasure, on top of those the erasure itself deleted."""
    return ErasureResultPublic(route=result.route, faces=result.faces, images=result.images,
                               collections=result.collections, subjects=result.subjects,
                               files_deleted=result.files_deleted, complete=result.complete,
                               verified=result.verified, upload_files_deleted=result.uploads_deleted + uploads_deleted,
                               upload_files_redacted=result.uploads_redacted,
                               shared_with_copies=result.shared_with_copies,
                               vectors_backend=result.vectors_backend, vectors_residue=result.vectors_residue,
                               catalog_backend=result.catalog_backend, catalog_residue=result.catalog_residue)


def _privacy_call(state: ServiceState, principal: Principal, fn):
    """Run fn(engine) under the write gate (blocking), then delete uploaded photos no record refers to."""
    with state.gate.write(principal) as engine:
        result = fn(engine)
    return result, sweep(state)


def _subject_name(engine, subject_id: int) -> str:
    """The name of the subject with this id. URLs carry ids, never names: a name like `../subjects/Victim`
    in a URL would be normalised by the browser into a request about someone else."""
    for subject in engine.privacy.subjects.list():
        if subject.id == subject_id:
            return subject.name
    raise NotFoundError(f"no subject with id {subject_id}")


# -- subjects and consent ---------------------------------------------------------------------------
@router.get("/subjects", response_model=list[SubjectPublic])
def list_subjects(principal: CanPrivacy, state: StateDep):
    with state.gate.read(principal) as engine:
        return [s.to_dict() for s in engine.privacy.subjects.list()]


@router.get("/subjects/{subject_id}", response_model=SubjectDetailPublic)
def get_subject(subject_id: IdPath, principal: CanPrivacy, state: StateDep):
    """A subject with its consent history and enrolled face ids."""
    with state.gate.read(principal) as engine:
        subjects = engine.privacy.subjects
        subject = subjects.get(_subject_name(engine, subject_id))
        return {**subject.to_dict(), "consents": subjects.consents(subject.id),
                "face_ids": subjects.face_ids(subject.id)}


@router.post("/subjects", response_model=EnrolPublic, status_code=201)
def enrol_subject(body: EnrolCreate, principal: CanPrivacy, state: StateDep):
    """Enrol a named subject (or add faces to one) from indexed face ids, e.g. picked on an image page."""
    with state.gate.write(principal) as engine:
        result = engine.privacy.subjects.enrol(body.name, face_ids=body.face_ids, jurisdictions=body.jurisdictions,
                                               consent_evidence=body.consent_evidence,
                                               consent_scope=body.consent_scope, case=body.case)
    return EnrolPublic(subject=result.subject.to_dict(), linked=result.linked,
                       skipped=[{"path": p, "reason": r} for p, r in result.skipped])


@router.post("/subjects/{subject_id}/consent", response_model=ConsentResultPublic)
def record_consent(subject_id: IdPath, body: ConsentCreate, principal: CanPrivacy, state: StateDep):
    """Record consent given or withdrawn; a withdrawal erases the subject's faceprints at once."""
    result, swept = _privacy_call(state, principal, lambda engine: engine.privacy.subjects.consent(
        _subject_name(engine, subject_id), body.status, evidence=body.evidence, scope=body.scope, case=body.case))
    return ConsentResultPublic(subject=result.subject.to_dict(), status=result.status,
                               erasure=erasure_public(result.erasure, swept) if result.erasure else None)


# -- erasure ----------------------------------------------------------------------------------------------
def _plan_public(state: ServiceState, principal: Principal, plan: ErasurePlan, summary: dict) -> ErasurePlanPublic:
    plan_id, expires = plans(state).add(plan, principal.key_id)
    return ErasurePlanPublic(plan_id=plan_id, expires_at=expires, route=summary["route"], faces=summary["faces"],
                             images=summary["images"], collections=summary["collections"],
                             subjects=summary["subjects"], people=summary.get("people", 0),
                             matches=summary["matches"],
                             also_found_by_search=summary.get("also_found_by_search", []),
                             search_threshold=summary.get("search_threshold"),
                             search_threshold_fmr=summary.get("search_threshold_fmr"),
                             included_faces=summary.get("included_faces", []))


def _face_ids(raw: str | None) -> list[int]:
    """Face ids typed in a form field ("12, 40 41"); a clear error for anything else."""
    parts = [p for p in (raw or "").replace(",", " ").split() if p]
    if not all(p.isdigit() for p in parts):
        raise InvalidInputError("include_faces: face ids are numbers separated by commas or spaces")
    return [int(p) for p in parts]


@router.post("/erasures/plans", response_model=ErasurePlanPublic, status_code=201)
def plan_erasure(body: ErasurePlanCreate, principal: CanPrivacy, state: StateDep):
    """Prepare an erasure by subject, collection, jurisdiction, image id or person; nothing is deleted yet.

    By person (people grouping, id or name): every face of the person, listed face by face with its state, and
    the person's record and name; `expand` adds what its fused probe finds at the strict threshold. Any plan
    this key still had pending ends now, whether or not this one succeeds."""
    plans(state).discard(principal.key_id)
    value: str | int = body.value
    if body.route == "image":
        # An id only: a path would make the server read and hash a file of the client's choosing.
        if not body.value.strip().isdigit():
            raise InvalidInputError("an erasure by image takes the image id (digits), not a path")
        value = int(body.value.strip())
    elif body.route == "person":
        try:
            value = person_ref(body.value)
        except ValueError as exc:
            raise InvalidInputError(str(exc)) from exc
    with state.gate.write(principal) as engine:
        plan = engine.privacy.plan_erasure(**{body.route: value}, case=body.case, expand=body.expand,
                                           include_faces=body.include_faces)
        summary = engine.privacy.eraser.summary(plan)
    return _plan_public(state, principal, plan, summary)


@router.post("/erasures/plans/selfie", response_model=ErasurePlanPublic, status_code=201)
async def plan_selfie_erasure(principal: CanPrivacy, state: StateDep,
                              photo: Annotated[UploadFile, File(description="Selfie of the person to erase.")],
                              case: Annotated[str | None, Form(max_length=500)] = None,
                              expand: Annotated[bool, Form(description="Also the faces the matches find (one hop, "
                                                                       "stricter threshold).")] = False,
                              include_faces: Annotated[str | None, Form(
                                  max_length=20_000, description="Face ids to erase as well, e.g. from a first "
                                  "plan's also_found_by_search (\"12, 40\").")] = None):
    """Prepare an erasure of every face matching a selfie above the strict threshold (with `expand`, also the
    faces those matches find); the matches are listed for review before anything is deleted. The preview is
    audited like a search by the privacy layer ("erasure.plan"). Any plan this key still had pending ends now,
    whether or not this one succeeds."""
    plans(state).discard(principal.key_id)
    upload = await read_upload(photo, state.config)
    extra = _face_ids(include_faces)

    def run():
        with state.decodes, state.gate.write(principal) as engine:
            plan = engine.privacy.plan_erasure(selfie=upload.data, case=case, expand=expand, include_faces=extra)
            return plan, engine.privacy.eraser.summary(plan)

    plan, summary = await run_in_threadpool(run)
    return _plan_public(state, principal, plan, summary)


@router.post("/erasures/plans/{plan_id}", response_model=ErasureResultPublic)
def execute_erasure(plan_id: str, principal: CanPrivacy, state: StateDep):
    """Confirm a plan: delete exactly what it listed, rewrite the index and scrub the store's files."""
    plan = plans(state).take(plan_id, principal.key_id)
    result, swept = _privacy_call(state, principal, lambda engine: engine.privacy.erase(plan))
    return erasure_public(result, swept)


# -- opt-out, access report, redaction, purge -----------------------------------------------------------
@router.post("/opt-outs", response_model=OptOutPublic, status_code=201)
async def opt_out(principal: CanPrivacy, state: StateDep,
                  photo: Annotated[UploadFile, File(description="Selfie of the person opting out.")],
                  reference: Annotated[str | None, Form(max_length=500, description="Request reference.")] = None):
    """Do not index this person: keep a protected template (never the photo), erase matching faces already held,
    and drop matching faces at every later ingest."""
    upload = await read_upload(photo, state.config)
    def run():
        with state.decodes:
            return _privacy_call(state, principal, lambda engine: engine.privacy.opt_out(upload.data, reference))

    result, swept = await run_in_threadpool(run)
    return OptOutPublic(optout_id=result.optout_id, threshold=round(result.threshold, 4),
                        erasure=erasure_public(result.erasure, swept))


@router.post("/opt-outs/person", response_model=PersonOptOutPublic, status_code=201)
def opt_out_person(body: PersonOptOutCreate, principal: CanPrivacy, state: StateDep):
    """Opt out a person of the people grouping (id or name): a protected template of each of its faces is kept
    (one opt-out, withdrawn as one), its faces, record and name are erased with the faces its fused probe finds
    at the strict threshold (unless they belong to another person), and matching faces are dropped at every
    later ingest."""
    result, swept = _privacy_call(state, principal,
                                  lambda engine: engine.privacy.opt_out_person(body.person, body.reference))
    return PersonOptOutPublic(optout_id=result.optout_id, threshold=round(result.threshold, 4),
                              erasure=erasure_public(result.erasure, swept), templates=result.templates,
                              person=result.person)


@router.get("/opt-outs", response_model=list[OptOutRecordPublic])
def list_opt_outs(principal: CanPrivacy, state: StateDep):
    """The opt-outs held: id, request reference, date (never a template: it stays inside the store)."""
    with state.gate.read(principal) as engine:
        return [r.to_dict() for r in engine.privacy.opt_outs()]


@router.delete("/opt-outs/{optout_id}", status_code=204)
def withdraw_opt_out(optout_id: IdPath, principal: CanPrivacy, state: StateDep,
                     reason: Annotated[str | None, Query(max_length=500, description="Request reference.")] = None):
    """The person withdraws their opt-out: its template is deleted and later ingests index them again.
    Faces erased when they opted out stay erased."""
    with state.gate.write(principal) as engine:
        engine.privacy.withdraw_opt_out(optout_id, reason)
    return Response(status_code=204)


@router.post("/access-reports", responses={200: {"content": {"application/json": {}, "text/html": {}}}})
async def access_report(principal: CanPrivacy, state: StateDep,
                        photo: Annotated[UploadFile, File(description="Selfie of the requester.")],
                        subject: Annotated[str | None, Form(max_length=200)] = None,
                        case: Annotated[str | None, Form(max_length=500)] = None,
                        format: Annotated[str, Query(pattern="^(json|html)$")] = "json"):
    """Subject access report: every image and face held for the person in the selfie, with collection, legal
    basis and dates. `format=html` gives a printable page in which other people's faces are blurred."""
    upload = await read_upload(photo, state.config)

    def run():
        with (tempfile.TemporaryDirectory(prefix="faceindex-report-") as tmp, state.decodes,
              state.gate.write(principal) as engine):
            report = engine.privacy.access_report(upload.data, tmp, subject=subject, case=case)
            return report.data, Path(report.html_path).read_text(encoding="utf-8")

    data, page = await run_in_threadpool(run)
    if format == "html":
        return HTMLResponse(page, headers={"Content-Security-Policy": REPORT_CSP})
    return JSONResponse(data)


@router.post("/redactions", response_class=Response, responses={200: {"content": {"image/jpeg": {}}}})
async def redact(principal: CanPrivacy, state: StateDep, photo: Annotated[UploadFile, File()],
                 subject: Annotated[str, Form(min_length=1, max_length=200)],
                 case: Annotated[str | None, Form(max_length=500)] = None):
    """A copy of the photo where every face except the enrolled subject's is blurred (JPEG)."""
    upload = await read_upload(photo, state.config)

    def run() -> bytes:
        with (tempfile.TemporaryDirectory(prefix="faceindex-redact-") as tmp, state.decodes,
              state.gate.write(principal) as engine):
            source = Path(tmp) / "photo"
            source.write_bytes(upload.data)
            result = engine.privacy.redact(source, subject, Path(tmp) / "redacted.jpg", case=case)
            return result.out.read_bytes()

    return Response(await run_in_threadpool(run), media_type="image/jpeg", headers={"Cache-Control": "no-store"})


@router.post("/purge", response_model=ErasureResultPublic | None)
def purge(body: PurgeCreate, principal: CanPrivacy, state: StateDep):
    """Delete images past their collection's retention period and faces under the BIPA rule, now."""
    result, swept = _privacy_call(state, principal, lambda engine: engine.privacy.purge(bipa=body.bipa))
    return erasure_public(result, swept) if result is not None else None


@router.get("/audit/export", tags=["audit"], response_class=Response,
            responses={200: {"content": {"application/x-ndjson": {}}}})
def export_audit(principal: CanAudit, state: StateDep, case: str | None = None):
    """The whole audit log as JSON lines; the export itself is recorded as the last event."""
    with tempfile.TemporaryDirectory(prefix="faceindex-audit-") as tmp, state.gate.write(principal) as engine:
        out = Path(tmp) / "audit.jsonl"
        engine.privacy.export_audit(out, case=case)
        data = out.read_bytes()
    return Response(data, media_type="application/x-ndjson",
                    headers={"Content-Disposition": 'attachment; filename="faceindex-audit.jsonl"'})
