"""Benchmark: faces found in crowd and group photos, fast vs thorough detail, against YuNet as reference.

Reference: YuNet 2023mar (../shared/models/yunet, MIT; through opencv) at score >= 0.7 on each photo
at full resolution. Recall = share of YuNet's boxes that a faceindex face (accepted or refused)
overlaps with IoU >= 0.4. Faces no reference box overlaps are listed (photo, box, detector, score)
for a look by eye. Also: faces on nonfaces/ (should be 0), faces on the annotated PASCAL photos
(groups/dlib__20*.jpg, expected counts in MANIFEST.tsv) and the seconds per photo of each detail, wall
clock and CPU (the process's; every model runs on one thread, so on a busy machine CPU seconds are
the steadier figure).

    python bench/bench_crowd.py [--detail fast thorough] [--photos NAME ...] [--json out.json]

"Crowd" photos are those of groups/ where YuNet finds >= 20 faces.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from benchlib import machine_line

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
FACES = Path(os.environ.get("FACEINDEX_TEST_FACES", REPO.parent / "shared" / "faces"))
YUNET = REPO.parent / "shared" / "models" / "yunet" / "face_detection_yunet_2023mar.onnx"
CROWD_MIN_FACES = 20
MATCH_IOU = 0.4


def yunet_boxes(detector, rgb: np.ndarray) -> list[tuple[int, int, int, int]]:
    height, width = rgb.shape[:2]
    detector.setInputSize((width, height))
    _, faces = detector.detect(np.ascontiguousarray(rgb[:, :, ::-1]))
    if faces is None:
        return []
    return [(int(x), int(y), int(x + w), int(y + h)) for x, y, w, h in faces[:, :4]]


def expected_counts() -> dict[str, int | None]:
    with open(FACES / "MANIFEST.tsv", newline="") as handle:
        return {r["path"]: int(r["n_faces_expected"]) if r["n_faces_expected"] else None
                for r in csv.DictReader(handle, delimiter="\t")}


def main() -> None:
    import cv2

    from faceindex.config import Settings
    from faceindex.pipeline.analyse import FacePipeline
    from faceindex.pipeline.types import iou

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detail", nargs="+", default=["fast", "thorough"])
    parser.add_argument("--photos", nargs="*", help="groups/ file names (default: all)")
    parser.add_argument("--skip-nonfaces", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    yunet = cv2.FaceDetectorYN.create(str(YUNET), "", (320, 320), 0.7, 0.3, 5000)
    expected = expected_counts()
    groups = sorted((FACES / "groups").glob("*.jpg"))
    if args.photos:
        groups = [p for p in groups if p.name in args.photos]
    print(f"# bench_crowd {dt.datetime.now():%Y-%m-%d %H:%M}, {machine_line()}")
    pipelines = {d: FacePipeline(Settings(detail=d, workers=1)) for d in args.detail}
    rows, unmatched = [], []
    for path in groups:
        decoded = pipelines[args.detail[0]].decode(path)
        reference = yunet_boxes(yunet, decoded.full())
        row = {"photo": path.name, "size": f"{decoded.width}x{decoded.height}", "yunet": len(reference),
               "expected": expected.get(f"groups/{path.name}")}
        for detail, pipeline in pipelines.items():
            start, cpu = time.perf_counter(), time.process_time()
            analysis = pipeline.analyse(decoded)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            faces = analysis.faces
            hit = sum(any(iou(r, f.box) >= MATCH_IOU for f in faces) for r in reference)
            row[detail] = {"faces": len(faces), "accepted": len(analysis.accepted),
                           "too_small": sum(1 for f in faces if (f.rejected or "").startswith("too small")),
                           "recall": hit / len(reference) if reference else None, "hit": hit,
                           "seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2),
                           # auto: new faces its probe found (None: a portrait, no probe); ran: the full pass
                           "probe": getattr(pipeline.detector, "last_probe", None),
                           "cnn_pass": any(f.detector == "dlib-mmod" for f in faces)}
            unmatched += [(detail, path.name, f.box, f.detector, round(f.score, 2)) for f in faces
                          if all(iou(r, f.box) < MATCH_IOU for r in reference)]
        rows.append(row)
        print(json.dumps(row), flush=True)

    nonfaces = {}
    if not args.skip_nonfaces:
        photos = [p for p in sorted((FACES / "nonfaces").iterdir())
                  if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp")]
        for detail, pipeline in pipelines.items():
            cpu = time.process_time()
            found = sum(len(pipeline.analyse(p).faces) for p in photos)
            nonfaces[detail] = {"faces": found, "photos": len(photos),
                                "cpu_seconds": round(time.process_time() - cpu, 2)}
    report(rows, unmatched, nonfaces, args.detail)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "unmatched": unmatched, "nonfaces": nonfaces}, indent=1))


def report(rows: list[dict], unmatched: list, nonfaces: dict, details: list[str]) -> None:
    crowd = [r for r in rows if r["yunet"] >= CROWD_MIN_FACES]
    pascal = [r for r in rows if r["photo"].startswith("dlib__20")]
    head = " | ".join(f"{d} faces (too small) | {d} recall | {d} s" for d in details)
    print(f"\n| photo | size | YuNet faces | {head} |")
    print("|---|---|---|" + "---|---|---|" * len(details))
    for r in crowd:
        cells = " | ".join(f"{r[d]['faces']} ({r[d]['too_small']}) | {r[d]['recall']:.2f} | {r[d]['seconds']:.1f}"
                           for d in details)
        print(f"| {r['photo']} | {r['size']} | {r['yunet']} | {cells} |")
    for d in details:
        hits = sum(r[d]["hit"] for r in crowd)
        total = sum(r["yunet"] for r in crowd)
        secs = [r[d]["seconds"] for r in crowd]
        cpu = [r[d].get("cpu_seconds", np.nan) for r in crowd]
        print(f"{d}: crowd recall {hits}/{total} = {hits / max(1, total):.3f}; seconds per crowd photo "
              f"mean {np.mean(secs):.1f}, max {max(secs):.1f} (CPU mean {np.mean(cpu):.1f}); all groups/ recall "
              f"{sum(r[d]['hit'] for r in rows)}/{sum(r['yunet'] for r in rows)}; seconds for all "
              f"{len(rows)} groups/ photos {sum(r[d]['seconds'] for r in rows):.1f} (CPU "
              f"{sum(r[d]['cpu_seconds'] for r in rows):.1f}); CNN pass on {sum(r[d]['cnn_pass'] for r in rows)}, "
              f"probe on {sum(r[d]['probe'] is not None for r in rows)} of them")
        print(f"{d}: PASCAL annotated faces: found {sum(min(r[d]['faces'], r['expected']) for r in pascal)} "
              f"of {sum(r['expected'] for r in pascal)}; photos with more faces than annotated: "
              f"{[r['photo'] for r in pascal if r[d]['faces'] > r['expected']]}; nonfaces/: {nonfaces.get(d)}")
    print("\nfaceindex faces that no YuNet box overlaps (IoU >= 0.4), for a look by eye:")
    for item in unmatched:
        print("  ", *item)


if __name__ == "__main__":
    main()
