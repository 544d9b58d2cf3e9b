"""Ingest analysis on a Ray cluster: a Ray Data pipeline (read → decode, detect, embed in an actor pool) whose
results stream back to the driver, where `IngestRunner` commits them exactly as for a local ingest.

Only the analysis moves. Scanning the declared paths, hashing, skipping unchanged files, opt-out filtering,
provenance and the audited batch commits stay in the driver (runner.IngestRunner), so a cluster ingest records
what a local one records. A worker or node that dies mid-job costs nothing: Ray restarts the actor and retries
the blocks it held, the driver drops any row it has already seen (by key), a file the cluster never answered
for comes back with retry=True (not recorded: the next run does it), and a re-run skips what was committed.
"""

from __future__ import annotations

import itertools
import math
import os
import pickle
from collections.abc import Iterable, Iterator
from contextlib import ExitStack

from faceindex.errors import FaceIndexError, ModelMismatchError, WorkerPoolError
from faceindex.ingest.ray_cluster import RaySession, ray_session
from faceindex.ingest.ray_stages import FaceAnalyser, read_files
from faceindex.ingest.scanner import SourceFile
from faceindex.pipeline.analyse import FacePipeline
from faceindex.pipeline.parallel import AnalysisOutcome

WINDOW_FILES = 2048
"""Files handed to the cluster per Ray Dataset. The driver hashes a window's files before the cluster starts on
them, and each window starts its actor pool anew (~1-2 s of model loading per actor), so larger windows waste
less; smaller ones start sooner and keep the driver's list small (~200 B per file)."""
BLOCKS_PER_ACTOR = 8
FILES_PER_BLOCK = 16
"""A block (the unit Ray schedules, retries and streams back) holds 1 to FILES_PER_BLOCK files, so that each
actor gets about BLOCKS_PER_ACTOR blocks of a window: small enough to balance the last blocks between actors
and to lose little when a node dies, large enough that Ray's per-task cost (~10 ms) stays small."""


class RayAnalysis:
    """Analyse on Ray: use as `with RayAnalysis("auto") as analyse: engine.ingest(..., analyse=analyse)`.

    Entering connects (or starts `local` Ray) and fails with a WorkerPoolError naming the address when the
    cluster cannot be reached; leaving disconnects. `actors` is the size of the analysing pool (default: one
    per CPU of the cluster, one CPU each).
    """

    def __init__(self, address: str, *, actors: int | None = None):
        self.address = address
        self.actors = actors
        self._stack = ExitStack()
        self._session: RaySession | None = None

    def __enter__(self) -> RayAnalysis:
        self._session = self._stack.enter_context(ray_session(self.address, cpus=self.actors))
        return self

    def __exit__(self, *exc_info) -> None:
        self._session = None
        self._stack.close()

    def __call__(self, sources: Iterable[SourceFile], pipeline: FacePipeline,
                 at_most: int) -> Iterator[tuple[AnalysisOutcome, SourceFile]]:
        """runner.Analyse: yields (outcome, source) for each source once, in completion order."""
        if self._session is None:
            raise WorkerPoolError("RayAnalysis used outside its `with` block (not connected)")
        queue = iter(sources)
        while window := list(itertools.islice(queue, WINDOW_FILES)):
            yield from self._window(window, pipeline)

    def _window(self, window: list[SourceFile], pipeline: FacePipeline) -> Iterator[tuple[AnalysisOutcome, SourceFile]]:
        session = self._session
        ray = session.ray
        actors = max(1, min(self.actors or session.cpus, session.cpus, len(window)))
        per_block = max(1, min(FILES_PER_BLOCK, len(window) // (actors * BLOCKS_PER_ACTOR)))
        # Two stages that Ray Data fuses into one actor operator (read→analyse in the actor's process, block by
        # block): the encoded bytes never cross the object store, and no task is started per block. Kept apart
        # as separate read tasks they cost a task start per block (~4 s each, measured on 2 loaded cores) and
        # made reading, not analysis, the bottleneck.
        rows = [{"key": i, "path": os.fsencode(s.path), "sha256": s.sha256} for i, s in enumerate(window)]
        dataset = (
            ray.data.from_items(rows, override_num_blocks=math.ceil(len(rows) / per_block))
            .map_batches(read_files, fn_kwargs={"max_bytes": pipeline.settings.max_bytes}, batch_size=None)
            .map_batches(FaceAnalyser, fn_constructor_args=(pipeline.settings.model_dump_json(),), batch_size=1,
                         num_cpus=1, compute=ray.data.ActorPoolStrategy(size=actors))
        )
        pending = dict(enumerate(window))
        try:
            for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                for key, blob, model_id in zip(batch["key"], batch["outcome"], batch["model_id"], strict=True):
                    source = pending.pop(int(key), None)
                    if source is None:
                        continue  # a block retried after its first result had arrived: already handled
                    if model_id != pipeline.model_id:
                        raise ModelMismatchError(
                            f"the Ray workers at {self.address} compute faceprints of model {model_id}, this store "
                            f"holds {pipeline.model_id}: install the same faceindex and models on every node")
                    yield pickle.loads(blob), source
        except FaceIndexError:
            raise
        except Exception as exc:  # noqa: BLE001 - any Ray failure: say so; what was committed is kept
            raise WorkerPoolError(
                f"the Ray cluster at {self.address} failed mid-run ({type(exc).__name__}: {_first_line(exc)}); "
                f"{len(pending)} file(s) were not analysed and are not recorded; what was committed is kept and "
                "the same command run again carries on from there") from None
        for source in pending.values():  # never silently dropped: reported, and tried again by the next run
            yield AnalysisOutcome(source.uri, error="not analysed by the Ray cluster (no result came back); not "
                                  "recorded, a later run tries it again", retry=True), source


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else "no message"
