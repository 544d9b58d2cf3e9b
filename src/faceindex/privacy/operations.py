"""Privacy operations over a PrivacyContext: consent, erasure, opt-out, access reports, retention, redaction."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np

from faceindex.errors import InvalidInputError
from faceindex.ingest.runner import FaceFilter
from faceindex.privacy.access_report import AccessReport, build_access_report
from faceindex.privacy.actions import ErasurePlanned, Exported
from faceindex.privacy.context import ImageSource, PrivacyContext
from faceindex.privacy.erasure import Eraser, ErasurePlan, ErasureResult
from faceindex.privacy.optout import OptOutRecord, OptOutResult, OptOuts, TemplateCache
from faceindex.privacy.plans import ErasurePlanner
from faceindex.privacy.redact import RedactResult, redact_photo
from faceindex.privacy.retention import Retention
from faceindex.privacy.subjects import Subjects

ROUTES = ("subject", "selfie", "person", "collection", "jurisdiction", "image", "faces")


class PrivacyOps:
    """The privacy layer's one entry point (the Engine holds one as `engine.privacy`; the CLI and the service
    call it). Its parts get their collaborators explicitly: no part reaches another through this object."""

    def __init__(self, ctx: PrivacyContext, *, templates: TemplateCache | None = None):
        self.ctx = ctx
        self.eraser = Eraser(ctx)
        self.subjects = Subjects(ctx, self.eraser)
        self.planner = ErasurePlanner(ctx, self.subjects)
        self.optouts = OptOuts(ctx, self.eraser, templates)
        self.retention = Retention(ctx, self.eraser)
        self.resumed: list[ErasureResult] = []
        self.purged: ErasureResult | None = None

    def acting_as(self, ctx: PrivacyContext) -> PrivacyOps:
        """The same operations over another context (another actor): cheap, shares the opt-out key cache and
        what the startup step did."""
        view = PrivacyOps(ctx, templates=self.optouts.cache)
        view.resumed, view.purged = self.resumed, self.purged
        return view

    def on_open(self) -> None:
        """Finish interrupted erasures, then purge what retention says has expired (the startup step of a
        process that writes). Order matters: a crashed erasure is completed before anything else reads the store."""
        self.resumed = self.eraser.resume()
        self.purged = self.retention.purge()

    def ingest_filter(self) -> FaceFilter | None:
        """The opt-out filter each ingest must apply (None: no opt-out recorded). Ask at every ingest."""
        return self.optouts.ingest_filter()

    def subject_names(self, face_ids: list[int]) -> dict[int, str]:
        """Enrolled subject name of each face id that has one."""
        return self.subjects.names_for_faces(face_ids)

    def faceprints(self, face_ids: Sequence[int]) -> np.ndarray:
        """Stored faceprints (n, 128) float32 of the given faces that have one, in face id order (in memory only)."""
        return self.subjects.faceprints(face_ids)

    # -- erasure --------------------------------------------------------------------------------
    def plan_erasure(self, *, subject: str | None = None, selfie: ImageSource | list[ImageSource] | None = None,
                     collection: str | None = None, jurisdiction: str | None = None, image: str | int | None = None,
                     faces: Sequence[int] | None = None, case: str | None = None, expand: bool = False,
                     include_faces: Sequence[int] = (), person: int | str | None = None) -> ErasurePlan:
        """Plan one erasure (exactly one route). Nothing is deleted until `erase(plan)`.

        `person`: a person of the people grouping (id or name): its faces and its record (ErasurePlanner.plan_person).
        `expand` (selfie and person routes): also the faces that the selfie's matches find (see
        ErasurePlanner.plan_selfie), or that the person's fused probe finds at the strict threshold.
        `include_faces`: face ids to erase as well, e.g. chosen from a first plan's `also_found_by_search`.
        Making a plan is audited ("erasure.plan", with the case): a preview by selfie is a face search.
        """
        routes = {k: v for k, v in {"subject": subject, "selfie": selfie, "collection": collection,
                                    "jurisdiction": jurisdiction, "image": image, "faces": faces,
                                    "person": person}.items()
                  if v is not None}
        if len(routes) != 1:
            raise InvalidInputError(f"give exactly one of {', '.join(ROUTES)}")
        (route, value), = routes.items()
        if expand and route not in ("selfie", "person"):
            raise InvalidInputError("expand applies to an erasure by selfie or by person only")
        if route in ("selfie", "person"):
            plan = getattr(self.planner, f"plan_{route}")(value, purpose=case, expand=expand)
        else:
            plan = getattr(self.planner, f"plan_{route}")(value, purpose=case)
        if include_faces:
            plan = self.planner.include_faces(plan, include_faces)
        summary = self.eraser.summary(plan)
        self.ctx.record(ErasurePlanned(purpose=case, route=plan.route, details=plan.params, faces=summary["faces"],
                                       images=summary["images"], collections=summary["collections"],
                                       subjects=summary["subjects"],
                                       also_found_by_search=len(plan.also_found_by_search)))
        return plan

    def erase(self, plan: ErasurePlan) -> ErasureResult:
        return self.eraser.execute(plan)

    def erase_faces(self, face_ids: Sequence[int], *, case: str | None = None) -> ErasureResult:
        """Erase single faces by id now (a curator removing a bystander's face; the photo is kept, the face
        obscured in the store's own uploaded copy)."""
        return self.eraser.execute(self.planner.plan_faces(face_ids, purpose=case))

    # -- the other operations -------------------------------------------------------------------
    def opt_out(self, selfie: ImageSource, reference: str | None = None) -> OptOutResult:
        return self.optouts.add(selfie, reference)

    def opt_out_person(self, person: int | str, reference: str | None = None) -> OptOutResult:
        """Opt out a person of the people grouping (id or name): templates of all its faces (OptOuts.add_person)."""
        return self.optouts.add_person(person, reference)

    def opt_outs(self) -> list[OptOutRecord]:
        return self.optouts.list()

    def withdraw_opt_out(self, optout_id: int, reason: str | None = None) -> None:
        self.optouts.withdraw(optout_id, reason)

    def access_report(self, selfie: ImageSource, out_dir: str | os.PathLike, *, subject: str | None = None,
                      case: str | None = None) -> AccessReport:
        return build_access_report(self.ctx, self.subjects, selfie, out_dir, subject=subject, case=case)

    def redact(self, photo: str | os.PathLike, subject: str, out: str | os.PathLike, *,
               case: str | None = None) -> RedactResult:
        return redact_photo(self.ctx, self.subjects, photo, subject, out, case=case)

    def purge(self, *, bipa: bool | None = None) -> ErasureResult | None:
        """Purge expired images and faces now (`faceindex purge`); `bipa` switches the store-wide BIPA mode."""
        if bipa is not None:
            self.retention.set_bipa_mode(bipa)
        return self.retention.purge(record_empty=True)

    def export_audit(self, out: str | os.PathLike, *, case: str | None = None) -> int:
        """Write the audit log as JSON lines (the export itself is the last event); returns events written."""
        audit, catalog = self.ctx.audit, self.ctx.catalog
        with catalog.transaction():
            held = catalog.count("SELECT count(*) FROM audit_events")
            self.ctx.record(Exported(purpose=case, what="audit-log", events=held + 1))
        events = audit.events()
        with open(out, "w", encoding="utf-8") as handle:
            for event in events:
                handle.write(json.dumps(event.to_dict(), sort_keys=True, ensure_ascii=False) + "\n")
        return len(events)
