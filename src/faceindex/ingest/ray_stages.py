"""What runs on the Ray workers of a cluster ingest: the read stage and the analysing actor (no Ray import here)."""

from __future__ import annotations

import hashlib
import os
import pickle
import stat

import numpy as np

from faceindex.config import Settings
from faceindex.pipeline.analyse import FacePipeline
from faceindex.pipeline.parallel import AnalysisOutcome, analyse_file

CHANGED = ("the file changed between hashing and analysis (or a worker sees another file at this path); not "
           "recorded, a later run indexes its current content")
"""Reason of a file whose bytes on the worker do not hash to what the driver's scan found: such an outcome is sent
back with retry=True and never recorded at all (a later run indexes the file's current content)."""


def read_files(batch: dict[str, np.ndarray], *, max_bytes: int) -> dict[str, np.ndarray]:
    """Read stage (Ray tasks): the encoded bytes of each file, checked against the sha256 of the driver's scan.

    A file that cannot be read here, or is over `max_bytes`, gets no bytes (`data` empty): the analyser then
    analyses it by path, so its skip reason is word for word the one a local ingest records, and a file too big
    to analyse is never read whole. Ray Data runs this stage in the analysing actor's process (see ray_ingest).
    """
    data, changed = [], []
    for path, sha256 in zip(batch["path"], batch["sha256"], strict=True):
        content, differs = b"", False
        try:
            info = os.stat(os.fsdecode(path))
            if stat.S_ISREG(info.st_mode) and info.st_size <= max_bytes:
                with open(os.fsdecode(path), "rb") as handle:
                    content = handle.read(max_bytes + 1)
                differs = hashlib.sha256(content).hexdigest() != sha256
                content = b"" if differs else content
        except (OSError, ValueError):
            content = b""  # the actor's decode by path says why, exactly as a local ingest would
        data.append(content)
        changed.append(differs)
    return {"key": batch["key"], "path": batch["path"], "data": _objects(data), "changed": np.array(changed)}


class FaceAnalyser:
    """Actor-pool stage: builds the face pipeline once per actor (models load once per worker process) and
    analyses each file with the very function local ingest uses (`pipeline.parallel.analyse_file`).

    Each row comes back as `outcome`, the pickled AnalysisOutcome (faces with their faceprints; no pixels), and
    `model_id`, which the driver checks against the store's model before committing anything.
    """

    def __init__(self, settings_json: str):
        self.pipeline = FacePipeline(Settings.model_validate_json(settings_json))
        self.model_id = self.pipeline.model_id

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outcomes = []
        for path, data, changed in zip(batch["path"], batch["data"], batch["changed"], strict=True):
            uri = ""  # the driver knows each row's uri by its key; the outcome's own uri is not used
            if changed:
                outcome = AnalysisOutcome(uri, error=CHANGED, retry=True)
            else:
                # bytes when the read stage got them, else the path: decode reports the file's own problem
                outcome = analyse_file(bytes(data) if len(data) else os.fsdecode(path), uri, self.pipeline)
            if outcome.analysis is not None:
                outcome.analysis.decoded = None  # never ship pixels back
            outcomes.append(pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL))
        return {"key": batch["key"], "outcome": _objects(outcomes),
                "model_id": np.array([self.model_id] * len(outcomes))}


def _objects(items: list) -> np.ndarray:
    """A 1-d object array (numpy would otherwise try to make a 2-d array or a fixed-width string of bytes)."""
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out
