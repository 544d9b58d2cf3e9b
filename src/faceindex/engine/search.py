"""The Engine's reads that compare faces: `search` (every probe face against the store) and `verify` (1:1).

A mixin of `Engine` (engine/core.py): it uses the engine's store, pipeline, threshold policy, privacy layer
(subject names, unfinished erasures) and audit log, and writes nothing but its audit event.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from faceindex.errors import EmptyStoreError, FaceIndexError, NoFaceError, PolicyError
from faceindex.events import Event
from faceindex.matching import Candidate, ProbeFace, ProbeResult
from faceindex.pipeline.analyse import AnalysedImage
from faceindex.pipeline.face_choice import choose_face
from faceindex.privacy.actions import Searched, Verified

ImageSource = str | os.PathLike | bytes

log = logging.getLogger(__name__)


@dataclass
class ComparedFace:
    """The face of one photo that `verify` compared."""

    number: int
    """0-based position among the photo's faces, largest first (the order `search` lists them in)."""
    box: tuple[int, int, int, int]
    faces: int
    """How many faces the photo has (usable or not)."""


@dataclass
class VerifyResult:
    same_person: bool
    score: float
    threshold: float
    fmr: float | None
    compared: tuple[ComparedFace, ...] = ()
    """For each photo, the face compared: a group photo must say which of its faces was meant."""


class Searching:
    """Search and verify, for `Engine` (see engine/core.py for the attributes they use)."""

    def analyse(self, source: ImageSource) -> AnalysedImage:
        return self.pipeline.analyse(source)

    def search(self, sources: Sequence[ImageSource], purpose: str, *, top_k: int | None = None,
               threshold: float | None = None, face: int | None = None,
               probe_names: Sequence[str] | None = None) -> list[ProbeResult]:
        """Search every face of each probe photo (or only face number `face`, 0-based, largest first).

        A read: StoreNotFoundError when the store does not exist, EmptyStoreError when it holds no faces
        (never "no match"). Faces that an unfinished erasure will delete are left out.
        """
        if not purpose or not purpose.strip():
            raise PolicyError("a search needs a purpose or case reference")
        top_k = min(top_k or self.settings.top_k, self.settings.max_candidates)
        self.check_store()
        gallery = self.store.gallery_size()
        if gallery == 0:
            raise EmptyStoreError(f"the store at {self.store.root} holds no faces: nothing was searched")
        self.store.check_model(self.pipeline.model_id)
        limit = self.policy.threshold(gallery, threshold)
        pending = self.privacy.eraser.pending_scope() if self.pending_erasures() else None
        if pending is not None:
            log.warning("the store at %s has unfinished erasures: their faces are left out of this search; "
                        "run a write command to finish them", self.store.root)
        results = []
        for n, source in enumerate(sources):
            name = probe_names[n] if probe_names else (str(source) if not isinstance(source, bytes) else f"upload-{n}")
            try:
                analysis = self.pipeline.analyse(source)
            except FaceIndexError as exc:
                results.append(ProbeResult(name, error=exc.message))
                continue
            faces = sorted(analysis.faces, key=lambda f: -f.size_px)
            if face is not None:
                faces = faces[face:face + 1]
            results.append(ProbeResult(name, [self._search_face(f, top_k, limit, gallery, pending) for f in faces],
                                       None, gallery))
        self._record_read(Searched(purpose=purpose.strip(), probes=len(results), top_k=top_k,
                                   threshold=round(limit, 4), faces=sum(len(r.faces or []) for r in results),
                                   candidates=sum(len(f.candidates) for r in results for f in r.faces or [])))
        return results

    def _record_read(self, event: Event) -> None:
        """The audit event of a read: written without the write start-up; skipped, with a warning, on a
        read-only store (nothing can be written there)."""
        if not self.catalog.writable:
            log.warning("this %s was not audited: the store at %s is read-only", event.action, self.store.root)
            return
        with self.catalog.transaction(startup=False):
            self._record(event)

    def _search_face(self, face, top_k: int, limit: float, gallery: int,
                     pending: tuple[set[int], set[int], set[int]] | None = None) -> ProbeFace:
        fmr = self.policy.fmr(limit)
        result = ProbeFace(box=face.box, threshold=round(limit, 4), threshold_fmr=fmr,
                           expected_false_candidates=None if fmr is None else round(fmr * gallery, 6))
        if not face.ok:
            result.status, result.reason = "refused", face.rejected
            return result
        hits = [(fid, s) for fid, s in self.store.search(face.embedding[None, :], top_k)[0] if s >= limit]
        details = self.catalog.face_details([fid for fid, _ in hits])
        subjects = self.privacy.subject_names([fid for fid, _ in hits])
        for fid, score in hits:
            row = details.get(fid)
            if row is None:
                continue
            if pending is not None and (fid in pending[0] or row["image_id"] in pending[1]
                                        or row["collection_id"] in pending[2]):
                continue
            result.candidates.append(Candidate(
                face_id=fid, image_id=row["image_id"], path=row["uri"],
                box=(row["box_left"], row["box_top"], row["box_right"], row["box_bottom"]),
                collection=row["collection"], score=round(score, 4), fmr=self.policy.fmr(score),
                subject=subjects.get(fid)))
        by_image: dict[int, list[int]] = {}
        for cand in result.candidates:
            by_image.setdefault(cand.image_id, []).append(cand.face_id)
        for cand in result.candidates:
            cand.same_photo_as = [f for f in by_image[cand.image_id] if f != cand.face_id]
        return result

    def verify(self, a: ImageSource, b: ImageSource, *, threshold: float | None = None) -> VerifyResult:
        """Are the main faces of two photos the same person? 1:1, so the gallery size is 1.

        The main face is `choose_face` 'prominent' (a large face near the centre), the rule `faceindex
        eval` measures on labelled folders. A read of the store (for its audit log): it must exist.
        """
        self.check_store()
        vectors, compared = [], []
        for source in (a, b):
            analysed = self.pipeline.analyse(source)
            face = choose_face(analysed.accepted, analysed.width, analysed.height)
            if face is None:
                raise NoFaceError(f"no usable face in {source if not isinstance(source, bytes) else 'upload'}")
            vectors.append(face.embedding)
            by_size = sorted(analysed.faces, key=lambda f: -f.size_px)  # search's order
            compared.append(ComparedFace(next(n for n, f in enumerate(by_size) if f is face), tuple(face.box),
                                         len(by_size)))
        score = float(np.dot(vectors[0], vectors[1]))
        limit = self.policy.threshold(1, threshold)
        self._record_read(Verified(threshold=round(limit, 4), pairs=1))
        return VerifyResult(score >= limit, round(score, 4), round(limit, 4), self.policy.fmr(score),
                            tuple(compared))
