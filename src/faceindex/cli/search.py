"""Commands that compare faces: `search` (probes against the store; by person, or several photos of one person
fused) and `verify` (two photos, 1:1)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from faceindex.cli.common import (
    JsonOpt,
    StoreOpt,
    add_commands,
    add_row,
    emit_json,
    open_engine,
    out,
    partial_failure,
    say,
    table,
    usage_error,
)
from faceindex.matching import FusedResult, ProbeResult

FaceOpt = Annotated[int | None, typer.Option(
    min=1, help="Only face N of each probe, numbered from 1, largest first: the numbers search prints and the "
    "web UI shows.")]


def _fmr(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.1e}"


def _failure(result: ProbeResult, face: int | None) -> str | None:
    """Why nothing was searched for this probe (None when at least one of its faces was searched)."""
    if result.error is not None:
        return result.error
    if not result.faces:
        return f"no face {face} (the photo has fewer faces)" if face is not None else "no face found"
    if all(f.status != "searched" for f in result.faces):
        return "no usable face: " + "; ".join(sorted({f.reason or f.status for f in result.faces}))
    return None


def _print_result(result: ProbeResult, face: int | None) -> None:
    data = result.to_dict()
    if result.error is not None:
        say((result.probe, "bold"), ": ", (result.error, "red"))
        return
    say((result.probe, "bold"), f": {len(data['faces'])} face(s), gallery of {result.gallery_size}")
    if not data["faces"]:
        say("  no face found" if face is None else f"  no face {face}: the photo has fewer faces")
    for n, item in enumerate(data["faces"], start=1):
        number = face if face is not None else n  # the number the user gave, or the position (1-based)
        fmr = f", FMR {item['threshold_fmr']:.1e}" if item["threshold_fmr"] is not None else ""
        say(f"  face {number} at {item['box']}: {item['note']} (threshold {item['threshold']}{fmr})")
        if item["candidates"]:
            videos = any("video" in cand for cand in item["candidates"])  # a time column only when needed
            tbl = table("score", "FMR", "box", "collection", "subject", "flag", *(["time"] if videos else []), "path")
            for cand in item["candidates"]:
                flag = "same photo as another candidate" if cand["same_photo_as"] else ""
                when = [f"{cand['video']['start']}-{cand['video']['end']}" if "video" in cand else ""] if videos else []
                add_row(tbl, f"{cand['score']:.3f}", _fmr(cand["fmr"]), cand["box"], cand["collection"],
                        cand["subject"] or "", flag, *when, cand["path"])
            out.print(tbl)


def _print_fused(result: FusedResult) -> None:
    data = result.to_dict()
    fused, item = data["fused"], data["faces"][0]
    what = {"confirmed": "confirmed faces", "assigned": "faces (none confirmed yet: all assigned faces used)",
            "photos": "photos"}[result.source]
    say((result.probe, "bold"), f": {result.probes} {what} fused into one probe, gallery of {result.gallery_size}")
    for used in fused["probe_faces"] if result.route == "photos" else []:
        if used["of"] > 1:
            say(f"  {used['photo']}: face {used['face']} of {used['of']} at {used['box']}")
    for skipped in fused["skipped"]:
        say(f"  skipped {skipped['photo']}: {skipped['reason']}", err=True)
    for warning in fused["warnings"]:
        say(("  warning: ", "yellow"), warning, err=True)
    fmr = f", FMR {item['threshold_fmr']:.1e}" if item["threshold_fmr"] is not None else ""
    expected = item["expected_false_candidates"]
    say(f"  {item['note']} (threshold {item['threshold']}{fmr}" +
        (f", {expected:.2g} expected false candidates" if expected is not None else "") +
        f"; {fused['calibration']})")
    if item["candidates"]:
        tbl = table("score", "FMR", "best single", "person", "box", "collection", "subject", "flag", "path")
        for cand in item["candidates"]:
            person = "" if cand["person"] is None else str(cand["person"]) + (
                f" ({cand['person_name']})" if cand["person_name"] else "")
            flag = "same photo as another candidate" if cand["same_photo_as"] else ""
            add_row(tbl, f"{cand['score']:.3f}", _fmr(cand["fmr"]), cand["best_single"], person, cand["box"],
                    cand["collection"], cand["subject"] or "", flag, cand["path"])
        out.print(tbl)


def search(
    purpose: Annotated[str, typer.Option(help="Purpose or case reference (recorded in the audit log).")],
    photos: Annotated[list[Path] | None, typer.Argument(help="Probe photo(s).")] = None,
    top_k: Annotated[int | None, typer.Option("--top-k", "-k", help="Candidates per face.")] = None,
    threshold: Annotated[float | None, typer.Option(help="Cosine threshold (default: calibrated).")] = None,
    face: FaceOpt = None,
    person: Annotated[str | None, typer.Option(
        "--person", help="Search with a person's faces (id or name, see `people list`): its confirmed faces, or "
        "all its faces when none is confirmed, fused into one probe.")] = None,
    same_person: Annotated[bool, typer.Option(
        "--same-person", help="PHOTOS show one person: fuse their faces (the prominent face of each, or face N with "
        "--face) into one probe.")] = False,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Find where the faces in PHOTOS appear in the store. Results are candidates for human review.

    Every face of each probe is searched, or only face N with --face N. With --person or --same-person several
    faces of one person are fused into one probe, with a threshold calibrated for that many probes.
    A probe that is missing, not an image or without a usable face is named, and the command exits 1.
    """
    if person is not None and (photos or same_person):
        usage_error("give either --person or probe photos, not both")
    if person is None and not photos:
        usage_error("give probe photo(s), or --person ID")
    if person is not None or same_person:
        with open_engine(store) as engine:
            if person is not None:
                fused = engine.search_person(person, purpose, top_k=top_k, threshold=threshold)
            else:
                fused = engine.search_same_person([str(p) for p in photos or []], purpose, top_k=top_k,
                                                  threshold=threshold, face=None if face is None else face - 1)
        if as_json:
            emit_json(fused.to_dict())
        else:
            _print_fused(fused)
        if fused.skipped:
            partial_failure(f"{len(fused.skipped)} of {len(fused.skipped) + fused.probes} photo(s) not used: "
                            + "; ".join(f"{s['photo']}: {s['reason']}" for s in fused.skipped))
        return
    with open_engine(store) as engine:
        # The Engine numbers faces from 0; the CLI, like the web UI, from 1.
        results = engine.search([str(p) for p in photos], purpose, top_k=top_k, threshold=threshold,
                                face=None if face is None else face - 1)
    failed = []
    for result in results:
        if as_json:
            emit_json(result.to_dict())
        else:
            _print_result(result, face)
        if (reason := _failure(result, face)) is not None:
            failed.append(f"{result.probe}: {reason}")
    if failed:
        partial_failure(f"{len(failed)} of {len(results)} probe(s) not searched: " + "; ".join(failed))


def verify(
    photo_a: Path, photo_b: Path,
    threshold: Annotated[float | None, typer.Option(help="Cosine threshold (default: calibrated).")] = None,
    store: StoreOpt = None, as_json: JsonOpt = False,
) -> None:
    """Do the main faces of two photos (a large face near the centre) show the same person?

    On a photo with several faces it says which one it compared: its number and box, as search shows them.
    """
    with open_engine(store) as engine:
        result = engine.verify(str(photo_a), str(photo_b), threshold=threshold)
    compared = [{"photo": str(p), "face": c.number + 1, "of": c.faces, "box": list(c.box)}
                for p, c in zip((photo_a, photo_b), result.compared, strict=True)]
    if as_json:
        emit_json({"same_person": result.same_person, "score": result.score, "threshold": result.threshold,
                   "fmr": result.fmr, "compared": compared})
        return
    verdict = ("same person", "green") if result.same_person else ("different people", "yellow")
    say(verdict, f" (score {result.score:.3f}, threshold {result.threshold})")
    for item in compared:
        if item["of"] > 1:
            say(f"  {item['photo']}: compared face {item['face']} of {item['of']} at {item['box']}")


def register(app: typer.Typer) -> None:
    add_commands(app, [search, verify])
