"""Executors for a resnet_runtime plan: an in-memory ONNX graph on onnxruntime, or plain numpy.

Each `*_runner(plan)` returns a function mapping uint8 chips (n, H, W, 3) RGB to float32 (n, d).
Both follow dlib's semantics exactly where they are unusual: input = (pixel - mean) / 256, and an
add of differently shaped tensors zero-extends both at the end of each axis (channels, rows,
columns), which this network relies on where a stride-2 conv gives 3x3 but the pooled shortcut 4x4.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

Runner = Callable[[np.ndarray], np.ndarray]


def onnx_runner(plan: list, threads: int | None = None) -> Runner:
    """An onnxruntime CPU session on the plan's ONNX graph, as a Runner.

    `threads` sets onnxruntime's intra-op pool; None lets it use every physical core. Raises
    ImportError when onnx or onnxruntime is not installed.
    """
    import onnxruntime as ort

    model = build_onnx_model(plan)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.inter_op_num_threads = 1  # the graph is one chain: no parallel branches to run
    if threads:
        options.intra_op_num_threads = threads
    # Idle pool threads would otherwise busy-wait after each run, taking CPU from the face
    # detector and everything else on a small shared machine.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return lambda chips: session.run(["descriptors"], {"chips": chips})[0]


def build_onnx_model(plan: list):
    """The plan as an in-memory onnx.ModelProto: input "chips" uint8 (n, H, W, 3), output
    "descriptors" float32 (n, d); opset 17, ir_version 8 (readable by onnxruntime >= 1.13)."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, names = [], [], []

    def const(array: np.ndarray, name: str) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(op: str, inputs: list[str], out: str, **attrs) -> str:
        nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    for idx, step in enumerate(plan):
        out, a = f"v{idx}", step.args
        x = names[step.inputs[0]] if step.inputs else ""
        if step.op == "input":
            # uint8 NHWC chips -> float NCHW, (pixel - mean) / 256 as dlib's input layer does;
            # 1/256 is a power of two, so multiplying is bit-identical to dividing.
            t = node("Cast", ["chips"], "chips_f", to=TensorProto.FLOAT)
            t = node("Sub", [t, const(a["mean"], "mean")], "centred")
            t = node("Mul", [t, const(np.array(1 / 256, np.float32), "scale")], "scaled")
            node("Transpose", [t], out, perm=[0, 3, 1, 2])
        elif step.op == "conv":
            (py, px) = a["pad"]
            node(
                "Conv",
                [x, const(a["weights"], f"{out}_w"), const(a["bias"], f"{out}_b")],
                out,
                kernel_shape=list(a["weights"].shape[2:]),
                strides=list(a["stride"]),
                pads=[py, px, py, px],
            )
        elif step.op == "scale_shift":
            t = node("Mul", [x, const(a["gamma"], f"{out}_g")], f"{out}_m")
            node("Add", [t, const(a["beta"], f"{out}_b")], out)
        elif step.op == "relu":
            node("Relu", [x], out)
        elif step.op == "pool":
            (py, px) = a["pad"]
            op = "MaxPool" if a["mode"] == "max" else "AveragePool"
            # count_include_pad=0 (the default): padded cells do not count, as in dlib.
            node(op, [x], out, kernel_shape=list(a["size"]), strides=list(a["stride"]), pads=[py, px, py, px])
        elif step.op == "add":
            padded = []
            for j in step.inputs:
                grow = [t - s for s, t in zip(plan[j].shape, step.shape, strict=True)]
                if any(grow):  # zero-extend at the end of C, H, W (pads: all begins, then all ends)
                    pads = const(np.array([0, 0, 0, 0, 0, *grow], np.int64), f"{out}_p{j}")
                    padded.append(node("Pad", [names[j], pads], f"{out}_x{j}"))
                else:
                    padded.append(names[j])
            node("Add", padded, out)
        elif step.op == "fc":
            t = node("Flatten", [x], f"{out}_flat", axis=1)  # NCHW order, as dlib flattens
            if a["bias"] is None:
                node("MatMul", [t, const(a["weights"], f"{out}_w")], out)
            else:
                node("Gemm", [t, const(a["weights"], f"{out}_w"), const(a["bias"], f"{out}_b")], out)
        else:
            raise ValueError(f"unknown plan op {step.op!r}")
        names.append(out)
    node("Identity", [names[-1]], "descriptors")

    height, width = plan[0].shape[1:]
    inputs = [helper.make_tensor_value_info("chips", TensorProto.UINT8, ["n", height, width, 3])]
    outputs = [helper.make_tensor_value_info("descriptors", TensorProto.FLOAT, ["n", plan[-1].shape[0]])]
    graph = helper.make_graph(nodes, "dlib_resnet", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def numpy_runner(plan: list) -> Runner:
    """Run the plan with numpy, NHWC inside so that im2col windows reshape without transposes."""
    last_use = {j: idx for idx, step in enumerate(plan) for j in step.inputs}

    def run(chips: np.ndarray) -> np.ndarray:
        values: dict[int, np.ndarray] = {}
        for idx, step in enumerate(plan):
            x = values[step.inputs[0]] if step.inputs else None
            values[idx] = _numpy_step(step, x, chips, [values[j] for j in step.inputs])
            for j in step.inputs:  # free activations as soon as nothing reads them again
                if last_use[j] == idx:
                    values.pop(j, None)
        return values[len(plan) - 1]

    return run


def _numpy_step(step, x, chips: np.ndarray, inputs: list[np.ndarray]) -> np.ndarray:
    a = step.args
    if step.op == "input":
        return (chips.astype(np.float32) - a["mean"]) / np.float32(256)
    if step.op == "conv":
        w = a["weights"]
        cols, (n, ho, wo) = _windows(x, w.shape[2:], a["stride"], a["pad"], 0.0)
        # (n, ho, wo, c, kh, kw) -> rows of c*kh*kw, the same order as the filter's (c, kh, kw)
        y = cols.reshape(n * ho * wo, -1) @ w.reshape(w.shape[0], -1).T + a["bias"]
        return y.reshape(n, ho, wo, w.shape[0])
    if step.op == "scale_shift":
        return x * a["gamma"].transpose(0, 2, 3, 1) + a["beta"].transpose(0, 2, 3, 1)
    if step.op == "relu":
        return np.maximum(x, np.float32(0))  # not in place: x may be a tagged value read later
    if step.op == "pool":
        if a["mode"] == "max":
            cols, _ = _windows(x, a["size"], a["stride"], a["pad"], -np.inf)
            return cols.max(axis=(-2, -1))
        cols, _ = _windows(x, a["size"], a["stride"], a["pad"], 0.0)
        count, _ = _windows(np.ones_like(x[:1, ..., :1]), a["size"], a["stride"], a["pad"], 0.0)
        return cols.sum(axis=(-2, -1)) / count.sum(axis=(-2, -1))  # in-image cells only
    if step.op == "add":
        c, h, w = step.shape
        out = np.zeros((inputs[0].shape[0], h, w, c), np.float32)
        for t in inputs:  # zero-extension: each addend fills its own top-left corner
            out[:, : t.shape[1], : t.shape[2], : t.shape[3]] += t
        return out
    if step.op == "fc":
        flat = x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1)  # NCHW order, as dlib flattens
        y = flat @ a["weights"]
        return y if a["bias"] is None else y + a["bias"]
    raise ValueError(f"unknown plan op {step.op!r}")


def _windows(x: np.ndarray, size, stride, pad, fill: float):
    """Strided (n, ho, wo, c, kh, kw) view of the kh x kw windows of NHWC `x` padded by `fill`."""
    (kh, kw), (sy, sx), (py, px) = size, stride, pad
    if py or px:
        x = np.pad(x, ((0, 0), (py, py), (px, px), (0, 0)), constant_values=fill)
    n, h, w, _ = x.shape
    ho, wo = (h - kh) // sy + 1, (w - kw) // sx + 1
    view = sliding_window_view(x, (kh, kw), axis=(1, 2))
    return view[:, : (ho - 1) * sy + 1 : sy, : (wo - 1) * sx + 1 : sx], (n, ho, wo)
