"""dlib's face-recognition ResNet v1 on onnxruntime (or numpy): dlib's own faceprints, faster.

dlib-bin is built without BLAS and takes ~110 ms per face on 2 cores. This module reads the very
same weights out of `dlib_face_recognition_resnet_model_v1.dat` (dlib_dat_reader.py), restates the
network's topology, and runs it batched on one of two backends computing the same function:

- "onnxruntime": an ONNX graph built in memory (nothing is written to disk) run by onnxruntime,
  ~7 ms per face on one core;
- "numpy": im2col + BLAS matmul, the fallback when onnx/onnxruntime are not installed: ~25 ms per
  face with OPENBLAS_NUM_THREADS=1, but 80-130 ms when OpenBLAS's 2 threads fight other load.

Results equal dlib's `face_recognition_model_v1.compute_face_descriptor` up to float32 rounding
(the conv summation order differs and each `affine` is folded into the conv below it): the tests
bound the difference at 1e-3 and measure it at ~4e-7.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from faceindex.errors import InvalidInputError
from faceindex.pipeline.dlib_dat_reader import (
    AddPrev,
    Affine,
    Conv,
    DlibFormatError,
    DlibNet,
    FullyConnected,
    Pool,
    Relu,
    read_dlib_net,
)

log = logging.getLogger(__name__)

MODEL_ID = "dlib-resnet-v1"
CHIP_SIZE = 150
"""Side (px) of the aligned RGB chip the network takes (dlib's input_rgb_image_sized<150>)."""
DESCRIPTOR_DIM = 128
BATCH_SIZE = 8
"""Chips per forward pass. On the shared 2-core dev box batch 8 was 10-15% faster per face than
1 or 32 (bench/bench_resnet_runtime.py); bigger batches only cost memory (~0.7 MB per face for the
first conv's output alone)."""

# ---------------------------------------------------------------------------------------------
# Topology. A dlib file does not record which tag a skip or add_prev refers to, so the network
# type of dlib's examples/dnn_face_recognition_ex.cpp is restated here from the input upwards:
# ("tag", i) remembers the current output as tag i, ("skip", i) makes tag i current again,
# ("add", i) is an add_prev layer adding tag i, and a layer class stands for that plain layer.


def _residual(down: bool) -> list:
    """dlib `ares` / `ares_down`: relu(block(x) + x) / relu(block(x) + avg_pool(x)); 2 convs."""
    block = [("tag", 1), Conv, Affine, Relu, Conv, Affine]
    if down:
        return [*block, ("tag", 2), ("skip", 1), Pool, ("add", 2), Relu]
    return [*block, ("add", 1), Relu]


def face_resnet_v1_tokens() -> list:
    """Bottom-up tokens of dlib's `anet_type` (loss_metric<fc_no_bias<128, ...>>)."""
    tokens: list = [Conv, Affine, Relu, Pool]  # con<32,7,7,2,2>, affine, relu, max_pool<3,3,2,2>
    # alevel4 (3 ares, 32 ch) .. alevel0 (1 ares_down, 256 ch); each level above 4 starts down.
    for repeats, down in ((3, False), (4, True), (3, True), (3, True), (1, True)):
        tokens += _residual(down)
        tokens += [token for _ in range(repeats - 1) for token in _residual(False)]
    return [*tokens, Pool, FullyConnected]  # avg_pool_everything, fc_no_bias<128>


def _is_layer(token) -> bool:
    """Plain layers and add_prev sit in add_layer wrappers (and have details); tags and skips don't."""
    return not isinstance(token, tuple) or token[0] == "add"


def _check_topology(net: DlibNet, tokens: list) -> None:
    """Raise DlibFormatError unless the file's wrappers and layer kinds are what tokens imply."""
    wrappers = [2 if _is_layer(t) else 1 for t in reversed(tokens)]  # dlib writes outermost first
    kinds = [AddPrev if isinstance(t, tuple) else t for t in tokens if _is_layer(t)]
    found = [min(v, 2) for v in net.wrapper_versions]  # the input-side add_layer may write 3
    if found != wrappers or [type(layer) for layer in net.layers] != kinds:
        raise DlibFormatError("dlib .dat does not hold dlib_face_recognition_resnet_model_v1's network")


# ---------------------------------------------------------------------------------------------
# Plan: the network as a list of steps on NCHW float32 values; step i's output is value i.


@dataclass
class Step:
    """One op: `inputs` are earlier step indices, `shape` the output's (C, H, W) per sample."""

    op: str  # input | conv | scale_shift | relu | pool | add | fc
    inputs: tuple[int, ...]
    shape: tuple[int, ...]
    args: dict[str, Any] = field(default_factory=dict)


def _out(size: int, kernel: int, stride: int, pad: int) -> int:
    """Output length along one axis of a conv or pool (same formula in dlib and ONNX)."""
    return 1 + (size + 2 * pad - kernel) // stride


def _fold(conv: Conv, affine: Affine) -> Conv:
    """affine(conv(x)) = gamma * (W*x + b) + beta = (gamma*W)*x + (gamma*b + beta): one op, not two."""
    gamma, beta = affine.gamma.reshape(-1), affine.beta.reshape(-1)
    return replace(conv, weights=conv.weights * gamma[:, None, None, None], bias=conv.bias * gamma + beta)


def _layer_step(layer, src: int, shape: tuple[int, ...]) -> Step:
    """The step computing `layer` on value `src`, whose per-sample shape is `shape`."""
    c, h, w = shape if len(shape) == 3 else (*shape, 1, 1)
    if isinstance(layer, Conv):
        if layer.weights.shape[1] != c:
            raise DlibFormatError(f"conv expects {layer.weights.shape[1]} channels, gets {c}")
        (kh, kw), (sy, sx), (py, px) = layer.weights.shape[2:], layer.stride, layer.padding
        out = (layer.weights.shape[0], _out(h, kh, sy, py), _out(w, kw, sx, px))
        args = {"weights": layer.weights, "bias": layer.bias, "stride": layer.stride, "pad": layer.padding}
        return Step("conv", (src,), out, args)
    if isinstance(layer, Affine):
        per = (1, c, 1, 1) if layer.per_channel else (1, c, h, w)
        return Step(
            "scale_shift", (src,), shape, {"gamma": layer.gamma.reshape(per), "beta": layer.beta.reshape(per)}
        )
    if isinstance(layer, Relu):
        return Step("relu", (src,), shape)
    if isinstance(layer, Pool):
        (kh, kw) = layer.size if layer.size != (0, 0) else (h, w)  # (0, 0): the whole plane
        (sy, sx), (py, px) = layer.stride, layer.padding
        args = {"mode": layer.mode, "size": (kh, kw), "stride": layer.stride, "pad": layer.padding}
        return Step("pool", (src,), (c, _out(h, kh, sy, py), _out(w, kw, sx, px)), args)
    if isinstance(layer, FullyConnected):
        if layer.weights.shape[0] != c * h * w:
            raise DlibFormatError(f"fc expects {layer.weights.shape[0]} inputs, gets {c * h * w}")
        args = {"weights": layer.weights, "bias": layer.bias}
        return Step("fc", (src,), (layer.weights.shape[1],), args)
    raise DlibFormatError(f"unexpected layer {layer!r}")


def build_plan(net: DlibNet, tokens: list) -> list[Step]:
    """Turn parsed layers + topology into steps, folding each conv->affine pair into one conv."""
    _check_topology(net, tokens)
    size = net.input_size or (CHIP_SIZE, CHIP_SIZE)
    plan = [Step("input", (), (3, *size), {"mean": np.array(net.input_mean_rgb, np.float32)})]
    layers = iter(net.layers)
    pairs = [(t, next(layers) if _is_layer(t) else None) for t in tokens]
    tags: dict[int, int] = {}
    cur, i = 0, 0
    while i < len(pairs):
        (token, layer), i = pairs[i], i + 1
        if isinstance(token, tuple) and token[0] == "tag":
            tags[token[1]] = cur
            continue
        if isinstance(token, tuple) and token[0] == "skip":
            cur = tags[token[1]]
            continue
        if isinstance(token, tuple):  # add_prev: dlib zero-extends both addends to the larger shape
            other = tags[token[1]]
            step = Step("add", (cur, other), tuple(map(max, plan[cur].shape, plan[other].shape)))
        else:
            following = pairs[i][1] if i < len(pairs) else None
            if isinstance(layer, Conv) and isinstance(following, Affine) and following.per_channel:
                layer, i = _fold(layer, following), i + 1
            step = _layer_step(layer, cur, plan[cur].shape)
        plan.append(step)
        cur = len(plan) - 1
    if cur != len(plan) - 1 or plan[-1].shape != (DESCRIPTOR_DIM,):
        raise DlibFormatError("network does not end in a 128-d output")
    return plan


# ---------------------------------------------------------------------------------------------


class FastResNetDescriptor:
    """dlib's 128-d face descriptor (dlib_face_recognition_resnet_model_v1), computed in batches.

    `compute(chips)` returns what `dlib.face_recognition_model_v1(dat).compute_face_descriptor`
    returns for each chip, as float32 and NOT re-normalised (dlib's vectors have norms ~1.4).
    `dat_path` None uses the file shipped in face_recognition_models. `threads` caps onnxruntime's
    intra-op threads (None: all physical cores; 1 is best when other work shares the CPUs; the
    numpy backend uses whatever its BLAS is configured for). `backend`: "auto" (onnxruntime when
    onnx and onnxruntime import, else numpy), "onnxruntime" or "numpy". `batch_size`: chips per
    forward pass. Loading takes ~0.5-1 s (parse + graph build); nothing is cached on disk.
    """

    model_id = MODEL_ID
    dim = DESCRIPTOR_DIM

    def __init__(
        self,
        dat_path: str | Path | None = None,
        threads: int | None = None,
        backend: str = "auto",
        batch_size: int = BATCH_SIZE,
    ):
        from faceindex.pipeline.resnet_backends import numpy_runner, onnx_runner

        if backend not in ("auto", "onnxruntime", "numpy"):
            raise InvalidInputError(f"unknown ResNet backend {backend!r}")
        if batch_size < 1:
            raise InvalidInputError("batch_size must be >= 1")
        if dat_path is None:
            import face_recognition_models

            dat_path = face_recognition_models.face_recognition_model_location()
        plan = build_plan(read_dlib_net(dat_path), face_resnet_v1_tokens())
        self.input_size: tuple[int, int] = plan[0].shape[1:]
        self.batch_size = batch_size
        self._run = None
        if backend in ("auto", "onnxruntime"):
            try:
                self._run = onnx_runner(plan, threads)
                self.backend = "onnxruntime"
            except ImportError as exc:
                if backend == "onnxruntime":
                    raise
                log.info("onnx/onnxruntime not importable (%s): ResNet runs on numpy", exc)
        if self._run is None:
            self._run = numpy_runner(plan)
            self.backend = "numpy"

    def compute(self, chips: np.ndarray) -> np.ndarray:
        """Descriptors float32 (n, 128) for uint8 RGB chips (n, 150, 150, 3) from dlib.get_face_chip."""
        chips = np.asarray(chips)
        if chips.dtype != np.uint8 or chips.ndim != 4 or chips.shape[1:] != (*self.input_size, 3):
            raise InvalidInputError(
                f"chips must be uint8 (n, {self.input_size[0]}, {self.input_size[1]}, 3) RGB, "
                f"got {chips.dtype} {chips.shape}"
            )
        out = np.empty((len(chips), self.dim), np.float32)
        for start in range(0, len(chips), self.batch_size):
            batch = np.ascontiguousarray(chips[start : start + self.batch_size])
            out[start : start + len(batch)] = self._run(batch)
        return out
