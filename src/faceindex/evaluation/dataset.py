"""Labelled photos for evaluation: which images with which identity, and one faceprint per image.

- `scan_labelled_folder` / `load_dataset`: images with their identity (folder name), optionally LFW pairs;
- `LabelledEmbedder`: one faceprint per image, the face the label refers to (`choose_face`), cached in
  memory by path so an image named by many pairs is analysed once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceindex.errors import InvalidInputError
from faceindex.evaluation.lfw import Pair, images_dir, load_pairs
from faceindex.pipeline.face_choice import FACE_CHOICES, choose_face
from faceindex.pipeline.parallel import AnalysisOutcome, analyse_stream
from faceindex.pipeline.types import Face

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class LabelledImage:
    """One photo and the identity its folder names."""

    path: Path
    identity: str


@dataclass
class Embedded:
    """The faceprint chosen for one labelled image, or why there is none.

    `embedding` is the L2-normalised float32 faceprint of the chosen face; None with `reason` set
    when the image could not be decoded, had no face, or had only faces the quality gate refused.
    `n_faces` counts every face the detector found (bystanders included).
    """

    image: LabelledImage
    embedding: np.ndarray | None
    face: Face | None = None
    n_faces: int = 0
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.embedding is not None


@dataclass
class Dataset:
    """What one evaluation runs on: the images (every one embedded) and, for LFW, the pairs."""

    name: str
    images: list[LabelledImage]
    pairs: list[Pair] | None = None

    @property
    def default_face_choice(self) -> str:
        """'centre' for LFW pairs (its photos are crops centred on the labelled face), else 'prominent'."""
        return "centre" if self.pairs is not None else "prominent"


def scan_labelled_folder(root: str | Path) -> list[LabelledImage]:
    """Every file under `root/<identity>/` (any depth), labelled with that folder's name, sorted.

    LFW's own layout works as is: when `root/images/` exists it is the folder scanned. Files directly
    in `root` (README, pairs files) and hidden names are skipped. Files are not filtered by extension
    (formats are sniffed from content when decoded); one that is not an image becomes a failure with
    its reason, so nothing is dropped silently.
    """
    base = images_dir(root)
    images = []
    for ident_dir in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(ident_dir.rglob("*")):
            rel = path.relative_to(ident_dir).parts
            if path.is_file() and not any(part.startswith(".") for part in rel):
                images.append(LabelledImage(path, ident_dir.name))
    if not images:
        raise InvalidInputError(f"no images under {base}: expected {base}/<identity>/<photo>")
    return images


def load_dataset(root: str | Path, pairs_file: str | Path | None = None) -> Dataset:
    """The images of a labelled folder, or with `pairs_file` (LFW format) exactly the images its pairs name.

    With pairs, only the ~2 x pairs images are embedded (3 443 for pairsDevTrain.txt, not all 9 525):
    the verification curves and identification then run on those images.
    """
    if pairs_file is None:
        return Dataset(Path(root).resolve().name, scan_labelled_folder(root))
    pairs = load_pairs(pairs_file, root)
    unique = sorted({p for pr in pairs for p in (pr.path_a, pr.path_b)})
    name = f"{Path(pairs_file).name} on {Path(root).resolve().name}"
    return Dataset(name, [LabelledImage(p, p.parent.name) for p in unique], pairs)


class LabelledEmbedder:
    """One faceprint per labelled image through a FacePipeline, cached in memory by path.

    The chosen face is `choose_face` among the faces that passed the quality gate; if none did, the
    image is a failure whose reason is that of the face `choose_face` would have picked.
    `workers` > 1 analyses on that many processes (each loads the models once, ~1 s: worth it from
    a few dozen photos). Memory: ~0.6 KB per image (the faceprint and the Face record).
    """

    def __init__(self, pipeline, workers: int = 1, face_choice: str = "prominent"):
        if face_choice not in FACE_CHOICES:
            raise InvalidInputError(f"unknown face choice {face_choice!r}: expected one of {', '.join(FACE_CHOICES)}")
        self.pipeline = pipeline
        self.workers = workers
        self.face_choice = face_choice
        self._cache: dict[Path, Embedded] = {}

    @property
    def model_id(self) -> str:
        return self.pipeline.model_id

    def embed(self, image: LabelledImage) -> Embedded:
        return self.embed_all([image])[0]

    def embed_all(self, images: Sequence[LabelledImage], progress: ProgressFn | None = None) -> list[Embedded]:
        todo: dict[Path, LabelledImage] = {}
        for image in images:
            if (key := image.path.resolve()) not in self._cache:
                todo.setdefault(key, image)
        already = len(images) - len(todo)
        workers = self.workers if len(todo) >= MIN_PARALLEL_IMAGES else 1
        sources = ((str(image.path), str(image.path), key) for key, image in todo.items())
        for n, (outcome, key) in enumerate(analyse_stream(sources, self.pipeline, workers), start=1):
            self._cache[key] = _embedded(todo[key], outcome, self.face_choice)
            if progress is not None:
                progress(already + n, len(images))
        return [self._cache[image.path.resolve()] for image in images]


MIN_PARALLEL_IMAGES = 32
"""Fewer new images than this are analysed in this process: starting workers costs ~1 s each."""


def _embedded(image: LabelledImage, outcome: AnalysisOutcome, rule: str) -> Embedded:
    """The chosen face of one analysed image, or a failure with its reason."""
    analysed = outcome.analysis
    if analysed is None:  # undecodable, too large, not an image: a listed failure
        return Embedded(image, None, reason=f"unreadable: {outcome.error}")
    n = len(analysed.faces)
    if n == 0:
        return Embedded(image, None, reason="no face found")
    chosen = choose_face(analysed.accepted, analysed.width, analysed.height, rule)
    if chosen is None:
        refused = choose_face(analysed.faces, analysed.width, analysed.height, rule)
        return Embedded(image, None, refused, n, reason=f"face refused: {refused.rejected}")
    return Embedded(image, chosen.embedding, chosen, n)
