"""Where one ingest worker's CPU goes, per stage and per photo (`bench_ingest.py --profile`).

Runs the default pipeline in this process on the bench's sample and charges the process CPU time
(time.process_time: onnxruntime runs on 1 thread here, as in a worker) of each stage to it: worker
start-up (imports, each model's load), then per photo decode (read, header, draft decode, resize,
EXIF turn), HOG (the fast detector, with its CNN fallback when it runs), the auto crowd probe, the
turned look, alignment (5-point landmarks + chips), the full-resolution decode for the chips, the
ResNet (with its mirror), and the parent's share: sha256 of the file. Stages nest (the turned look
contains HOG runs), so the table charges each call to the innermost stage only.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from pathlib import Path


class StageClock:
    """CPU seconds per stage; a stage entered inside another is charged to itself only."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[list] = []  # [name, started, charged to inner stages]

    @contextlib.contextmanager
    def stage(self, name: str):
        frame = [name, time.process_time(), 0.0]
        self._stack.append(frame)
        try:
            yield
        finally:
            self._stack.pop()
            spent = time.process_time() - frame[1]
            self.seconds[name] += spent - frame[2]
            self.calls[name] += 1
            if self._stack:
                self._stack[-1][2] += spent

    def wrap(self, owner, attr: str, name: str) -> None:
        original = getattr(owner, attr)

        def timed(*args, **kwargs):
            with self.stage(name):
                return original(*args, **kwargs)

        setattr(owner, attr, timed)


def profile(images: list[Path]) -> list[tuple[str, int, float]]:
    """(stage, calls, CPU seconds) for start-up and for analysing `images` as one worker does."""
    clock = StageClock()
    with clock.stage("worker start: imports (numpy, pydantic, PIL, dlib, faceindex)"):
        from faceindex.config import Settings
        from faceindex.ingest import scanner
        from faceindex.pipeline import analyse, crowd_detect, decode, detect, embed, parallel, resnet_runtime, rotation
        from faceindex.pipeline.analyse import FacePipeline
    clock.wrap(detect.HogDetector, "__init__", "model load: HOG detector")
    clock.wrap(embed.DlibEmbedder, "__init__", "model load: 5-point landmarks + ResNet (onnxruntime)")
    clock.wrap(analyse, "decode_image", "decode (draft/full, resize, EXIF turn)")
    clock.wrap(decode.DecodedImage, "full", "full-resolution decode for the chips")
    clock.wrap(detect.HogDetector, "detect_near", "HOG (upsample 1 while <= 2048 px)")
    clock.wrap(detect.CnnDetector, "detect", "CNN fallback (HOG nearly found a face)")
    clock.wrap(crowd_detect.AutoDetector, "probe", "auto: crowd probe")
    clock.wrap(crowd_detect.ThoroughDetector, "cnn_faces", "auto: full CNN pyramid (crowds)")
    clock.wrap(rotation, "rotate", "turned look: rotating the image")
    clock.wrap(embed.DlibEmbedder, "align", "landmarks + aligned chips")
    clock.wrap(resnet_runtime.FastResNetDescriptor, "compute", "ResNet faceprint (+ mirror)")
    clock.wrap(scanner, "hash_file", "parent: sha256 of the file")
    with clock.stage("model load: pipeline objects"):
        pipeline = FacePipeline(Settings(workers=1))
        pipeline.detector, pipeline.embedder  # noqa: B018 - load now, as a worker's first photo would
    for path in images:
        scanner.describe(path)
        with clock.stage("rest of the analysis (face choice, quality, bookkeeping)"):
            parallel.analyse_file(str(path), path.name, pipeline)
    return [(name, clock.calls[name], clock.seconds[name]) for name in clock.seconds]


def print_profile(images: list[Path]) -> None:
    rows = profile(images)
    n = len(images)
    photo_total = sum(s for name, _, s in rows if not name.startswith(("worker start", "model load")))
    print(f"\n| stage (one worker, {n} photos) | calls | CPU s | CPU ms per photo | share of per-photo |")
    print("|---|---|---|---|---|")
    for name, calls, seconds in rows:
        once = name.startswith(("worker start", "model load"))
        per = "once" if once else f"{1000 * seconds / n:.1f}"
        share = "" if once else f"{100 * seconds / photo_total:.0f} %"
        print(f"| {name} | {calls} | {seconds:.2f} | {per} | {share} |")
    print(f"| **per photo, all stages** | | {photo_total:.2f} | {1000 * photo_total / n:.1f} | 100 % |")
