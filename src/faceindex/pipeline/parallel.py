"""Analysis of many photos on a process pool (one pipeline per worker), results streamed as they complete.

A worker process that dies is never blamed on a file silently: the files it had in flight are analysed
again (alone, so the one that kills a worker is found), a pool that cannot start at all gives way to
analysis in this process with a warning, and a file that only ever fails by crashing its worker comes back
with `retry=True` (not a property of the file: callers must not record it as done).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import multiprocessing
import queue as queue_module
import signal
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Generic, TypeVar

from faceindex.config import Settings
from faceindex.errors import FaceIndexError, WorkerPoolError
from faceindex.pipeline.analyse import AnalysedImage, FacePipeline
from faceindex.pipeline.video_analyse import analyse_video
from faceindex.pipeline.video_decode import is_video_file

_pipeline: FacePipeline | None = None
_load_error: Exception | None = None  # in a worker: why its models could not load (worker_ready raises it)
Key = TypeVar("Key")

MAX_POOL_BREAKS = 20
"""Worker pools that may die in one stream before it stops with WorkerPoolError. Each break costs a new
pool (~1 s of model loading per worker); a stream that keeps breaking them has a cause outside any file
(memory, a killed service), which more restarts would not cure."""

MIN_SIDE_PX = 8
"""Photos narrower or lower than this (px) are recorded as skipped by ingest, with that reason, instead of as
indexed without faces: none can hold a face (`min_face_px` is at least 8). Decoding and search still take
them (a valid image; a search answers that it holds no face)."""

POOL_FAILED_HINT = ("In a Python script, put the code that calls faceindex under `if __name__ == \"__main__\":` "
                    "(worker processes import the script again), or use one process (Settings(workers=1), "
                    "`--workers 1`).")


@dataclass
class AnalysisOutcome:
    """What a worker sends back for one file: the analysis, or the reason it was skipped.

    retry=True: the file was not analysed for a reason that is not its own (its worker process died);
    the caller reports it but must not record it as done, so a later run tries it again.
    """

    uri: str
    analysis: AnalysedImage | None = None
    error: str | None = None
    retry: bool = False


VideoProgress = Callable[[str, float, float | None], None]
"""video_progress(uri, seconds_processed, duration_seconds_or_None) while a video is analysed."""
_progress_queue = None  # in a worker process: where video progress goes (a multiprocessing queue), if anywhere


def init_worker(settings_json: str, progress_queue=None) -> None:
    """Process-pool initializer: load the models once per worker process."""
    global _pipeline, _progress_queue, _load_error
    _progress_queue = progress_queue
    # Ctrl-C reaches the whole foreground process group; the parent alone decides what it means (it stops
    # and says so in one line). A worker killed by it would print a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _pipeline = FacePipeline(Settings.model_validate_json(settings_json))
    try:
        _pipeline.load()
    except FaceIndexError as exc:  # e.g. a missing model file: the parent raises it (worker_ready), not a crash
        _load_error = exc


def worker_ready() -> bool:
    """A no-op task: its answer proves a worker process started and loaded its models (else it raises why not)."""
    if _load_error is not None:
        raise _load_error
    return _pipeline is not None


def analyse_file(path: str, uri: str, pipeline: FacePipeline | None = None,
                 progress: VideoProgress | None = None) -> AnalysisOutcome:
    """Analyse one file; any failure becomes a recorded reason instead of stopping the batch."""
    pipeline = pipeline or _pipeline
    if pipeline is None:
        raise RuntimeError("worker used before init_worker")
    pipeline.load()  # outside the try: a model that cannot load is the run's error, not this file's
    try:
        if is_video_file(path):  # by content, like photos: a video is analysed into tracks
            report = progress or (_queue_progress if _progress_queue is not None else None)
            return AnalysisOutcome(uri, analysis=analyse_video(
                pipeline, path, progress=None if report is None else functools.partial(report, uri)))
        decoded = pipeline.decode(path)
        if min(decoded.width, decoded.height) < MIN_SIDE_PX:
            return AnalysisOutcome(uri, error=f"image too small to hold a face ({decoded.width}x{decoded.height} px; "
                                   f"at least {MIN_SIDE_PX} px each way)")
        return AnalysisOutcome(uri, analysis=pipeline.analyse(decoded))
    except FaceIndexError as exc:
        return AnalysisOutcome(uri, error=exc.message)
    except MemoryError:
        return AnalysisOutcome(uri, error="out of memory while decoding")
    except Exception as exc:  # noqa: BLE001 - a hostile file must never stop the batch
        return AnalysisOutcome(uri, error=f"unexpected {type(exc).__name__}: {exc}")


def _queue_progress(uri: str, done_s: float, duration_s: float | None) -> None:
    # Best effort: a full or closed queue never fails the analysis.
    with contextlib.suppress(Exception):
        _progress_queue.put_nowait((uri, done_s, duration_s))


Task = Callable[[str, str], AnalysisOutcome]


def analyse_stream(sources: Iterable[tuple[str, str, Key]], pipeline: FacePipeline,
                   workers: int, *, task: Task = analyse_file,
                   video_progress: VideoProgress | None = None) -> Iterator[tuple[AnalysisOutcome, Key]]:
    """Analyse (path, uri, key) sources, yielding (outcome, key) in completion order.

    With `workers` <= 1 everything runs here on `pipeline`; otherwise on that many spawned processes
    that each build a pipeline from `pipeline.settings` (~1 s of model loading each, so callers pass
    1 for a handful of photos). `sources` is consumed lazily with a bounded window of work in flight,
    so memory stays flat on huge folders; no process starts when `sources` is empty. `task` is what a
    worker runs per file (a module-level function, importable by the worker).

    Worker failures (see the module docstring): a pool whose workers cannot start (the usual cause is a
    script without a `__main__` guard) falls back to this process with a RuntimeWarning, because the
    models are already loaded here and the user asked for the photos to be indexed, not for parallelism.
    Raises WorkerPoolError after MAX_POOL_BREAKS pools died mid-run.
    """
    queue = iter(sources)
    first = next(queue, None)
    if first is None:
        return
    queue = itertools.chain([first], queue)
    if workers <= 1:
        yield from _in_process(queue, pipeline, video_progress)
        return
    yield from _Pools(pipeline, workers, task, video_progress).run(queue)


def _in_process(queue: Iterable[tuple[str, str, Key]], pipeline: FacePipeline,
                video_progress: VideoProgress | None = None) -> Iterator[tuple[AnalysisOutcome, Key]]:
    for path, uri, key in queue:
        yield analyse_file(path, uri, pipeline, video_progress), key


class _PoolStartFailed(Exception):
    """No worker of a new pool came up (nothing was submitted to it yet)."""


@dataclass
class _Broken(Generic[Key]):
    """A pool died mid-run; `in_flight` are the sources it had not answered (one of them may be the cause)."""

    in_flight: list[tuple[str, str, Key]]
    cause: str


class _Pools:
    """Runs the stream on successive pools, replacing each pool that dies (see analyse_stream)."""

    def __init__(self, pipeline: FacePipeline, workers: int, task: Task, video_progress: VideoProgress | None = None):
        self.pipeline = pipeline
        self.workers = workers
        self.task = task
        self.video_progress = video_progress
        self.progress_queue = None
        self.breaks = 0
        self.queue_left: Iterator = iter(())

    def run(self, queue: Iterator[tuple[str, str, Key]]) -> Iterator[tuple[AnalysisOutcome, Key]]:
        try:
            while True:
                broken = yield from self._one_pool(queue, self.workers)
                if broken is None:
                    return
                self._count_break(broken)
                yield from self._isolate(broken.in_flight)
        except _PoolStartFailed as exc:
            warnings.warn(f"faceindex: the analysis worker processes could not start ({exc}); analysing in this "
                          f"process instead, which is slower. {POOL_FAILED_HINT}", RuntimeWarning, stacklevel=2)
            # What the failed pool had not taken (its own queue: the main one or suspects), then the main queue.
            yield from _in_process(itertools.chain(self.queue_left, queue), self.pipeline, self.video_progress)

    def _queue(self, context):
        """The queue workers put video progress in (one per stream), or None when nobody listens."""
        if self.video_progress is not None and self.progress_queue is None:
            self.progress_queue = context.Queue(maxsize=1000)
        return self.progress_queue

    def _drain(self) -> None:
        if self.progress_queue is None:
            return
        while True:
            try:
                uri, done_s, duration_s = self.progress_queue.get_nowait()
            except queue_module.Empty:
                return
            self.video_progress(uri, done_s, duration_s)

    def _count_break(self, broken: _Broken) -> None:
        self.breaks += 1
        if self.breaks > MAX_POOL_BREAKS:
            raise WorkerPoolError(f"analysis worker processes died {self.breaks} times (last: {broken.cause}); "
                                  "nothing they had in hand was recorded. Check free memory, or run with one "
                                  "process (`--workers 1`); a re-run resumes where this one stopped.")

    def _isolate(self, suspects: list[tuple[str, str, Key]]) -> Iterator[tuple[AnalysisOutcome, Key]]:
        """Analyse the files a dead pool had in hand one at a time on one worker: a file that kills that worker
        is the cause and comes back with retry=True; the others are analysed normally."""
        pending = iter(suspects)
        while True:
            broken = yield from self._one_pool(pending, 1, window=1)
            if broken is None:
                return
            for _path, uri, key in broken.in_flight:
                yield AnalysisOutcome(uri, error=f"the analysis worker process died on this file ({broken.cause}); "
                                      "not recorded, a later run tries it again", retry=True), key
            self._count_break(broken)

    def _one_pool(self, queue: Iterator[tuple[str, str, Key]], workers: int,
                  window: int | None = None) -> Iterator[tuple[AnalysisOutcome, Key]]:
        """Yield outcomes from one pool until `queue` is done (returns None) or the pool dies (returns _Broken).

        Raises _PoolStartFailed when its first worker never comes up; no source has been taken then.
        """
        first = next(queue, None)
        if first is None:  # nothing left: no pool (each costs ~1 s of model loading per worker)
            return None
        queue = itertools.chain([first], queue)
        context = multiprocessing.get_context("spawn")  # fork is unsafe once FAISS/OpenMP threads exist
        pool = ProcessPoolExecutor(workers, mp_context=context, initializer=init_worker,
                                   initargs=(self.pipeline.settings.model_dump_json(), self._queue(context)))
        try:
            try:
                # One no-op per worker, submitted together: a spawn pool starts a process per submit only while
                # none is idle, so one probe at a time would start the second worker only after the first had
                # imported and loaded its models (~1 s with a core idle). Work starts once the first is up.
                ready = [pool.submit(worker_ready) for _ in range(workers)]
                wait(ready, return_when=FIRST_COMPLETED)
                next(f for f in ready if f.done()).result()
            except BrokenProcessPool as exc:
                self.queue_left = queue  # the source taken to peek is in it again
                raise _PoolStartFailed(str(exc) or "a worker process ended at start") from exc
            pending: dict[Future, tuple[str, str, Key]] = {}
            window = window or workers * 4  # bounded in-flight work
            while True:
                while len(pending) < window and (source := next(queue, None)) is not None:
                    try:
                        pending[pool.submit(self.task, source[0], source[1])] = source
                    except BrokenProcessPool:
                        return _Broken([*pending.values(), source], "worker process ended")
                if not pending:
                    return None
                # With video progress asked for, wake up twice a second to pass it on while a long video runs.
                finished, _ = wait(pending, timeout=None if self.progress_queue is None else 0.5,
                                   return_when=FIRST_COMPLETED)
                self._drain()
                lost = []
                for future in finished:
                    source = pending.pop(future)
                    try:
                        outcome = future.result()
                    except BrokenProcessPool as exc:
                        lost.append((source, exc))
                        continue
                    except Exception as exc:  # noqa: BLE001 - e.g. an unpicklable result: a reason, not a stop
                        outcome = AnalysisOutcome(source[1], error=f"worker failed: {type(exc).__name__}: {exc}")
                    yield outcome, source[2]
                if lost:
                    return _Broken([s for s, _ in lost] + list(pending.values()),
                                   str(lost[0][1]) or "worker process ended")
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
