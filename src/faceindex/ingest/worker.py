"""Worker-process side of ingest: one pipeline per process, one photo per task."""

from __future__ import annotations

from dataclasses import dataclass

from faceindex.config import Settings
from faceindex.errors import FaceIndexError
from faceindex.pipeline.analyse import AnalysedImage, FacePipeline

_pipeline: FacePipeline | None = None


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
