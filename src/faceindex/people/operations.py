"""People operations: group faces (incrementally), list, show, name, merge, split, reject, confirm, review.

Every change runs in one catalog transaction with its decision row and its audit event (through the `audit`
callback the composing layer passes: this layer does not import privacy). Operator decisions are never
undone by grouping: existing people are fixed groups that never merge with each other, faces already in a
person stay there, and a rejected face never rejoins the person it was rejected from.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from faceindex.errors import ConflictError, EmptyStoreError, InvalidInputError, NotFoundError, PolicyError
from faceindex.events import EVENT_TYPES, Event
from faceindex.matching import load_calibration
from faceindex.people import events as _events  # noqa: F401  (registers the people actions' event types)
from faceindex.people import grouping, incremental, knn
from faceindex.people.schema import MAX_NAME
from faceindex.people.store import PeopleStore, Person, PersonFace
from faceindex.store.catalog import Catalog

AuditFn = Callable[[Event], None]
"""Records one typed event (people.events) inside the transaction of the change (the Engine: its `_record`)."""

REVIEW_BELOW = 0.93
"""Auto assignments whose mean cosine to the rest of their person is below this go to the review queue:
the same-person cosine of dlib faceprints averages ~0.95 (sd ~0.016), so below 0.93 is an outlier."""


@dataclass
class ClusterReport:
    faces_in_scope: int
    faces_grouped: int  # free faces that joined a person (new or existing) in this run
    joined_existing: int
    new_people: int
    unassigned: int  # free faces left alone (seen once, or no close enough match)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class PeopleOps:
    """People of one store. `params` default to thresholds from the model's calibration (see GroupingParams).

    `audit(event)` gets a typed people.events event inside each change's transaction; `actor` names who
    decides (kept in person_decisions). `face_search(vectors, k)`: the store's own nearest-neighbour search
    (FaceStore.search: per vector, (face id, cosine) pairs best first); grouping a few new faces then asks
    it for their neighbours instead of building a graph (people/knn.py).
    """

    def __init__(self, catalog: Catalog, *, params: grouping.GroupingParams | None = None,
                 audit: AuditFn | None = None, actor: str = "cli", face_search: knn.PairSearch | None = None):
        self.catalog = catalog
        self.face_search = face_search
        self.store = PeopleStore(catalog)
        self._params = params
        self.audit = audit
        self.actor = actor

    @property
    def params(self) -> grouping.GroupingParams:
        """The given params, else thresholds from the calibration of the store's model (read on first use)."""
        if self._params is None:
            model_id = self.catalog.get_meta("model_id") if self.catalog.exists else None
            calibration = load_calibration(model_id) if model_id else None
            self._params = (grouping.GroupingParams.from_calibration(calibration) if calibration is not None
                            else grouping.GroupingParams())
        return self._params

    def _record(self, action: str, params: dict, counts: dict) -> None:
        if self.audit is not None:
            self.audit(EVENT_TYPES[action].from_parts(None, params, counts))

    # -- grouping ----------------------------------------------------------------------------------------
    def cluster(self, collection: str | None = None, *, incremental: bool = True) -> ClusterReport:
        """Group the faces not yet in a person; they join existing people or form new ones (>= min_size faces).

        Only collections that allow grouping take part; naming one that does not is a PolicyError. An empty
        scope is an EmptyStoreError (never "no people"). Runs in one write transaction, so two runs at once
        take turns and the second groups only what the first left free.

        Incremental (the default, when the store's index is at hand and covers the scope): only the faces no
        run has looked at are searched, and only they, their neighbours and the people those belong to are
        read (people/incremental.py); confidence is recomputed for the people that changed. Past
        STORE_SEARCH_MAX such faces (a first run on a big store), or with `incremental=False`, every
        faceprint in scope is read and every free face searched (the full path).
        """
        with self._transaction():
            collection_id = None
            if collection is not None:
                collection_id, allowed = self.store.collection_grouping(collection)
                if not allowed:
                    raise PolicyError(f"collection {collection!r} does not allow grouping faces into people "
                                      "(switch it on with set_grouping if its purpose allows)")
            in_scope = self.store.scope_size(collection_id)
            if not in_scope:
                where = f"collection {collection!r}" if collection else "the collections that allow grouping"
                raise EmptyStoreError(f"no faces to group in {where}: ingest photos first")
            top = self.catalog.max_face_id()
            work = self._working_set(collection_id, in_scope, top) if incremental else None
            if work is not None:
                face_ids, image_ids, x, person = work.face_ids, work.image_ids, work.x, work.person
                queries, cannot, search, refresh_all = work.queries, work.cannot, work.search, False
            else:
                scope = self.store.scope(collection_id)
                face_ids, image_ids, x, person = scope.face_ids, scope.image_ids, scope.x, scope.person
                queries = np.flatnonzero(person < 0)
                row_of = {int(f): k for k, f in enumerate(face_ids)}
                cannot = [(row_of[f], p) for f, p in scope.rejected if f in row_of]
                search, refresh_all = self._store_search(face_ids), not incremental
            free = np.flatnonzero(person < 0)  # the queries, and (incremental) free faces their edges reach
            labels = person.copy()
            if len(queries):
                labels = grouping.group(x, self.params, photo=image_ids, start=person, cannot_join=cannot,
                                        new_rows=queries, search=search)
            grouped, joined, new_people = self._apply(face_ids, x, person, labels, free, refresh_all)
            if collection is None:
                self.store.set_seen_through(top)  # every face up to `top` is now in a person or seen
            report = ClusterReport(in_scope, grouped, joined, new_people, len(free) - grouped)
            self._record("people.cluster", {"collection": collection} if collection else {},
                         {"faces": report.faces_in_scope, "grouped": report.faces_grouped,
                          "new_people": report.new_people})
        return report

    def _working_set(self, collection_id: int | None, in_scope: int, top: int) -> incremental.WorkingSet | None:
        """The incremental run's working set, or None when the full path is the one to take: no store index,
        a scope under half the store (see `_store_search`), or more new faces than STORE_SEARCH_MAX."""
        if not self._index_serves(in_scope, top):
            return None
        found = self.store.pending(collection_id, self.store.seen_through, grouping.STORE_SEARCH_MAX)
        if found is None:
            return None
        pending, images = found
        return incremental.working_set(self.store, collection_id, pending, images, self.face_search,
                                       k=self.params.k, min_sim=self.params.edge_threshold,
                                       max_queries=grouping.STORE_SEARCH_MAX)

    def _apply(self, face_ids: np.ndarray, x: np.ndarray, person: np.ndarray, labels: np.ndarray, free: np.ndarray,
               refresh_all: bool) -> tuple[int, int, int]:
        """Write a grouping's outcome: new memberships, new people, confidence, faces seen and left free.

        Confidence (the mean cosine to the rest of the person) is recomputed for the people that gained faces
        and the new ones, from every face of theirs (all are rows here). `refresh_all`: also every other face
        already in a person (what the full path did before). Returns (grouped, joined existing, new people).
        """
        got = labels[free]
        changed = np.unique(got[got >= 0])
        conf = grouping.confidence(x, labels if refresh_all else np.where(np.isin(labels, changed), labels, -1))
        existing = set(np.unique(person[person >= 0]).tolist())
        new_person: dict[int, int] = {}
        rows, joined = [], 0
        for k in free[got >= 0]:
            label = int(labels[k])
            if label in existing:
                joined += 1
                target = label
            else:
                if label not in new_person:
                    new_person[label] = self.store.create_person()
                target = new_person[label]
            rows.append((int(face_ids[k]), target, "auto", _num(conf[k])))
        self.store.assign(rows)
        self.store.mark_seen(face_ids[free[got < 0]].tolist())
        if len(free):
            held = np.flatnonzero(person >= 0)
            if not refresh_all:
                held = held[np.isin(person[held], changed)]
            self.store.set_confidence([(int(face_ids[k]), _num(conf[k])) for k in held])
        return len(rows), joined, len(new_person)

    def _index_serves(self, in_scope: int, top: int) -> bool:
        """Whether the store's index may find the scope's neighbours: there is one, and the scope is at least half
        of the store's faces (`top`: the highest face id). Else neighbours from outside the scope (collections
        that do not allow grouping) would crowd out the ones that count, and a graph over the scope is built."""
        return self.face_search is not None and 2 * in_scope >= top

    def _store_search(self, face_ids: np.ndarray) -> knn.Search | None:
        """The store's index as a search in scope rows when it serves the scope (`_index_serves`), else None."""
        if not self._index_serves(len(face_ids), self.catalog.max_face_id()):
            return None
        return knn.row_search(knn.from_pairs(self.face_search), face_ids, spare=self.params.k)

    # -- reading -----------------------------------------------------------------------------------------
    def list(self, *, faces: bool = False, include_single: bool = False, named: bool | None = None) -> list[Person]:
        """People biggest first; people with one face are left out unless `include_single`."""
        people = self.store.people(min_size=1 if include_single else 2, named=named)
        if faces:
            for p in people:
                p.faces = self.store.person_faces(p.id)
        return people

    def show(self, person_id: int) -> Person:
        self._need(person_id)
        faces = self.store.person_faces(person_id)
        return Person(person_id, self.store.name_of(person_id), len(faces),
                      sum(f.state == "confirmed" for f in faces), faces)

    def review(self, limit: int = 50, below: float = REVIEW_BELOW) -> list[tuple[int, PersonFace]]:
        """Low-confidence auto assignments, least confident first: confirm or reject them."""
        if limit < 1:
            raise InvalidInputError("the review queue's limit must be at least 1")
        return self.store.review(limit, below)

    def resolve(self, ref: str | int) -> int:
        """A person id from an id or an exact name."""
        if isinstance(ref, int) or (isinstance(ref, str) and ref.strip().isdigit()):
            person_id = int(ref)
            self._need(person_id)
            return person_id
        person_id = self.store.by_name(str(ref))
        if person_id is None:
            raise NotFoundError(f"no person named {ref!r}")
        return person_id

    # -- operator decisions --------------------------------------------------------------------------------
    def name(self, person_id: int, name: str | None) -> None:
        """Name a person (None clears the name). Names are unique; only an operator names a person."""
        clean = None if name is None else _clean_name(name)
        with self._transaction():
            self._need(person_id)
            other = None if clean is None else self.store.by_name(clean)
            if other is not None and other != person_id:
                raise ConflictError(f"person {other} is already named {clean!r}: merge them, or choose another name")
            self.store.set_name(person_id, clean)
            self.store.record_decision(self.actor, "name", person_id)
            self._record("people.name", {"person": person_id}, {})

    def merge(self, keep: int, other: int) -> Person:
        """Move every face (and rejection) of `other` into `keep`; `other` is removed. Names: keep's, else other's."""
        if keep == other:
            raise InvalidInputError(f"cannot merge person {keep} with itself")
        with self._transaction():
            self._need(keep)
            self._need(other)
            moving = self.store.faces_of(other)
            clash = sorted(set(moving) & self.store.rejected_from(keep))
            if clash:
                raise ConflictError(f"face(s) {clash} of person {other} were rejected from person {keep}: "
                                    f"split them off {other} first, then merge")
            kept = self.store.faces_of(keep)
            photos = self.store.image_ids_of(list(moving) + list(kept))
            shared = sorted({photos[f] for f in moving} & {photos[f] for f in kept})
            if shared:
                raise ConflictError(f"persons {keep} and {other} both have a face in photo(s) {shared[:10]}: one photo "
                                    "cannot show a person twice; reject the wrong face first")
            name_keep, name_other = self.store.name_of(keep), self.store.name_of(other)
            self.store.move_faces(list(moving), keep)
            self.store.move_rejections(other, keep)
            self.store.delete_person(other)
            if name_keep is None and name_other is not None:
                self.store.set_name(keep, name_other)
            self.store.record_decision(self.actor, "merge", keep, other, len(moving))
            self._record("people.merge", {"person": keep, "other": other}, {"faces": len(moving)})
        return self.show(keep)

    def split(self, person_id: int, face_ids: Sequence[int]) -> int:
        """Move the given faces of a person into a new person (both sets become confirmed); returns its id.

        The two never merge again by grouping: both are fixed groups from then on.
        """
        wanted = sorted({int(f) for f in face_ids})
        if not wanted:
            raise InvalidInputError("split needs at least one face id")
        with self._transaction():
            self._need(person_id)
            faces = self.store.faces_of(person_id)
            missing = [f for f in wanted if f not in faces]
            if missing:
                raise InvalidInputError(f"face(s) {missing} are not faces of person {person_id}")
            if len(wanted) == len(faces):
                raise InvalidInputError(f"splitting off every face of person {person_id} would leave it empty: "
                                        "name it instead, or split off only the faces of the other person")
            new_id = self.store.create_person()
            self.store.move_faces(wanted, new_id, state="confirmed")
            self.store.move_faces([f for f in faces if f not in wanted], person_id, state="confirmed")
            self.store.record_decision(self.actor, "split", person_id, new_id, len(wanted))
            self._record("people.split", {"person": person_id, "other": new_id}, {"faces": len(wanted)})
        return new_id

    def reject(self, person_id: int, face_id: int) -> None:
        """This face is not this person: it leaves them and never joins them again (it may join someone else)."""
        with self._transaction():
            self._need(person_id)
            if int(face_id) not in self.store.faces_of(person_id):
                raise NotFoundError(f"face {face_id} is not a face of person {person_id}")
            self.store.reject(int(face_id), person_id)
            self.store.record_decision(self.actor, "reject", person_id, None, 1)
            self._record("people.reject", {"person": person_id, "face": int(face_id)}, {"faces": 1})

    def confirm(self, person_id: int, face_ids: Sequence[int] | None = None) -> int:
        """Mark faces of a person (all when None) as confirmed by an operator; returns how many."""
        with self._transaction():
            self._need(person_id)
            faces = self.store.faces_of(person_id)
            wanted = list(faces) if face_ids is None else sorted({int(f) for f in face_ids})
            missing = [f for f in wanted if f not in faces]
            if missing:
                raise InvalidInputError(f"face(s) {missing} are not faces of person {person_id}")
            self.store.move_faces(wanted, person_id, state="confirmed")
            self.store.record_decision(self.actor, "confirm", person_id, None, len(wanted))
            self._record("people.confirm", {"person": person_id}, {"faces": len(wanted)})
        return len(wanted)

    def set_grouping(self, collection: str, allowed: bool) -> int:
        """Allow or forbid grouping for a collection; forbidding drops its faces from every person (returns how
        many memberships went, people left empty included)."""
        with self._transaction():
            collection_id, _ = self.store.collection_grouping(collection)
            self.store.set_grouping(collection_id, allowed)
            dropped = 0 if allowed else self.store.unassign_collection(collection_id)
            if allowed:
                self.store.set_seen_through(0)  # faces it had in people while off are free again: look at all
            if dropped:
                self.store.prune_empty()
            self.store.record_decision(self.actor, "grouping", None, collection_id, dropped)
            self._record("people.grouping", {"collection": collection, "allowed": "on" if allowed else "off"},
                         {"faces": dropped})
        return dropped

    def groupings(self) -> list[tuple[str, bool, int]]:
        """(collection, grouping allowed, faces of it in people) for every collection."""
        return self.store.groupings()

    def _transaction(self):
        self.store.ready()  # migrations take the write lock and their own transaction: before ours
        return self.catalog.transaction()

    def _need(self, person_id: int) -> None:
        if not self.store.exists(int(person_id)):
            into = self.store.merged_into(int(person_id))
            hint = f": it was merged into person {into}" if into is not None else ""
            raise NotFoundError(f"no person with id {person_id}{hint}")


def _clean_name(name: str) -> str:
    """Trimmed, NFC-normalised; refuses empty, over-long and control-character names."""
    clean = unicodedata.normalize("NFC", name).strip()
    if not clean:
        raise InvalidInputError("a person's name cannot be empty")
    if len(clean) > MAX_NAME:
        raise InvalidInputError(f"a person's name has at most {MAX_NAME} characters (got {len(clean)})")
    if any(unicodedata.category(ch) == "Cc" for ch in clean):
        raise InvalidInputError("a person's name cannot contain control characters")
    return clean


def _num(value: float) -> float | None:
    return None if not np.isfinite(value) else round(float(value), 4)
