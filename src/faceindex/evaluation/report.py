"""Evaluation report: plots (PNG), report.md, self-contained report.html, results.json, group breakdown."""

from __future__ import annotations

import base64
import csv
import html
import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from faceindex.errors import InvalidInputError
from faceindex.evaluation.calibration import Calibration
from faceindex.evaluation.metrics import OperatingPoint, eer, roc_curve, tar_at_far, thin_curve

GROUP_NOTE = ("faceindex infers no demographic attributes from faces. The groups below come only from the "
              "operator-provided CSV (identity,group); error rates of groups with few pairs are uncertain "
              "(a rate from n pairs cannot resolve below 1/n).")
UNASSIGNED, CROSS_GROUP = "(unassigned)", "(cross-group)"


@dataclass(frozen=True)
class GroupStats:
    """Verification error rates of one operator-defined group at one threshold (fractions)."""

    group: str
    n_identities: int
    n_genuine: int
    n_impostor: int
    frr: float | None  # None when the group has no genuine pairs
    far: float | None  # None when the group has no impostor pairs


@dataclass
class EvalResult:
    """Everything `faceindex eval` measured; build with `from_scores` to fill the verification figures.

    Scores are similarities (accept when score >= threshold); rates are fractions. `roc` holds
    (thresholds, FAR, TAR) as from `roc_curve`. `cmc[r-1]` is the identification rate at rank r.
    `detect_failures` lists images where no usable face was found (excluded from the scores).
    """

    model_id: str
    dataset: str
    genuine_scores: np.ndarray
    impostor_scores: np.ndarray
    eer: float
    eer_threshold: float
    tar_at_far: dict[float, OperatingPoint]
    roc: tuple[np.ndarray, np.ndarray, np.ndarray]
    threshold: float | None = None  # the operating threshold the report is about, if chosen
    kfold_accuracy: tuple[float, float, np.ndarray] | None = None  # as from verification_accuracy_kfold
    cmc: np.ndarray | None = None
    fnir_at_fpir: dict[float, OperatingPoint] | None = None
    detect_failures: list[str] = field(default_factory=list)
    wrong_pairs: list[str] = field(default_factory=list)  # protocol pairs judged wrongly, worst first
    groups: list[GroupStats] | None = None
    calibration: Calibration | None = None
    notes: list[str] = field(default_factory=list)

    @classmethod
    def from_scores(cls, genuine, impostor, *, model_id: str, dataset: str,
                    far_targets=(1e-2, 1e-3, 1e-4), **extra) -> EvalResult:
        """Compute EER, TAR@FAR and the ROC from the pair scores; `extra` sets the optional fields."""
        g = np.asarray(genuine, dtype=np.float64)
        i = np.asarray(impostor, dtype=np.float64)
        e, et = eer(g, i)
        return cls(model_id, dataset, g, i, e, et, tar_at_far(g, i, far_targets), roc_curve(g, i), **extra)

    def summary(self) -> dict:
        """The figures as JSON-ready data (NaN/inf become null, curves thinned to <= 1000 points)."""
        t, far, tar = thin_curve(*self.roc)
        d = {
            "model_id": self.model_id, "dataset": self.dataset,
            "n_genuine": int(self.genuine_scores.size), "n_impostor": int(self.impostor_scores.size),
            "eer": self.eer, "eer_threshold": self.eer_threshold, "threshold": self.threshold,
            "tar_at_far": [{**p.to_dict(), "far": p.false_rate, "tar": p.hit_rate}
                           for p in self.tar_at_far.values()],
            "kfold_accuracy": None if self.kfold_accuracy is None else {
                "mean": self.kfold_accuracy[0], "std": self.kfold_accuracy[1],
                "folds": len(self.kfold_accuracy[2]), "thresholds": list(self.kfold_accuracy[2])},
            "cmc": None if self.cmc is None else [float(x) for x in self.cmc],
            "fnir_at_fpir": None if self.fnir_at_fpir is None else [
                {**p.to_dict(), "fpir": p.false_rate, "fnir": p.miss_rate} for p in self.fnir_at_fpir.values()],
            "detect_failures": list(self.detect_failures),
            "wrong_pairs": list(self.wrong_pairs),
            "groups": None if self.groups is None else [asdict(g) for g in self.groups],
            "group_note": None if self.groups is None else GROUP_NOTE,
            "calibration": None if self.calibration is None else json.loads(self.calibration.to_json()),
            "notes": list(self.notes),
            "roc": {"threshold": t.tolist(), "far": far.tolist(), "tar": tar.tolist()},
        }
        return _clean(d)


def _clean(x):
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if isinstance(x, float | np.floating):
        return float(x) if math.isfinite(x) else None
    return x.item() if isinstance(x, np.generic) else x


def _fmt(x, pct: bool = False) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{100 * x:.2f}%" if pct else f"{x:.4g}"


def _figures(r: EvalResult, out: Path) -> list[str]:
    from matplotlib.figure import Figure  # lazy: only `eval` needs matplotlib; Figure needs no pyplot

    plots = {}
    for name in ("roc", "det", "cmc", "scores"):
        fig = Figure(figsize=(6, 4.5))
        plots[name] = (fig, fig.add_subplot())
        plots[name][1].grid(True, which="both", alpha=0.3)
    t, far, tar = thin_curve(*r.roc)
    ok = far > 0  # log axes cannot show a rate of 0
    ax = plots["roc"][1]
    ax.plot(far[ok], tar[ok], lw=1.5)
    for p in r.tar_at_far.values():
        if p.resolvable and p.false_rate > 0:
            ax.plot(p.false_rate, p.hit_rate, "o", label=f"TAR@FAR {p.target:g} = {p.hit_rate:.3f}")
    ax.set(xscale="log", xlabel="FAR (false accept rate)", ylabel="TAR (true accept rate)", ylim=(0, 1.01))
    ax = plots["det"][1]
    ok &= tar < 1
    if ok.any():
        ax.plot(far[ok], 1 - tar[ok], lw=1.5)
        if r.eer > 0:
            ax.plot(r.eer, r.eer, "o", label=f"EER = {100 * r.eer:.2f}%")
        ax.set(xscale="log", yscale="log", xlabel="FAR (false accept rate)", ylabel="FRR (false reject rate)")
    else:  # no threshold has both error kinds > 0 (scores separate perfectly): nothing to put on log axes
        ax.text(0.5, 0.5, "no threshold with both FAR > 0 and FRR > 0\n(scores separate perfectly on this sample)",
                ha="center", va="center")
        ax.set_axis_off()
    ax = plots["cmc"][1]
    if r.cmc is not None:
        ax.plot(np.arange(1, len(r.cmc) + 1), r.cmc, "o-", ms=3)
        ax.set(xlabel="rank", ylabel="identification rate", ylim=(0, 1.01))
    else:  # keep the file set fixed so links never break; say why it is empty
        ax.text(0.5, 0.5, "CMC not computed (no identification run)", ha="center", va="center")
        ax.set_axis_off()
    ax = plots["scores"][1]
    both = np.concatenate((r.genuine_scores, r.impostor_scores))
    bins = np.linspace(both.min(), both.max(), 60) if both.max() > both.min() else 10
    for label, sc in (("impostor", r.impostor_scores), ("genuine", r.genuine_scores)):
        ax.hist(sc, bins=bins, density=True, alpha=0.6, label=f"{label} (n={sc.size})")
    ax.axvline(r.eer_threshold, color="k", ls=":", label=f"EER threshold {r.eer_threshold:.3f}")
    if r.threshold is not None:
        ax.axvline(r.threshold, color="r", ls="--", label=f"operating threshold {r.threshold:.3f}")
    ax.set(xlabel="similarity score", ylabel="density")
    titles = {"roc": "ROC", "det": "DET", "cmc": "CMC", "scores": "Score distributions"}
    for name, (fig, ax) in plots.items():
        ax.set_title(f"{titles[name]} - {r.model_id}")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="lower right" if name == "roc" else "best")
        fig.tight_layout()
        fig.savefig(out / f"{name}.png", format="png", dpi=100)
    return [f"{n}.png" for n in plots]


def _sections(r: EvalResult) -> list[tuple[str, list[tuple]]]:
    """Report content once, rendered to both Markdown and HTML: (title, [block, ...])."""
    s = [("Summary", [("table", ["figure", "value"], [
        ["model", r.model_id], ["data set", r.dataset],
        ["genuine pairs", str(r.genuine_scores.size)], ["impostor pairs", str(r.impostor_scores.size)],
        ["EER", _fmt(r.eer, True)], ["EER threshold", _fmt(r.eer_threshold)],
        ["operating threshold", _fmt(r.threshold)]]
        + ([["LFW-protocol accuracy", f"{100 * r.kfold_accuracy[0]:.2f}% +/- {100 * r.kfold_accuracy[1]:.2f}% "
             f"(std over {len(r.kfold_accuracy[2])} folds)"]] if r.kfold_accuracy else []))]),
        ("TAR at fixed FAR", [("p", "Lowest threshold whose measured FAR does not exceed the target; n/a "
                                    "when there are fewer than 1/target impostor pairs."),
                              ("table", ["FAR target", "threshold", "measured FAR", "TAR"],
                               [[f"{p.target:g}", _fmt(p.threshold), _fmt(p.false_rate, True),
                                 _fmt(p.hit_rate, True)] for p in r.tar_at_far.values()])])]
    ident = []
    if r.cmc is not None:
        ident.append(("table", ["rank", "identification rate"],
                      [[str(k), _fmt(float(r.cmc[k - 1]), True)] for k in (1, 5, 10, 20) if k <= len(r.cmc)]))
    if r.fnir_at_fpir:
        ident.append(("table", ["FPIR target", "threshold", "measured FPIR", "FNIR"],
                      [[f"{p.target:g}", _fmt(p.threshold), _fmt(p.false_rate, True), _fmt(p.miss_rate, True)]
                       for p in r.fnir_at_fpir.values()]))
    if ident:
        s.append(("Identification (1:N)", ident))
    if r.calibration is not None:
        c = r.calibration
        s.append(("Calibration", [("p", f"{c.model_id}, from {c.source}: {c.n_impostor} impostor and "
                                        f"{c.n_genuine} genuine scores. FMR is measured down to 1/{c.n_impostor}"
                                        "; below that it is extrapolated with an exponential tail fitted to "
                                        "the highest impostor scores (a model, not a measurement)."),
                                  ("table", ["FMR", "threshold", "source"],
                                   [[f"{row['fmr']:g}", _fmt(row["threshold"]),
                                     "measured" if row["measured"] else "extrapolated (exponential tail)"]
                                    for row in r.calibration.table()])]))
    s.append(("Detection failures", [("p", f"{len(r.detect_failures)} image(s) had no usable face and were "
                                           "left out of the scores.")]
              + ([("list", r.detect_failures[:50] + (["..."] if len(r.detect_failures) > 50 else []))]
                 if r.detect_failures else [])))
    if r.kfold_accuracy is not None:
        s.append(("Pairs judged wrongly", [("p", f"{len(r.wrong_pairs)} pair(s) fell on the wrong side of their "
                                                 "fold's threshold (the largest margin first); look at them before "
                                                 "trusting the accuracy figure.")]
                  + ([("list", r.wrong_pairs[:50] + (["..."] if len(r.wrong_pairs) > 50 else []))]
                     if r.wrong_pairs else [])))
    if r.groups is not None:
        s.append(("Per-group error rates", [("p", GROUP_NOTE), ("table", [
            "group", "identities", "genuine pairs", "impostor pairs", "FRR", "FAR"],
            [[g.group, str(g.n_identities), str(g.n_genuine), str(g.n_impostor), _fmt(g.frr, True),
              _fmt(g.far, True)] for g in r.groups])]))
    if r.notes:
        s.append(("Notes", [("list", r.notes)]))
    s.append(("Plots", [("img", n, n[:-4]) for n in ("roc.png", "det.png", "cmc.png", "scores.png")]))
    return s


def _markdown(r: EvalResult, sections) -> str:
    out = [f"# Evaluation report: {r.model_id} on {r.dataset}", ""]
    cell = lambda x: str(x).replace("|", "\\|")  # noqa: E731
    for title, blocks in sections:
        out += [f"## {title}", ""]
        for b in blocks:
            if b[0] == "p":
                out += [b[1], ""]
            elif b[0] == "list":
                out += [f"- {x}" for x in b[1]] + [""]
            elif b[0] == "table":
                out += ["| " + " | ".join(b[1]) + " |", "|" + "---|" * len(b[1])]
                out += ["| " + " | ".join(cell(c) for c in row) + " |" for row in b[2]] + [""]
            elif b[0] == "img":
                out += [f"![{b[2]}]({b[1]})", ""]
    return "\n".join(out)


def _html(r: EvalResult, sections, out: Path) -> str:
    e = html.escape
    body = [f"<h1>Evaluation report: {e(r.model_id)} on {e(r.dataset)}</h1>"]
    for title, blocks in sections:
        body.append(f"<h2>{e(title)}</h2>")
        for b in blocks:
            if b[0] == "p":
                body.append(f"<p>{e(b[1])}</p>")
            elif b[0] == "list":
                body.append("<ul>" + "".join(f"<li>{e(str(x))}</li>" for x in b[1]) + "</ul>")
            elif b[0] == "table":
                head = "".join(f"<th>{e(h)}</th>" for h in b[1])
                rows = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in b[2])
                body.append(f"<table><tr>{head}</tr>{rows}</table>")
            elif b[0] == "img":  # embedded so the single file can be mailed or archived alone
                data = base64.b64encode((out / b[1]).read_bytes()).decode("ascii")
                body.append(f'<img alt="{e(b[2])}" src="data:image/png;base64,{data}">')
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}img{max-width:100%}")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>faceindex eval: '
            f"{e(r.model_id)}</title><style>{style}</style></head><body>{''.join(body)}</body></html>\n")


def write_report(result: EvalResult, report_dir: str | Path) -> dict[str, Path]:
    """Write roc.png, det.png, cmc.png, scores.png, report.md, report.html and results.json.

    Returns {file name: path}. Creates `report_dir` if needed and overwrites earlier files.
    """
    out = Path(report_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = _figures(result, out)
    sections = _sections(result)
    (out / "report.md").write_text(_markdown(result, sections), encoding="utf-8")
    (out / "report.html").write_text(_html(result, sections, out), encoding="utf-8")
    (out / "results.json").write_text(json.dumps(result.summary(), indent=2, allow_nan=False), encoding="utf-8")
    return {n: out / n for n in [*names, "report.md", "report.html", "results.json"]}


def load_group_csv(path: str | Path) -> dict[str, str]:
    """Read an operator's `identity,group` CSV (header required, UTF-8, BOM tolerated) into a dict."""
    p = Path(path)
    try:
        with p.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InvalidInputError(f"cannot read group CSV {p}: {e}") from e
    if not rows or [c.strip().lower() for c in rows[0]] != ["identity", "group"]:
        raise InvalidInputError(f"{p}:1: header must be `identity,group`")
    groups: dict[str, str] = {}
    for n, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) != 2 or not row[0].strip() or not row[1].strip():
            raise InvalidInputError(f"{p}:{n}: expected `identity,group` with both values, got {row!r}")
        ident, grp = row[0].strip(), row[1].strip()
        if groups.get(ident, grp) != grp:
            raise InvalidInputError(f"{p}:{n}: {ident!r} is already in group {groups[ident]!r}")
        groups[ident] = grp
    return groups


def group_breakdown(pairs: Iterable[tuple[str, str, float, bool]], groups: dict[str, str],
                    threshold: float) -> list[GroupStats]:
    """FRR and FAR per operator-defined group at `threshold`, from (identity_a, identity_b, score, same).

    A genuine pair counts for its identity's group. An impostor pair counts for a group when both
    identities belong to it (the usual same-group impostor comparison); pairs across groups go to
    `(cross-group)` and pairs with an identity missing from `groups` to `(unassigned)`. See
    GROUP_NOTE: faceindex infers no demographics; the groups are the operator's.
    """
    acc: dict[str, list] = {}
    for a, b, score, same in pairs:
        ga, gb = groups.get(a), groups.get(b)
        g = UNASSIGNED if ga is None or gb is None else ga if ga == gb else CROSS_GROUP
        row = acc.setdefault(g, [set(), 0, 0, 0, 0])  # identities, genuine, rejected, impostor, accepted
        row[0].update((a, b))
        accepted = float(score) >= threshold
        if same:
            row[1], row[2] = row[1] + 1, row[2] + (not accepted)
        else:
            row[3], row[4] = row[3] + 1, row[4] + accepted
    order = sorted(k for k in acc if k not in (CROSS_GROUP, UNASSIGNED)) + [
        k for k in (CROSS_GROUP, UNASSIGNED) if k in acc]
    return [GroupStats(g, len(acc[g][0]), acc[g][1], acc[g][3], acc[g][2] / acc[g][1] if acc[g][1] else None,
                       acc[g][4] / acc[g][3] if acc[g][3] else None) for g in order]
