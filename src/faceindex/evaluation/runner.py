"""Runs an evaluation: embeds a labelled folder (or LFW pairs) through FacePipeline and builds an EvalResult.

Roles, in the order `faceindex eval` uses them (the images and their faceprints come from
`evaluation.dataset`):
- `all_pairs_scores`, `protocol_accuracy`, `identification`: the scores each measure needs;
- `evaluate` / `calibrate`: turn them into an EvalResult (report, JSON) or a Calibration.

Knows nothing about how faces are found or embedded: whatever FacePipeline the caller built (its
Settings choose detector, flip, quality gates) is what gets measured.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from faceindex.errors import InvalidInputError
from faceindex.evaluation.calibration import Calibration
from faceindex.evaluation.dataset import Dataset, Embedded, LabelledEmbedder, ProgressFn
from faceindex.evaluation.lfw import Pair
from faceindex.evaluation.metrics import cmc, fnir_at_fpir, open_set_scores, verification_accuracy_kfold
from faceindex.evaluation.report import EvalResult, group_breakdown

FAR_TARGETS = (1e-2, 1e-3, 1e-4)
FPIR_TARGETS = (0.003, 0.01)
MAX_IMPOSTORS = 10_000_000
"""Cap on all-vs-all impostor pairs kept (a seeded uniform sample above it): 10 M float64 scores are
80 MB per copy and resolve FMR down to 1e-7; 3 500 images give ~6 M pairs, so LFW DevTrain is whole."""
MAX_BALANCED_PAIRS = 3000
"""Genuine pairs (and as many impostor pairs) in the balanced 10-fold sample used when no pairs file is given."""
FAILED_SCORE = -1.0
"""Score given to a protocol pair where either image has no usable face: the lowest cosine, i.e. the
'no match' the product would answer. It costs genuine pairs and cannot help impostor pairs."""

@dataclass
class PairScores:
    """All-vs-all verification scores among the embedded images (cosine; i < j; indices into `items`)."""

    genuine: np.ndarray
    impostor: np.ndarray
    genuine_idx: np.ndarray  # (n_genuine, 2) int32
    impostor_idx: np.ndarray  # (n_impostor, 2) int32
    impostor_total: int  # before sampling
    sampled: bool


def all_pairs_scores(items: Sequence[Embedded], max_impostors: int = MAX_IMPOSTORS, seed: int = 0,
                     block: int = 1024) -> PairScores:
    """Score every pair of embedded images: same identity = genuine, different = impostor.

    All genuine pairs are kept. Impostor pairs above `max_impostors` are sampled uniformly (seeded,
    so reruns give the same figures). Works `block` rows at a time: memory ~block x n scores.
    Every image counts once per pair, so identities with many photos weigh more (as in any
    all-vs-all protocol); the LFW pairs protocol (`protocol_accuracy`) balances that.
    """
    ok = [k for k, e in enumerate(items) if e.ok]
    if len(ok) < 2:
        raise InvalidInputError(f"only {len(ok)} image(s) with a usable face: nothing to compare")
    x = np.stack([items[k].embedding for k in ok]).astype(np.float32)
    _, lab = np.unique([items[k].image.identity for k in ok], return_inverse=True)
    counts = np.bincount(lab)
    n = len(ok)
    total_imp = (n * (n - 1) - int(np.sum(counts * (counts - 1)))) // 2
    keep = 1.0 if total_imp <= max_impostors else max_impostors / total_imp
    rng = np.random.default_rng(seed)
    idx = np.asarray(ok, dtype=np.int32)
    gen, imp, gen_ij, imp_ij = [], [], [], []
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        s = x[lo:hi] @ x[lo:].T  # rows lo..hi against columns lo..n; keep j > i only
        rows = np.arange(lo, hi)[:, None]
        cols = np.arange(lo, n)[None, :]
        upper = cols > rows
        same = lab[lo:hi, None] == lab[None, lo:]
        for mask, scores, pos in ((upper & same, gen, gen_ij), (upper & ~same, imp, imp_ij)):
            if scores is imp and keep < 1.0:
                mask = mask & (rng.random(mask.shape) < keep)
            r, c = np.nonzero(mask)
            scores.append(s[r, c].astype(np.float64))
            pos.append(np.stack((idx[r + lo], idx[c + lo]), axis=1))
    cat = lambda parts, width=0: (np.concatenate(parts) if parts else np.zeros((0, width)))  # noqa: E731
    genuine, impostor = cat(gen), cat(imp)
    if impostor.size == 0:
        raise InvalidInputError("all usable faces belong to one identity: no impostor pairs to measure")
    return PairScores(genuine, impostor, cat(gen_ij, 2).astype(np.int32), cat(imp_ij, 2).astype(np.int32),
                      total_imp, keep < 1.0)


@dataclass
class ProtocolAccuracy:
    """10-fold verification accuracy over a fixed list of pairs (fractions), with what it was measured on."""

    mean: float
    std: float
    thresholds: np.ndarray
    protocol: str
    n_pairs: int
    n_unscored: int  # pairs where an image had no usable face (scored FAILED_SCORE)
    scores: np.ndarray
    same: np.ndarray
    identities: list[tuple[str, str]]
    folds: np.ndarray | None = None
    photos: list[tuple[str, str]] = field(default_factory=list)  # "identity/file" of each pair's images

    @functools.cached_property
    def wrong_pairs(self) -> list[dict]:
        """The pairs judged wrongly at their fold's threshold, worst margin first: what an operator reviews
        (computed once: the report and the JSON headline both show it)."""
        if self.folds is None:
            return []
        fold_ids = list(np.unique(self.folds))
        out = []
        for k, (score, same, fold) in enumerate(zip(self.scores, self.same, self.folds, strict=True)):
            t = float(self.thresholds[fold_ids.index(fold)])
            if (score >= t) != bool(same):
                out.append({"a": self.photos[k][0], "b": self.photos[k][1], "same": bool(same),
                            "score": float(score), "threshold": t})
        return sorted(out, key=lambda w: -abs(w["score"] - w["threshold"]))


def _pair_score(a: Embedded, b: Embedded) -> float:
    if not (a.ok and b.ok):
        return FAILED_SCORE
    return float(np.dot(a.embedding, b.embedding))


def protocol_accuracy(items: Sequence[Embedded], pairs: Sequence[Pair] | None = None, *, seed: int = 0,
                      max_pairs: int = MAX_BALANCED_PAIRS) -> ProtocolAccuracy:
    """LFW-protocol accuracy: per fold, the threshold best on the other folds, applied to that fold.

    With `pairs` (from an LFW pairs file) those pairs and their folds are used as given. Without,
    a balanced sample stands in: every genuine pair of the folder (at most `max_pairs`, sampled)
    and as many impostor pairs drawn at random (seeded), dealt to 10 folds the way View 1 files
    are (k-th genuine and k-th impostor pair to fold k % 10). Images without a usable face stay in
    the pairs and score FAILED_SCORE, so failures are counted against accuracy, never dropped.
    """
    by_path = {e.image.path.resolve(): e for e in items}
    if pairs is not None:
        ea = [by_path[p.path_a.resolve()] for p in pairs]
        eb = [by_path[p.path_b.resolve()] for p in pairs]
        same = np.array([p.same for p in pairs])
        folds = np.array([p.fold for p in pairs])
        protocol = f"LFW pairs file, {len(pairs)} pairs in {len(set(folds.tolist()))} folds"
    else:
        rng = np.random.default_rng(seed)
        labels = np.array([e.image.identity for e in items])
        members: dict[str, list[int]] = {}
        for k, label in enumerate(labels.tolist()):
            members.setdefault(label, []).append(k)
        genuine = [pair for ks in members.values() for pair in itertools.combinations(ks, 2)]
        if not genuine:
            raise InvalidInputError("no identity has two images: genuine pairs cannot be formed")
        if len(set(labels.tolist())) < 2:
            raise InvalidInputError("only one identity: impostor pairs cannot be formed")
        if len(genuine) > max_pairs:
            genuine = [genuine[k] for k in sorted(rng.choice(len(genuine), max_pairs, replace=False))]
        impostor: set[tuple[int, int]] = set()
        n_cross = (len(items) ** 2 - int(np.sum(np.unique(labels, return_counts=True)[1] ** 2))) // 2
        while len(impostor) < min(len(genuine), n_cross):
            i, j = sorted(rng.choice(len(items), 2, replace=False).tolist())
            if labels[i] != labels[j]:
                impostor.add((i, j))
        chosen = genuine + sorted(impostor)
        ea, eb = [items[i] for i, _ in chosen], [items[j] for _, j in chosen]
        same = np.array([True] * len(genuine) + [False] * len(impostor))
        folds = np.concatenate((np.arange(len(genuine)) % 10, np.arange(len(impostor)) % 10))
        protocol = (f"balanced sample (no pairs file): {len(genuine)} genuine + {len(impostor)} impostor pairs, "
                    "10 folds; not the LFW protocol")
    scores = np.array([_pair_score(a, b) for a, b in zip(ea, eb, strict=True)])
    mean, std, thresholds = verification_accuracy_kfold(scores, same, folds)
    unscored = int(sum(not (a.ok and b.ok) for a, b in zip(ea, eb, strict=True)))
    return ProtocolAccuracy(mean, std, thresholds, protocol, len(scores), unscored, scores, same,
                            [(a.image.identity, b.image.identity) for a, b in zip(ea, eb, strict=True)], folds,
                            [(_photo(a), _photo(b)) for a, b in zip(ea, eb, strict=True)])


def _photo(e: Embedded) -> str:
    return f"{e.image.identity}/{e.image.path.name}"


@dataclass
class Identification:
    """Closed-set and open-set 1:N figures: CMC and FNIR at fixed FPIR, with the sizes behind them."""

    cmc: np.ndarray
    fnir_at_fpir: dict
    n_probes: int
    n_gallery: int
    n_nonmated: int


def identification(items: Sequence[Embedded], fpir_targets=FPIR_TARGETS, max_rank: int = 20) -> Identification:
    """One probe per identity with >= 2 usable images (its first, by path); gallery = every other image.

    The gallery holds the probe identity's other photos plus every other identity (single-photo ones
    included), so a probe's rank counts the impostors that outscore its best mate. Non-mated searches
    for FPIR are the same probes against the gallery minus their own identity (see
    `open_set_scores`): one per probe, so FPIR 0.003 needs >= 334 probe identities to be resolved.
    """
    ok = [e for e in items if e.ok]
    seen: set[str] = set()
    counts: dict[str, int] = {}
    for e in ok:
        counts[e.image.identity] = counts.get(e.image.identity, 0) + 1
    probes, gallery = [], []
    for e in sorted(ok, key=lambda e: str(e.image.path)):
        if counts[e.image.identity] >= 2 and e.image.identity not in seen:
            seen.add(e.image.identity)
            probes.append(e)
        else:
            gallery.append(e)
    if not probes:
        raise InvalidInputError("no identity has two usable images: identification cannot be measured")
    sim = np.stack([p.embedding for p in probes]) @ np.stack([g.embedding for g in gallery]).T
    pl, gl = [p.image.identity for p in probes], [g.image.identity for g in gallery]
    curve = cmc(sim, pl, gl, max_rank=min(max_rank, len(gallery)))
    mated, nonmated = open_set_scores(sim, pl, gl, rank=1)
    return Identification(curve, fnir_at_fpir(mated, nonmated, fpir_targets), len(probes), len(gallery),
                          int(nonmated.size))


@dataclass
class EvalRun:
    """An EvalResult plus the sizes and protocol names the headline figures need."""

    result: EvalResult
    protocol: ProtocolAccuracy
    ident: Identification
    pairs: PairScores
    failures: list[Embedded]
    n_images: int
    n_identities: int
    face_choice: str = "prominent"
    extra: dict = field(default_factory=dict)

    def headline(self) -> dict:
        """The figures `faceindex eval --json` prints: fractions, null where the sample cannot resolve them."""
        r = self.result
        nan_none = lambda x: None if x is None or not math.isfinite(x) else float(x)  # noqa: E731
        return {
            "model_id": r.model_id, "dataset": r.dataset, "images": self.n_images, "identities": self.n_identities,
            "accuracy": self.protocol.mean, "accuracy_std": self.protocol.std,
            "accuracy_protocol": self.protocol.protocol, "pairs": self.protocol.n_pairs,
            "pairs_without_face": self.protocol.n_unscored,
            "eer": r.eer, "eer_threshold": r.eer_threshold,
            "n_genuine": int(r.genuine_scores.size), "n_impostor": int(r.impostor_scores.size),
            "tar_at_far": {f"{t:g}": nan_none(p.hit_rate) for t, p in r.tar_at_far.items()},
            "rank1": float(r.cmc[0]), "rank5": float(r.cmc[min(4, len(r.cmc) - 1)]),
            "fnir_at_fpir": {f"{t:g}": nan_none(p.miss_rate) for t, p in r.fnir_at_fpir.items()},
            "probes": self.ident.n_probes, "gallery": self.ident.n_gallery,
            "threshold": r.threshold,
            "detect_failures": len(self.failures),
            "detect_failed": [{"path": str(e.image.path), "reason": e.reason} for e in self.failures],
            "wrong_pairs": self.protocol.wrong_pairs,
            "face_choice": self.face_choice,
            **self.extra,
        }


def _failure_line(e: Embedded) -> str:
    return f"{_photo(e)}: {e.reason}"


def _wrong_line(w: dict) -> str:
    verdict = "same person, rejected" if w["same"] else "different people, accepted"
    return f"{w['a']} vs {w['b']}: {verdict} (score {w['score']:.4f}, fold threshold {w['threshold']:.4f})"


def evaluate(dataset: Dataset, embedder: LabelledEmbedder, *, groups: dict[str, str] | None = None,
             max_impostors: int = MAX_IMPOSTORS, max_expected_false: float = 0.1,
             reference: Calibration | None = None, progress: ProgressFn | None = None) -> EvalRun:
    """Embed `dataset` and measure everything `faceindex eval` reports.

    - verification ROC/DET, EER, TAR@FAR: all-vs-all pairs among images with a usable face;
    - accuracy: `protocol_accuracy` (LFW pairs when given, else a balanced sample), failures included;
    - identification: `identification` (CMC, FNIR@FPIR);
    - calibration measured from these impostor scores; the report's operating threshold is the one
      it gives for a gallery of the identification run's size (expected false candidates <=
      `max_expected_false`);
    - `groups` (identity -> operator group): FRR/FAR per group at that threshold;
    - `reference`: the calibration the engine uses now; a note says whether its claimed FMR holds here.
    """
    items = embedder.embed_all(dataset.images, progress)
    failures = [e for e in items if not e.ok]
    pairs = all_pairs_scores(items, max_impostors)
    proto = protocol_accuracy(items, dataset.pairs)
    ident = identification(items)
    model_id = embedder.model_id
    calibration = Calibration.from_scores(pairs.impostor, pairs.genuine, model_id=model_id,
                                          source=f"{dataset.name} (all-vs-all, {len(items) - len(failures)} faces)")
    threshold = calibration.threshold_for_gallery(ident.n_gallery, max_expected_false)
    notes = [f"Accuracy: {proto.protocol}; {100 * proto.mean:.2f}% +/- {100 * proto.std:.2f}% (std over folds). "
             f"{proto.n_unscored} of {proto.n_pairs} pairs include an image without a usable face and were "
             f"scored as non-matches ({FAILED_SCORE:g}).",
             f"Verification curves, EER and TAR@FAR: all-vs-all among {len(items) - len(failures)} images with a "
             f"usable face ({pairs.genuine.size} genuine pairs, {pairs.impostor.size} impostor pairs"
             + (f" sampled from {pairs.impostor_total}" if pairs.sampled else "") + ").",
             f"Identification: {ident.n_probes} probes (one per identity with >= 2 usable images) against a gallery "
             f"of {ident.n_gallery} images; {ident.n_nonmated} non-mated searches (probe vs gallery minus its "
             "identity) for FPIR.",
             f"Face choice: '{embedder.face_choice}' (which face of a photo its label means; see choose_face).",
             f"Operating threshold: the one calibrated here for a gallery of {ident.n_gallery} faces "
             f"(expected false candidates <= {max_expected_false:g} per search)."]
    if reference is not None:
        t = reference.threshold_for_gallery(ident.n_gallery, max_expected_false)
        measured = float(np.mean(pairs.impostor >= t))
        notes.append(f"The engine's calibration ({reference.source}) sets threshold {t:.4f} for this gallery size "
                     f"and claims FMR {reference.fmr_at(t):.2e} there; measured on this data: {measured:.2e} "
                     f"({int(np.sum(pairs.impostor >= t))} of {pairs.impostor.size} impostor pairs).")
    group_stats = None
    if groups is not None:
        ident_of = lambda k: items[k].image.identity  # noqa: E731
        scored = [(ident_of(i), ident_of(j), s, True) for (i, j), s in zip(pairs.genuine_idx, pairs.genuine,
                                                                          strict=True)]
        scored += [(ident_of(i), ident_of(j), s, False) for (i, j), s in zip(pairs.impostor_idx, pairs.impostor,
                                                                           strict=True)]
        group_stats = group_breakdown(scored, groups, threshold)
    result = EvalResult.from_scores(
        pairs.genuine, pairs.impostor, model_id=model_id, dataset=dataset.name, far_targets=FAR_TARGETS,
        threshold=threshold, kfold_accuracy=(proto.mean, proto.std, proto.thresholds), cmc=ident.cmc,
        fnir_at_fpir=ident.fnir_at_fpir, detect_failures=[_failure_line(e) for e in failures], groups=group_stats,
        wrong_pairs=[_wrong_line(w) for w in proto.wrong_pairs],
        calibration=calibration, notes=notes)
    return EvalRun(result, proto, ident, pairs, failures, len(items), len({e.image.identity for e in items}),
                   embedder.face_choice)


def calibrate(dataset: Dataset, embedder: LabelledEmbedder, *, source: str | None = None,
              max_impostors: int = MAX_IMPOSTORS, progress: ProgressFn | None = None) -> tuple[Calibration, list]:
    """Measure a Calibration for the embedder's model from all-vs-all impostor scores of `dataset`.

    Returns (calibration, failed images). A pairs file only selects the images: every pair of them
    is scored, which gives far more impostor scores (and so deeper measured FMRs) than the pairs.
    """
    items = embedder.embed_all(dataset.images, progress)
    pairs = all_pairs_scores(items, max_impostors)
    n_faces = sum(e.ok for e in items)
    label = source or f"{dataset.name} (all-vs-all, {n_faces} faces)"
    return (Calibration.from_scores(pairs.impostor, pairs.genuine, model_id=embedder.model_id, source=label),
            [e for e in items if not e.ok])
