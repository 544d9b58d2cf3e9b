"""One FacePipeline shared by many threads (the service's concurrent searches): no crash, the same faces.

Two threads inside one dlib HOG detector abort the whole process (found by bench/bench_load.py: `faceindex
serve` died with SIGABRT/SIGSEGV under 8 concurrent searches), so the check runs in a child process: a crash
there is a failed test here, not a dead test run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent("""
    import json, sys, threading
    from pathlib import Path
    from faceindex.config import Settings
    from faceindex.pipeline.analyse import FacePipeline

    photos = [Path(p) for p in json.loads(sys.argv[1])]
    pipeline = FacePipeline(Settings(workers=1))
    def boxes(path):
        return sorted(tuple(f.box) for f in pipeline.analyse(str(path)).faces)
    expected = {str(p): boxes(p) for p in photos}  # one thread first: the reference answers
    mismatches, errors = [], []
    def worker(n):
        try:
            for round_ in range(3):
                for path in photos[n % len(photos):] + photos[:n % len(photos)]:
                    if boxes(path) != expected[str(path)]:
                        mismatches.append(str(path))
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            errors.append(repr(exc))
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"mismatches": mismatches, "errors": errors,
                      "faces": sum(len(v) for v in expected.values())}))
""")


@pytest.mark.slow
def test_one_pipeline_serves_eight_threads_without_crashing_and_gives_the_same_faces(faces_dir):
    photos = [str(p) for p in sorted((faces_dir / "groups").glob("dlib__20*.jpg"))[:4]]
    photos += [str(sorted((faces_dir / "people" / name).glob("*.jpg"))[0]) for name in ("Barack_Obama", "Katy_Perry")]
    child = subprocess.run([sys.executable, "-c", CHILD, json.dumps(photos)], capture_output=True, text=True,
                           timeout=900)
    assert child.returncode == 0, f"the process died (code {child.returncode}): {child.stderr[-2000:]}"
    result = json.loads(child.stdout.strip().splitlines()[-1])
    assert result["errors"] == [] and result["mismatches"] == []
    assert result["faces"] >= 8  # the group photos hold several faces each: the detectors really ran
