"""Accuracy commands: `eval` and `calibrate`.

Both embed a labelled folder (`DIR/<identity>/<photo>`, or LFW's `images/` layout with its pairs
file) through the same FacePipeline that ingest and search use, built from Settings (so
FACEINDEX_DETECTOR, FACEINDEX_FLIP_AUGMENT, ... apply), and measure that pipeline.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
from pathlib import Path
from typing import Annotated

import typer

from faceindex.cli.common import add_commands, add_row, console, emit_json, out, say, table
from faceindex.errors import FaceIndexError

PairsOpt = Annotated[Path | None, typer.Option(
    "--pairs", help="LFW pairs file (pairsDevTrain.txt, pairs.txt); its images are the ones embedded.")]
DetectorOpt = Annotated[str | None, typer.Option(
    help="Override the detector: hog, cnn, yunet, hog+yunet, hog+cnn (default: settings).")]
FlipOpt = Annotated[bool | None, typer.Option(
    "--flip/--no-flip", help="Override flip test-time augmentation (default: settings); changes the model id.")]
YunetOpt = Annotated[Path | None, typer.Option("--yunet-model", help="YuNet ONNX file (for yunet detectors).")]
FaceChoiceOpt = Annotated[str, typer.Option(
    "--face-choice", help="Which face of a photo its label means: prominent (large, near the centre), centre "
    "(nearest the centre: LFW's centred crops), or auto (centre with a pairs file, else prominent).")]
MaxImpOpt = Annotated[int, typer.Option(
    "--max-impostors", min=1000, help="All-vs-all impostor pairs kept (uniform sample above this).")]


def _pipeline(detector: str | None, flip: bool | None, yunet_model: Path | None):
    from faceindex.config import Settings
    from faceindex.pipeline.analyse import FacePipeline

    overrides = {"detector": detector, "flip_augment": flip, "yunet_model": yunet_model}
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    return settings, FacePipeline(settings)


def _embedder(dataset, settings, pipeline, face_choice: str):
    """The LabelledEmbedder both commands use: all cores, and the face choice resolved from 'auto'."""
    from faceindex.evaluation.dataset import LabelledEmbedder

    rule = dataset.default_face_choice if face_choice == "auto" else face_choice
    return LabelledEmbedder(pipeline, settings.resolved_workers(), rule)


def _progress(enabled: bool, label: str):
    """A rich progress bar on stderr (hidden with --json) and the callback the runner calls."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=console, disable=not enabled)
    task = bar.add_task(label, total=None)
    return bar, lambda done, total: bar.update(task, completed=done, total=total)


def _write_atomic(target: Path, text: str) -> None:
    """Write via a temporary file and rename: never a half-written calibration where the engine reads it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target)


def _need_matplotlib() -> None:
    """`eval` draws its plots with matplotlib: say so before the embedding, not after it."""
    if importlib.util.find_spec("matplotlib") is None:
        raise FaceIndexError("`faceindex eval` draws its report's plots with matplotlib, which is not installed "
                             "here: pip install matplotlib (a plain `pip install faceindex` brings it)",
                             code="missing_dependency")


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def eval_command(
    folder: Annotated[Path, typer.Argument(help="Labelled photos: DIR/<identity>/<photo> (or an LFW folder).")],
    pairs: PairsOpt = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Report folder (plots, report.md/html, results.json).")] = Path(
        "faceindex-eval"),
    groups: Annotated[Path | None, typer.Option(
        "--groups", help="Operator's CSV `identity,group`: error rates per group (nothing is inferred).")] = None,
    detector: DetectorOpt = None,
    flip: FlipOpt = None,
    yunet_model: YunetOpt = None,
    face_choice: FaceChoiceOpt = "auto",
    max_impostors: MaxImpOpt = 10_000_000,
    write_calibration: Annotated[Path | None, typer.Option(
        "--write-calibration", help="Also save the calibration measured here (as `calibrate --out` would).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object with the figures.")] = False,
) -> None:
    """Measure accuracy on labelled photos: ROC/DET, EER, TAR@FAR, LFW accuracy, rank-1/5, FNIR@FPIR.

    Takes ~0.1 s per LFW image and ~0.3 s per multi-megapixel photo on one core; uses every core
    (FACEINDEX_WORKERS sets how many processes).
    """
    from faceindex.evaluation import load_group_csv, write_report
    from faceindex.evaluation.dataset import load_dataset
    from faceindex.evaluation.runner import evaluate
    from faceindex.matching import load_calibration

    _need_matplotlib()  # before minutes of embedding, not after
    dataset = load_dataset(folder, pairs)
    group_map = load_group_csv(groups) if groups is not None else None
    settings, pipeline = _pipeline(detector, flip, yunet_model)
    reference = load_calibration(pipeline.model_id, settings.calibration)
    bar, progress = _progress(not as_json, "embedding")
    with bar:
        embedder = _embedder(dataset, settings, pipeline, face_choice)
        run = evaluate(dataset, embedder, groups=group_map, max_impostors=max_impostors,
                       max_expected_false=settings.max_expected_false, reference=reference, progress=progress)
    if write_calibration is not None:
        _write_atomic(write_calibration, run.result.calibration.to_json() + "\n")
    files = write_report(run.result, out_dir)
    head = run.headline()
    head["report_dir"] = str(out_dir)
    head["files"] = sorted(str(p) for p in files.values())
    head["calibration_file"] = None if write_calibration is None else str(write_calibration)
    if as_json:
        emit_json(head)
        return
    tbl = table("figure", "value", title=f"{head['model_id']} on {head['dataset']}")
    rows = [("images / identities", f"{head['images']} / {head['identities']}"),
            ("accuracy", f"{_pct(head['accuracy'])} +/- {_pct(head['accuracy_std'])}"),
            ("  protocol", head["accuracy_protocol"]),
            ("EER", f"{_pct(head['eer'])} (threshold {head['eer_threshold']:.4f})")]
    rows += [(f"TAR @ FAR {k}", _pct(v)) for k, v in head["tar_at_far"].items()]
    rows += [("rank-1 / rank-5", f"{_pct(head['rank1'])} / {_pct(head['rank5'])}")]
    rows += [(f"FNIR @ FPIR {k}", _pct(v)) for k, v in head["fnir_at_fpir"].items()]
    rows += [("detection failures", str(head["detect_failures"]))]
    for name, value in rows:
        add_row(tbl, name, value)
    out.print(tbl)
    for item in head["detect_failed"][:20]:
        say(f"  no usable face: {item['path']}: {item['reason']}", err=True)
    say(f"report: {files['report.html']} (and report.md, results.json, *.png in {out_dir})", err=True)


def calibrate_command(
    folder: Annotated[Path, typer.Argument(help="Labelled photos: DIR/<identity>/<photo> (or an LFW folder).")],
    pairs: PairsOpt = None,
    out_file: Annotated[Path | None, typer.Option(
        "--out", help="Calibration JSON to write (default ./calibration-<model id>.json).")] = None,
    source: Annotated[str | None, typer.Option(help="Description of the data stored in the file.")] = None,
    detector: DetectorOpt = None,
    flip: FlipOpt = None,
    yunet_model: YunetOpt = None,
    face_choice: FaceChoiceOpt = "auto",
    max_impostors: MaxImpOpt = 10_000_000,
    as_json: Annotated[bool, typer.Option("--json", help="Print the calibration as JSON.")] = False,
) -> None:
    """Measure score thresholds per false-match rate on your own labelled photos and write a calibration file.

    Use it with FACEINDEX_CALIBRATION=<file> (or Settings.calibration): search then reports FMRs and
    picks thresholds from your data instead of the shipped LFW measurement. Needs photos of many
    different people: N images give ~N^2/2 impostor pairs, and FMR is measured only down to 1 / that.
    """
    from faceindex.evaluation.dataset import load_dataset
    from faceindex.evaluation.runner import calibrate

    dataset = load_dataset(folder, pairs)
    settings, pipeline = _pipeline(detector, flip, yunet_model)
    label = source or f"{dataset.name} (all-vs-all), measured {datetime.date.today().isoformat()}"
    bar, progress = _progress(not as_json, "embedding")
    with bar:
        embedder = _embedder(dataset, settings, pipeline, face_choice)
        calibration, failed = calibrate(dataset, embedder, source=label,
                                        max_impostors=max_impostors, progress=progress)
    target = out_file or Path(f"calibration-{pipeline.model_id.replace('+', '-')}.json")
    _write_atomic(target, calibration.to_json() + "\n")
    if as_json:
        emit_json({"path": str(target), "failed_images": [{"path": str(e.image.path), "reason": e.reason}
                                                          for e in failed],
                   "calibration": json.loads(calibration.to_json())})
        return
    tbl = table("FMR", "threshold", "source", title=f"{calibration.model_id}: {calibration.n_impostor} impostor "
                f"and {calibration.n_genuine} genuine scores")
    for row in calibration.table():
        add_row(tbl, f"{row['fmr']:g}", f"{row['threshold']:.4f}", "measured" if row["measured"] else "extrapolated")
    out.print(tbl)
    if failed:
        say(f"{len(failed)} image(s) had no usable face and were left out", err=True)
    say(f"wrote {target}; use it with FACEINDEX_CALIBRATION={target.resolve()}", err=True)


def register(app: typer.Typer) -> None:
    add_commands(app, [("eval", eval_command), ("calibrate", calibrate_command)])
