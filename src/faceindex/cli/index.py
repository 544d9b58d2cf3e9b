"""Commands that fill and maintain the index: `add`, `embed`, `stats`, `remove`, `reindex`."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from faceindex.cli.common import (
    JsonOpt,
    StoreOpt,
    add_commands,
    console,
    emit_json,
    open_engine,
    partial_failure,
    say,
    usage_error,
)
from faceindex.ingest.ray_ingest import RayAnalysis
from faceindex.store.migrations import LEGAL_BASES
from faceindex.store.reads import skipped_files
from faceindex.store.uris import uri_to_path
from faceindex.video.timecode import timecode


def display_path(uri: str) -> str:
    """A video's file name for the progress line."""
    return uri_to_path(uri).name


SKIPPED_SHOWN = 50  # skipped files listed in text mode; --json and `stats --json` list them all


def add(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (walked recursively).")],
    collection: Annotated[str, typer.Option("--collection", "-c", help="Collection to add to.")],
    basis: Annotated[str | None, typer.Option(help=f"Legal basis: {', '.join(LEGAL_BASES)}.")] = None,
    purpose: Annotated[str | None, typer.Option(help="Why this collection is processed.")] = None,
    jurisdiction: Annotated[list[str] | None, typer.Option(help="ISO 3166 code(s), e.g. DE, US-IL.")] = None,
    retention_days: Annotated[int | None, typer.Option(help="Delete faces this many days after ingest.")] = None,
    grouping: Annotated[str | None, typer.Option(
        help="on (default) or off: whether a new collection's faces may be grouped into people (`people "
        "cluster`); change it later with `people grouping`.")] = None,
    workers: Annotated[int | None, typer.Option(help="Processes (default: one per core).")] = None,
    detector: Annotated[str | None, typer.Option(help="hog, cnn, yunet, hog+yunet, hog+cnn.")] = None,
    detail: Annotated[str | None, typer.Option(
        help="auto (default: the crowd pass only where a probe sees a crowd), fast, or thorough (looks for "
        "faces down to ~12 px on every photo, ~10-30x slower). A new collection keeps it for later ingests "
        "(change it with `faceindex detail`); indexed photos analysed at a lower level are analysed again.")] = None,
    ray: Annotated[str | None, typer.Option(
        "--ray", metavar="ADDRESS", help="Analyse on a Ray cluster: local (a private one in this process), auto (the "
        "cluster started on this machine) or HOST:PORT of a cluster's head; --workers = actors (default: one per "
        "CPU of the cluster). Needs pip install 'faceindex[cluster]'.")] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Index every photo under PATHS into a collection (created with --basis and --purpose).

    Exits 1 when files were skipped (listed with their reasons); the rest is indexed.
    """
    if detail not in (None, "fast", "auto", "thorough"):
        raise typer.BadParameter(f"{detail!r}: use auto, fast or thorough", param_hint="--detail")
    if grouping not in (None, "on", "off"):
        raise typer.BadParameter(f"{grouping!r}: use on or off", param_hint="--grouping")
    policy = {} if grouping is None else {"grouping": grouping == "on"}
    # --ray connects first: an unreachable cluster is an error before the store is opened or written.
    with RayAnalysis(ray, actors=workers) if ray else nullcontext() as analyse, open_engine(
        store, write=True, workers=workers, detector=detector) as engine, Progress(
        TextColumn("[bold]indexing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.description}"), console=console,
        disable=as_json,
    ) as bar:
        task = bar.add_task("", total=None)
        video_task = None

        def progress(event: str, done: int, total: int | None) -> None:
            if event == "total":
                bar.update(task, total=total)
            bar.update(task, completed=done)

        def video_progress(uri: str, done_s: float, duration_s: float | None) -> None:
            # One line for the video being analysed: time processed / duration (the bar counts seconds).
            nonlocal video_task
            what = f"{display_path(uri)} {timecode(done_s)} / {timecode(duration_s) if duration_s else '?'}"
            if video_task is None:
                video_task = bar.add_task(what, total=duration_s)
            bar.update(video_task, description=what, total=duration_s, completed=done_s)

        report = engine.ingest(paths, collection, basis=basis, purpose=purpose, progress=progress, analyse=analyse,
                               detail=detail, video_progress=video_progress,
                               jurisdictions=tuple(jurisdiction or ()), retention_days=retention_days, **policy)
    if as_json:
        emit_json({**report.counts(), "seconds": round(report.seconds, 2),
                   "skipped_files": [{"path": p, "reason": r} for p, r in report.skipped]})
    else:
        counts = report.counts()
        again = (f"{counts['reanalysed']} analysed again at a higher detail, " if counts["reanalysed"] else "") + (
            f"{counts['kept_level']} kept at their detail (faces withheld), " if counts["kept_level"] else "")
        say(("done", "green"), f" in {report.seconds:.1f} s: {counts['indexed']} images indexed, "
            f"{counts['faces']} faces, {counts['unchanged']} unchanged, {counts['copied']} copies, {again}"
            f"{counts['rejected_faces']} faces rejected for quality, {counts['opted_out_faces']} faces of "
            f"opted-out people dropped, {counts['skipped']} files skipped"
            + (f"; {counts['videos']} of the images are videos, with {counts['tracks']} tracks" if counts.get("videos")
               else ""), err=True)
        for path, reason in report.skipped[:SKIPPED_SHOWN]:
            say(f"  skipped {path}: {reason}", err=True)
        if len(report.skipped) > SKIPPED_SHOWN:
            say(f"  … and {len(report.skipped) - SKIPPED_SHOWN} more (see `faceindex stats --json`)", err=True)
    if report.skipped:
        partial_failure(f"{len(report.skipped)} of {report.files} file(s) could not be indexed (reasons "
                        f"{'in skipped_files' if as_json else 'above'}); everything else was indexed")


def embed(photo: Path, store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """Print the faces found in PHOTO and their faceprints exactly as they would be stored (no store needed)."""
    with open_engine(store, needs_store=False) as engine:
        analysis = engine.analyse(str(photo))
    faces = [{"box": list(f.box), "score": round(f.score, 4), "landmarks": f.landmarks,
              "rejected": f.rejected,
              "embedding": None if f.embedding is None else [float(x) for x in f.embedding]}
             for f in analysis.faces]
    data = {"path": str(photo), "width": analysis.width, "height": analysis.height, "faces": faces}
    if as_json:
        emit_json(data)
        return
    for face in faces:
        say(f"face at {face['box']}: " + (face["rejected"] or "128-d faceprint"))
    if not faces:
        say("no face found", err=True)


def stats(store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """Counts of collections, images, faces and skipped files."""
    with open_engine(store) as engine:
        data = engine.stats()
        data["skipped_files"] = [{"path": p, "reason": r} for p, r in skipped_files(engine.catalog, limit=1000)]
    if as_json:
        emit_json(data)
        return
    for key, value in data.items():
        if key != "skipped_files":
            say(f"{key}: {value}")


def remove(
    image: Annotated[list[str] | None, typer.Option(help="Image path or id to remove.")] = None,
    collection: Annotated[str | None, typer.Option(help="Collection to remove with all its images.")] = None,
    store: StoreOpt = None,
) -> None:
    """Remove images or a whole collection from the catalog and the index."""
    if not image and not collection:
        usage_error("give --image or --collection")
    with open_engine(store, write=True) as engine:
        removed = sum(engine.remove_image(ref) for ref in image or [])
        if collection:
            removed += engine.remove_collection(collection)
    say(f"removed {removed} face(s)")


def reindex(store: StoreOpt = None) -> None:
    """Rebuild the vector index from the catalog."""
    with open_engine(store, write=True) as engine:
        count = engine.reindex()
    say(f"index rebuilt with {count} faces")


def detail(
    collection: Annotated[str, typer.Argument(help="Collection name.")],
    level: Annotated[str | None, typer.Argument(
        help="fast, auto, thorough, or default (the store's setting). Omit to show the current level.")] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show or change the detail level a collection's ingests and uploads use."""
    if level not in (None, "fast", "auto", "thorough", "default"):
        raise typer.BadParameter(f"{level!r}: use fast, auto, thorough or default", param_hint="LEVEL")
    with open_engine(store, write=level is not None) as engine:
        if level is None:
            current = engine.collection_detail(collection)
        else:
            current = engine.set_collection_detail(collection, None if level == "default" else level)
    if as_json:
        emit_json({"collection": collection, "detail": current})
    else:
        say(f"{collection}: detail {current}")


def register(app: typer.Typer) -> None:
    add_commands(app, [add, embed, stats, remove, reindex, detail])
