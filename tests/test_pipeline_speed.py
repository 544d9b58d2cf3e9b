"""The ingest speed changes keep the results: lazy models, shared HOG weights, one ResNet call, the pool start.

Each test checks an output against the plain way of computing it (real models, real photos); none asserts a time.
The speed itself is measured by bench/bench_ingest.py (BENCHMARKS.md).
"""

from __future__ import annotations

import shutil
from concurrent.futures import ProcessPoolExecutor

import dlib
import numpy as np
import pytest

from faceindex.config import Settings
from faceindex.errors import ModelFileError
from faceindex.pipeline import detect, parallel
from faceindex.pipeline.analyse import FacePipeline
from faceindex.pipeline.decode import decode_image
from faceindex.pipeline.embed import DlibEmbedder, model_id_for
from faceindex.pipeline.types import l2_normalise

PHOTOS = ("people/Barack_Obama/face_recognition__obama.jpg", "groups/deepface__couple.jpg",
          "nonfaces/dlib__dog.jpg", "people/Angelina_Jolie/deepface__img4.jpg")


def windows(detector, rgb: np.ndarray) -> list:
    rects, scores, kinds = detector.run(rgb, detect.effective_upsample(rgb, 1), -0.5)
    return [((r.left(), r.top(), r.right(), r.bottom()), s, k) for r, s, k in zip(rects, scores, kinds, strict=True)]


def test_copied_hog_detectors_find_exactly_what_dlibs_own_finds(faces_dir):
    own = dlib.get_frontal_face_detector()
    first, copy = detect.new_frontal_detector(), detect.new_frontal_detector()
    assert copy is not first and detect._frontal_template is not None  # each caller its own object (threads)
    found = 0
    for name in PHOTOS:
        rgb = decode_image(faces_dir / name).detection
        expected = windows(own, rgb)
        assert windows(first, rgb) == expected and windows(copy, rgb) == expected
        found += len(expected)
    assert found >= 4  # faces and near misses were compared, not only empty lists


def test_flipped_faceprints_in_one_call_equal_two_calls(faces_dir):
    embedder = DlibEmbedder(flip=True)
    decoded = decode_image(faces_dir / "groups/deepface__couple.jpg")
    boxes = [d.box for d in detect.HogDetector(1).detect(decoded.detection)]
    assert len(boxes) >= 2
    _, chips = embedder.align(decoded.full(), boxes)
    two_calls = l2_normalise(embedder._raw(chips) + embedder._raw(np.ascontiguousarray(chips[:, :, ::-1, :])))
    np.testing.assert_allclose(embedder.embed_chips(chips), two_calls, rtol=0, atol=1e-6)


@pytest.mark.parametrize("flip", (True, False))
def test_model_id_is_known_before_the_models_load_and_matches_them(flip):
    pipeline = FacePipeline(Settings(flip_augment=flip, workers=1))
    assert pipeline.model_id == model_id_for(flip)
    assert "embedder" not in vars(pipeline) and "detector" not in vars(pipeline)  # nothing loaded for it
    assert pipeline.embedder.model_id == pipeline.model_id
    other = pipeline.with_detail("thorough" if pipeline.settings.detail != "thorough" else "fast")
    assert other.model_id == pipeline.model_id and other.embedder is pipeline.embedder  # shared, loaded once


class CountingPool(ProcessPoolExecutor):
    """The pool parallel.py uses, noting how many worker processes exist when the first file is handed out."""

    started_at_first_file: list[int] = []

    def submit(self, fn, /, *args, **kwargs):
        if fn is not parallel.worker_ready and not CountingPool.started_at_first_file:
            CountingPool.started_at_first_file.append(len(self._processes))
        return super().submit(fn, *args, **kwargs)


def test_pool_starts_every_worker_at_once_and_the_parent_loads_no_model(faces_dir, tmp_path, monkeypatch):
    photos = []
    for name in PHOTOS:
        photos.append(tmp_path / name.replace("/", "_"))
        shutil.copy(faces_dir / name, photos[-1])
    CountingPool.started_at_first_file.clear()
    monkeypatch.setattr(parallel, "ProcessPoolExecutor", CountingPool)
    pipeline = FacePipeline(Settings(workers=2))
    outcomes = {o.uri: o for o, _ in parallel.analyse_stream(((str(p), p.name, p) for p in photos), pipeline, 2)}
    # Both started before work was handed out: a spawn pool starts one process per submit while none is idle.
    assert CountingPool.started_at_first_file == [2]
    assert "embedder" not in vars(pipeline) and "detector" not in vars(pipeline)  # the workers did the work
    in_process = {p.name: pipeline.analyse(str(p)) for p in photos}  # now it loads them: the same answers
    for name, analysis in in_process.items():
        assert outcomes[name].error is None
        assert [f.box for f in outcomes[name].analysis.faces] == [f.box for f in analysis.faces]
        for a, b in zip(outcomes[name].analysis.accepted, analysis.accepted, strict=True):
            np.testing.assert_allclose(a.embedding, b.embedding, atol=1e-6)
    assert sum(len(a.accepted) for a in in_process.values()) >= 3


@pytest.mark.parametrize("workers", (1, 2))
def test_a_model_that_cannot_load_stops_the_stream_instead_of_skipping_every_file(faces_dir, tmp_path, workers):
    """Models load lazily now: a missing model file must still stop the run with its error (as when the parent
    loaded them first), never become every file's skip reason (a re-run would then count them as unchanged)."""
    photos = [faces_dir / name for name in PHOTOS[:2]]
    pipeline = FacePipeline(Settings(detector="yunet", yunet_model=tmp_path / "missing.onnx", workers=workers))
    with pytest.raises(ModelFileError, match="YuNet model not found"):
        list(parallel.analyse_stream(((str(p), p.name, p) for p in photos), pipeline, workers))
