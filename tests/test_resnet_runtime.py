"""FastResNetDescriptor reproduces dlib's own face descriptors on real photos, in any batch size."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from faceindex.errors import InvalidInputError
from faceindex.pipeline.dlib_dat_reader import (
    Conv,
    DlibFormatError,
    FullyConnected,
    parse_dlib_net,
    read_dlib_net,
)
from faceindex.pipeline.resnet_runtime import (
    FastResNetDescriptor,
    build_plan,
    face_resnet_v1_tokens,
)

dlib = pytest.importorskip("dlib")
models = pytest.importorskip("face_recognition_models")

TOLERANCE = 1e-3
"""Max |ours - dlib| per descriptor element; measured ~3e-7 (elements are ~0.1, norms ~1.4)."""
N_PHOTOS = 6
MAX_SIDE = 800
"""Photos are downscaled to this many pixels (long side) so HOG detection stays ~0.1 s each."""


@pytest.fixture(scope="module")
def dat_path() -> str:
    return models.face_recognition_model_location()


@pytest.fixture(scope="module")
def chips(faces_dir: Path) -> np.ndarray:
    """Aligned 150x150 chips of the first face in the first photo of N_PHOTOS people."""
    from PIL import Image

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(models.pose_predictor_five_point_model_location())
    out = []
    for person in sorted((faces_dir / "people").iterdir()):
        for photo in sorted(person.glob("*.jpg"))[:1]:
            image = Image.open(photo).convert("RGB")
            image.thumbnail((MAX_SIDE, MAX_SIDE))
            rgb = np.asarray(image)
            faces = detector(rgb, 1)
            if faces:
                chip = dlib.get_face_chip(rgb, predictor(rgb, faces[0]), size=150, padding=0.25)
                out.append(np.asarray(chip, dtype=np.uint8))
        if len(out) == N_PHOTOS:
            break
    assert len(out) == N_PHOTOS, "not enough detectable faces in the shared photos"
    return np.stack(out)


@pytest.fixture(scope="module")
def dlib_descriptors(chips: np.ndarray, dat_path: str) -> np.ndarray:
    net = dlib.face_recognition_model_v1(dat_path)
    return np.array([np.asarray(net.compute_face_descriptor(c)) for c in chips], dtype=np.float32)


@pytest.fixture(scope="module")
def fast() -> FastResNetDescriptor:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    return FastResNetDescriptor(threads=1, backend="onnxruntime")


def test_onnxruntime_matches_dlib(fast, chips, dlib_descriptors):
    ours = fast.compute(chips)
    diff = float(np.abs(ours - dlib_descriptors).max())
    print(f"onnxruntime vs dlib: max |diff| = {diff:.3g} over {len(chips)} faces")
    assert ours.dtype == np.float32 and ours.shape == (len(chips), 128)
    assert diff < TOLERANCE
    assert fast.model_id == "dlib-resnet-v1"


def test_numpy_backend_matches_dlib(chips, dlib_descriptors):
    numpy_net = FastResNetDescriptor(backend="numpy")
    diff = float(np.abs(numpy_net.compute(chips) - dlib_descriptors).max())
    print(f"numpy vs dlib: max |diff| = {diff:.3g}")
    assert diff < TOLERANCE


def test_batch_of_one_equals_batch_of_n(fast, chips):
    batched = fast.compute(chips)
    singles = np.concatenate([fast.compute(chips[i : i + 1]) for i in range(len(chips))])
    # Chunking inside compute() (batch_size smaller than n, with a ragged last chunk) too.
    chunked = FastResNetDescriptor(threads=1, backend="onnxruntime", batch_size=4).compute(chips)
    print(f"batch-1 vs batch-{len(chips)}: max |diff| = {np.abs(singles - batched).max():.3g}")
    np.testing.assert_allclose(singles, batched, rtol=0, atol=1e-5)
    np.testing.assert_allclose(chunked, batched, rtol=0, atol=1e-5)


def test_compute_validates_input(fast):
    assert fast.compute(np.zeros((0, 150, 150, 3), np.uint8)).shape == (0, 128)
    with pytest.raises(InvalidInputError):
        fast.compute(np.zeros((1, 150, 150, 3), np.float32))
    with pytest.raises(InvalidInputError):
        fast.compute(np.zeros((150, 150, 3), np.uint8))
    with pytest.raises(InvalidInputError):
        fast.compute(np.zeros((1, 160, 160, 3), np.uint8))


def test_reader_finds_the_face_resnet(dat_path):
    net = read_dlib_net(dat_path)
    assert net.input_layer == "input_rgb_image_sized" and net.input_size == (150, 150)
    np.testing.assert_allclose(net.input_mean_rgb, (122.782, 117.001, 104.298), atol=1e-4)
    convs = [layer for layer in net.layers if isinstance(layer, Conv)]
    assert len(convs) == 29 and convs[0].weights.shape == (32, 3, 7, 7) and convs[0].stride == (2, 2)
    assert isinstance(net.layers[-1], FullyConnected) and net.layers[-1].weights.shape == (256, 128)
    assert net.layers[-1].bias is None


def test_reader_rejects_damaged_files(dat_path):
    data = Path(dat_path).read_bytes()
    with pytest.raises(DlibFormatError):
        parse_dlib_net(data[: len(data) // 2])
    with pytest.raises(DlibFormatError):
        parse_dlib_net(data + b"\x00")
    with pytest.raises(DlibFormatError):
        parse_dlib_net(b"\x01\x02" + data[2:])  # unknown loss-layer version


def test_topology_is_checked_against_the_file(dat_path):
    net = read_dlib_net(dat_path)
    net.wrapper_versions[5], net.wrapper_versions[7] = net.wrapper_versions[7], net.wrapper_versions[5]
    with pytest.raises(DlibFormatError):
        build_plan(net, face_resnet_v1_tokens())


def test_auto_falls_back_to_numpy_without_onnxruntime(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    assert FastResNetDescriptor(backend="auto").backend == "numpy"
    with pytest.raises(ImportError):
        FastResNetDescriptor(backend="onnxruntime")
