"""The full pipeline for one photo: decode → detect → align → quality → embed."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from faceindex.config import Settings
from faceindex.pipeline.decode import DecodedImage, decode_image
from faceindex.pipeline.detect import FaceDetector, build_detector
from faceindex.pipeline.embed import DlibEmbedder, laplacian_variance
from faceindex.pipeline.types import Face, scale_box


@dataclass
class AnalysedImage:
    """What the pipeline learnt about one photo: its size, capture time and every face found."""

    width: int
    height: int
    format: str
    captured_at: datetime | None
    faces: list[Face] = field(default_factory=list)
    decoded: DecodedImage | None = field(default=None, repr=False)

    @property
    def accepted(self) -> list[Face]:
        return [f for f in self.faces if f.ok]


class FacePipeline:
    """Loads the models once and turns photos into faces with faceprints.

    Models load in the constructor (never at import), so a worker process builds one pipeline
    and reuses it for every image it handles.
    """

    def __init__(self, settings: Settings | None = None, *, detector: FaceDetector | None = None,
                 embedder: DlibEmbedder | None = None):
        self.settings = settings or Settings()
        s = self.settings
        self.detector = detector or build_detector(
            s.detector, upsample=s.upsample, yunet_model=s.yunet_model, yunet_sha256=s.yunet_sha256,
            yunet_score=s.yunet_score, fallback_max_side=s.fallback_max_side, fallback_gate=s.fallback_gate,
        )
        self.embedder = embedder or DlibEmbedder(runtime=s.embed_runtime, flip=s.flip_augment)

    @property
    def model_id(self) -> str:
        return self.embedder.model_id

    def decode(self, source: str | os.PathLike | bytes) -> DecodedImage:
        s = self.settings
        return decode_image(source, max_pixels=s.max_pixels, max_bytes=s.max_bytes,
                            detect_max_side=s.detect_max_side)

    def analyse(self, source: str | os.PathLike | bytes | DecodedImage, *, keep_image: bool = False) -> AnalysedImage:
        """Find and embed every face of a photo; raises ImageError when it cannot be decoded.

        Faces narrower than `min_face_px` or blurrier than `min_blur` are kept in the result with
        a `rejected` reason and no faceprint, so callers can report them.
        """
        decoded = source if isinstance(source, DecodedImage) else self.decode(source)
        result = AnalysedImage(decoded.width, decoded.height, decoded.format, decoded.captured_at)
        if keep_image:
            result.decoded = decoded
        detections = self.detector.detect(decoded.detection)
        if not detections:
            return result
        full = decoded.full()
        boxes = [scale_box(d.box, decoded.scale, decoded.width, decoded.height) for d in detections]
        keep = [i for i, b in enumerate(boxes) if b[2] - b[0] >= 2 and b[3] - b[1] >= 2]
        landmarks, chips = self.embedder.align(full, [boxes[i] for i in keep])
        accepted_chips = []
        for (i, points, chip) in zip(keep, landmarks, chips, strict=True):
            box = boxes[i]
            face = Face(box=box, score=detections[i].score, detector=detections[i].detector,
                        landmarks=points, size_px=min(box[2] - box[0], box[3] - box[1]),
                        blur=laplacian_variance(chip))
            face.rejected = self._quality_problem(face)
            result.faces.append(face)
            if face.rejected is None:
                accepted_chips.append((face, chip))
        if accepted_chips:
            vectors = self.embedder.embed_chips(np.stack([c for _, c in accepted_chips]))
            for (face, _), vector in zip(accepted_chips, vectors, strict=True):
                face.embedding = vector
        return result

    def _quality_problem(self, face: Face) -> str | None:
        s = self.settings
        if face.size_px < s.min_face_px:
            return f"too small ({face.size_px} px < {s.min_face_px} px)"
        if face.blur < s.min_blur:
            return f"too blurred (sharpness {face.blur:.1f} < {s.min_blur})"
        return None
