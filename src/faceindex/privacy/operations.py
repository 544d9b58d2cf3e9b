"""Privacy operations over an Engine: consent, erasure, opt-out, access reports, retention, redaction."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from faceindex.errors import InvalidInputError
from faceindex.privacy.audit import AuditEvent
from faceindex.privacy.erasure import Eraser, ErasurePlan, ErasureResult
from faceindex.privacy.optout import OptOuts
from faceindex.privacy.retention import Retention
from faceindex.privacy.subjects import Subjects

if TYPE_CHECKING:
    from faceindex.engine import Engine, ImageSource
    from faceindex.privacy.access_report import AccessReport
    from faceindex.privacy.optout import OptOutRecord, OptOutResult
    from faceindex.privacy.redact import RedactResult


class PrivacyOps:
    """Attached to every Engine as `engine.privacy`; the one entry point of the CLI and the service."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.subjects = Subjects(engine)
        self.eraser = Eraser(engine)
        self.optouts = OptOuts(engine)
        self.retention = Retention(engine)
        self.resumed: list[ErasureResult] = []
        self.purged: ErasureResult | None = None

    def on_open(self) -> None:
        """Finish interrupted erasures, purge what retention says has expired, install the opt-out filter.

        Order matters: a crashed erasure is completed before anything else reads the store.
        """
        self.resumed = self.eraser.resume()
        self.purged = self.retention.purge()
        self.optouts.install()

    def subject_names(self, face_ids: list[int]) -> dict[int, str]:
        """Enrolled subject name of each face id that has one."""
        return self.subjects.names_for_faces(face_ids)

    def faceprints(self, face_ids: Sequence[int]) -> np.ndarray:
        """Stored faceprints (n, 128) float32 of the given faces that have one, in face id order (in memory only)."""
        rows = self.engine.catalog.face_vectors(list(face_ids))
        return np.stack([v for _, v in rows]) if rows else np.zeros((0, 128), np.float32)

    # -- erasure --------------------------------------------------------------------------------
    def plan_erasure(self, *, subject: str | None = None, selfie: ImageSource | None = None,
                     collection: str | None = None, jurisdiction: str | None = None, image: str | int | None = None,
                     case: str | None = None, expand: bool = False) -> ErasurePlan:
        """Plan one erasure (exactly one route). Nothing is deleted until `erase(plan)`.

        `expand` (selfie route only): also the faces that the selfie's matches find (see Eraser.plan_selfie).
        """
        routes = {k: v for k, v in {"subject": subject, "selfie": selfie, "collection": collection,
                                    "jurisdiction": jurisdiction, "image": image}.items() if v is not None}
        if len(routes) != 1:
            raise InvalidInputError("give exactly one of subject, selfie, collection, jurisdiction, image")
        (route, value), = routes.items()
        if route == "selfie":
            return self.eraser.plan_selfie(value, purpose=case, expand=expand)
        if expand:
            raise InvalidInputError("expand applies to an erasure by selfie only")
        planner = getattr(self.eraser, f"plan_{route}")
        return planner(value, purpose=case)

    def erase(self, plan: ErasurePlan) -> ErasureResult:
        return self.eraser.execute(plan)

    # -- the other operations -------------------------------------------------------------------
    def opt_out(self, selfie: ImageSource, reference: str | None = None) -> OptOutResult:
        return self.optouts.add(selfie, reference)

    def opt_outs(self) -> list[OptOutRecord]:
        return self.optouts.list()

    def withdraw_opt_out(self, optout_id: int, reason: str | None = None) -> None:
        self.optouts.withdraw(optout_id, reason)

    def access_report(self, selfie: ImageSource, out_dir: str | os.PathLike, *, subject: str | None = None,
                      case: str | None = None) -> AccessReport:
        from faceindex.privacy.access_report import build_access_report

        return build_access_report(self.engine, selfie, out_dir, subject=subject, case=case)

    def redact(self, photo: str | os.PathLike, subject: str, out: str | os.PathLike, *,
               case: str | None = None) -> RedactResult:
        from faceindex.privacy.redact import redact_photo

        return redact_photo(self.engine, photo, subject, out, case=case)

    def purge(self, *, bipa: bool | None = None) -> ErasureResult | None:
        """Purge expired images and faces now (`faceindex purge`); `bipa` switches the store-wide BIPA mode."""
        if bipa is not None:
            self.retention.set_bipa_mode(bipa)
        return self.retention.purge(record_empty=True)

    def export_audit(self, out: str | os.PathLike, *, case: str | None = None) -> int:
        """Write the audit log as JSON lines (the export itself is the last event); returns events written."""
        audit = self.engine.audit
        held = self.engine.catalog.count("SELECT count(*) FROM audit_events")
        with self.engine.catalog.transaction():
            audit.record(AuditEvent("export", actor=self.engine.actor, purpose=case, params={"what": "audit-log"},
                                    counts={"events": held + 1}))
        events = audit.events()
        with open(out, "w", encoding="utf-8") as handle:
            for event in events:
                handle.write(json.dumps(event.to_dict(), sort_keys=True, ensure_ascii=False) + "\n")
        return len(events)
