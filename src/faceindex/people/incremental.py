"""An incremental grouping run's working set: the new faces, their neighbours, and the people those belong to.

A full run reads every faceprint in scope from the catalog (512 MB at 1 M faces) and searches neighbours for
every free face. An incremental run reads only what the decision uses:
- the faces no run has looked at (PeopleStore.pending: in no person, not marked seen), searched in the
  store's own index (FaceStore.search, already built and caught up at ingest);
- their neighbours at or above the edge threshold (weaker ones can propose no merge), free or not; a free
  neighbour (a face seen alone before) may pair with a new face now, through the new face's edge;
- every face of each person such a neighbour belongs to: a merge check needs the person's exact faceprint sum
  and size, and the photos its faces are in (one photo never shows a person twice).
Faceprints of those faces come from the catalog by primary key (a few thousand lookups, milliseconds).

What it does not revisit (the full path does): the neighbours of a face seen and left free earlier. Its edges
to new faces count (they come from the new faces' searches), but its own k-NN list is not searched again:
searching the free neighbours too cost 12 k searches for 1 000 new faces at 100 k faces (a quarter of the faces
stay free, and at cosine >= 0.92 they chain), 15 CPU s against 16 for the full path. So a pair of old free
faces that only a better graph would join (a from-scratch run's job graph missed their edge), or a free face
whose person grew without any new face near it, waits for a run with `incremental=False`
(`faceindex people cluster --full`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from faceindex.people import knn
from faceindex.people.store import PeopleStore


@dataclass
class WorkingSet:
    """Rows in face id order: `face_ids`, `image_ids` int64 (n,), `x` float32 (n, dim), `person` int64 (n,)
    (-1 free); `queries`: the rows searched (the new faces); `cannot`: (row, person) rejections;
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
    hits: dict[int, list[tuple[int, float]]] = {}
    queried = [int(f) for f in pending[:max_queries]]
    x = store.embeddings(queried)
    vectors: dict[int, np.ndarray] = dict(zip(queried, x, strict=True))
    close: set[int] = set()
    for face, row in zip(queried, face_search(x, want) if queried else [], strict=True):
        hits[face] = row
        close.update(f for f, s in row if s >= min_sim)
    state.update(store.face_states(sorted(close - state.keys()), collection_id))  # out of scope: no edge
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
    # Free rows that are not new (seen before) are not searched: their edges come from the new faces' searches.
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
