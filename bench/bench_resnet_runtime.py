"""Time dlib's face ResNet against FastResNetDescriptor on the same real face chips (ms per face).

Usage: python bench/bench_resnet_runtime.py [--faces 16] [--threads 1] [--batch-sizes 1,8,32] [--numpy]

Chips come from the shared test photos (FACEINDEX_TEST_FACES, default ../shared/faces): dlib HOG
detection + 5-point alignment, 150x150, as in ingest. Rounds interleave dlib and ours so that
load from other users of the machine hits both alike; the load average is printed because on a
shared 2-core box it moves the numbers more than anything here. Ends with a Markdown note.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from benchlib import cpu_name

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from faceindex.pipeline.resnet_runtime import FastResNetDescriptor  # noqa: E402


def load_chips(count: int) -> np.ndarray:
    """`count` aligned uint8 chips (count, 150, 150, 3), cycling over the faces found if too few."""
    import dlib
    import face_recognition_models as models
    from PIL import Image

    root = Path(os.environ.get("FACEINDEX_TEST_FACES", REPO.parent / "shared" / "faces")) / "people"
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(models.pose_predictor_five_point_model_location())
    chips = []
    for photo in sorted(root.glob("*/*.jpg")):
        image = Image.open(photo).convert("RGB")
        image.thumbnail((800, 800))  # keeps HOG detection ~0.1 s per photo
        rgb = np.asarray(image)
        for face in detector(rgb, 1):
            chip = dlib.get_face_chip(rgb, predictor(rgb, face), size=150, padding=0.25)
            chips.append(np.asarray(chip, dtype=np.uint8))
        if len(chips) >= count:
            break
    if not chips:
        sys.exit(f"no faces found under {root}")
    return np.stack([chips[i % len(chips)] for i in range(count)])


def per_face_ms(fn, n: int) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3 / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=16, help="chips per timed run")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument("--batch-sizes", default="1,8,32", help="comma-separated batch sizes to try")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions (median kept)")
    parser.add_argument("--numpy", action="store_true", help="also time the numpy fallback backend")
    args = parser.parse_args()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]

    import dlib
    import face_recognition_models as models
    import onnxruntime

    chips = load_chips(args.faces)
    n = len(chips)
    dlib_net = dlib.face_recognition_model_v1(models.face_recognition_model_location())
    load_start = time.perf_counter()
    ours = {bs: FastResNetDescriptor(threads=args.threads, batch_size=bs) for bs in batch_sizes}
    load_s = (time.perf_counter() - load_start) / len(batch_sizes)
    numpy_net = FastResNetDescriptor(backend="numpy", batch_size=8) if args.numpy else None

    reference = np.array([np.asarray(dlib_net.compute_face_descriptor(c)) for c in chips], np.float32)
    max_diff = max(float(np.abs(net.compute(chips) - reference).max()) for net in ours.values())
    if numpy_net is not None:
        max_diff = max(max_diff, float(np.abs(numpy_net.compute(chips) - reference).max()))

    load_before = os.getloadavg()
    times: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        times.setdefault("dlib, one chip per call", []).append(
            per_face_ms(lambda: [dlib_net.compute_face_descriptor(c) for c in chips], n)
        )
        times.setdefault("dlib, list of chips per call", []).append(
            per_face_ms(lambda: dlib_net.compute_face_descriptor(list(chips)), n)
        )
        for bs, net in ours.items():
            key = f"onnxruntime, {args.threads} thread(s), batch {bs}"
            times.setdefault(key, []).append(per_face_ms(lambda net=net: net.compute(chips), n))
        if numpy_net is not None:
            key = "numpy backend, batch 8"
            times.setdefault(key, []).append(per_face_ms(lambda: numpy_net.compute(chips), n))
    load_after = os.getloadavg()

    base = statistics.median(times["dlib, one chip per call"])
    rows = [(name, statistics.median(v), min(v)) for name, v in times.items()]
    print(f"{n} faces, {args.rounds} rounds; load average {load_before[0]:.2f} -> {load_after[0]:.2f}")
    for name, med, best in rows:
        print(f"  {name:42s} {med:8.2f} ms/face (best {best:7.2f})  x{base / med:5.1f} vs dlib")
    print(f"max |ours - dlib| = {max_diff:.2g} over {n} faces; model load {load_s:.2f} s")

    best_name, best_med, _ = min((r for r in rows if r[0].startswith("onnx")), key=lambda r: r[1])
    print("\n--- BENCHMARKS.md note ---")
    print(f"### dlib face ResNet: dlib-bin vs FastResNetDescriptor ({datetime.date.today()})")
    print(
        f"- command: `python bench/bench_resnet_runtime.py --faces {n} --threads {args.threads} "
        f"--batch-sizes {args.batch_sizes} --rounds {args.rounds}{' --numpy' if args.numpy else ''}`"
    )
    print(
        f"- machine: {cpu_name()}, {os.cpu_count()} CPUs (shared), load average "
        f"{load_before[0]:.2f} -> {load_after[0]:.2f}; Python {platform.python_version()}, "
        f"dlib {dlib.__version__}, onnxruntime {onnxruntime.__version__}, numpy {np.__version__}"
    )
    for name, med, best in rows:
        print(f"- {name}: {med:.1f} ms/face median (best {best:.1f}), x{base / med:.1f}")
    print(
        f"- fastest: {best_name}, {base / best_med:.1f}x dlib; max |diff| vs dlib {max_diff:.1g}; "
        f"model load {load_s:.2f} s"
    )


if __name__ == "__main__":
    main()
