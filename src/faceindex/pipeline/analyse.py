"""The full pipeline for one photo: decode → detect → align → quality → embed."""

from __future__ import annotations

import functools
import os
import threading
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from faceindex.config import Settings
from faceindex.pipeline import rotation
from faceindex.pipeline.decode import DecodedImage, decode_image
from faceindex.pipeline.detect import FaceDetector, FallbackDetector, HogDetector, build_detector
from faceindex.pipeline.embed import DlibEmbedder, laplacian_variance, model_id_for
from faceindex.pipeline.types import Detection, Face, iou, scale_box

SAME_FACE_IOU = 0.5
"""Boxes of two detectors overlapping at least this much (intersection over union) are one face."""


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

    Models load on first use (never at import, nor in the constructor): a worker process builds one
    pipeline and reuses it for every image it handles, and the parent of an ingest pool, which only
    hands out files, never loads them (~0.5 CPU-s and ~0.6 s of wall time before the pool could start).
    """

    def __init__(self, settings: Settings | None = None, *, detector: FaceDetector | None = None,
                 embedder: DlibEmbedder | None = None):
        self.settings = settings or Settings()
        self._models_lock = threading.Lock()  # concurrent first calls (the service's threads) load each model once
        self._embedder_of: FacePipeline | None = None  # with_detail(): the pipeline whose embedder this one shares
        if detector is not None:
            self.__dict__["detector"] = detector  # takes the place of the lazy property below
        if embedder is not None:
            self.__dict__["embedder"] = embedder

    @property
    def detector(self) -> FaceDetector:
        if "detector" not in self.__dict__:
            with self._models_lock:
                if "detector" not in self.__dict__:
                    self.__dict__["detector"] = self._build_detector()
        return self.__dict__["detector"]

    @property
    def embedder(self) -> DlibEmbedder:
        if self._embedder_of is not None:
            return self._embedder_of.embedder
        if "embedder" not in self.__dict__:
            with self._models_lock:
                if "embedder" not in self.__dict__:
                    s = self.settings
                    self.__dict__["embedder"] = DlibEmbedder(runtime=s.embed_runtime, flip=s.flip_augment)
        return self.__dict__["embedder"]

    def load(self) -> FacePipeline:
        """Load the models now (no-op once loaded); raises their errors (ModelFileError, ...). Returns self.

        Whoever analyses many files calls this first, so a model that cannot load stops the run with its
        reason instead of becoming every file's reason to be skipped."""
        self.detector, self.embedder  # noqa: B018 - the properties load them
        return self

    def _build_detector(self) -> FaceDetector:
        s = self.settings
        if s.detail == "fast":
            return self._fast_detector()
        from faceindex.pipeline.crowd_detect import AutoDetector, ThoroughDetector

        def thorough() -> ThoroughDetector:
            return ThoroughDetector(HogDetector(s.upsample), min_face=s.thorough_min_face,
                                    max_megapixels=s.thorough_max_megapixels, threshold=s.thorough_threshold)

        return AutoDetector(self._fast_detector(), thorough) if s.detail == "auto" else thorough()

    def _fast_detector(self) -> FaceDetector:
        s = self.settings
        return build_detector(
            s.detector, upsample=s.upsample, yunet_model=s.yunet_model, yunet_sha256=s.yunet_sha256,
            yunet_score=s.yunet_score, fallback_max_side=s.fallback_max_side, fallback_gate=s.fallback_gate,
        )

    @property
    def model_id(self) -> str:
        """The faceprint model's id, known from the settings without loading it (embed.model_id_for)."""
        if self._embedder_of is not None:
            return self._embedder_of.model_id
        if "embedder" in self.__dict__:
            return self.embedder.model_id
        return model_id_for(self.settings.flip_augment)

    def with_detail(self, detail: str) -> FacePipeline:
        """This pipeline, or one like it looking at `detail` (fast, auto, thorough: Settings.detail).

        The faceprint model is shared (no second load), so the faces of both are alike; each level's
        pipeline is built once. A pipeline given its own detector keeps it for its own level only."""
        if detail == self.settings.detail:
            return self
        others = self.__dict__.setdefault("_other_details", {})
        if detail not in others:
            other = FacePipeline(self.settings.model_copy(update={"detail": detail}))
            other._embedder_of = self  # shared, and still not loaded before either level needs it
            others[detail] = other
        return others[detail]

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
        auto = getattr(self.detector, "crowd_faces", None)  # detail=auto: the crowd pass comes last
        detections = (self.detector.fast if auto else self.detector).detect(decoded.detection)
        self._add_faces(result, decoded, detections)
        if detections and not result.accepted:
            self._add_faces(result, decoded, self._second_look(decoded, detections))
        if not result.accepted and self.settings.rotate_retry and not decoded.exif_turned:
            self._turned_look(result, decoded)
        if auto:
            # After the turned look: a sideways portrait (found turned) is neither probed nor scanned
            # upright, and the fast path's second look never re-runs on the crowd's refused faces.
            turned = any("@turned" in f.detector for f in result.faces)
            self._add_faces(result, decoded, auto(decoded.detection, detections, turned=turned))
        return result

    @functools.cached_property
    def _turned_detector(self) -> FaceDetector:
        base = getattr(self.detector, "fast", self.detector)  # auto turns only its fast part
        primary = base.primary if isinstance(base, FallbackDetector) else base
        primary = getattr(primary, "hog", primary)  # the thorough detector turns only its HOG part
        return HogDetector(rotation.TURNED_HOG_UPSAMPLE) if isinstance(primary, HogDetector) else primary

    def _turned_look(self, result: AnalysedImage, decoded: DecodedImage) -> None:
        """Detect again on the photo turned by quarter turns (RETRY_TURNS); keep the first turn with usable faces.

        Only the primary detector runs (HOG without upsampling by default, see TURNED_HOG_UPSAMPLE):
        a sideways face in a photo that EXIF did not turn is a detection miss, not a hard face. Boxes
        and landmarks are mapped back to the photo's own coordinates; the detector name records the turn.
        """
        for turns in rotation.RETRY_TURNS:
            detections = [d for d in self._turned_detector.detect(rotation.rotate(decoded.detection, turns))
                          if d.score >= rotation.TURNED_MIN_SCORE.get(d.detector, -np.inf)]
            if not detections:
                continue
            turned = AnalysedImage(result.width, result.height, result.format, result.captured_at)
            self._add_faces(turned, decoded, detections, turns=turns)
            if turned.accepted:  # a refused upright detection of the same face gives way to it
                result.faces = [f for f in result.faces
                                if all(iou(f.box, t.box) < SAME_FACE_IOU for t in turned.accepted)] + turned.faces
                return

    def _second_look(self, decoded: DecodedImage, detections: list[Detection]) -> list[Detection]:
        """Faces the fallback detector finds where the primary found faces but none usable (boxes new to it).

        The primary detector can find only a small, blurred face in the background and miss the
        subject (measured: HOG on LFW `Xanana_Gusmao_0002`); without this the photo yields no
        faceprint although the stronger detector sees the face. Runs only on photos whose every
        face was rejected, so its cost (~1 s of dlib CNN) stays rare.
        """
        detector = getattr(self.detector, "fast", self.detector)  # auto: its fast part's fallback
        if not isinstance(detector, FallbackDetector):
            return []
        if any(d.detector == detector.secondary.name for d in detections):
            return []  # the fallback already ran: the primary found nothing
        return [d for d in detector.secondary.detect(decoded.detection)
                if all(iou(d.box, seen.box) < SAME_FACE_IOU for seen in detections)]

    def _add_faces(self, result: AnalysedImage, decoded: DecodedImage, detections: list[Detection],
                   *, turns: int = 0) -> None:
        """Align, quality-check and embed `detections` into `result.faces`.

        Detections are in pixels of the detection image turned `turns` quarter turns counter-clockwise;
        the faces get boxes and landmarks in the upright full-resolution photo.
        """
        if not detections:
            return
        full = rotation.rotate(decoded.full(), turns) if turns else decoded.full()
        full_h, full_w = full.shape[:2]
        boxes = [scale_box(d.box, decoded.scale, full_w, full_h) for d in detections]
        keep = [i for i, b in enumerate(boxes) if b[2] - b[0] >= 2 and b[3] - b[1] >= 2]
        landmarks, chips = self.embedder.align(full, [boxes[i] for i in keep])
        accepted_chips = []
        for (i, points, chip) in zip(keep, landmarks, chips, strict=True):
            box = boxes[i]
            detector = detections[i].detector
            if turns:
                box = rotation.unrotate_box(box, turns, decoded.width, decoded.height)
                points = [rotation.unrotate_point(x, y, turns, decoded.width, decoded.height) for x, y in points]
                detector = f"{detector}@turned{90 * turns}"
            face = Face(box=box, score=detections[i].score, detector=detector,
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

    def _quality_problem(self, face: Face) -> str | None:
        s = self.settings
        if face.size_px < s.min_face_px:
            return f"too small ({face.size_px} px < {s.min_face_px} px)"
        if face.blur < s.min_blur:
            return f"too blurred (sharpness {face.blur:.1f} < {s.min_blur})"
        return None
