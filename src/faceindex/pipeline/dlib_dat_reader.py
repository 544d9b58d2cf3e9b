"""Reader for dlib's binary DNN files (.dat): the layer weights of a serialised `loss<...>` network.

dlib writes a network recursively (dlib/dnn/core.h): the loss layer's version and details, then
one version int per nested wrapper from the outermost inwards (add_layer, add_tag_layer,
add_skip_layer), then the input layer, then each computational layer's details from the input
upwards, each followed by its add_layer bookkeeping (three bool chars and some, normally empty,
tensors). Tag and skip wrappers write nothing but their version, so tag ids are not in the file:
the caller must know the network's topology (see resnet_runtime.py). This module only parses.

Integers use dlib's compact format (dlib/serialize.h): one control byte (low nibble = byte count,
0x80 = negative) then that many little-endian bytes. Floats and doubles are a compact int64
mantissa and int16 exponent (value = mantissa * 2**exponent). Tensors have a version int: 1 =
each value as such a float, 2 = raw little-endian float32; then num_samples, k, nr, nc.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from faceindex.errors import ModelFileError

_FLOAT_SPECIAL = {32000: math.inf, 32001: -math.inf, 32002: math.nan}
"""Exponent values dlib's float_details reserves for +inf, -inf and NaN."""


class DlibFormatError(ModelFileError):
    """The file is not a dlib DNN of a layout this reader understands."""


@dataclass(frozen=True)
class Conv:
    """dlib `con_`: cross-correlation, weights (out, in, kh, kw) float32, bias (out,)."""

    weights: np.ndarray
    bias: np.ndarray
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass(frozen=True)
class Affine:
    """dlib `affine_` (batch norm frozen to a per-channel scale and shift): y = gamma * x + beta."""

    gamma: np.ndarray
    beta: np.ndarray
    per_channel: bool


@dataclass(frozen=True)
class Relu:
    """dlib `relu_`: max(x, 0)."""


@dataclass(frozen=True)
class Pool:
    """dlib `max_pool_` / `avg_pool_`; size (0, 0) means the whole input plane (`*_everything`)."""

    mode: str  # "max" or "avg"
    size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass(frozen=True)
class AddPrev:
    """dlib `add_prev_`: output = previous + tagged output, zero-extended to the larger shape."""


@dataclass(frozen=True)
class FullyConnected:
    """dlib `fc_`: y = x_flat @ weights (+ bias); weights (num_inputs, num_outputs)."""

    weights: np.ndarray
    bias: np.ndarray | None


Layer = Conv | Affine | Relu | Pool | AddPrev | FullyConnected


@dataclass
class DlibNet:
    """What a dlib DNN file holds, in the reader's terms."""

    loss: str
    input_layer: str
    input_mean_rgb: tuple[float, float, float]
    input_size: tuple[int, int] | None
    wrapper_versions: list[int] = field(default_factory=list)
    """One version per nested wrapper, outermost first: add_layer writes 2 (its innermost, the one
    holding the input layer, 2 or 3); add_tag_layer and add_skip_layer write 1. add_layer version 1
    (dlib before 2017) would be indistinguishable from a tag, so such files are not supported."""
    layers: list[Layer] = field(default_factory=list)
    """Computational layers from the input upwards."""


class _Stream:
    """Cursor over the file's bytes with dlib's primitive decoders."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def fail(self, what: str) -> DlibFormatError:
        return DlibFormatError(f"dlib .dat: {what} at byte {self.pos}")

    def integer(self) -> int:
        if self.pos >= len(self.data):
            raise self.fail("unexpected end of file")
        control = self.data[self.pos]
        size = control & 0x0F
        if size > 8 or self.pos + 1 + size > len(self.data):
            raise self.fail(f"bad integer control byte {control:#04x}")
        value = int.from_bytes(self.data[self.pos + 1 : self.pos + 1 + size], "little")
        self.pos += 1 + size
        return -value if control & 0x80 else value

    def string(self) -> str:
        size = self.integer()
        if not 0 <= size <= 256 or self.pos + size > len(self.data):
            raise self.fail(f"implausible string length {size}")
        raw = self.data[self.pos : self.pos + size]
        self.pos += size
        return raw.decode("latin-1")

    def real(self) -> float:
        if self.pos < len(self.data) and self.data[self.pos] & 0x70:
            # dlib's pre-2013 ASCII float format: never written by the DNN code.
            raise self.fail("ASCII-format float")
        mantissa, exponent = self.integer(), self.integer()
        if exponent in _FLOAT_SPECIAL:
            return _FLOAT_SPECIAL[exponent]
        return math.ldexp(mantissa, exponent)

    def boolean(self) -> bool:
        char = self.data[self.pos : self.pos + 1]
        if char not in (b"0", b"1"):
            raise self.fail(f"bad bool {char!r}")
        self.pos += 1
        return char == b"1"

    def shape(self) -> tuple[int, int, int, int]:
        return tuple(self.integer() for _ in range(4))  # num_samples, k, nr, nc

    def tensor(self) -> np.ndarray:
        """A resizable_tensor as float32 of shape (num_samples, k, nr, nc)."""
        version = self.integer()
        shape = self.shape()
        count = math.prod(shape)
        if version == 2:
            end = self.pos + 4 * count
            if end > len(self.data):
                raise self.fail("tensor runs past the end of the file")
            values = np.frombuffer(self.data, dtype="<f4", count=count, offset=self.pos)
            self.pos = end
        elif version == 1:
            # Older dlib wrote every value as a compact float: slow to read, but correct.
            values = np.array([self.real() for _ in range(count)], dtype=np.float32)
        else:
            raise self.fail(f"unknown tensor version {version}")
        return values.astype(np.float32).reshape(shape)

    def alias(self) -> tuple[int, int, int, int]:
        """An alias_tensor: only a shape, a view into the layer's params tensor."""
        if (version := self.integer()) != 1:
            raise self.fail(f"unknown alias_tensor version {version}")
        return self.shape()


def _take(params: np.ndarray, offset: int, shape: tuple[int, ...]) -> np.ndarray:
    """The slice of a flat params tensor that an alias_tensor at `offset` covers."""
    size = math.prod(shape)
    flat = params.reshape(-1)
    if offset + size > flat.size:
        raise DlibFormatError("dlib .dat: layer params shorter than their aliases")
    return flat[offset : offset + size].reshape(shape).copy()


def _con(s: _Stream, name: str) -> Conv:
    params = s.tensor()
    s.integer(), s.integer(), s.integer()  # num_filters, nr, nc: repeated by the filters alias
    stride = (s.integer(), s.integer())
    padding = (s.integer(), s.integer())
    filters, biases = s.alias(), s.alias()
    for _ in range(4):  # learning-rate and weight-decay multipliers: training only
        s.real()
    weights = _take(params, 0, filters)
    return Conv(weights, _take(params, weights.size, biases).reshape(-1), stride, padding)


def _affine(s: _Stream, name: str) -> Affine:
    params = s.tensor()
    gamma_shape, beta_shape = s.alias(), s.alias()
    mode = s.integer()  # 0 = CONV_MODE (one value per channel), 1 = FC_MODE (one per element)
    gamma = _take(params, 0, gamma_shape)
    return Affine(gamma, _take(params, gamma.size, beta_shape), per_channel=mode == 0)


def _pool(s: _Stream, name: str) -> Pool:
    size = (s.integer(), s.integer())
    stride = (s.integer(), s.integer())
    padding = (s.integer(), s.integer())
    return Pool("max" if name.startswith("max") else "avg", size, stride, padding)


def _fc(s: _Stream, name: str) -> FullyConnected:
    s.integer(), s.integer()  # num_outputs, num_inputs: repeated by the weights alias
    params = s.tensor()
    weights_shape, bias_shape = s.alias(), s.alias()
    has_bias = s.integer() == 0  # dlib's fc_bias_mode: FC_HAS_BIAS = 0, FC_NO_BIAS = 1
    for _ in range(4):
        s.real()
    if name == "fc_3" and not s.boolean():  # fc_3 adds a use_bias switch
        has_bias = False
    weights = _take(params, 0, weights_shape)
    w2d = weights.reshape(weights_shape[0], -1)
    bias = _take(params, weights.size, bias_shape).reshape(-1) if has_bias else None
    return FullyConnected(w2d, bias)


_LAYER_READERS = {
    "con_4": _con,
    "affine_": _affine,
    "relu_": lambda s, name: Relu(),
    "max_pool_2": _pool,
    "avg_pool_2": _pool,
    "add_prev_": lambda s, name: AddPrev(),
    "fc_2": _fc,
    "fc_3": _fc,
}


def parse_dlib_net(data: bytes) -> DlibNet:
    """Parse a whole dlib DNN serialisation whose loss is loss_metric_ and input an RGB image."""
    s = _Stream(data)
    if (version := s.integer()) != 1:
        raise s.fail(f"unknown add_loss_layer version {version}")
    loss = s.string()
    if loss != "loss_metric_2":
        raise s.fail(f"unsupported loss layer {loss!r}")
    s.real(), s.real()  # margin and distance threshold: training only

    # Wrapper versions are 1..3; the input layer's name that follows starts with its length
    # (15 or more), so the first integer outside 1..3 ends the run. Peek without consuming.
    versions: list[int] = []
    while True:
        mark = s.pos
        value = s.integer()
        if value not in (1, 2, 3):
            s.pos = mark
            break
        versions.append(value)
    if not versions or versions[-1] not in (2, 3):
        raise s.fail("no add_layer directly above the input layer")

    input_layer = s.string()
    if input_layer not in ("input_rgb_image", "input_rgb_image_sized"):
        raise s.fail(f"unsupported input layer {input_layer!r}")
    mean = (s.real(), s.real(), s.real())
    size = (s.integer(), s.integer()) if input_layer == "input_rgb_image_sized" else None

    net = DlibNet(loss, input_layer, mean, size, versions)
    num_layers = sum(v != 1 for v in versions)
    for index in range(num_layers):
        name = s.string()
        reader = _LAYER_READERS.get(name)
        if reader is None:
            raise s.fail(f"unsupported layer {name!r}")
        net.layers.append(reader(s, name))
        # add_layer bookkeeping: setup-called, gradient-stale and output-disabled flags, then
        # x_grad and cached_output (empty in a cleaned net, read anyway to stay in step).
        for _ in range(3):
            s.boolean()
        s.tensor(), s.tensor()
        if index == 0:  # the add_layer that holds the input layer: grad_final (+ v3 factor)
            s.tensor()
            if versions[-1] == 3:
                s.integer()
        else:
            s.tensor()  # params_grad, added in add_layer version 2
    if s.pos != len(data):
        raise s.fail(f"{len(data) - s.pos} trailing bytes")
    return net


def read_dlib_net(path: str | Path) -> DlibNet:
    """Read and parse a dlib DNN .dat file (~0.2 s for the 22 MB face ResNet)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ModelFileError(f"cannot read dlib model {path}: {exc}") from exc
    return parse_dlib_net(data)
