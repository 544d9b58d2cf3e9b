"""Benchmark: end-to-end probe latency (decode + detect + align + embed + search) on ~1-megapixel photos.

Baseline in the same run: face_recognition's load + face_locations + face_encodings on the same bytes
(no search at all), so the ratio is read against the library most people start with.

    python bench/bench_probe.py [--probes 20]
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import statistics
import tempfile
import time
from pathlib import Path

from benchlib import machine_line
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
FACES = Path(os.environ.get("FACEINDEX_TEST_FACES", REPO.parent / "shared" / "faces"))


def one_megapixel_jpegs(n: int) -> list[bytes]:
    """n photos from people/, resized to ~1 MP (e.g. 1155x866) and re-encoded as JPEG quality 90."""
    out = []
    for path in sorted((FACES / "people").rglob("*.jpg"))[::3][:n]:
        img = Image.open(path).convert("RGB")
        scale = (1_000_000 / (img.width * img.height)) ** 0.5
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=20)
    args = parser.parse_args()
    import face_recognition
    import numpy as np

    from faceindex import Engine, Settings

    probes = one_megapixel_jpegs(args.probes)
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(Path(tmp) / "store", Settings(workers=2))
        gallery = sorted((FACES / "lfw-devtrain" / "images").rglob("*.jpg"))[::40][:200]
        engine.ingest(gallery, "bench", basis="legitimate-interests", purpose="benchmark")
        engine.search([probes[0]], purpose="warm-up")
        ours = []
        for data in probes:
            start = time.perf_counter()
            engine.search([data], purpose="benchmark")
            ours.append((time.perf_counter() - start) * 1000)
        engine.close()
    baseline = []
    for data in probes:
        start = time.perf_counter()
        image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        face_recognition.face_encodings(image, face_recognition.face_locations(image))
        baseline.append((time.perf_counter() - start) * 1000)
    print(f"### Probe end to end, {len(probes)} photos of ~1 MP ({dt.date.today()})")
    print(f"- command: `python bench/bench_probe.py --probes {args.probes}`; gallery of {len(gallery)} LFW photos")
    print(f"- machine: {machine_line()}")
    print("\n| run | p50 ms | p90 ms | max ms | speed vs baseline (p50) |")
    print("|---|---|---|---|---|")
    for name, values in (("face_recognition load+locate+encode (no search)", baseline),
                         ("faceindex Engine.search (decode, detect, embed x2 flip, search, audit)", ours)):
        print(f"| {name} | {statistics.median(values):.0f} | {percentile(values, 0.9):.0f} | {max(values):.0f} | "
              f"{statistics.median(baseline) / statistics.median(values):.2f}x |")


if __name__ == "__main__":
    main()
