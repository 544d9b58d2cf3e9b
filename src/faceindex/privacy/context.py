"""What the privacy layer works with: the store, the audit log, the clock, and the functions it may call.

Privacy classes receive a PrivacyContext, never the Engine: the Engine composes one (`Engine._privacy_context`)
and privacy code cannot reach anything the context does not hand it. Heavy parts are providers (called on
first use) so that building a context loads no model: a `faceindex subjects` listing never needs dlib.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from faceindex.config import Settings
from faceindex.events import Event
from faceindex.matching import ThresholdPolicy
from faceindex.pipeline.analyse import AnalysedImage, FacePipeline
from faceindex.privacy.audit import AuditEvent, AuditLog
from faceindex.store.catalog import Catalog, Collection, id_chunks, marks
from faceindex.store.face_store import FaceStore

ImageSource = str | os.PathLike | bytes

IngestFn = Callable[[Iterable[str | os.PathLike], str], Any]
"""ingest(paths, collection name): index photos into an existing collection (audited by the caller)."""
CollectionFn = Callable[..., Collection]
"""collection(name, basis, purpose, jurisdictions=...): get a collection, creating it when basis and purpose
are given (the Engine's own rule, so enrolment creates collections exactly as `add` does)."""


@dataclass(frozen=True)
class PrivacyContext:
    """The collaborators of every privacy class. `actor` is who acts: a view with another actor is
    `with_actor(...)`, never a change to a shared object (the service serves many callers at once)."""

    store: FaceStore
    audit: AuditLog
    settings: Settings
    actor: str
    clock: Callable[[], datetime]
    """Time of retention decisions and consent records (timezone-aware UTC); tests inject their own."""
    pipeline: Callable[[], FacePipeline]
    """The face pipeline, loaded on first call (redaction and access reports detect faces afresh)."""
    policy: Callable[[], ThresholdPolicy]
    """The search threshold policy (needs the model id, so also loaded on first call)."""
    ingest: IngestFn
    collection: CollectionFn

    @property
    def catalog(self) -> Catalog:
        return self.store.catalog

    def analyse(self, source: ImageSource, **kwargs) -> AnalysedImage:
        """The probe function: detect and embed every face of a photo (nothing is stored)."""
        return self.pipeline().analyse(source, **kwargs)

    def model_id(self) -> str:
        return self.pipeline().model_id

    def record(self, event: Event) -> AuditEvent:
        """Append an audit event as this context's actor (joins the caller's transaction)."""
        with self.catalog.transaction():
            return self.audit.record(event, actor=self.actor)

    def with_actor(self, actor: str, **collaborators: Any) -> PrivacyContext:
        """The same store and log acting as `actor` (optionally with other ingest/collection functions)."""
        return replace(self, actor=actor, **collaborators)


def chunked_query(catalog: Catalog, sql: str, ids: Sequence[int]) -> list:
    """Rows of `sql` (one `{marks}` placeholder for an IN list) over every id, in chunks SQLite accepts."""
    return [row for chunk in id_chunks(ids) for row in catalog.conn.execute(sql.format(marks=marks(chunk)), chunk)]
