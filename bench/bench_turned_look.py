"""Benchmark: what the turned-photo retry (Settings.rotate_retry) costs and finds.

Runs the default pipeline twice over the same photos, with the retry off (baseline) and on, and
prints the time ratio and the faces each finds, per folder: photos without people (`nonfaces/`,
where every photo pays for three more detector runs), hard single faces (`single/`), and a person
photographed upright and in turned copies (`people/Cai_Xukun`). Photos whose faces are found
upright pay nothing, so the cost on a whole archive is the share of photos without a usable face
times the ratio measured on `nonfaces/`.

    python bench/bench_turned_look.py [--repeat 2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

from benchlib import machine_line

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
FACES = Path(os.environ.get("FACEINDEX_TEST_FACES", REPO.parent / "shared" / "faces"))
FOLDERS = ("nonfaces", "single", "people/Cai_Xukun")


def run(pipeline, paths: list[Path], repeat: int) -> tuple[float, int, int]:
    """(best total seconds over `repeat` passes, accepted faces, faces found on a turned photo)."""
    best, faces, turned = float("inf"), 0, 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        results = [pipeline.analyse(p) for p in paths]
        best = min(best, time.perf_counter() - t0)
        faces = sum(len(r.accepted) for r in results)
        turned = sum("@turned" in f.detector for r in results for f in r.accepted)
    return best, faces, turned


def main() -> None:
    from faceindex.config import Settings
    from faceindex.pipeline.analyse import FacePipeline

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2, help="passes per setting; the fastest counts")
    args = ap.parse_args()
    off, on = FacePipeline(Settings(rotate_retry=False)), FacePipeline(Settings(rotate_retry=True))
    print(f"{dt.date.today()} {machine_line()}")
    print("| folder | photos | retry off: s, faces | retry on: s, faces (on turned photos) | time ratio on/off |")
    print("|---|---|---|---|---|")
    for folder in FOLDERS:
        paths = sorted(p for p in (FACES / folder).iterdir() if p.is_file())
        t_off, n_off, _ = run(off, paths, args.repeat)
        t_on, n_on, turned = run(on, paths, args.repeat)
        print(f"| {folder} | {len(paths)} | {t_off:.2f}, {n_off} | {t_on:.2f}, {n_on} ({turned}) "
              f"| {t_on / t_off:.2f}x |")


if __name__ == "__main__":
    main()
