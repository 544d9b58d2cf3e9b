"""Analysis of many photos on a process pool (one pipeline per worker), results streamed as they complete."""

from __future__ import annotations

import itertools
import multiprocessing
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import TypeVar

from faceindex.config import Settings
from faceindex.errors import FaceIndexError
from faceindex.pipeline.analyse import AnalysedImage, FacePipeline

_pipeline: FacePipeline | None = None
Key = TypeVar("Key")


@dataclass
class AnalysisOutcome:
    """What a worker sends back for one file: the analysis, or the reason it was skipped."""

    uri: str
    analysis: AnalysedImage | None = None
    error: str | None = None


def init_worker(settings_json: str) -> None:
    """Process-pool initializer: load the models once per worker process."""
    global _pipeline
    _pipeline = FacePipeline(Settings.model_validate_json(settings_json))


def analyse_file(path: str, uri: str, pipeline: FacePipeline | None = None) -> AnalysisOutcome:
    """Analyse one file; any failure becomes a recorded reason instead of stopping the batch."""
    pipeline = pipeline or _pipeline
    if pipeline is None:
        raise RuntimeError("worker used before init_worker")
    try:
        return AnalysisOutcome(uri, analysis=pipeline.analyse(path))
    except FaceIndexError as exc:
        return AnalysisOutcome(uri, error=exc.message)
    except MemoryError:
        return AnalysisOutcome(uri, error="out of memory while decoding")
    except Exception as exc:  # noqa: BLE001 - a hostile file must never stop the batch
        return AnalysisOutcome(uri, error=f"unexpected {type(exc).__name__}: {exc}")


def analyse_stream(sources: Iterable[tuple[str, str, Key]], pipeline: FacePipeline,
                   workers: int) -> Iterator[tuple[AnalysisOutcome, Key]]:
    """Analyse (path, uri, key) sources, yielding (outcome, key) in completion order.

    With `workers` <= 1 everything runs here on `pipeline`; otherwise on that many spawned processes
    that each build a pipeline from `pipeline.settings` (~1 s of model loading each, so callers pass
    1 for a handful of photos). `sources` is consumed lazily with a bounded window of work in flight,
    so memory stays flat on huge folders; no process starts when `sources` is empty.
    """
    queue = iter(sources)
    first = next(queue, None)
    if first is None:
        return
    queue = itertools.chain([first], queue)
    if workers <= 1:
        for path, uri, key in queue:
            yield analyse_file(path, uri, pipeline), key
        return
    context = multiprocessing.get_context("spawn")  # fork is unsafe once FAISS/OpenMP threads exist
    with ProcessPoolExecutor(workers, mp_context=context, initializer=init_worker,
                             initargs=(pipeline.settings.model_dump_json(),)) as pool:
        pending: dict[Future, tuple[str, Key]] = {}
        window = workers * 4  # bounded in-flight work
        while True:
            while len(pending) < window and (source := next(queue, None)) is not None:
                path, uri, key = source
                pending[pool.submit(analyse_file, path, uri)] = (uri, key)
            if not pending:
                return
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                uri, key = pending.pop(future)
                try:
                    outcome = future.result()
                except Exception as exc:  # noqa: BLE001 - a crashed worker must not stop the batch
                    outcome = AnalysisOutcome(uri, error=f"worker failed: {type(exc).__name__}")
                yield outcome, key
