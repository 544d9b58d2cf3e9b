"""dlib's CNN (MMOD) face detector on onnxruntime: the weights of `mmod_human_face_detector.dat`, faster.

dlib-bin runs this network without BLAS (~7 s per megapixel on one core). This module reads the
same weights (the file's `bn_con` layers folded into the conv below each, as dlib's `affine_` does
when it loads them), builds the fully convolutional net as an in-memory ONNX graph with a free
image size, and runs it over an image pyramid of our own (5/6 per level, like dlib's
`pyramid_down<6>`), each level on its own instead of dlib's one tiled image. A detection is an
output cell scoring above `threshold`; its 80x80 window (the file's detector window) maps back
through the level's scale, and overlapping windows are suppressed as dlib's `loss_mmod` does.

The network (dlib's examples/dnn_mmod_face_detection_ex.cpp), from the input up: three 5x5
stride-2 convs (16, 32, 32 filters) each with batch norm and relu, three 5x5 convs of 45 filters
with batch norm and relu, and one 9x9 conv to one score map at 1/8 of the input's size.
Results agree with dlib's `cnn_face_detection_model_v1` (tests/test_crowd.py compares them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from faceindex.errors import ModelFileError
from faceindex.pipeline.dlib_dat_reader import Conv, DlibFormatError, _con, _Stream
from faceindex.pipeline.types import Box

NETWORK = ["conv", "bn", "relu"] * 6 + ["conv"]
"""The layer kinds of dlib's face detector net, from the input upwards."""
PYRAMID_STEP = 5 / 6
"""Scale from one pyramid level to the next (dlib's pyramid_down<6>)."""
OUTER_PAD = 11
"""Black border (px) around each level, as dlib's tiled pyramid has: faces cut by the photo's edge
are still found, since the stride-2 convs are unpadded."""

TILE = 1024
"""Side (px) of the square of a pyramid level scored at once (before the margin): bounds memory."""
TILE_MARGIN = 96
"""Context (px) added on each side of a tile: the net's reach (its receptive field is 189 px wide,
so a cell's score depends on pixels up to 94 px away), hence tiled scores equal whole-level ones."""


@dataclass(frozen=True)
class MmodNet:
    """What the .dat holds: the detector window (px), the NMS overlap, the input mean and the convs."""

    window: tuple[int, int]  # (width, height) of a face at the detection scale, px
    nms_iou: float
    mean_rgb: tuple[float, float, float]
    convs: list[Conv]  # batch norm folded in; a relu follows every conv but the last


def _bn_folded(s: _Stream, conv: Conv) -> Conv:
    """Read a `bn_con2` layer and fold its inference form, gamma*(x-mu)/sqrt(var+eps)+beta, into `conv`."""
    params = s.tensor().reshape(-1)
    gamma_shape, beta_shape = s.alias(), s.alias()
    for _ in range(2):  # the last training batch's means and inverse deviations: training only
        s.tensor()
    running_mean, running_var = s.tensor().reshape(-1), s.tensor().reshape(-1)
    s.integer(), s.integer()  # num_updates, running_stats_window_size
    for _ in range(4):  # learning-rate and weight-decay multipliers
        s.real()
    eps = s.real()
    n = math.prod(gamma_shape)
    if math.prod(beta_shape) != n or params.size != 2 * n or running_var.size != n:
        raise DlibFormatError("dlib .dat: bn_con2 sizes do not agree")
    gamma = params[:n] / np.sqrt(running_var + eps)
    beta = params[n:] - gamma * running_mean
    return replace(conv, weights=(conv.weights * gamma[:, None, None, None]).astype(np.float32),
                   bias=(conv.bias * gamma + beta).astype(np.float32))


def parse_mmod_net(data: bytes) -> MmodNet:
    """Parse dlib's `loss_mmod` face detector file (mmod_options version 1, as shipped since 2016)."""
    s = _Stream(data)
    if s.integer() != 1 or s.string() != "loss_mmod_":
        raise s.fail("not a dlib loss_mmod network")
    if (version := s.integer()) != 1:
        raise s.fail(f"unsupported mmod_options version {version}")
    window = (s.integer(), s.integer())
    s.real(), s.real(), s.real()  # loss per false alarm / missed target, truth-match IoU: training only
    nms_iou, _nms_covered = s.real(), s.real()
    s.real(), s.real()  # overlaps_ignore: training only
    versions = []
    while True:
        mark = s.pos
        if (value := s.integer()) not in (1, 2, 3):
            s.pos = mark
            break
        versions.append(value)
    if len(versions) != len(NETWORK) or s.string() != "input_rgb_image_pyramid":
        raise s.fail("not dlib's mmod face detector network")
    mean = (s.real(), s.real(), s.real())
    convs: list[Conv] = []
    for index, kind in enumerate(NETWORK):
        name = s.string()
        if kind == "conv" and name == "con_4":
            convs.append(_con(s, name))
        elif kind == "bn" and name == "bn_con2":
            convs[-1] = _bn_folded(s, convs[-1])
        elif not (kind == "relu" and name == "relu_"):
            raise s.fail(f"layer {index}: expected {kind}, found {name!r}")
        for _ in range(3):  # add_layer bookkeeping, as in dlib_dat_reader.parse_dlib_net
            s.boolean()
        s.tensor(), s.tensor(), s.tensor()
        if index == 0 and versions[-1] == 3:
            s.integer()
    if s.pos != len(data):
        raise s.fail(f"{len(data) - s.pos} trailing bytes")
    return MmodNet(window, nms_iou, mean, convs)


def build_onnx_model(net: MmodNet):
    """The net as an onnx.ModelProto: "image" uint8 (1, H, W, 3) RGB -> "scores" float32 (1, 1, h, w)."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.array(net.mean_rgb, np.float32), "mean"),
             numpy_helper.from_array(np.array(1 / 256, np.float32), "scale")]
    nodes = [helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("Sub", ["f", "mean"], ["c"]),
             helper.make_node("Mul", ["c", "scale"], ["s"]),
             helper.make_node("Transpose", ["s"], ["x0"], perm=[0, 3, 1, 2])]
    x = "x0"
    for i, conv in enumerate(net.convs):
        inits += [numpy_helper.from_array(conv.weights, f"w{i}"), numpy_helper.from_array(conv.bias, f"b{i}")]
        (py, px) = conv.padding
        out = f"conv{i}"
        nodes.append(helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [out], kernel_shape=list(conv.weights.shape[2:]),
                                      strides=list(conv.stride), pads=[py, px, py, px]))
        if i < len(net.convs) - 1:
            nodes.append(helper.make_node("Relu", [out], [f"relu{i}"]))
            out = f"relu{i}"
        x = out
    nodes.append(helper.make_node("Identity", [x], ["scores"]))
    graph = helper.make_graph(
        nodes, "dlib_mmod", [helper.make_tensor_value_info("image", TensorProto.UINT8, [1, "h", "w", 3])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 1, "sh", "sw"])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _to_input(v: int, net: MmodNet) -> int:
    """Input pixel at the centre of output cell `v` along one axis: each unpadded 5x5 stride-2 conv
    maps o -> 2*o + 2 (dlib's map_output_to_input), the padded stride-1 convs keep it."""
    for conv in reversed(net.convs):
        k, stride, pad = conv.weights.shape[2], conv.stride[0], conv.padding[0]
        v = v * stride - pad + k // 2
    return v


def _local_maxima(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Cells above `threshold` that no 8-neighbour beats. A neighbour's window (8 px away, 80 px wide)
    overlaps with IoU ~0.8, so suppression would drop it anyway; filtering first keeps the number of
    windows, and the quadratic suppression, small when the threshold is low."""
    padded = np.pad(scores, 1, constant_values=-np.inf)
    h, w = scores.shape
    best = np.max([padded[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
                   for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx], axis=0)
    return (scores > threshold) & (scores >= best)


@dataclass(frozen=True)
class Window:
    """One scored detector window in the photo's pixels."""

    box: Box
    score: float


class MmodDetector:
    """dlib's MMOD CNN face detector on onnxruntime over an image pyramid (see module docstring).

    `upscale` (>= 1) enlarges the image first so that faces down to window/upscale px are found
    (the window is 80 px: 2.0 finds ~40 px faces at ~4x the cost of 1.0). `min_side` (px) is the
    smallest pyramid level run. `threshold` is the score a window must pass (dlib's default 0).
    `threads` caps onnxruntime's intra-op threads (1: one core, as each ingest worker uses one).
    """

    name = "dlib-mmod"

    def __init__(self, *, upscale: float = 1.0, threshold: float = 0.0, threads: int | None = 1,
                 dat_path: str | Path | None = None, min_side: int | None = None, step: float = PYRAMID_STEP,
                 tile: int = TILE, margin: int = TILE_MARGIN):
        import onnxruntime as ort

        if dat_path is None:
            import face_recognition_models

            dat_path = face_recognition_models.cnn_face_detector_model_location()
        try:
            data = Path(dat_path).read_bytes()
        except OSError as exc:
            raise ModelFileError(f"cannot read dlib model {dat_path}: {exc}") from exc
        self.net = parse_mmod_net(data)
        self.upscale = upscale
        self.threshold = threshold
        self.step = step
        self.min_side = min_side or max(self.net.window)
        self.tile = tile
        self.margin = margin
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.inter_op_num_threads = 1
        if threads:
            options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(build_onnx_model(self.net).SerializeToString(), options,
                                             providers=["CPUExecutionProvider"])
        self._offset = _to_input(0, self.net)
        self._stride = _to_input(1, self.net) - self._offset

    def scales(self, width: int, height: int) -> list[float]:
        """Pyramid scales (level px / photo px), largest first, down to a level of `min_side` px."""
        out, scale = [], self.upscale
        while min(width, height) * scale >= self.min_side:
            out.append(scale)
            scale *= self.step
        return out

    def windows(self, rgb: np.ndarray, *, levels: int | None = None,
                regions: list[tuple[float, float, float, float]] | None = None,
                tile: int | None = None, margin: int | None = None) -> list[Window]:
        """Every window scoring above `threshold` at every level, before overlap suppression.

        Each level is run in tiles of at most `tile` px (plus `margin` px of context on each side),
        each tile resized straight from the photo, so the enlarged level never exists whole: the
        memory is that of one tile whatever the photo's size and enlargement. A cell belongs to the
        one tile whose core holds it, and the margin covers the net's reach, so the cells scored are
        those of the whole level (tests/test_crowd.py compares them). `levels` runs only the first
        (largest) levels; `regions` ((left, top, right, bottom) as fractions of the photo) runs only
        the tiles of each level that overlap one of them; `tile` and `margin` override the detector's:
        all four are for a cheap probe (crowd_detect.AutoDetector).
        """
        from PIL import Image

        height, width = rgb.shape[:2]
        image = Image.fromarray(rgb)
        win_w, win_h = self.net.window
        found: list[Window] = []
        for scale in self.scales(width, height)[:levels]:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            sx, sy = width / size[0], height / size[1]
            for core in _tiles(size, tile or self.tile, regions):
                crop, scores = self._score_tile(image, size, core, self.margin if margin is None else margin)
                keep = _local_maxima(scores, self.threshold)
                for row, col in zip(*np.nonzero(keep), strict=True):
                    # Cell centre in the padded level's pixels; the crop starts on the 8 px output grid.
                    cx = crop[0] + self._offset + self._stride * int(col)
                    cy = crop[1] + self._offset + self._stride * int(row)
                    if not (core[0] <= cx < core[2] and core[1] <= cy < core[3]):
                        continue  # another tile's cell: scored there with full context
                    left, top = cx - OUTER_PAD - win_w // 2, cy - OUTER_PAD - win_h // 2
                    box = (round(left * sx), round(top * sy), round((left + win_w) * sx), round((top + win_h) * sy))
                    found.append(Window(box, float(scores[row, col])))
        return found

    def _score_tile(self, image, size: tuple[int, int], core: tuple[int, int, int, int], margin: int):
        """The crop (padded-level px) around `core` with `margin` of context, and its score map.

        The padded level is the level with OUTER_PAD black px around it; only the crop's pixels are
        made, by resizing the matching part of the photo (PIL's resize `box`)."""
        from PIL import Image

        pw, ph = size[0] + 2 * OUTER_PAD, size[1] + 2 * OUTER_PAD
        x0, y0 = max(0, core[0] - margin), max(0, core[1] - margin)
        x0, y0 = x0 - x0 % self._stride, y0 - y0 % self._stride  # keep the output grid aligned
        x1, y1 = min(pw, core[2] + margin), min(ph, core[3] + margin)
        crop = np.zeros((y1 - y0, x1 - x0, 3), np.uint8)
        # The part of the crop inside the level (level px), made from the photo's matching box.
        lx0, ly0 = max(0, x0 - OUTER_PAD), max(0, y0 - OUTER_PAD)
        lx1, ly1 = min(size[0], x1 - OUTER_PAD), min(size[1], y1 - OUTER_PAD)
        if lx1 > lx0 and ly1 > ly0:
            fx, fy = image.width / size[0], image.height / size[1]
            part = image.resize((lx1 - lx0, ly1 - ly0), Image.Resampling.BILINEAR,
                                box=(lx0 * fx, ly0 * fy, lx1 * fx, ly1 * fy))
            top, left = ly0 + OUTER_PAD - y0, lx0 + OUTER_PAD - x0
            crop[top:top + part.height, left:left + part.width] = np.asarray(part)
        scores = self._session.run(["scores"], {"image": crop[None]})[0][0, 0]
        return (x0, y0), scores

    def detect_boxes(self, rgb: np.ndarray) -> list[Window]:
        """Windows kept after suppressing those overlapping a better one (IoU > the file's, ~0.34)."""
        return self.suppress(self.windows(rgb))

    def suppress(self, windows: list[Window]) -> list[Window]:
        """The best of each group of overlapping windows (dlib's loss_mmod suppression): greedy by score,
        each window against the kept ones in one numpy step (thousands of weak windows in a crowd)."""
        kept: list[Window] = []
        boxes = np.empty((len(windows), 4))
        for w in sorted(windows, key=lambda w: -w.score):
            if kept:
                k = boxes[:len(kept)]
                iw = np.minimum(k[:, 2], w.box[2]) - np.maximum(k[:, 0], w.box[0])
                ih = np.minimum(k[:, 3], w.box[3]) - np.maximum(k[:, 1], w.box[1])
                inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
                area = (w.box[2] - w.box[0]) * (w.box[3] - w.box[1])
                union = (k[:, 2] - k[:, 0]) * (k[:, 3] - k[:, 1]) + area - inter
                if np.any(inter > self.net.nms_iou * union):
                    continue
            boxes[len(kept)] = w.box
            kept.append(w)
        return kept


def _tiles(size: tuple[int, int], tile: int,
           regions: list[tuple[float, float, float, float]] | None) -> list[tuple[int, int, int, int]]:
    """Tile cores (left, top, right, bottom) covering the padded level of `size` (level px), each at
    most `tile` px a side (a multiple of 8, so every crop starts on the output grid), evenly split;
    with `regions`, only the cores overlapping one of them (fractions of the level)."""
    pw, ph = size[0] + 2 * OUTER_PAD, size[1] + 2 * OUTER_PAD

    def cuts(n: int) -> list[int]:
        parts = max(1, math.ceil(n / tile))
        step = math.ceil(n / parts / 8) * 8
        return [min(n, i * step) for i in range(parts)] + [n]

    xs, ys = cuts(pw), cuts(ph)
    cores = [(xs[i], ys[j], xs[i + 1], ys[j + 1]) for j in range(len(ys) - 1) for i in range(len(xs) - 1)
             if xs[i + 1] > xs[i] and ys[j + 1] > ys[j]]
    if regions is None:
        return cores
    return [c for c in cores if any(c[0] < r[2] * pw and r[0] * pw < c[2] and c[1] < r[3] * ph and r[1] * ph < c[3]
                                    for r in regions)]
