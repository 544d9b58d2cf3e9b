"""Grouping faceprints into people: average-link agglomeration on a k-NN graph, with cannot-links and anchors.

Pure functions over arrays; no storage. Precision comes first: putting two people together leaks one
person's photos into another's, so it is the worse error; a person split in two is fixed by one merge.

How it works (`agglomerate`):
1. Candidate pairs are the edges of a k-nearest-neighbour graph (people/knn.py: the store's own index
   for a few new faces, else FAISS exact below EXACT_BELOW faces, a job HNSW graph above) whose cosine
   is at least `edge_threshold`. Nothing is ever computed over all pairs of the gallery: memory and
   time grow with n·k, not n².
2. Edges are visited strongest first. The two groups they join merge only when their *average
   link* — the mean cosine over every pair of faces across the two groups, exactly
   dot(sum_a, sum_b) / (n_a·n_b) for unit faceprints, so it costs O(dim) per check — is at least
   `link_threshold`. Single-link chaining (A~B~C with A and C strangers) cannot happen: a group
   joins only what it resembles on average.
3. A merge is refused when it would break a constraint: two faces of one photo (one photo cannot
   show the same person twice), a cannot-link (a face an operator rejected from a person), or two
   fixed groups (existing people: operator decisions and earlier groupings are never undone here).
4. A second pass over the edges catches pairs whose average rose through later merges.
5. `group` then lets a face left alone join the group whose *mean faceprint* it matches, at the fused-score
   threshold for that group's size and with a margin over the next group (people/refine.py): a person's
   outlier photos reach their mean well before they reach the average-link bar.

Incremental use is the same call: existing people are `fixed` starting groups, new faces are free
(-1); new faces join people or each other, and fixed groups never merge with each other.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from faceindex.people.knn import EXACT_BELOW, Search, knn_edges, undirected
from faceindex.people.refine import join_to_means

__all__ = ["EXACT_BELOW", "GroupingParams", "STORE_SEARCH_MAX", "agglomerate", "confidence", "group",
           "knn_edges", "undirected"]

STORE_SEARCH_MAX = 20_000
"""Most query faces sent to the store's own index (`search`); more build a job graph instead (people/knn.py):
the store's index searches broadly for one probe (ef 512, ~2-3 ms a query), which at 1 M queries is ~30 min
on 2 cores, while a job graph tuned for close neighbours builds and searches 1 M faces in minutes."""

@dataclass(frozen=True)
class GroupingParams:
    """Thresholds (cosines of L2-normalised faceprints) and graph size.

    - ``edge_threshold``: the weakest k-NN edge that may propose a merge. Lower finds more pairs to
      look at (recall), at the cost of more average-link checks; it never decides a merge alone.
    - ``link_threshold``: the average cosine two groups need to merge: the precision knob.
    - ``k``: neighbours per face. Must exceed the number of near-duplicate photos of one face plus a
      few, or a person's photos split into islands; 20 measured enough on LFW (see BENCHMARKS.md).
    - ``single_threshold``: when one side of a merge is a single face, the average (then one cosine) must
      reach this instead (None = ``link_threshold``): the precision knob for strangers seen once.
    - ``min_size``: a group with fewer faces forms no new person (its faces stay unassigned, grouped
      again on the next run): a stranger seen once in a crowd is not a "person" to review.
    - ``join_thresholds``: after agglomeration, the cosine a face left alone needs to its group's mean
      faceprint to join it, by group size (index 0 for 2 faces, the last for that many or more; see
      people/refine.py); empty = no such step (a model without a fused-score calibration).
    - ``join_margin``: how much that face's best group must beat its second (cosine units).
    """

    edge_threshold: float = 0.92
    link_threshold: float = 0.935
    k: int = 20
    min_size: int = 2
    single_threshold: float | None = None
    join_thresholds: tuple[float, ...] = ()
    join_margin: float = 0.01

    @classmethod
    def from_calibration(cls, calibration, *, edge_fmr: float = 3e-3, link_fmr: float = 1e-4,
                         single_fmr: float = 5e-5, k: int = 20, min_size: int = 2, fusion="auto",
                         join_fmr: float = 1e-4, join_margin: float = 0.01) -> GroupingParams:
        """Thresholds at the given false-match rates of the model's calibration (per face pair).

        Defaults, for dlib-resnet-v1: edges at FMR 3e-3 (cosine ≈ 0.918), links between groups at FMR
        1e-4 (≈ 0.942), a single face joining anything at FMR 5e-5 (≈ 0.945). A lone face is held to a
        stricter bar than a group because its one score against a whole gallery has many chances to be a
        lucky impostor, while a group's average over many pairs is steady. Chosen on LFW DevTrain, the
        data the calibration was measured on (BENCHMARKS.md has the sweep): measured, not held out.

        Join step (people/refine.py): `fusion` is the model's fused-score calibration ("auto": the one shipped
        for `calibration.model_id`, None: no join step); a face joins a group of n at the fused threshold for
        n probes at `join_fmr`, 1e-4 (≈ 0.948 for 2 faces to ≈ 0.955 for 16+), with `join_margin` 0.01 over
        its next group. FMR and margin chosen on one half of LFW DevTrain's identities, reported on the other.
        """
        if isinstance(fusion, str) and fusion == "auto":
            from faceindex.matching import load_fusion_calibration

            model_id = getattr(calibration, "model_id", None)
            fusion = load_fusion_calibration(model_id) if model_id else None
        joins: tuple[float, ...] = ()
        if fusion is not None:
            # Sizes 2..top+1; the last entry (the top bucket shifted by its drift) serves every larger group.
            top = max(fusion.buckets) + 1
            joins = tuple(_fused_threshold(fusion, m, join_fmr) for m in range(2, top + 1))
            # Never lower for a bigger group: strangers score higher against a mean of more faces, and the
            # measured buckets are noisy by ~0.002 (bucket 16 came out below 12 for dlib).
            joins = tuple(float(t) for t in np.maximum.accumulate(joins))
        return cls(float(calibration.threshold_for_fmr(edge_fmr)), float(calibration.threshold_for_fmr(link_fmr)),
                   k, min_size, float(calibration.threshold_for_fmr(single_fmr)), joins, join_margin)


def _fused_threshold(fusion, m: int, fmr: float) -> float:
    """The fused score strangers reach against m probes at `fmr` (smallest bucket >= m, else the top + drift)."""
    _, calibration, shift = fusion.for_probes(m)
    return float(calibration.threshold_for_fmr(fmr)) + float(shift)


def agglomerate(x: np.ndarray, edges: tuple[np.ndarray, np.ndarray, np.ndarray], params: GroupingParams, *,
                photo: np.ndarray | None = None, start: np.ndarray | None = None,
                cannot_join: Iterable[tuple[int, int]] = (), passes: int = 2) -> np.ndarray:
    """Group rows of `x` (unit faceprints) along `edges`; returns a label per row (-1 = unassigned).

    - `photo`: int id per row (-1 = none); two rows with the same id never share a label.
    - `start`: int label per row of existing groups (-1 = free). Rows with one start label begin as one
      group and keep that label; such fixed groups never merge with each other. New groups get labels
      above the largest start label. A free row left in a group smaller than `min_size` gets -1.
    - `cannot_join`: (row, start label) pairs: that row never joins that group (an operator rejected it).
    """
    n = len(x)
    x = np.asarray(x, dtype=np.float32)
    start = np.full(n, -1, np.int64) if start is None else np.asarray(start, dtype=np.int64)
    parent = list(range(n))
    size: dict[int, int] = {}
    sums: dict[int, np.ndarray] = {}
    tags: dict[int, set[int]] = {}
    fixed_label: dict[int, int] = {}

    def find(i: int) -> int:
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:  # path compression
            parent[i], i = root, parent[i]
        return root

    def base_tags(i: int) -> set[int]:
        return {int(photo[i])} if photo is not None and photo[i] >= 0 else set()

    ei, ej, es = (np.asarray(a) for a in edges)
    keep = es >= params.edge_threshold
    ei, ej, es = ei[keep], ej[keep], es[keep]
    # Fixed starting groups that an edge touches: one root per label, with their exact sums. Groups no edge
    # reaches keep their label untouched (incremental runs on a big store read only what the new faces touch).
    touched = np.unique(np.concatenate([start[ei], start[ej]])) if len(ei) else np.zeros(0, np.int64)
    touched = touched[touched >= 0]
    rejected_labels = np.array(sorted({int(label) for _, label in cannot_join}), np.int64)
    touched = np.union1d(touched, np.intersect1d(rejected_labels, np.unique(start[start >= 0])))
    labelled = np.flatnonzero(np.isin(start, touched)) if len(touched) else np.zeros(0, np.int64)
    if len(labelled):
        order = labelled[np.argsort(start[labelled], kind="stable")]
        labels, firsts = np.unique(start[order], return_index=True)
        group_sums = np.add.reduceat(x[order].astype(np.float64), firsts, axis=0)
        bounds = list(firsts) + [len(order)]
        for g, label in enumerate(labels):
            members = order[bounds[g]:bounds[g + 1]]
            root = int(members[0])
            for m in members:
                parent[int(m)] = root
            size[root], sums[root], fixed_label[root] = len(members), group_sums[g], int(label)
            tags[root] = set().union(*(base_tags(int(m)) for m in members))
    roots_of_label = {label: root for root, label in fixed_label.items()}
    extra: dict[int, set[int]] = {}
    for tag, (row, label) in enumerate(cannot_join):
        # A fresh negative tag on both sides: photo ids are >= 0, so the two kinds never collide.
        marker = -1 - tag
        extra.setdefault(int(row), set()).add(marker)
        if label in roots_of_label:
            tags.setdefault(roots_of_label[label], set()).add(marker)

    def tags_of(r: int) -> set[int]:
        if r not in tags:
            tags[r] = base_tags(r) | extra.get(r, set())
        return tags[r]

    involved = np.union1d(np.union1d(ei, ej), labelled).astype(np.int64)
    for _ in range(passes):
        merged = 0
        for i, j, s in _edge_rows(ei, ej, es):
            a, b = find(i), find(j)
            if a == b or (a in fixed_label and b in fixed_label):
                continue
            na, nb = size.get(a, 1), size.get(b, 1)
            if na == 1 and nb == 1:
                link = s
            else:
                sa = sums[a] if a in sums else x[a]
                sb = sums[b] if b in sums else x[b]
                link = float(np.dot(sa, sb)) / (na * nb)
            need = _need(na, nb, params)
            if link < need:
                continue
            ta, tb = tags_of(a), tags_of(b)
            if not ta.isdisjoint(tb):
                continue
            if b in fixed_label or (a not in fixed_label and nb > na):
                a, b, na, nb, ta, tb = b, a, nb, na, tb, ta  # keep the fixed (or bigger) root
            parent[b] = a
            sums[a] = (sums[a] if a in sums else x[a].astype(np.float64)) + (sums.pop(b) if b in sums else x[b])
            size[a] = na + nb
            size.pop(b, None)
            ta |= tb
            tags[a] = ta
            tags.pop(b, None)
            merged += 1
        if not merged:
            break
    return _labels(find, start, involved, size, fixed_label, params.min_size,
                   int(start.max()) + 1 if len(start) and start.max() >= 0 else 0)


def _edge_rows(ei: np.ndarray, ej: np.ndarray, es: np.ndarray, step: int = 1 << 20):
    """(i, j, cosine) as Python numbers, a million at a time: the loop wants scalars, and lists of all ~10 M
    edges of a 1 M-face graph at once would hold ~1 GB."""
    for lo in range(0, len(ei), step):
        yield from zip(ei[lo:lo + step].tolist(), ej[lo:lo + step].tolist(), es[lo:lo + step].tolist(), strict=True)


def _need(na: int, nb: int, params: GroupingParams) -> float:
    """The average link two groups of na and nb faces need to merge."""
    if params.single_threshold is not None and min(na, nb) == 1:
        return params.single_threshold
    return params.link_threshold


def _labels(find, start: np.ndarray, involved: np.ndarray, size: dict[int, int], fixed_label: dict[int, int],
            min_size: int, first_new: int) -> np.ndarray:
    """Start labels where no edge reached; elsewhere the fixed label, a new label, or -1 (group too small)."""
    out = np.where(start >= 0, start, -1).astype(np.int64)
    new: dict[int, int] = {}
    for i in involved.tolist():
        r = find(i)
        if r in fixed_label:
            out[i] = fixed_label[r]
        elif size.get(r, 1) >= min_size:
            if r not in new:
                new[r] = first_new + len(new)
            out[i] = new[r]
    return out


def group(x: np.ndarray, params: GroupingParams, *, photo: np.ndarray | None = None,
          start: np.ndarray | None = None, cannot_join: Sequence[tuple[int, int]] = (),
          new_rows: np.ndarray | None = None, search: Search | None = None) -> np.ndarray:
    """k-NN graph + agglomeration + the join step (`params.join_thresholds`) in one call; see `agglomerate`.

    `new_rows`: only these rows look for neighbours (incremental: the faces not yet in a group);
    default every row. `search`: neighbours in row space from an index that already holds `x` (the
    store's, through knn.row_search); used for up to STORE_SEARCH_MAX query rows, beyond which a job
    graph is cheaper (knn.py). Costs one k-NN search per looked-up row.
    """
    n_queries = len(x) if new_rows is None else len(new_rows)
    use = search if search is not None and n_queries <= STORE_SEARCH_MAX else None
    edges = knn_edges(x, params.k, queries=new_rows, min_sim=params.edge_threshold, search=use)
    labels = agglomerate(x, edges, params, photo=photo, start=start, cannot_join=cannot_join)
    return join_to_means(x, labels, edges, params.join_thresholds, params.join_margin, photo=photo, start=start,
                         cannot_join=cannot_join)


def confidence(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per row: the mean cosine of the face to the other faces of its group (NaN when unassigned or alone).

    Low values are the assignments worth an operator's look (the review queue).
    """
    x = np.asarray(x, dtype=np.float64)
    out = np.full(len(x), np.nan)
    ok = np.flatnonzero(labels >= 0)
    if not len(ok):
        return out
    uniq, inv = np.unique(labels[ok], return_inverse=True)
    sums = np.zeros((len(uniq), x.shape[1]))
    np.add.at(sums, inv, x[ok])
    counts = np.bincount(inv)
    n = counts[inv]
    dots = np.einsum("ij,ij->i", sums[inv], x[ok]) - np.einsum("ij,ij->i", x[ok], x[ok])
    with np.errstate(invalid="ignore", divide="ignore"):
        out[ok] = np.where(n > 1, dots / (n - 1), np.nan)
    return out
