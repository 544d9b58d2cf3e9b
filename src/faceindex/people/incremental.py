"""An incremental grouping run's working set: the new faces, their neighbours, and the people those belong to.

A full run reads every faceprint in scope from the catalog (512 MB at 1 M faces) and searches neighbours for
every free face. An incremental run reads only what the decision uses:
- the faces no run has looked at (PeopleStore.pending: in no person, not marked seen), searched in the
  store's own index (FaceStore.search, already built and caught up at ingest);
- their neighbours at or above the edge threshold (weaker ones can propose no merge); free neighbours are
  searched in turn (a face seen alone before may now pair with a new one and with its own neighbours), until
  no new free face turns up or `max_queries` faces were searched;
- every face of each person such a neighbour belongs to: a merge check needs the person's exact faceprint sum
  and size, and the photos its faces are in (one photo never shows a person twice).
Faceprints of those faces come from the catalog by primary key (a few thousand lookups, milliseconds).

What it does not revisit (the full path does): a face seen and left free earlier whose neighbour is a person
that grew in this run, when no new face has that face among its neighbours. It is looked at again once a new
face lands near it, or on a run with `incremental=False`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from faceindex.people import knn
from faceindex.people.store import PeopleStore


@dataclass
class WorkingSet:
    """Rows in face id order: `face_ids`, `image_ids` int64 (n,), `x` float32 (n, dim), `person` int64 (n,)
    (-1 free); `queries`: the rows searched (every free row); `cannot`: (row, person) rejections;
    `search`: the searches' results in row space (knn.Search), so grouping does not search twice."""

    face_ids: np.ndarray
    image_ids: np.ndarray
    x: np.ndarray
    person: np.ndarray
    queries: np.ndarray
    search: knn.Search
    cannot: list[tuple[int, int]] = field(default_factory=list)
    searched: int = 0


def working_set(store: PeopleStore, collection_id: int | None, pending: np.ndarray, pending_images: np.ndarray,
                face_search: knn.PairSearch, *, k: int, min_sim: float, max_queries: int) -> WorkingSet:
    """The working set of one run for the `pending` faces (ids, with their image ids)."""
    want = 2 * k + 1  # as PeopleOps' full path asks the store: k + 1 (self included) and k spare
    state: dict[int, tuple[int, int]] = {int(f): (int(i), -1) for f, i in zip(pending, pending_images, strict=True)}
    vectors: dict[int, np.ndarray] = {}
    hits: dict[int, list[tuple[int, float]]] = {}
    frontier = [int(f) for f in pending]
    while frontier and len(hits) < max_queries:
        frontier = frontier[: max_queries - len(hits)]
        x = store.embeddings(frontier)
        vectors.update(zip(frontier, x, strict=True))
        found = face_search(x, want)
        close: set[int] = set()
        for face, row in zip(frontier, found, strict=True):
            hits[face] = row
            close.update(f for f, s in row if s >= min_sim)
        unknown = sorted(close - state.keys())
        state.update(store.face_states(unknown, collection_id))  # faces out of scope stay unknown: no edge
        frontier = sorted(f for f in close if f in state and state[f][1] < 0 and f not in hits)
    touched = sorted({p for _, p in state.values() if p >= 0})
    for face, image, person in store.members(touched):
        state[face] = (image, person)
    face_ids = np.array(sorted(state), np.int64)
    rest = [int(f) for f in face_ids if int(f) not in vectors]
    if rest:
        vectors.update(zip(rest, store.embeddings(rest), strict=True))
    x = np.stack([vectors[int(f)] for f in face_ids]) if len(face_ids) else np.zeros((0, 0), np.float32)
    image_ids = np.array([state[int(f)][0] for f in face_ids], np.int64)
    person = np.array([state[int(f)][1] for f in face_ids], np.int64)
    free = np.flatnonzero(person < 0)
    # Free rows never searched (the `max_queries` cap) are left out of the queries: their edges come only
    # from searched rows. Every free row is searched when the cap is not reached.
    queries = free[np.isin(face_ids[free], np.fromiter(hits, np.int64, len(hits)))]
    row_of = {int(f): r for r, f in enumerate(face_ids)}
    cannot = [(row_of[f], p) for f, p in store.rejections_of(face_ids.tolist())]
    return WorkingSet(face_ids, image_ids, np.ascontiguousarray(x, np.float32), person, queries,
                      _cached_search(hits, face_ids, queries, want), cannot, len(hits))


def _cached_search(hits: dict[int, list[tuple[int, float]]], face_ids: np.ndarray, queries: np.ndarray,
                   want: int) -> knn.Search:
    """The searches already done, as a knn.Search over the query rows in `queries` order (row space; faces
    outside the working set are -1): grouping.group asks for exactly those rows' neighbours."""
    scores = np.full((len(queries), want), -np.inf, np.float32)
    ids = np.full((len(queries), want), -1, np.int64)
    for q, r in enumerate(queries.tolist()):
        for c, (face, score) in enumerate(hits[int(face_ids[r])][:want]):
            ids[q, c], scores[q, c] = face, score
    pos = np.clip(np.searchsorted(face_ids, ids), 0, max(len(face_ids) - 1, 0))
    found = (ids >= 0) & (face_ids[pos] == ids)
    rows, sims = np.where(found, pos, -1), np.where(found, scores, -np.inf).astype(np.float32)

    def search(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if len(x) != len(queries):
            raise ValueError(f"asked for {len(x)} rows' neighbours, {len(queries)} were searched")
        return sims, rows

    return search
