"""Labelled faceprints for the people-grouping bench, computed once and cached in /tmp (an .npz per folder).

Usage: python bench/people_data.py [lfw|people|both] [--workers N]   (heavy: ~0.1-0.2 s per photo per core)

One faceprint per photo: the labelled face, chosen as `faceindex eval` does (LFW: the face nearest the
image centre, its photos are crops centred on the labelled person; people/: the prominent face).
Photos where no usable face was found are left out (and counted). The cache holds the L2-normalised
float32 faceprints, the identity (folder) and the path of each, and the model id.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

FACES = Path(os.environ.get("FACEINDEX_TEST_FACES", REPO.parent / "shared" / "faces"))
CACHE_DIR = Path(os.environ.get("FACEINDEX_BENCH_CACHE", "/tmp"))
SETS = {"lfw": ("lfw-devtrain", "centre"), "people": ("people", "prominent")}


def cache_path(name: str) -> Path:
    return CACHE_DIR / f"faceindex-people-bench-{name}.npz"


def compute(name: str, workers: int) -> Path:
    """Embed every photo of the set and write its cache; returns the cache path."""
    from faceindex.config import Settings
    from faceindex.evaluation.dataset import LabelledEmbedder, scan_labelled_folder
    from faceindex.pipeline.analyse import FacePipeline

    folder, rule = SETS[name]
    images = scan_labelled_folder(FACES / folder)
    embedder = LabelledEmbedder(FacePipeline(Settings()), workers=workers, face_choice=rule)
    start = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if done % 500 == 0 or done == total:
            print(f"  {name}: {done}/{total} photos, {time.perf_counter() - start:.0f} s", flush=True)

    items = embedder.embed_all(images, progress)
    ok = [e for e in items if e.ok]
    out = cache_path(name)
    np.savez(out, x=np.stack([e.embedding for e in ok]).astype(np.float32),
             identity=np.array([e.image.identity for e in ok]),
             path=np.array([str(e.image.path.relative_to(FACES)) for e in ok]),
             model_id=np.array(embedder.model_id), n_photos=np.array(len(items)))
    print(f"{name}: {len(ok)} of {len(items)} photos with a usable labelled face -> {out}")
    return out


def load(name: str, workers: int = 2) -> dict[str, np.ndarray]:
    """The cached faceprints of a set (computed first when missing)."""
    path = cache_path(name)
    if not path.exists():
        compute(name, workers)
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", choices=["lfw", "people", "both"], nargs="?", default="both")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    for name in (["people", "lfw"] if args.which == "both" else [args.which]):
        compute(name, args.workers)


if __name__ == "__main__":
    main()
