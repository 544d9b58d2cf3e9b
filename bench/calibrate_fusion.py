"""Measure the fused-score calibration shipped for search by person, and check it on held-out faces.

Usage: python bench/calibrate_fusion.py [--out src/faceindex/data/fusion-dlib-resnet-v1-flip.json] [--rules]

1. calibrate: on LFW DevTrain's cached faceprints (bench/people_data.py), per probe count m (fusion.py
   BUCKETS) ~1 500 random sets of m photos of one identity, each scored against every face of the other
   identities (impostors) and its own remaining photos (genuine); one Calibration per m, written to --out.
2. check: on people/ (36 identities, not used above; identities also in LFW DevTrain are left out of the
   gallery), sets of m photos of one person scored against the 9 517 LFW faces: the FMR observed at the
   thresholds the calibration gives for FMR 1e-3 / 1e-4 / 1e-5, and the rank-1 identification rate of a single
   probe against fused probes at the threshold of a 10 000-face gallery.
3. --rules: TAR at FMR 1e-4 and 1e-5 of three fusion rules on LFW (cosine to the mean faceprint, mean score,
   max score), the comparison behind the rule chosen.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from benchlib import machine_line  # noqa: E402
from people_data import load  # noqa: E402

from faceindex.fusion import BUCKETS, fuse, measure, probe_sets  # noqa: E402
from faceindex.matching import ThresholdPolicy, fusion_policy, load_calibration  # noqa: E402

SOURCE = ("lfw-devtrain: LFW View 1 DevTrain, 9 517 faceprints of 4 035 identities (the face nearest the centre, "
          "default pipeline, bench/people_data.py)")


def check(fusion, single, lfw: dict, people: dict, seed: int = 1) -> None:
    x_g = lfw["x"].astype(np.float32)
    shared_names = set(lfw["identity"]) & set(people["identity"])
    gallery = x_g[~np.isin(lfw["identity"], list(shared_names))]
    x_p, ident = people["x"].astype(np.float32), people["identity"]
    labels = np.unique(ident, return_inverse=True)[1]
    rng = np.random.default_rng(seed)
    print(f"\ncheck on people/ ({len(x_p)} faces) against {len(gallery)} LFW faces (names also in people/ "
          f"left out: {len(shared_names)})")
    print("| probes | sets | stranger scores | FMR 1e-3: observed | FMR 1e-4: observed | FMR 1e-5: observed |")
    print("|---|---|---|---|---|---|")
    for m in (1, 2, 3, 4, 6, 8):
        sets = probe_sets(labels, m, 400, rng)
        if not sets:
            continue
        scores = np.stack([fuse(x_p[s]) for s in sets]) @ gallery.T
        policy = single if m == 1 else fusion_policy(single, fusion, m)
        cal = policy.calibration
        cells = []
        for f in (1e-3, 1e-4, 1e-5):
            t = cal.threshold_for_fmr(f)
            cells.append(f"{(scores >= t).mean():.1e} (t {t:.4f})")
        print(f"| {m} | {len(sets)} | {scores.size:,} | " + " | ".join(cells) + " |")
    # Identification: gallery = LFW strangers + the person's photos outside the probe set; found when the best
    # candidate above the threshold for a 10 000-face gallery is one of them.
    print("\nrank-1 identification at the threshold of a 10 000-face gallery (0.1 expected false candidates):")
    print("| probes | sets | found (rank 1, >= threshold) | a stranger at rank 1 above threshold |")
    print("|---|---|---|---|")
    for m in (1, 2, 3, 4):
        sets = probe_sets(labels, m, 400, rng)
        policy = single if m == 1 else fusion_policy(single, fusion, m)
        t = policy.threshold(10_000)
        found = wrong = 0
        for s in sets:
            probe = fuse(x_p[s])
            own = np.flatnonzero(labels == labels[s[0]])
            own = own[~np.isin(own, s)]
            best_own = float(np.max(x_p[own] @ probe))
            best_other = float(np.max(gallery @ probe))
            found += best_own >= t and best_own > best_other
            wrong += best_other >= t and best_other > best_own
        print(f"| {m} | {len(sets)} | {found / len(sets):.3f} | {wrong / len(sets):.4f} |")


def rules(lfw: dict, seed: int = 2) -> None:
    x = lfw["x"].astype(np.float32)
    labels = np.unique(lfw["identity"], return_inverse=True)[1]
    rng = np.random.default_rng(seed)
    print("\nfusion rules on LFW DevTrain (TAR = share of the set's other photos found):")
    print("| probes | rule | TAR at FMR 1e-4 | TAR at FMR 1e-5 |")
    print("|---|---|---|---|")
    for m in (1, 2, 4, 8):
        sets = probe_sets(labels, m, 600, rng)
        imp = {"mean faceprint": [], "mean score": [], "max score": []}
        gen = {k: [] for k in imp}
        for s in sets:
            single = x[s] @ x.T
            fused = {"mean faceprint": x @ fuse(x[s]), "mean score": single.mean(0), "max score": single.max(0)}
            same = labels == labels[s[0]]
            mask = same.copy()
            mask[s] = False
            for k, v in fused.items():
                imp[k].append(v[~same])
                gen[k].append(v[mask])
        for k in imp if m > 1 else ["mean faceprint"]:  # one probe: the three rules are the single score
            i, g = np.sort(np.concatenate(imp[k]))[::-1], np.concatenate(gen[k])
            tars = [float((g > i[int(f * len(i))]).mean()) for f in (1e-4, 1e-5)]
            print(f"| {m} | {k if m > 1 else 'single probe'} | {tars[0]:.3f} | {tars[1]:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "src/faceindex/data/fusion-dlib-resnet-v1-flip.json")
    parser.add_argument("--skip-calibrate", action="store_true", help="Only check the calibration at --out.")
    parser.add_argument("--rules", action="store_true")
    args = parser.parse_args()
    print(machine_line())
    lfw, people = load("lfw"), load("people")
    model_id = str(lfw["model_id"])
    from faceindex.fusion import FusionCalibration

    if not args.skip_calibrate:
        start = time.perf_counter()
        fusion = measure(lfw["x"], lfw["identity"], model_id=model_id, source=SOURCE, buckets=BUCKETS)
        args.out.write_text(fusion.to_json() + "\n")
        print(f"calibrated in {time.perf_counter() - start:.0f} s -> {args.out}; drift above {max(fusion.buckets)}"
              f" probes: {fusion.drift:.4f}")
    fusion = FusionCalibration.from_json(args.out.read_text())
    single = ThresholdPolicy(load_calibration(model_id))
    print("| probes | stranger scores | threshold FMR 1e-3 | 1e-4 | 1e-5 | 1e-6 | TAR at 1e-5 |")
    print("|---|---|---|---|---|---|---|")
    for m, cal in sorted(fusion.buckets.items()):
        row = [f"{cal.threshold_for_fmr(f):.4f}" for f in (1e-3, 1e-4, 1e-5, 1e-6)]
        tar = next((p.tar for p in cal.points if p.fmr_target <= 1e-5), None)
        print(f"| {m} | {cal.n_impostor:,} | " + " | ".join(row) + f" | {tar:.3f} |")
    check(fusion, single, lfw, people)
    if args.rules:
        rules(lfw)


if __name__ == "__main__":
    main()
