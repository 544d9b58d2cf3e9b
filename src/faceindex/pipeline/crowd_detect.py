"""Crowd detectors: dlib's MMOD CNN (onnxruntime) over an enlarged pyramid, with HOG (thorough) or after a probe (auto).

HOG at one upsampling misses faces under ~80 px in the detection image; the MMOD pyramid enlarged
`upscale` times finds faces down to 80/upscale px (measured: 12 px faces in ultralight__8.jpg need
7x). Its cost grows with the enlarged image's area, so the enlargement is the smaller of what
`min_face` asks for and what `max_megapixels` allows. HOG still runs first (at its own settings, a
small part of the cost) and its faces are kept as they are; the CNN adds the faces no HOG box
overlaps. So the thorough path finds every face HOG finds, with the same box (measured: the CNN's
box of a 30 px face is a few px smaller than HOG's, enough to turn a searchable face "too small").
The pyramid runs in tiles (mmod_runtime.TILE), so memory stays that of one tile at any enlargement.

In a crowd, the CNN also keeps weaker windows (CROWD_THRESHOLD) that sit among its confident faces at
their size (crowd_support): the faces of a crowd come in numbers and a face's neighbours are about its
size, while the weak windows of a photo without a crowd (a dog, a printed face) have no such company.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from faceindex.pipeline.detect import HogDetector
from faceindex.pipeline.mmod_runtime import MmodDetector
from faceindex.pipeline.types import Detection, iou

CROWD_THRESHOLD = -0.9
"""The weakest CNN window kept in a crowd, when crowd_support vouches for it (the confident faces use the
detector's `threshold`, -0.2 by default). Measured with bench_crowd's reference on the 9 crowd photos
(BENCHMARKS.md): recall 0.750 -> 0.824 of YuNet's faces; most added boxes that no YuNet box overlaps are
faces when looked at. Below -1.0 the weak windows multiply (x2.5 unmatched boxes at -1.1): this stays
clear of that edge."""
CROWD_MIN_FACES = 10
"""Confident new CNN faces a photo needs before weak windows are considered (a crowd); the annotated PASCAL
group photos have 0, the crowds 20-250 (measured: 5, 10 or 20 give the same recall)."""
NEIGHBOURS = 5
NEAR_WIDTHS = 3.0
SIZE_RATIO = 1.5
"""A weak window is kept when the nearest confident face is within NEAR_WIDTHS of its own widths (centre
to centre) and the median width of its NEIGHBOURS nearest confident faces is within SIZE_RATIO of its
own, either way: people standing together are seen at about one size."""

SAME_FACE_IOU = 0.3
"""A HOG box overlapping a CNN box at least this much is the same face: the two detectors frame a
face differently (HOG's box is tighter and lower), so the usual 0.5 would count some faces twice."""


def choose_upscale(width: int, height: int, *, window: int, min_face: int, max_megapixels: float) -> float:
    """Enlargement (>= 1) that brings `min_face` px faces to the detector's `window` px, capped so the
    enlarged image has at most `max_megapixels` (cost ~ area: ~0.06 s per megapixel of the whole
    pyramid on one core, ~2.3x the top level's area with the 3/4 step)."""
    wanted = window / min_face
    allowed = math.sqrt(max_megapixels * 1e6 / max(1, width * height))
    return max(1.0, min(wanted, allowed))


class ThoroughDetector:
    """HOG and the MMOD CNN pyramid on every photo: HOG's faces plus the CNN's new ones (module docstring)."""

    name = "hog+mmod"

    def __init__(self, hog: HogDetector, *, min_face: int = 12, max_megapixels: float = 40.0,
                 step: float = 0.75, threshold: float = 0.0, crowd_threshold: float | None = CROWD_THRESHOLD):
        self.hog = hog
        self.min_face = min_face
        self.max_megapixels = max_megapixels
        self.threshold = threshold  # a confident face's score
        # The CNN reports windows down to the weak ones' score (None: confident faces only).
        self.crowd_threshold = threshold if crowd_threshold is None else min(threshold, crowd_threshold)
        self.cnn = MmodDetector(threshold=self.crowd_threshold, step=step)

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        hog = self.hog.detect(rgb)
        return hog + self.cnn_faces(rgb, hog)

    def enlarge_for(self, rgb: np.ndarray) -> None:
        """Set the CNN's enlargement for this photo (choose_upscale)."""
        height, width = rgb.shape[:2]
        self.cnn.upscale = choose_upscale(width, height, window=min(self.cnn.net.window),
                                          min_face=self.min_face, max_megapixels=self.max_megapixels)

    def cnn_faces(self, rgb: np.ndarray, known: list[Detection]) -> list[Detection]:
        """The CNN's faces over the whole pyramid that overlap none of `known` (kept as they are): its
        confident ones, and in a crowd the weak ones crowd_support vouches for."""
        self.enlarge_for(rgb)
        found = _new_faces(self.cnn.detect_boxes(rgb), known, rgb, self.cnn.name)
        confident = [d for d in found if d.score > self.threshold]
        weak = [d for d in found if d.score <= self.threshold]
        return confident + crowd_support(weak, confident)

    def confident(self, windows):
        """The windows scoring above the confident threshold (the probe's: it asks whether a crowd is there)."""
        return [w for w in windows if w.score > self.threshold]


def crowd_support(weak: list[Detection], confident: list[Detection]) -> list[Detection]:
    """The weak detections that confident faces around them vouch for (CROWD_MIN_FACES, NEIGHBOURS, ...)."""
    if len(confident) < CROWD_MIN_FACES or not weak:
        return []
    boxes = np.array([d.box for d in confident], float)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    widths = boxes[:, 2] - boxes[:, 0]
    kept = []
    for d in weak:
        width = d.box[2] - d.box[0]
        centre = np.array([(d.box[0] + d.box[2]) / 2, (d.box[1] + d.box[3]) / 2])
        distance = np.hypot(*(centres - centre).T)
        nearest = np.argsort(distance)[:NEIGHBOURS]
        ratio = width / np.median(widths[nearest])
        if distance[nearest[0]] <= NEAR_WIDTHS * width and 1 / SIZE_RATIO <= ratio <= SIZE_RATIO:
            kept.append(d)
    return kept


PORTRAIT_MAX_FACES = 2
PORTRAIT_MIN_SHARE = 0.1
"""Auto skips the probe when the fast path found 1-2 faces each at least this share of the photo's
shorter side wide: a portrait or snapshot (measured: 298 of the ingest bench's 300 LFW DevTrain photos,
all 174 of people/ but 6 turned copies, which the turned look then finds and auto skips too)."""
PROBE_GRID = (1 / 6, 1 / 2, 5 / 6)
"""The probe's sample points (fractions of the photo's width and height, a 3x3 grid): a crowd
spreads over the photo, so a few samples see some of its faces wherever it is framed."""
PROBE_TILE = 384
"""Side (px, in the enlarged level) of the square scored around each sample point, without context."""
PROBE_LEVELS = 3
"""Pyramid levels the probe runs (the largest: faces ~12 to ~21 px, where HOG sees nothing)."""
PROBE_MIN_FACES = 3
"""New CNN faces the probe must find for the whole pyramid to run. Measured on shared/faces (bench_crowd
--detail auto, BENCHMARKS.md): 11-21 on the 7 crowds whose faces the fast path misses, 0 on every
other groups/ photo and on nonfaces/."""


class AutoDetector:
    """The fast path, then the thorough CNN only on photos a cheap probe shows to be crowds.

    1. The fast detector (`fast`, e.g. HOG with its CNN fallback) runs as usual.
    2. 1-2 faces each >= PORTRAIT_MIN_SHARE of the shorter side: a portrait, done (no extra cost).
    3. Otherwise (no face, a group, or a small face) a probe runs the CNN at the thorough enlargement
       on PROBE_LEVELS levels, only in 9 tiles of PROBE_TILE px around a 3x3 grid of points
       (~0.6 CPU-s on the shared 2-core machine, 5-10 % of the full pass).
    4. If the probe finds >= PROBE_MIN_FACES faces that no fast face overlaps, the full pyramid runs
       (as with detail='thorough') and its new faces are added to the fast ones.
    A crowd framed away from all 9 sample points, or with only 1-2 probe hits, is missed: thorough
    remains the choice that looks everywhere.

    `make_thorough` builds the CNN on the first probe, not with the pipeline: its model load and ONNX
    graph (~0.5-1 s per worker) are then not paid by ingests of portraits, which never probe.
    """

    def __init__(self, fast, make_thorough):
        self.fast = fast
        self._make_thorough = make_thorough
        self.name = f"auto({fast.name})"
        self.last_probe: int | None = None  # new faces the last probe found (None: skipped), for benches

    @functools.cached_property
    def thorough(self) -> ThoroughDetector:
        return self._make_thorough()

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        found = self.fast.detect(rgb)
        return found + self.crowd_faces(rgb, found)

    def crowd_faces(self, rgb: np.ndarray, found: list[Detection], *, turned: bool = False) -> list[Detection]:
        """Steps 2-4 after the fast path found `found`: the CNN's new faces, or none. `turned`: the
        photo's faces were found on it turned (a sideways photo), so it is not scanned upright."""
        self.last_probe = None
        if turned or self.is_portrait(rgb, found):
            return []
        self.last_probe = len(self.probe(rgb, found))
        if self.last_probe < PROBE_MIN_FACES:
            return []
        return self.thorough.cnn_faces(rgb, found)

    @staticmethod
    def is_portrait(rgb: np.ndarray, found: list[Detection]) -> bool:
        short = min(rgb.shape[:2])
        return 1 <= len(found) <= PORTRAIT_MAX_FACES and all(
            d.box[2] - d.box[0] >= PORTRAIT_MIN_SHARE * short for d in found)

    def probe(self, rgb: np.ndarray, known: list[Detection]) -> list[Detection]:
        """The CNN's faces in the sample tiles that overlap none of `known`."""
        self.thorough.enlarge_for(rgb)
        cnn = self.thorough.cnn
        regions = [(x - 0.01, y - 0.01, x + 0.01, y + 0.01) for y in PROBE_GRID for x in PROBE_GRID]
        windows = cnn.windows(rgb, levels=PROBE_LEVELS, regions=regions, tile=PROBE_TILE, margin=0)
        return _new_faces(cnn.suppress(self.thorough.confident(windows)), known, rgb, cnn.name)


def _new_faces(windows, known: list[Detection], rgb: np.ndarray, name: str) -> list[Detection]:
    height, width = rgb.shape[:2]
    out = [Detection(_clip(w.box, width, height), w.score, name) for w in windows]
    out = [d for d in out if all(iou(d.box, k.box) < SAME_FACE_IOU for k in known)]
    return [d for d in out if d.box[2] > d.box[0] and d.box[3] > d.box[1]]


def _clip(box, width: int, height: int):
    left, top, right, bottom = box
    return (max(0, left), max(0, top), min(width, right), min(height, bottom))
