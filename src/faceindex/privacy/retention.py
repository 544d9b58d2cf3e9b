"""Retention: purge images past their collection's retention period, and faces under the BIPA rule."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from faceindex.privacy.context import PrivacyContext
from faceindex.privacy.erasure import Eraser, ErasurePlan, ErasureResult
from faceindex.privacy.jurisdictions import covers
from faceindex.store.catalog import id_chunks, marks

BIPA_YEARS = 3
"""Illinois BIPA: destroy biometric identifiers within 3 years of the individual's last interaction."""
BIPA_JURISDICTION = "US-IL"
BIPA_META = "bipa_mode"


@dataclass
class PurgePlan:
    expired_images: list[int]
    bipa_faces: list[int]
    now: str

    @property
    def empty(self) -> bool:
        return not (self.expired_images or self.bipa_faces)


def years_before(moment: datetime, years: int) -> datetime:
    """The same calendar date `years` earlier (29 February becomes 28 February)."""
    try:
        return moment.replace(year=moment.year - years)
    except ValueError:
        return moment.replace(year=moment.year - years, day=28)


def utc(moment: datetime) -> datetime:
    """Aware UTC time (a naive clock is taken as UTC), so ISO strings compare like catalog timestamps."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class Retention:
    """Purges on store open and on `faceindex purge`, with the time given by the context's clock.

    - Collection retention: an image whose `ingested_at` is more than `retention_days` ago is deleted
      with its faces (collections without a retention period keep their images).
    - BIPA mode (store-wide when switched on, always for collections tagged US-IL): a face is deleted
      3 years after the last interaction with its person: the enrolled subject's `last_interaction_at`
      (enrolment, consent, access request), or, for a face of no enrolled subject, the face's creation.
    """

    def __init__(self, ctx: PrivacyContext, eraser: Eraser):
        self.ctx = ctx
        self.catalog = ctx.catalog
        self.eraser = eraser

    @property
    def bipa_mode(self) -> bool:
        return self.catalog.get_meta(BIPA_META) == "on"

    def set_bipa_mode(self, on: bool) -> None:
        with self.catalog.transaction():
            self.catalog.set_meta(BIPA_META, "on" if on else "off")

    def plan(self) -> PurgePlan:
        now = utc(self.ctx.clock())
        conn = self.catalog.conn
        expired: list[int] = []
        for collection in self.catalog.list_collections():
            if collection.retention_days:
                cutoff = (now - timedelta(days=collection.retention_days)).isoformat(timespec="seconds")
                expired += [r[0] for r in conn.execute(
                    "SELECT id FROM images WHERE collection_id = ? AND ingested_at < ?", (collection.id, cutoff))]
        store_wide = self.bipa_mode
        bipa_collections = [c.id for c in self.catalog.list_collections()
                            if store_wide or any(covers(BIPA_JURISDICTION, j) for j in c.jurisdictions)]
        faces: list[int] = []
        skip = set(expired)  # faces of expired images go with their image
        cutoff = years_before(now, BIPA_YEARS).isoformat(timespec="seconds")
        for chunk in id_chunks(bipa_collections):
            faces += [r[0] for r in conn.execute(
                "SELECT f.id, f.image_id FROM faces f JOIN images i ON i.id = f.image_id"
                " LEFT JOIN subject_faces sf ON sf.face_id = f.id LEFT JOIN subjects s ON s.id = sf.subject_id"
                f" WHERE i.collection_id IN ({marks(chunk)}) AND coalesce(s.last_interaction_at, f.created_at) < ?",
                (*chunk, cutoff)) if r[1] not in skip]
        return PurgePlan(sorted(expired), sorted(faces), now.isoformat(timespec="seconds"))

    def purge(self, *, record_empty: bool = False) -> ErasureResult | None:
        """Delete what has expired now. When nothing has, return None without writing anything, unless
        `record_empty` (an operator's explicit purge is audited even when it finds nothing)."""
        plan = self.plan()
        if plan.empty and not record_empty:
            return None
        eraser = self.eraser
        erasure = ErasurePlan("retention", face_ids=plan.bipa_faces, image_ids=plan.expired_images,
                              purpose="retention", params={"now": plan.now, "bipa_faces": len(plan.bipa_faces)})
        return eraser.execute(erasure)
