"""Fuzz of decode (and of analyse on odd-shaped images): no exception but ImageError escapes, and bombs stay small.

The inputs are generated from real photos of ../shared/faces at test time (see fuzz_support). About 200 cases
by default; FACEINDEX_FUZZ_RUNS=1000 runs the full campaign's size of seeded mutations.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import faces_root
from fuzz_support import Case, all_cases, bombs, fuzz_runs, png_deflate_bomb, tiny_images
from imagegen import png_1bit_bomb

from faceindex.config import Settings
from faceindex.errors import FaceIndexError, ImageError
from faceindex.pipeline.analyse import FacePipeline
from faceindex.pipeline.decode import decode_image

MUTATIONS = fuzz_runs(80)
CASES = all_cases(faces_root(), MUTATIONS) if (faces_root() / "people").is_dir() else []


def _check_decoded(case: Case, img) -> None:
    """A decode that succeeded must give a usable upright RGB array whose size agrees with the header."""
    det = img.detection
    assert det.dtype == np.uint8 and det.ndim == 3 and det.shape[2] == 3 and det.flags.c_contiguous
    assert det.shape[0] >= 1 and det.shape[1] >= 1
    assert img.width >= det.shape[1] and img.height >= det.shape[0] and img.scale >= 1.0
    try:
        full = img.full()
    except ImageError as e:  # the header was fine but the pixels are not: a clean refusal is allowed
        assert str(e).strip()
        assert not case.must_decode, f"{case.name}: a valid image failed its full decode: {e}"
        return
    assert full.shape == (img.height, img.width, 3)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_decode_raises_only_image_errors(case: Case):
    try:
        img = decode_image(case.data)
    except ImageError as e:
        reason = str(e)
        assert reason.strip() and len(reason) < 300, f"no short reason for {case.name}: {reason!r}"
        assert not case.must_decode, f"{case.name} is a valid image but was refused: {reason}"
        return
    # Any other exception has escaped already and fails the test with its traceback.
    _check_decoded(case, img)


def test_the_campaign_is_the_size_it_claims():
    """The fixed kinds plus the seeded mutations; RELIABILITY.md quotes this count."""
    assert len(CASES) >= 180 + (MUTATIONS - 80), len(CASES)
    assert len({c.data for c in CASES}) >= 0.95 * len(CASES), "most cases must be distinct inputs"


@pytest.fixture(scope="module")
def pipeline():
    return FacePipeline(Settings(workers=1))


TINY = [c for c in tiny_images() if c.name.split("-")[1] in ("1x1", "1x300", "300x1", "1x2000", "2000x1")
        and c.name.endswith(("png", "jpeg"))]


TINY_PARAMS = [pytest.param(c, id=c.name) for c in TINY]  # issue 9 item 6 (1 pixel high: a dlib stride error)


@pytest.mark.parametrize("case", TINY_PARAMS)
def test_analyse_survives_one_pixel_wide_or_high_images(pipeline, case: Case):
    """Issue 9 item 6: a 1-pixel-wide or -high photo crashed the turned-look retry (dlib rejects the strides)."""
    try:
        result = pipeline.analyse(case.data)
    except FaceIndexError as e:  # a clear refusal (too small to hold a face) is a fine answer too
        assert str(e).strip()
        return
    assert result.accepted == []


BOMB_SCRIPT = textwrap.dedent("""
    import json, resource, sys
    from pathlib import Path
    from faceindex.errors import ImageError
    from faceindex.pipeline.decode import decode_image

    def peak_kib():
        # This process's own peak (VmHWM): ru_maxrss keeps the parent's peak across fork + exec, so under a
        # pytest process that loaded the face models it starts above anything this script reaches.
        try:
            with open("/proc/self/status") as status:
                return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
        except (OSError, StopIteration):
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    paths = [Path(p) for p in sys.argv[1:]]
    decode_image(paths[0].parent / "warmup.png")  # load every plugin and numpy before the baseline
    before = peak_kib()
    outcomes = {}
    for path in paths:
        try:
            decode_image(path)
            outcomes[path.name] = "decoded"
        except ImageError as e:
            outcomes[path.name] = type(e).__name__ + ": " + str(e)
    after = peak_kib()
    # Control: a real 64-Mpx image (under the limit) must move the gauge, or the bound above proves nothing.
    decode_image(paths[0].parent / "control.png")
    control = peak_kib()
    print(json.dumps({"peak_kib_delta": after - before, "control_kib_delta": control - after,
                      "outcomes": outcomes}))
""")
BOMB_RSS_LIMIT_KIB = 64 * 1024
"""Every bomb claims gigabytes (or, for the deflate bomb, really holds 100 MB): the decoder may use 64 MiB."""


def test_bombs_are_refused_within_bounded_memory(tmp_path):
    """Max RSS of a fresh process decoding every bomb grows by less than 64 MiB, and each bomb is refused."""
    cases = bombs(faces_root()) + [png_deflate_bomb()]
    paths = []
    for case in cases:
        path = tmp_path / (case.name + case.ext)
        path.write_bytes(case.data)
        paths.append(str(path))
    from PIL import Image
    Image.new("RGB", (8, 8)).save(tmp_path / "warmup.png")
    (tmp_path / "control.png").write_bytes(png_1bit_bomb(8000, 8000))
    out = subprocess.run([sys.executable, "-c", BOMB_SCRIPT, *paths], capture_output=True, text=True, timeout=300,
                         env=_child_env())
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert all(o != "decoded" for o in result["outcomes"].values()), result["outcomes"]
    assert result["peak_kib_delta"] < BOMB_RSS_LIMIT_KIB, result
    assert result["control_kib_delta"] > BOMB_RSS_LIMIT_KIB, result


def _child_env() -> dict:
    import os
    src = str(Path(__file__).resolve().parents[1] / "src")
    return {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
