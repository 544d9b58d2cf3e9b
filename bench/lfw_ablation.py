"""Measure pipeline accuracy choices on LFW DevTrain pairs in one pass (detector, face choice, alignment, flip).

Usage:
    python bench/lfw_ablation.py collect [--lfw DIR] [--cache FILE] [--limit N]   # heavy: ~0.15 s/image, 1 core
    python bench/lfw_ablation.py analyse [--lfw DIR] [--cache FILE]               # seconds

`collect` decodes every image named in pairsDevTrain.txt once and keeps, for every face that any
detector finds (dlib HOG on all images, YuNet on all images when its model file is present, dlib
CNN only where HOG finds nothing), the raw 128-d descriptors of four chips: 5-point alignment,
its mirror image, 68-point alignment, its mirror image, plus box, size and sharpness. It writes a
pickle (resumable: it saves every 250 images and skips images already done).

`analyse` replays every combination of choices from that cache without touching the models and
prints LFW-protocol 10-fold accuracy (dev) for each, so each choice is measured on the same faces:
- detector: hog | hog+yunet | hog+cnn | yunet
- face choice: largest box | centre-sq (box area - 2 x squared offset of its centre from the image
  centre: InsightFace / FaceNet's LFW alignment scripts) | centre-lin (box side - 0.5 x offset, px:
  faceindex's `choose_face`) | centre-only (nearest the centre)
- alignment: dlib 5-point | 68-point landmarks (both through dlib.get_face_chips, padding 0.25)
- flip: single chip | mean of the chip's and its mirror's descriptors (then L2-normalised)
- quality gate: the product's min_face_px / min_blur (rejections count as failures) | none
A pair with an image where no usable face was found scores -1 (a non-match), as the product would
answer; so failures cost genuine pairs and never help.

The private `DlibEmbedder._raw` is used on purpose: it gives the un-normalised descriptor, so the
flip variant is computed exactly as `DlibEmbedder(flip=True)` does (sum of raw vectors, then
L2-normalised) without embedding each chip twice.
"""

from __future__ import annotations

import argparse
import itertools
import os
import pickle
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

SHARED = Path(os.environ.get("FACEINDEX_SHARED", REPO.parent / "shared"))
LFW = Path(os.environ.get("FACEINDEX_TEST_FACES", SHARED / "faces")) / "lfw-devtrain"
YUNET = SHARED / "models" / "yunet" / "face_detection_yunet_2023mar.onnx"


def _pairs(lfw: Path):
    from faceindex.evaluation.lfw import load_pairs

    return load_pairs(lfw / "pairsDevTrain.txt", lfw)


def collect(lfw: Path, cache: Path, limit: int | None) -> None:
    import dlib
    import face_recognition_models as models

    from faceindex.config import Settings
    from faceindex.pipeline.analyse import FacePipeline
    from faceindex.pipeline.detect import CnnDetector, HogDetector, YuNetDetector
    from faceindex.pipeline.embed import CHIP_PADDING, CHIP_SIZE, laplacian_variance
    from faceindex.pipeline.types import scale_box

    settings = Settings()
    pipe = FacePipeline(settings)  # decode settings + embedder (fast runtime when available)
    emb = pipe.embedder
    hog = HogDetector(settings.upsample)
    yunet = YuNetDetector(YUNET, sha256=settings.yunet_sha256) if YUNET.is_file() else None
    cnn = CnnDetector(settings.upsample)
    sp5 = dlib.shape_predictor(models.pose_predictor_five_point_model_location())
    sp68 = dlib.shape_predictor(models.pose_predictor_model_location())

    paths = sorted({str(p) for pr in _pairs(lfw) for p in (pr.path_a, pr.path_b)})[:limit]
    data = pickle.loads(cache.read_bytes()) if cache.is_file() else {"images": {}, "times": {}}
    times = data["times"]
    todo = [p for p in paths if p not in data["images"]]
    print(f"{len(paths)} images, {len(todo)} to do; runtime {emb.runtime}; yunet {'on' if yunet else 'off'}",
          flush=True)
    t_start = time.perf_counter()

    def tick(name: str, t0: float) -> float:
        t1 = time.perf_counter()
        times[name] = times.get(name, 0.0) + (t1 - t0)
        return t1

    for n, path in enumerate(todo, start=1):
        t = time.perf_counter()
        decoded = pipe.decode(path)
        full = decoded.full()
        t = tick("decode", t)
        found = [("hog", d) for d in hog.detect(decoded.detection)]
        t = tick("hog", t)
        if yunet is not None:
            found += [("yunet", d) for d in yunet.detect(decoded.detection)]
            t = tick("yunet", t)
        if not any(k == "hog" for k, _ in found):
            found += [("cnn", d) for d in cnn.detect(decoded.detection)]
            t = tick("cnn", t)
        faces, chips = [], []
        for kind, det in found:
            box = scale_box(det.box, decoded.scale, decoded.width, decoded.height)
            if box[2] - box[0] < 2 or box[3] - box[1] < 2:
                continue
            rect = dlib.rectangle(box[0], box[1], box[2] - 1, box[3] - 1)
            s5, s68 = sp5(full, rect), sp68(full, rect)
            c5, c68 = (np.asarray(dlib.get_face_chip(full, s, size=CHIP_SIZE, padding=CHIP_PADDING), np.uint8)
                       for s in (s5, s68))
            chips += [c5, c5[:, ::-1], c68, c68[:, ::-1]]
            faces.append({"det": kind, "box": box, "score": det.score, "size": min(box[2] - box[0], box[3] - box[1]),
                          "blur": laplacian_variance(c5), "blur68": laplacian_variance(c68)})
        t = tick("align", t)
        if chips:
            raw = emb._raw(np.ascontiguousarray(np.stack(chips)))
            for k, face in enumerate(faces):
                face["e5"], face["e5m"], face["e68"], face["e68m"] = raw[4 * k: 4 * k + 4]
        tick("embed", t)
        data["images"][path] = {"width": decoded.width, "height": decoded.height, "faces": faces}
        if n % 250 == 0 or n == len(todo):
            cache.write_bytes(pickle.dumps(data))
            rate = (time.perf_counter() - t_start) / n
            print(f"{n}/{len(todo)} {rate:.3f} s/image; cumulative s: "
                  + ", ".join(f"{k} {v:.0f}" for k, v in times.items()), flush=True)


def collect_tta(lfw: Path, cache: Path, out: Path) -> None:
    """Second pass over the chosen face of every image (boxes from `collect`, HOG then CNN, centre-lin):
    raw descriptors of extra test-time views: padding 0.20 / 0.30 (scale) and their mirrors, and 8
    dlib.jitter_image copies of the padding-0.25 chip (dlib's own `num_jitters` augmentation:
    random shift, rotation, scale and mirror; not reproducible run to run, measured here only)."""
    import dlib
    import face_recognition_models as models

    from faceindex.pipeline.analyse import FacePipeline

    pipe = FacePipeline()
    sp5 = dlib.shape_predictor(models.pose_predictor_five_point_model_location())
    images = pickle.loads(cache.read_bytes())["images"]
    views: dict[str, dict] = pickle.loads(out.read_bytes()) if out.is_file() else {}
    t0 = time.perf_counter()
    todo = [p for p in images if p not in views]
    for n, path in enumerate(todo, start=1):
        im = images[path]
        faces = [f for f in im["faces"] if f["det"] == "hog"] or [f for f in im["faces"] if f["det"] == "cnn"]
        f = choose(faces, im["width"], im["height"], "centre-lin")
        if f is not None:
            full = pipe.decode(path).full()
            box = f["box"]
            shape = sp5(full, dlib.rectangle(box[0], box[1], box[2] - 1, box[3] - 1))
            chips = []
            for pad in (0.20, 0.30):
                c = np.asarray(dlib.get_face_chip(full, shape, size=150, padding=pad), np.uint8)
                chips += [c, c[:, ::-1]]
            base = np.asarray(dlib.get_face_chip(full, shape, size=150, padding=0.25), np.uint8)
            chips += [np.asarray(j, np.uint8) for j in dlib.jitter_image(base, 8)]
            raw = pipe.embedder._raw(np.ascontiguousarray(np.stack(chips)))
            views[path] = {"box": box, "p20": raw[0], "p20m": raw[1], "p30": raw[2], "p30m": raw[3], "jit": raw[4:]}
        if n % 250 == 0 or n == len(todo):
            out.write_bytes(pickle.dumps(views))
            print(f"{n}/{len(todo)} {(time.perf_counter() - t0) / n:.3f} s/image", flush=True)


def analyse_tta(lfw: Path, cache: Path, out: Path) -> None:
    from faceindex.evaluation.metrics import verification_accuracy_kfold

    images = pickle.loads(cache.read_bytes())["images"]
    views = pickle.loads(out.read_bytes())
    base = {}
    for path, im in images.items():
        faces = [f for f in im["faces"] if f["det"] == "hog"] or [f for f in im["faces"] if f["det"] == "cnn"]
        f = choose(faces, im["width"], im["height"], "centre-lin")
        if f is not None and path in views:
            base[path] = {**views[path], "p25": f["e5"], "p25m": f["e5m"]}
    pairs = [p for p in _pairs(lfw) if str(p.path_a) in images and str(p.path_b) in images]
    same, folds = np.array([p.same for p in pairs]), np.array([p.fold for p in pairs])
    combos = {"p25": ["p25"], "p25+m": ["p25", "p25m"],
              "p20..p30 +m (6 views)": ["p20", "p20m", "p25", "p25m", "p30", "p30m"],
              "p25+m + jitter8": ["p25", "p25m", "jit"], "jitter8": ["jit"], "p25 + jitter8": ["p25", "jit"]}
    print("| views | accuracy (dev) | std |")
    print("|---|---|---|")
    for name, keys in combos.items():
        def vec(v, keys=keys):
            parts = [v[k].sum(axis=0) if k == "jit" else v[k] for k in keys]
            return _unit(np.sum(parts, axis=0))
        scores = np.array([float(vec(base[str(p.path_a)]) @ vec(base[str(p.path_b)]))
                           if str(p.path_a) in base and str(p.path_b) in base else -1.0 for p in pairs])
        acc, std, _ = verification_accuracy_kfold(scores, same, folds)
        print(f"| {name} | {100 * acc:.2f}% | {100 * std:.2f} |")


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def choose(faces: list[dict], width: int, height: int, rule: str) -> dict | None:
    if not faces:
        return None
    if rule == "largest":
        return max(faces, key=lambda f: (f["box"][2] - f["box"][0]) * (f["box"][3] - f["box"][1]))
    cx, cy = width / 2, height / 2

    def offset2(f):
        left, top, right, bottom = f["box"]
        return ((left + right) / 2 - cx) ** 2 + ((top + bottom) / 2 - cy) ** 2

    def area(f):
        return (f["box"][2] - f["box"][0]) * (f["box"][3] - f["box"][1])

    if rule == "centre-sq":  # InsightFace / FaceNet LFW scripts: area - 2 x squared offset
        return max(faces, key=lambda f: area(f) - 2.0 * offset2(f))
    if rule == "centre-lin":  # faceindex: box side - 0.5 x offset (px)
        return max(faces, key=lambda f: area(f) ** 0.5 - 0.5 * offset2(f) ** 0.5)
    if rule == "centre-only":
        return min(faces, key=offset2)
    raise ValueError(rule)


def analyse(lfw: Path, cache: Path) -> None:
    from faceindex.config import Settings
    from faceindex.evaluation.metrics import eer, verification_accuracy_kfold

    s = Settings()
    data = pickle.loads(cache.read_bytes())
    images = data["images"]
    pairs = [p for p in _pairs(lfw) if str(p.path_a) in images and str(p.path_b) in images]
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    print(f"{len(images)} images, {len(pairs)} pairs; stage seconds: "
          + ", ".join(f"{k} {v:.0f}" for k, v in data["times"].items()))
    detectors = {"hog": ("hog",), "hog+yunet": ("hog", "yunet"), "hog+cnn": ("hog", "cnn"), "yunet": ("yunet",)}
    rows = []
    rules = ("largest", "centre-sq", "centre-lin", "centre-only")
    for det, rule, align, flip, gate in itertools.product(detectors, rules, ("5", "68"), (False, True), (True, False)):
        if det in ("hog+yunet", "yunet") and not any(f["det"] == "yunet" for im in images.values()
                                                      for f in im["faces"]):
            continue
        vec, failed = {}, 0
        for path, im in images.items():
            faces = []
            for stage in detectors[det]:  # a fallback detector is consulted only when the earlier found nothing
                faces = [f for f in im["faces"] if f["det"] == stage]
                if faces:
                    break
            if gate:
                blur_key = "blur" if align == "5" else "blur68"
                faces = [f for f in faces if f["size"] >= s.min_face_px and f[blur_key] >= s.min_blur]
            f = choose(faces, im["width"], im["height"], rule)
            if f is None:
                failed += 1
                continue
            v = f["e" + align] + (f["e" + align + "m"] if flip else 0)
            vec[path] = _unit(v)
        scores = np.array([float(vec[str(p.path_a)] @ vec[str(p.path_b)])
                           if str(p.path_a) in vec and str(p.path_b) in vec else -1.0 for p in pairs])
        acc, std, _ = verification_accuracy_kfold(scores, same, folds)
        ok = scores > -1
        e, _ = eer(scores[ok & same], scores[ok & ~same])
        rows.append((acc, std, e, failed, int((~ok).sum()), det, rule, align, flip, gate))
    print("| accuracy (dev) | std | EER (scored pairs) | images failed | pairs unscored | detector | face choice "
          "| landmarks | flip | quality gate |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for acc, std, e, failed, unscored, det, rule, align, flip, gate in sorted(rows, key=lambda r: -r[0]):
        print(f"| {100 * acc:.2f}% | {100 * std:.2f} | {100 * e:.2f}% | {failed} | {unscored} | {det} | {rule} "
              f"| {align}-point | {'on' if flip else 'off'} | {'on' if gate else 'off'} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=("collect", "analyse", "collect-tta", "analyse-tta"))
    ap.add_argument("--lfw", type=Path, default=LFW, help="LFW folder holding images/ and pairsDevTrain.txt")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/lfw_ablation.pkl"))
    ap.add_argument("--limit", type=int, default=None, help="only the first N images (smoke test)")
    ap.add_argument("--tta-cache", type=Path, default=Path("/tmp/lfw_ablation_tta.pkl"))
    args = ap.parse_args()
    if args.action == "collect":
        collect(args.lfw, args.cache, args.limit)
    elif args.action == "analyse":
        analyse(args.lfw, args.cache)
    elif args.action == "collect-tta":
        collect_tta(args.lfw, args.cache, args.tta_cache)
    else:
        analyse_tta(args.lfw, args.cache, args.tta_cache)


if __name__ == "__main__":
    main()
