"""The `faceindex` command line: a thin typer adapter over the Engine."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from faceindex.config import Settings
from faceindex.engine import Engine
from faceindex.errors import FaceIndexError
from faceindex.store.migrations import LEGAL_BASES

app = typer.Typer(help="Self-hosted face search over photo collections you lawfully hold.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
console = Console(stderr=True)
out = Console()

StoreOpt = Annotated[Path | None, typer.Option("--store", envvar="FACEINDEX_STORE",
                                               help="Store directory (default ./faceindex-data).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def open_engine(store: Path | None, **overrides) -> Engine:
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    return Engine(store, settings)


def fail(exc: FaceIndexError) -> None:
    console.print(f"[red]error[/red] ({exc.code}): {exc.message}")
    raise typer.Exit(2)


def emit_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")


@app.command()
def add(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (walked recursively).")],
    collection: Annotated[str, typer.Option("--collection", "-c", help="Collection to add to.")],
    basis: Annotated[str | None, typer.Option(help=f"Legal basis: {', '.join(LEGAL_BASES)}.")] = None,
    purpose: Annotated[str | None, typer.Option(help="Why this collection is processed.")] = None,
    jurisdiction: Annotated[list[str] | None, typer.Option(help="ISO 3166 code(s), e.g. DE, US-IL.")] = None,
    retention_days: Annotated[int | None, typer.Option(help="Delete faces this many days after ingest.")] = None,
    workers: Annotated[int | None, typer.Option(help="Processes (default: one per core).")] = None,
    detector: Annotated[str | None, typer.Option(help="hog, cnn, yunet, hog+yunet, hog+cnn.")] = None,
    detail: Annotated[str | None, typer.Option(
        help="fast (default) or thorough: also finds faces down to ~12 px in crowds, ~10-30x slower.")] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Index every photo under PATHS into a collection (created with --basis and --purpose)."""
    if detail not in (None, "fast", "thorough"):
        raise typer.BadParameter(f"{detail!r}: use fast or thorough", param_hint="--detail")
    try:
        with open_engine(store, workers=workers, detector=detector, detail=detail) as engine, Progress(
            TextColumn("[bold]indexing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("eta"), TimeRemainingColumn(), console=console, disable=as_json,
        ) as bar:
            task = bar.add_task("files", total=None)

            def progress(event: str, done: int, total: int | None) -> None:
                if event == "total":
                    bar.update(task, total=total)
                bar.update(task, completed=done)

            report = engine.ingest(paths, collection, basis=basis, purpose=purpose, progress=progress,
                                   jurisdictions=tuple(jurisdiction or ()), retention_days=retention_days)
    except FaceIndexError as exc:
        fail(exc)
    if as_json:
        emit_json({**report.counts(), "seconds": round(report.seconds, 2),
                   "skipped_files": [{"path": p, "reason": r} for p, r in report.skipped]})
        return
    counts = report.counts()
    console.print(f"[green]done[/green] in {report.seconds:.1f} s: {counts['indexed']} images indexed, "
                  f"{counts['faces']} faces, {counts['unchanged']} unchanged, {counts['copied']} copies, "
                  f"{counts['rejected_faces']} faces rejected for quality, {counts['opted_out_faces']} faces of "
                  f"opted-out people dropped, {counts['skipped']} files skipped")
    for path, reason in report.skipped[:50]:
        console.print(f"  skipped {path}: {reason}")
    if len(report.skipped) > 50:
        console.print(f"  … and {len(report.skipped) - 50} more (see `faceindex stats --json`)")


@app.command()
def search(
    photos: Annotated[list[Path], typer.Argument(help="Probe photo(s).")],
    purpose: Annotated[str, typer.Option(help="Purpose or case reference (recorded in the audit log).")],
    top_k: Annotated[int | None, typer.Option("--top-k", "-k", help="Candidates per face.")] = None,
    threshold: Annotated[float | None, typer.Option(help="Cosine threshold (default: calibrated).")] = None,
    face: Annotated[int | None, typer.Option(help="Only this face of each probe (0 = largest).")] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Find where the faces in PHOTOS appear in the store. Results are candidates for human review."""
    try:
        with open_engine(store) as engine:
            results = engine.search([str(p) for p in photos], purpose, top_k=top_k, threshold=threshold, face=face)
    except FaceIndexError as exc:
        fail(exc)
    for result in results:
        data = result.to_dict()
        if as_json:
            emit_json(data)
            continue
        if result.error:
            out.print(f"[bold]{result.probe}[/bold]: [red]{result.error}[/red]")
            continue
        out.print(f"[bold]{result.probe}[/bold]: {len(data['faces'])} face(s), gallery of {result.gallery_size}")
        if not data["faces"]:
            out.print("  no face found")
        for n, item in enumerate(data["faces"]):
            fmr = f", FMR {item['threshold_fmr']:.1e}" if item["threshold_fmr"] is not None else ""
            out.print(f"  face {n} at {item['box']}: {item['note']} (threshold {item['threshold']}{fmr})")
            if item["candidates"]:
                table = Table("score", "box", "collection", "subject", "flag")
                table.add_column("path", overflow="fold")  # a provenance path is never cut short
                for cand in item["candidates"]:
                    flag = "same photo as another candidate" if cand["same_photo_as"] else ""
                    table.add_row(f"{cand['score']:.3f}", str(cand["box"]), cand["collection"], cand["subject"] or "",
                                  flag, cand["path"])
                out.print(table)


@app.command()
def verify(
    photo_a: Path, photo_b: Path,
    threshold: Annotated[float | None, typer.Option(help="Cosine threshold (default: calibrated).")] = None,
    store: StoreOpt = None, as_json: JsonOpt = False,
) -> None:
    """Do the main faces of two photos (a large face near the centre) show the same person?"""
    try:
        with open_engine(store) as engine:
            result = engine.verify(str(photo_a), str(photo_b), threshold=threshold)
    except FaceIndexError as exc:
        fail(exc)
    if as_json:
        emit_json(result.__dict__)
    else:
        verdict = "[green]same person[/green]" if result.same_person else "[yellow]different people[/yellow]"
        out.print(f"{verdict} (score {result.score:.3f}, threshold {result.threshold})")


@app.command()
def embed(photo: Path, store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """Print the faces found in PHOTO and their faceprints exactly as they would be stored."""
    try:
        with open_engine(store) as engine:
            analysis = engine.analyse(str(photo))
    except FaceIndexError as exc:
        fail(exc)
    faces = [{"box": list(f.box), "score": round(f.score, 4), "landmarks": f.landmarks,
              "rejected": f.rejected,
              "embedding": None if f.embedding is None else [float(x) for x in f.embedding]}
             for f in analysis.faces]
    data = {"path": str(photo), "width": analysis.width, "height": analysis.height, "faces": faces}
    if as_json:
        emit_json(data)
    else:
        for face in faces:
            out.print(f"face at {face['box']}: " + (face["rejected"] or "128-d faceprint"))


@app.command()
def stats(store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """Counts of collections, images, faces and skipped files."""
    try:
        with open_engine(store) as engine:
            data = engine.stats()
            data["skipped_files"] = [
                {"path": r["uri"], "reason": r["error"]}
                for r in engine.catalog.conn.execute("SELECT uri, error FROM images WHERE status='skipped' LIMIT 1000")]
    except FaceIndexError as exc:
        fail(exc)
    if as_json:
        emit_json(data)
    else:
        for key, value in data.items():
            if key != "skipped_files":
                out.print(f"{key}: {value}")


@app.command()
def remove(
    image: Annotated[list[str] | None, typer.Option(help="Image path or id to remove.")] = None,
    collection: Annotated[str | None, typer.Option(help="Collection to remove with all its images.")] = None,
    store: StoreOpt = None,
) -> None:
    """Remove images or a whole collection from the catalog and the index."""
    if not image and not collection:
        console.print("give --image or --collection")
        raise typer.Exit(2)
    try:
        with open_engine(store) as engine:
            removed = sum(engine.remove_image(ref) for ref in image or [])
            if collection:
                removed += engine.remove_collection(collection)
    except FaceIndexError as exc:
        fail(exc)
    out.print(f"removed {removed} face(s)")


@app.command()
def reindex(store: StoreOpt = None) -> None:
    """Rebuild the vector index from the catalog."""
    try:
        with open_engine(store) as engine:
            count = engine.reindex()
    except FaceIndexError as exc:
        fail(exc)
    out.print(f"index rebuilt with {count} faces")


def _register_extensions() -> None:
    from faceindex import cli_eval, cli_privacy, cli_service

    cli_privacy.register(app)
    cli_service.register(app)
    cli_eval.register(app)


_register_extensions()
