"""The Engine's reads that compare faces: `search` (every probe face against the store), `search_person` and
`search_same_person` (several faces of one person fused into one probe), and `verify` (1:1).

A mixin of `Engine` (engine/core.py): it uses the engine's store, pipeline, threshold policy, privacy layer
(subject names, unfinished erasures) and audit log, and writes nothing but its audit event.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from faceindex.errors import EmptyStoreError, FaceIndexError, InvalidInputError, NoFaceError, PolicyError
from faceindex.events import Event, param, tally
from faceindex.fusion import fuse
from faceindex.matching import (
    Candidate,
    FusedCandidate,
    FusedResult,
    ProbeFace,
    ProbeResult,
    fusion_policy,
    load_fusion_calibration,
)
from faceindex.people.store import PeopleStore
from faceindex.pipeline.analyse import AnalysedImage
from faceindex.pipeline.face_choice import choose_face
from faceindex.privacy.actions import Searched, Verified
from faceindex.video.hits import add_video_hits, overlaps
from faceindex.video.store import VideoStore

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


@dataclass(frozen=True, kw_only=True)
class SearchedFused(Event):
    """A fused search (search_person / search_same_person): ids and counts only, never a name or a photo."""

    action: ClassVar[str] = "search.fused"
    route: str = param("text")
    person: int | None = param("id", omit_none=True, default=None)
    source: str = param("text")
    probes: int = param("count")
    top_k: int = param("count")
    threshold: float = param("score")
    candidates: int = tally()


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
        result.candidates = self._candidates(hits, pending, self.policy)
        return result

    def _candidates(self, hits: list[tuple[int, float]], pending, policy, *, probes: np.ndarray | None = None
                    ) -> list[Candidate]:
        """Candidates of (face id, score) hits, best first, with provenance, subject, FMR (of `policy`) and
        the other candidates of the same photo; faces an unfinished erasure covers are left out. With `probes`
        (a fused search's faceprints) they are FusedCandidates with the best single-probe score and the person."""
        details = self.catalog.face_details([fid for fid, _ in hits])
        subjects = self.privacy.subject_names([fid for fid, _ in hits])
        singles: dict[int, float] = {}
        persons: dict[int, tuple[int, str | None]] = {}
        if probes is not None and hits:
            for fid, vector in self.catalog.face_vectors([fid for fid, _ in hits]):
                singles[fid] = round(float(np.max(probes @ vector)), 4)
            persons = PeopleStore(self.catalog).persons_of([fid for fid, _ in hits])
        out: list[Candidate] = []
        for fid, score in hits:
            row = details.get(fid)
            if row is None:
                continue
            if pending is not None and (fid in pending[0] or row["image_id"] in pending[1]
                                        or row["collection_id"] in pending[2]):
                continue
            common = dict(face_id=fid, image_id=row["image_id"], path=row["uri"],
                          box=(row["box_left"], row["box_top"], row["box_right"], row["box_bottom"]),
                          collection=row["collection"], score=round(score, 4), fmr=policy.fmr(score),
                          subject=subjects.get(fid))
            if probes is None:
                out.append(Candidate(**common))
            else:
                person, name = persons.get(fid, (None, None))
                out.append(FusedCandidate(**common, best_single=singles.get(fid), person=person, person_name=name))
        out = add_video_hits(out, self.videos)
        by_image: dict[int, list[Candidate]] = {}
        for cand in out:
            by_image.setdefault(cand.image_id, []).append(cand)
        for cand in out:
            # A photo cannot show one person twice; a video can, in tracks that do not overlap in time.
            cand.same_photo_as = [o.face_id for o in by_image[cand.image_id] if o is not cand
                                  and (cand.video is None or o.video is None or overlaps(cand.video, o.video))]
        return out

    @property
    def videos(self) -> VideoStore:
        return VideoStore(self.catalog, self.store.root)

    # -- fused searches: several faces of one person as one probe -------------------------------------
    def search_person(self, person: int | str, purpose: str, *, top_k: int | None = None,
                      threshold: float | None = None) -> FusedResult:
        """Search with every confirmed face of a person (all its faces when none is confirmed: `source` says
        which), fused into one probe (fusion.py: cosine to their mean faceprint).

        The threshold and FMRs come from the fused score's own calibration for that many probes, so "expected
        false candidates" keeps its meaning. The probe faces themselves are not candidates; the person's other
        faces are (marked with `person`). `person` is an id or an operator-given name (NotFoundError when
        neither). A person without faces is a NoFaceError; an empty store an EmptyStoreError.
        """
        self._need_purpose(purpose)
        self.check_store()
        ops = self.people
        person_id = ops.resolve(person)
        faces = ops.store.faces_of(person_id)
        confirmed = sorted(f for f, state in faces.items() if state == "confirmed")
        chosen, source = (confirmed, "confirmed") if confirmed else (sorted(faces), "assigned")
        rows = self.catalog.face_vectors(chosen)
        if not rows:
            raise NoFaceError(f"person {person_id} has no faces to search with (all were split off, rejected or "
                              "erased)")
        name = ops.store.name_of(person_id)
        result = self._search_fused(
            np.stack([v for _, v in rows]), purpose, route="person", source=source, top_k=top_k, threshold=threshold,
            exclude={f for f, _ in rows}, probe=f"person {person_id}" + (f" ({name})" if name else ""),
            person=person_id)
        result.name = name
        result.probe_faces = [{"face_id": f, "state": faces[f]} for f, _ in rows]
        return result

    def search_same_person(self, sources: Sequence[ImageSource], purpose: str, *, top_k: int | None = None,
                           threshold: float | None = None, face: int | None = None,
                           probe_names: Sequence[str] | None = None) -> FusedResult:
        """Search with several photos of one person, their faces fused into one probe as `search_person` does.

        From each photo the prominent face (a large face near the centre, as `verify` chooses), or face number
        `face` (0-based, largest first). Photos without a usable face are listed in `skipped` and the rest are
        fused; none usable is a NoFaceError. Two probes scoring below the 1:1 threshold against each other are
        named in `warnings` (they may not show one person; fusing two people finds neither well).
        """
        self._need_purpose(purpose)
        if not sources:
            raise InvalidInputError("give at least one photo of the person")
        self.check_store()
        if self.store.gallery_size() == 0:
            raise EmptyStoreError(f"the store at {self.store.root} holds no faces: nothing was searched")
        vectors, used, skipped = [], [], []
        for n, source in enumerate(sources):
            name = probe_names[n] if probe_names else (str(source) if not isinstance(source, bytes) else f"upload-{n}")
            try:
                analysed = self.pipeline.analyse(source)
            except FaceIndexError as exc:
                skipped.append({"photo": name, "reason": exc.message})
                continue
            by_size = sorted(analysed.faces, key=lambda f: -f.size_px)
            if face is not None:
                chosen = by_size[face] if face < len(by_size) else None
                why = f"no face {face + 1} (the photo has {len(by_size)})" if chosen is None else chosen.rejected
            else:
                chosen = choose_face(analysed.accepted, analysed.width, analysed.height)
                why = ("no face found" if not by_size else "no usable face: " + "; ".join(
                    sorted({f.rejected or "unusable" for f in by_size})))
            if chosen is None or not chosen.ok:
                skipped.append({"photo": name, "reason": why or "unusable face"})
                continue
            vectors.append(np.asarray(chosen.embedding, dtype=np.float32))
            number = next(k for k, f in enumerate(by_size) if f is chosen) + 1
            used.append({"photo": name, "face": number, "of": len(by_size), "box": list(chosen.box)})
        if not vectors:
            raise NoFaceError("no usable face in any of the photos: " + "; ".join(
                f"{s['photo']}: {s['reason']}" for s in skipped))
        probes = np.stack(vectors)
        result = self._search_fused(probes, purpose, route="photos", source="photos", top_k=top_k,
                                    threshold=threshold, exclude=set(), probe=" + ".join(u["photo"] for u in used))
        result.probe_faces, result.skipped = used, skipped
        one_to_one = self.policy.threshold(1)
        for i in range(len(probes)):
            for j in range(i + 1, len(probes)):
                score = float(probes[i] @ probes[j])
                if score < one_to_one:
                    result.warnings.append(
                        f"{used[i]['photo']} and {used[j]['photo']} score {score:.3f} against each other, below the "
                        f"1:1 threshold {one_to_one:.3f}: they may not show one person")
        return result

    def _search_fused(self, probes: np.ndarray, purpose: str, *, route: str, source: str, top_k: int | None,
                      threshold: float | None, exclude: set[int], probe: str, person: int | None = None
                      ) -> FusedResult:
        """One search with the fused probe of `probes` (n, 128); `exclude`: face ids that are the probes."""
        top_k = min(top_k or self.settings.top_k, self.settings.max_candidates)
        gallery = self.store.gallery_size()
        if gallery == 0:
            raise EmptyStoreError(f"the store at {self.store.root} holds no faces: nothing was searched")
        self.store.check_model(self.pipeline.model_id)
        policy = fusion_policy(self.policy, self.fusion_calibration, len(probes))
        limit = policy.threshold(gallery, threshold)
        fmr = policy.fmr(limit)
        face = ProbeFace(box=None, threshold=round(limit, 4), threshold_fmr=fmr,
                         expected_false_candidates=None if fmr is None else round(fmr * gallery, 6))
        pending = self.privacy.eraser.pending_scope() if self.pending_erasures() else None
        query = fuse(probes)
        found = self.store.search(query[None, :], top_k + len(exclude))[0]
        hits = [(fid, s) for fid, s in found if s >= limit and fid not in exclude][:top_k]
        face.candidates = self._candidates(hits, pending, policy, probes=probes)
        if len(probes) == 1:
            calibration = "single probe: the search calibration"
        elif policy.calibration is None:
            calibration = f"uncalibrated for {len(probes)} fused probes: fixed threshold, FMR unknown"
        else:
            bucket, _, shift = self.fusion_calibration.for_probes(len(probes))
            calibration = (f"fused-score calibration for {bucket} probes" +
                           (f", shifted +{shift:.4f} for {len(probes)}" if shift else ""))
        self._record_read(SearchedFused(purpose=purpose.strip(), route=route, person=person, source=source,
                                        probes=len(probes), top_k=top_k, threshold=round(limit, 4),
                                        candidates=len(face.candidates)))
        return FusedResult(probe, route, face, len(probes), source, gallery, person=person, calibration=calibration)

    @property
    def fusion_calibration(self):
        """The fused-score calibration of the pipeline's model (None when none ships for it); read once."""
        if "_fusion" not in self.__dict__:
            self.__dict__["_fusion"] = load_fusion_calibration(self.pipeline.model_id)
        return self.__dict__["_fusion"]

    @staticmethod
    def _need_purpose(purpose: str) -> None:
        if not purpose or not purpose.strip():
            raise PolicyError("a search needs a purpose or case reference")

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
