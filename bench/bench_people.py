"""People grouping: quality against two baselines on the same faceprints, and scale on synthetic faceprints.

Usage:
    python bench/bench_people.py quality [--sets people lfw] [--narrow]      # faceprints cached by bench/people_data.py
    python bench/bench_people.py halves        # join-step parameters: tuned on half A, reported on half B
    (scale: bench/bench_people_scale.py)

quality: on each labelled set (one faceprint per photo, identity = folder), pairwise and BCubed precision,
recall and F of
- faceindex (people.grouping at its default thresholds, from the model's calibration and, for the join step,
  the fused-score calibration of the faceprints' model; not tuned here), and without the join step (as before),
- dlib `chinese_whispers_clustering` at the face_recognition docs' distance 0.6 (Euclidean on dlib's raw
  descriptors; our faceprints are L2-normalised, so the distance is scaled by 1/mean raw norm, measured here),
- Immich-style incremental DBSCAN (each face in turn: it joins the person of its nearest neighbour within the
  max distance that has one; else, when it is a core face — at least `min faces` faces, itself included,
  within the max distance — it starts a new person; non-core faces are retried once at the end and only join).
  Immich's defaults (max cosine distance 0.5, min faces 3) are for its ArcFace model, whose impostor
  cosines centre near 0; dlib faceprints centre near 0.84, so 0.5 would merge everyone. Translated as the
  same Euclidean criterion as face_recognition (cosine 1 - d²/2 at d = 0.6/norm), min faces 3 kept,
- and each baseline again at the threshold that maximises its BCubed F on this very data (tuned on the test
  set: an upper bound for it), and at the best threshold keeping pairwise precision >= 0.99.
halves: LFW DevTrain's identities split in two at random (seed 0); each half grouped on its own. The join
step's FMR and margin are chosen on half A (best BCubed F with pairwise precision >= 0.99) and reported on
half B (held out) and on the whole set.
scale is bench/bench_people_scale.py.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from benchlib import machine_line  # noqa: E402
from people_data import FACES, load  # noqa: E402

from faceindex.matching import load_calibration, load_fusion_calibration  # noqa: E402
from faceindex.people.grouping import GroupingParams, group, knn_edges  # noqa: E402
from faceindex.people.metrics import cluster_scores  # noqa: E402

FR_DISTANCE = 0.6  # face_recognition's documented tolerance (Euclidean, dlib raw descriptors)
IMMICH_MIN_FACES = 3


def raw_norm(paths: list[str], n: int = 40) -> float:
    """Mean L2 norm of dlib's raw (unnormalised) descriptors of the first face of the first `n` photos.

    Uses the embedder's private `_raw` on purpose (as bench/lfw_ablation.py does): the product only keeps
    normalised faceprints, and face_recognition's 0.6 is a distance between raw ones.
    """
    from faceindex.config import Settings
    from faceindex.pipeline.analyse import FacePipeline

    pipeline = FacePipeline(Settings())
    norms = []
    for p in paths[:n]:
        decoded = pipeline.decode(FACES / p)
        boxes = [d.box for d in pipeline.detector.detect(decoded.detection)][:1]
        if boxes:
            s = decoded.scale
            boxes = [tuple(int(round(v * s)) for v in boxes[0])]
            _, chips = pipeline.embedder.align(decoded.full(), boxes)
            norms.append(float(np.linalg.norm(pipeline.embedder._raw(chips)[0])))
    return float(np.mean(norms))


def chinese_whispers(x: np.ndarray, distance: float) -> np.ndarray:
    import dlib

    vecs = [dlib.vector(row.astype(np.float64).tolist()) for row in x]
    return np.asarray(dlib.chinese_whispers_clustering(vecs, float(distance)), np.int64)


def immich(x: np.ndarray, min_cos: float, min_faces: int = IMMICH_MIN_FACES, k: int = 50) -> np.ndarray:
    """Immich's incremental assignment (see module docstring) on a k-NN list (exact, cosine >= min_cos)."""
    i, j, s = knn_edges(x, k, min_sim=min_cos)
    nbrs: list[list[tuple[float, int]]] = [[] for _ in range(len(x))]
    for a, b, v in zip(i.tolist(), j.tolist(), s.tolist(), strict=True):
        nbrs[a].append((v, b))
        nbrs[b].append((v, a))
    for lst in nbrs:
        lst.sort(reverse=True)
    person = np.full(len(x), -1, np.int64)
    next_id = 0
    deferred = []
    for final in (False, True):
        todo = range(len(x)) if not final else deferred
        for f in todo:
            if person[f] >= 0:
                continue
            core = len(nbrs[f]) + 1 >= min_faces
            if not core and not final:
                deferred.append(f)
                continue
            match = next((person[b] for _, b in nbrs[f] if person[b] >= 0), -1)
            if match >= 0:
                person[f] = match
            elif core:
                person[f] = next_id
                next_id += 1
    return person


def row(name: str, threshold: str, labels: np.ndarray, truth: np.ndarray, seconds: float) -> dict:
    s = cluster_scores(labels, truth)
    return {"method": name, "threshold": threshold, **{k: v for k, v in s.as_dict().items()}, "seconds": seconds}


def tuned(name: str, fn, grid, truth) -> list[dict]:
    """Best BCubed F over the grid, and best BCubed F with pairwise precision >= 0.99 (tuned on the test data)."""
    rows = []
    for t in grid:
        start = time.perf_counter()
        labels = fn(t)
        rows.append(row(name, f"{t:.4f}", labels, truth, time.perf_counter() - start))
        print(f"  {name} at {t:.4f}: pairwise P {rows[-1]['pairwise_precision']:.4f}, "
              f"BCubed F {rows[-1]['bcubed_f']:.4f}", flush=True)
    best = max(rows, key=lambda r: r["bcubed_f"])
    precise = [r for r in rows if r["pairwise_precision"] >= 0.99]
    out = [dict(best, method=f"{name} (tuned: best F)")]
    if precise:
        out.append(dict(max(precise, key=lambda r: r["bcubed_f"]), method=f"{name} (tuned: P>=0.99)"))
    return out


def default_params(model_id: str, **kw) -> GroupingParams:
    """The product's defaults: pair thresholds from the dlib-resnet-v1 calibration (as measured before), the join
    step from the fused-score calibration of the faceprints' own model (`model_id` of the cache)."""
    kw.setdefault("fusion", load_fusion_calibration(model_id))
    return GroupingParams.from_calibration(load_calibration("dlib-resnet-v1"), **kw)


def quality(sets: list[str], narrow: bool = False) -> None:
    params = default_params(str(load(sets[0])["model_id"]))
    print(f"machine: {machine_line()}")
    print(f"faceindex params: edge {params.edge_threshold:.4f}, link {params.link_threshold:.4f}, k {params.k}, "
          f"join {params.join_thresholds[0] if params.join_thresholds else None} .. "
          f"{params.join_thresholds[-1] if params.join_thresholds else None}, margin {params.join_margin}")
    for name in sets:
        quality_one(name, params, narrow)


def quality_one(name: str, params: GroupingParams, narrow: bool = False) -> None:
    d = load(name)
    x, truth = d["x"], d["identity"]
    ids, counts = np.unique(truth, return_counts=True)
    print(f"\n## {name}: {len(x)} faceprints of {len(ids)} identities "
          f"({int((counts >= 2).sum())} with >= 2 photos; of {int(d['n_photos'])} photos)")
    norm = raw_norm([str(p) for p in d["path"]])
    fr_cos = 1 - (FR_DISTANCE / norm) ** 2 / 2
    print(f"dlib raw descriptor norm (mean of 40): {norm:.3f}: distance 0.6 -> {FR_DISTANCE / norm:.3f} on unit "
          f"faceprints = cosine {fr_cos:.3f}", flush=True)
    results = []
    start = time.perf_counter()
    labels = group(x, params)
    results.append(row("faceindex", f"edge {params.edge_threshold:.3f} link {params.link_threshold:.3f} "
                        f"join FMR 1e-4 margin {params.join_margin}", labels, truth, time.perf_counter() - start))
    start = time.perf_counter()
    before = replace(params, join_thresholds=())
    results.append(row("faceindex without the join step", f"edge {params.edge_threshold:.3f} "
                        f"link {params.link_threshold:.3f}", group(x, before), truth, time.perf_counter() - start))
    # What `people cluster` runs on a store of these faceprints: every threshold from the calibration of the
    # faceprints' own model (dlib-resnet-v1+flip; the rows above keep dlib-resnet-v1's pair thresholds, as before).
    model_id = str(d["model_id"])
    store = GroupingParams.from_calibration(load_calibration(model_id))
    for label, p in ((f"faceindex, {model_id} calibration", store),
                     (f"faceindex, {model_id} calibration, without the join step", replace(store, join_thresholds=()))):
        start = time.perf_counter()
        results.append(row(label, f"edge {p.edge_threshold:.3f} link {p.link_threshold:.3f} "
                            f"single {p.single_threshold:.3f}", group(x, p), truth, time.perf_counter() - start))
    start = time.perf_counter()
    cw = chinese_whispers(x, FR_DISTANCE / norm)
    results.append(row("dlib chinese whispers", f"d {FR_DISTANCE / norm:.3f}", cw, truth,
                       time.perf_counter() - start))
    start = time.perf_counter()
    results.append(row("Immich-style DBSCAN", f"cos {fr_cos:.3f}, min 3", immich(x, fr_cos), truth,
                       time.perf_counter() - start))
    # --narrow: only the grid points around the optima that the full sweep found on LFW (cos 0.95 / 0.96 for
    # chinese whispers, 0.95 / 0.965 for Immich-style), for a quick re-run on busy cores.
    cw_cos = np.arange(0.945, 0.9651, 0.005) if narrow else np.arange(0.93, 0.9801, 0.005)
    dist_grid = np.sqrt(2 - 2 * cw_cos)  # unit vectors: d = sqrt(2 - 2 cos)
    results += tuned("dlib chinese whispers", lambda t: chinese_whispers(x, t), dist_grid, truth)
    im_cos = np.arange(0.945, 0.9651, 0.005) if narrow else np.arange(0.90, 0.9651, 0.005)
    results += tuned("Immich-style DBSCAN", lambda t: immich(x, t), im_cos, truth)
    # tuned: the link threshold (single = link + 0.004), the join step as in the defaults
    results += tuned("faceindex", lambda t: group(x, replace(params, link_threshold=t, single_threshold=t + 0.004)),
                     np.arange(0.925, 0.9551, 0.005), truth)
    print("| method | threshold | pairwise P | pairwise R | pairwise F | BCubed P | BCubed R | BCubed F | s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['method']} | {r['threshold']} | {r['pairwise_precision']:.4f} | {r['pairwise_recall']:.4f} | "
              f"{r['pairwise_f']:.4f} | {r['bcubed_precision']:.4f} | {r['bcubed_recall']:.4f} | "
              f"{r['bcubed_f']:.4f} | {r['seconds']:.1f} |")


def split_identities(truth: np.ndarray, seed: int = 0) -> np.ndarray:
    """True for the faces of half A of the identities (a random half, fixed by `seed`), False for half B."""
    names = np.unique(truth)
    half_a = names[np.random.default_rng(seed).permutation(len(names))[: len(names) // 2]]
    return np.isin(truth, half_a)


def halves(fmrs=(1e-5, 3e-5, 5e-5, 1e-4), margins=(0.0, 0.005, 0.01, 0.015)) -> None:
    """Join step's FMR and margin chosen on half A of LFW DevTrain's identities, reported on half B and all."""
    d = load("lfw")
    model_id = str(d["model_id"])
    in_a = split_identities(d["identity"])
    print(f"machine: {machine_line()}")
    parts = {"A (tuning)": in_a, "B (held out)": ~in_a, "all": np.ones(len(in_a), bool)}
    table: dict[tuple, dict] = {}
    for part, sel in parts.items():
        x, truth = d["x"][sel], d["identity"][sel]
        print(f"{part}: {len(x)} faceprints of {len(np.unique(truth))} identities", flush=True)
        table[(part, "none", "-")] = cluster_scores(group(x, default_params(model_id, fusion=None)), truth).as_dict()
        for fmr, margin in itertools.product(fmrs, margins):
            params = default_params(model_id, join_fmr=fmr, join_margin=margin)
            table[(part, f"{fmr:g}", f"{margin:g}")] = cluster_scores(group(x, params), truth).as_dict()
    choices = [k[1:] for k in table if k[0] == "A (tuning)" and k[1] != "none"]
    ok = [c for c in choices if table[("A (tuning)", *c)]["pairwise_precision"] >= 0.99]
    pick = max(ok, key=lambda c: table[("A (tuning)", *c)]["bcubed_f"])
    print(f"\nchosen on A: join FMR {pick[0]}, margin {pick[1]}")
    print("| join FMR | margin | " + " | ".join(f"{p}: pairwise P, BCubed P, R, F" for p in parts) + " |")
    print("|---|---|" + "---|" * len(parts))
    for c in [("none", "-")] + choices:
        cells = [f"{table[(p, *c)]['pairwise_precision']:.4f}, {table[(p, *c)]['bcubed_precision']:.4f}, "
                 f"{table[(p, *c)]['bcubed_recall']:.4f}, {table[(p, *c)]['bcubed_f']:.4f}" for p in parts]
        mark = " (chosen)" if c == pick else ""
        print(f"| {c[0]}{mark} | {c[1]} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--sets", nargs="+", default=["people", "lfw"])
    q.add_argument("--narrow", action="store_true", help="baselines tuned on a narrow grid around the known optima")
    sub.add_parser("halves", help="join-step parameters tuned on half of LFW's identities, reported on the other")
    args = parser.parse_args()
    if args.cmd == "halves":
        halves()
    else:
        quality(args.sets, args.narrow)


if __name__ == "__main__":
    main()
