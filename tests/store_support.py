"""Helpers of the store tests: synthetic catalog rows (no models needed) for scale and concurrency tests."""

from __future__ import annotations

import numpy as np

from faceindex.pipeline.types import Face
from faceindex.store.catalog import Catalog
from faceindex.store.synthetic import normalise

MODEL = "dlib-resnet-v1"


def synthetic_faces(n: int, seed: int) -> list[Face]:
    """`n` accepted faces with random unit faceprints (deterministic per seed)."""
    vectors = normalise(np.random.default_rng(seed).standard_normal((n, 128)).astype(np.float32))
    return [Face(box=(0, 0, 80, 80), score=1.0, detector="synthetic", landmarks=[(0.0, 0.0)] * 5, size_px=80,
                 blur=100.0, embedding=v) for v in vectors]


def add_images(catalog: Catalog, collection_id: int, n: int, *, faces_per_image: int = 1, seed: int = 0,
               prefix: str = "/synthetic", model: str = MODEL) -> list[int]:
    """Insert `n` indexed images with synthetic faces through the catalog, in one transaction; their ids."""
    ids = []
    faces = synthetic_faces(n * faces_per_image, seed)
    with catalog.transaction():
        catalog.bind_model(model)
        for i in range(n):
            image_id = catalog.insert_image(collection_id, f"{prefix}/{seed}/{i}.jpg", sha256=f"{seed:04d}{i:060d}",
                                            size_bytes=1, width=80, height=80, n_faces=faces_per_image)
            catalog.insert_faces(image_id, faces[i * faces_per_image:(i + 1) * faces_per_image], model)
            ids.append(image_id)
    return ids
