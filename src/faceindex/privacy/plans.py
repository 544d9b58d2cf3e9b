"""Erasure plans by route (subject, selfie, person, collection, jurisdiction, image, face ids): what will be
deleted, by id.

Nothing here deletes: a plan is shown to the officer first, then `Eraser.execute` carries it out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from faceindex.errors import InvalidInputError, NotFoundError
from faceindex.fusion import fuse
from faceindex.matching import fusion_policy, load_fusion_calibration
from faceindex.people.operations import PeopleOps
from faceindex.privacy.context import ImageSource, PrivacyContext, chunked_query
from faceindex.privacy.erasure import ErasurePlan, Match, with_copies
from faceindex.privacy.jurisdictions import covers, jurisdiction_code, unrecognised
from faceindex.privacy.probe import selfie_faceprint, strict_threshold
from faceindex.privacy.subjects import Subjects
from faceindex.store.uris import uri_candidates


class ErasurePlanner:
    """Makes erasure plans; reads the catalog and the index, writes nothing."""

    def __init__(self, ctx: PrivacyContext, subjects: Subjects):
        self.ctx = ctx
        self.catalog = ctx.catalog
        self.subjects = subjects

    def plan_subject(self, name: str, purpose: str | None = None) -> ErasurePlan:
        """The subject's enrolled faces (and byte-identical copies of them), plus the subject record."""
        subject = self.subjects.get(name)
        faces = self.subjects.face_ids(subject.id)
        return ErasurePlan("subject", face_ids=with_copies(self.catalog, faces), subject_ids=[subject.id],
                           purpose=purpose, params={"subject_id": subject.id})

    def plan_selfie(self, source: ImageSource | list[ImageSource], purpose: str | None = None,
                    threshold: float | None = None, expand: bool = False) -> ErasurePlan:
        """Every face scoring >= the strict threshold against the largest face of the selfie (or of any of
        several selfies: more photos of the person recover faces one photo scores below the threshold).

        `expand`: also every face scoring >= a stricter threshold against one of those matches (one hop:
        the person's other photos find the faces the selfie alone misses). The threshold is the strict
        one for gallery x (1 + matches) comparisons, so the expected false matches stay within the same
        bound. Measured on ../shared/faces/people with 1 500 LFW faces as bystanders (one photo per person
        as the selfie): 90.2 % of the person's faces found without, 97.4 % with, no false match in either.

        The plan also lists `also_found_by_search`: the faces an ordinary search with the same selfie(s)
        returns (score >= the search threshold for this gallery) that the strict threshold leaves out, so
        erasure is never silently weaker than search; the officer includes the right ones by face id.
        """
        sources = list(source) if isinstance(source, list | tuple) else [source]
        policy = self.ctx.policy()
        gallery = len(self.ctx.store.index())
        limit = threshold if threshold is not None else strict_threshold(policy, gallery)
        search_limit = min(policy.threshold(gallery), limit)
        hits: dict[int, float] = {}
        searched: dict[int, float] = {}  # what an ordinary search finds (a superset of hits at its looser bound)
        for item in sources:
            vector = selfie_faceprint(self.ctx, item)
            self._collect(searched, vector, search_limit)
            del vector  # only ids and scores leave this function
        hits.update({f: s for f, s in searched.items() if s >= limit})
        via: dict[int, int] = {}
        params = {"threshold": round(limit, 4), "gallery": gallery, "selfies": len(sources)}
        if expand and hits:
            second = max(limit, strict_threshold(policy, gallery * (1 + len(hits))))
            for fid, vector in self.catalog.face_vectors(sorted(hits)):
                for found in self._collect(hits, vector, second):
                    via[found] = fid
            params.update(expanded=True, expand_threshold=round(second, 4), found_via_matches=len(via))
        matches = self._matches(hits, via)
        left = {f: s for f, s in searched.items() if f not in hits}
        return ErasurePlan("selfie", face_ids=with_copies(self.catalog, [m.face_id for m in matches]),
                           purpose=purpose, params=params, matches=matches,
                           also_found_by_search=self._matches(left, {}),
                           search_threshold=round(search_limit, 4), search_threshold_fmr=policy.fmr(search_limit))

    def plan_person(self, person: int | str, purpose: str | None = None, expand: bool = False) -> ErasurePlan:
        """Every face of a person of the people grouping (auto and confirmed, with byte-identical copies) and the
        person record itself (its name): what an operator reviewed, listed face by face before anything goes.

        Each listed face has its cosine to the person's mean faceprint as its score (a low one is worth a look).
        `also_found_by_search` lists the faces a search by this person finds (fused probe, search threshold)
        that the plan leaves, as the selfie route does. `expand`: also erase those of them scoring >= the strict
        threshold for the fused probe (FMR 1e-5, calibrated for this many probes) that belong to no other person
        and were never rejected from this one (state 'search').
        """
        ops = PeopleOps(self.catalog)
        person_id = ops.resolve(person)
        states = ops.store.faces_of(person_id)
        rows = self.catalog.face_vectors(sorted(states))
        params: dict = {"person_id": person_id, "faces": len(states)}
        if not rows:  # a person without faces: only its record (and name) goes
            return ErasurePlan("person", person_ids=[person_id], purpose=purpose, params=params)
        vectors = np.stack([v for _, v in rows])
        probe = fuse(vectors)
        scores = {f: float(v @ probe) for f, v in rows}
        model_id = self.ctx.store.model_id or self.ctx.model_id()
        policy = fusion_policy(self.ctx.policy(), load_fusion_calibration(model_id), len(rows))
        gallery = len(self.ctx.store.index())
        search_limit = policy.threshold(gallery)
        strict = max(search_limit, strict_threshold(policy, gallery))
        found = {f: s for f, s in self.ctx.store.search_above(probe, search_limit, limit=1_000_000) if f not in states}
        del vectors, probe
        state = dict(states)
        if expand and found:
            rejected = ops.store.rejected_from(person_id)
            others = ops.store.persons_of(sorted(found))
            added = {f: s for f, s in found.items() if s >= strict and f not in rejected and f not in others}
            scores.update(added)
            state.update({f: "search" for f in added})
            params.update(expanded=True, expand_threshold=round(strict, 4), found_by_search=len(added))
        matches = self._matches(scores, {}, policy)
        for m in matches:
            m.state = state.get(m.face_id)
        left = {f: s for f, s in found.items() if f not in scores}
        return ErasurePlan("person", face_ids=with_copies(self.catalog, sorted(scores)), person_ids=[person_id],
                           purpose=purpose, params=params, matches=matches,
                           also_found_by_search=self._matches(left, {}, policy),
                           search_threshold=round(search_limit, 4), search_threshold_fmr=policy.fmr(search_limit))

    def plan_faces(self, face_ids: Sequence[int], purpose: str | None = None) -> ErasurePlan:
        """Single faces by id (and byte-identical copies), e.g. one bystander's face in a photo kept otherwise."""
        ids = self._checked_faces(face_ids)
        return ErasurePlan("face", face_ids=with_copies(self.catalog, ids), purpose=purpose,
                           params={"face_ids": ids} if len(ids) != 1 else {"face_id": ids[0]})

    def include_faces(self, plan: ErasurePlan, face_ids: Sequence[int]) -> ErasurePlan:
        """Extend a plan by face ids the officer chose (typically from `also_found_by_search`); those faces move
        from `also_found_by_search` to `matches`. Unknown ids are a NotFoundError: nothing is half-planned."""
        ids = self._checked_faces(face_ids)
        chosen = set(ids)
        plan.face_ids = with_copies(self.catalog, sorted(set(plan.face_ids) | chosen))
        plan.included_faces = sorted(set(plan.included_faces) | chosen)
        moved = [m for m in plan.also_found_by_search if m.face_id in chosen]
        plan.also_found_by_search = [m for m in plan.also_found_by_search if m.face_id not in chosen]
        plan.matches += moved
        plan.params["included_faces"] = len(plan.included_faces)
        return plan

    def plan_collection(self, name: str, purpose: str | None = None) -> ErasurePlan:
        collection = self.catalog.get_collection(name)
        return ErasurePlan("collection", collection_ids=[collection.id], purpose=purpose,
                           params={"collection_id": collection.id, "collection": collection.name})

    def plan_jurisdiction(self, code: str, purpose: str | None = None) -> ErasurePlan:
        """Every collection tagged with the code, and every face of subjects tagged with it (and the subjects).

        Collections and subjects whose stored tags are not ISO 3166 codes are listed in the plan's
        `unrecognised_jurisdictions` (they may belong to the jurisdiction under another spelling)."""
        code = jurisdiction_code(code)
        collections, subjects, odd = [], [], []
        for c in self.catalog.list_collections():
            if any(covers(code, j) for j in c.jurisdictions):
                collections.append(c.id)
            elif bad := unrecognised(c.jurisdictions):
                odd.append({"collection": c.name, "collection_id": c.id, "tags": bad})
        for s in self.subjects.list():
            if any(covers(code, j) for j in s.jurisdictions):
                subjects.append(s.id)
            elif bad := unrecognised(s.jurisdictions):
                odd.append({"subject_id": s.id, "tags": bad})
        faces = [f for sid in subjects for f in self.subjects.face_ids(sid)]
        return ErasurePlan("jurisdiction", face_ids=with_copies(self.catalog, faces), collection_ids=collections,
                           subject_ids=subjects, purpose=purpose, params={"jurisdiction": code},
                           unrecognised_jurisdictions=odd)

    def plan_image(self, ref: str | int, purpose: str | None = None) -> ErasurePlan:
        """A catalogued image by id or path, in every collection, and every other copy with the same content.

        Only the catalog is consulted: a path that is no catalogued image is a NotFoundError and the file is
        never opened (an officer must not be able to make the store read and hash any file it can reach)."""
        if isinstance(ref, int) or str(ref).strip().isdigit():
            rows = [self.catalog.image_by_id(int(ref))]
        else:
            rows = next((found for uri in uri_candidates(ref) if (found := self.catalog.images_by_uri(uri))), [])
        if not rows:
            raise NotFoundError(f"no such image in this store: {ref!r} (give a catalogued image's id or path)")
        hashes = sorted({r["sha256"] for r in rows if r["sha256"]})
        ids = {r["id"] for r in rows}
        for digest in hashes:  # the catalogued digest, never one computed from the named file
            ids.update(r[0] for r in self.catalog.conn.execute("SELECT id FROM images WHERE sha256 = ?", (digest,)))
        return ErasurePlan("image", image_ids=sorted(ids), purpose=purpose, params={"image_ids": sorted(ids)})

    # -- helpers --------------------------------------------------------------------------------
    def _collect(self, hits: dict[int, float], vector, limit: float) -> list[int]:
        """Add the faces scoring >= limit against `vector` to `hits` (best score kept); return the new ids."""
        new = []
        for fid, score in self.ctx.store.search_above(vector, limit, limit=1_000_000):
            if fid not in hits:
                new.append(fid)
            hits[fid] = max(score, hits.get(fid, -1.0))
        return new

    def _matches(self, scores: dict[int, float], via: dict[int, int], policy=None) -> list[Match]:
        """Matches (best first) with their photo, collection, FMR (of `policy`, default the single-probe one) and
        the other listed faces of the same photo."""
        policy = policy or self.ctx.policy()
        details = {r["face_id"]: r for r in chunked_query(
            self.catalog, "SELECT f.id AS face_id, f.image_id, i.uri, c.name AS collection FROM faces f"
            " JOIN images i ON i.id = f.image_id JOIN collections c ON c.id = i.collection_id"
            " WHERE f.id IN ({marks})", sorted(scores))}
        by_image: dict[int, list[int]] = {}
        for fid, row in details.items():
            by_image.setdefault(row["image_id"], []).append(fid)
        return [Match(fid, row["image_id"], row["uri"], row["collection"], round(scores[fid], 4),
                      [f for f in by_image[row["image_id"]] if f != fid], via.get(fid), policy.fmr(scores[fid]))
                for fid, row in sorted(details.items(), key=lambda kv: -scores[kv[0]])]

    def _checked_faces(self, face_ids: Sequence[int]) -> list[int]:
        try:
            ids = sorted({int(f) for f in face_ids})
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"face ids are whole numbers: {list(face_ids)!r}") from exc
        if not ids:
            raise InvalidInputError("give at least one face id")
        found = {r[0] for r in chunked_query(self.catalog, "SELECT id FROM faces WHERE id IN ({marks})", ids)}
        missing = [f for f in ids if f not in found]
        if missing:
            raise NotFoundError(f"no face with id {', '.join(map(str, missing))} in this store")
        return ids
