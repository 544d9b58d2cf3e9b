"""Alignment (dlib 5-point landmarks → 150 px chip) and the 128-d dlib ResNet faceprint."""

from __future__ import annotations

import logging
import threading

import numpy as np

from faceindex.pipeline.types import Box, l2_normalise

log = logging.getLogger(__name__)

CHIP_SIZE = 150
"""Side (px) of the aligned face chip the ResNet expects."""
CHIP_PADDING = 0.25
"""dlib's default padding around the landmarks; the network was trained with it."""
MODEL_ID = "dlib-resnet-v1"


def model_id_for(flip: bool) -> str:
    """The faceprint model id of a DlibEmbedder with this `flip` (the runtime does not change the faceprints)."""
    return MODEL_ID + ("+flip" if flip else "")


def laplacian_variance(chip: np.ndarray) -> float:
    """Sharpness of an aligned chip: variance of the 4-neighbour Laplacian of its grey levels.

    Low values mean few edges: motion/defocus blur or an upscaled tiny face. Scale-dependent, so
    it is always measured on the fixed-size chip, never on the raw box.
    """
    grey = chip.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    lap = -4 * grey[1:-1, 1:-1] + grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:]
    return float(lap.var())


class DlibEmbedder:
    """Aligns faces with dlib's 5-point shape predictor and computes dlib ResNet faceprints.

    `runtime` 'dlib' runs dlib's own (un-BLASed in dlib-bin, ~110 ms/face); 'fast' runs the same
    weights on a faster runtime verified to give the same faceprints; 'auto' prefers fast.
    `flip` averages the faceprint with that of the mirrored chip: costs 2x, and changes the vectors,
    so it gets its own model id (faceprints of different ids are never compared).
    """

    dim = 128

    def __init__(self, runtime: str = "auto", flip: bool = False):
        import dlib
        import face_recognition_models as models

        self._dlib = dlib
        self._shape_predictor = dlib.shape_predictor(models.pose_predictor_five_point_model_location())
        # dlib's objects are not documented as safe for concurrent calls (its detectors are not: see
        # detect.HogDetector); alignment takes ~1 ms a face, so one caller at a time costs the service nothing.
        # The onnxruntime ResNet is safe to run from many threads.
        self._dlib_lock = threading.Lock()
        self._dlib_net = None
        self._fast = None
        if runtime in ("auto", "fast"):
            try:
                from faceindex.pipeline.resnet_runtime import FastResNetDescriptor

                self._fast = FastResNetDescriptor(models.face_recognition_model_location(), threads=1)
            except Exception as exc:  # noqa: BLE001 - any failure falls back to dlib's own net
                if runtime == "fast":
                    raise
                log.info("fast ResNet runtime unavailable (%s); using dlib's", exc)
        if self._fast is None:
            self._dlib_net = dlib.face_recognition_model_v1(models.face_recognition_model_location())
        self.flip = flip
        self.runtime = "fast" if self._fast is not None else "dlib"
        self.model_id = model_id_for(flip)

    def align(self, rgb: np.ndarray, boxes: list[Box]) -> tuple[list[list[tuple[float, float]]], np.ndarray]:
        """Return the 5 landmarks of each box and the aligned uint8 chips (n, 150, 150, 3)."""
        if not boxes:
            return [], np.zeros((0, CHIP_SIZE, CHIP_SIZE, 3), np.uint8)
        with self._dlib_lock:
            shapes = self._dlib.full_object_detections()
            landmarks = []
            for left, top, right, bottom in boxes:
                shape = self._shape_predictor(rgb, self._dlib.rectangle(left, top, right - 1, bottom - 1))
                shapes.append(shape)
                landmarks.append([(float(p.x), float(p.y)) for p in shape.parts()])
            chips = self._dlib.get_face_chips(rgb, shapes, size=CHIP_SIZE, padding=CHIP_PADDING)
        return landmarks, np.stack([np.asarray(c, dtype=np.uint8) for c in chips])

    def embed_chips(self, chips: np.ndarray) -> np.ndarray:
        """Faceprints (n, 128) float32, L2-normalised, for aligned chips (n, 150, 150, 3)."""
        if len(chips) == 0:
            return np.zeros((0, self.dim), np.float32)
        if not self.flip:
            return l2_normalise(self._raw(chips))
        # The chips and their mirrors in one call: one runtime call fewer per photo (~1 ms a face of ~12 on
        # onnxruntime, measured), and the same vectors to the bit as two calls.
        both = self._raw(np.concatenate([chips, chips[:, :, ::-1, :]]))
        return l2_normalise(both[: len(chips)] + both[len(chips):])

    def _raw(self, chips: np.ndarray) -> np.ndarray:
        if self._fast is not None:
            return np.asarray(self._fast.compute(chips), dtype=np.float32)
        batch = [np.ascontiguousarray(c) for c in chips]
        with self._dlib_lock:
            return np.asarray(self._dlib_net.compute_face_descriptor(batch), dtype=np.float32)
