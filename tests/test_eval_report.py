"""The evaluation report writes every file, and the per-group breakdown counts what it should."""

from __future__ import annotations

import json

import numpy as np
import pytest

from faceindex.errors import InvalidInputError
from faceindex.evaluation.calibration import Calibration
from faceindex.evaluation.metrics import cmc, fnir_at_fpir
from faceindex.evaluation.report import (
    CROSS_GROUP,
    GROUP_NOTE,
    UNASSIGNED,
    EvalResult,
    GroupStats,
    group_breakdown,
    load_group_csv,
    write_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FILES = {"roc.png", "det.png", "cmc.png", "scores.png", "report.md", "report.html", "results.json"}

PAIRS = [
    ("a", "a", 0.9, True), ("a", "a", 0.4, True), ("c", "c", 0.8, True),
    ("a", "b", 0.7, False), ("a", "b", 0.2, False), ("c", "d", 0.3, False),
    ("a", "c", 0.9, False), ("e", "e", 0.1, True),
]
GROUPS = {"a": "G1", "b": "G1", "c": "G2", "d": "G2"}


def test_group_breakdown_hand_counted():
    rows = group_breakdown(PAIRS, GROUPS, threshold=0.5)
    assert rows == [
        GroupStats("G1", 2, 2, 2, frr=0.5, far=0.5),
        GroupStats("G2", 2, 1, 1, frr=0.0, far=0.0),
        GroupStats(CROSS_GROUP, 2, 0, 1, frr=None, far=1.0),
        GroupStats(UNASSIGNED, 1, 1, 0, frr=1.0, far=None),
    ]


def test_load_group_csv(tmp_path):
    p = tmp_path / "groups.csv"
    p.write_text("\ufeffidentity,group\nAnn,north\n\nBob , south\nAnn,north\n", encoding="utf-8")
    assert load_group_csv(p) == {"Ann": "north", "Bob": "south"}
    p.write_text("identity,group\nAnn,north\nAnn,south\n")
    with pytest.raises(InvalidInputError, match=":3:"):
        load_group_csv(p)
    p.write_text("name,group\nAnn,north\n")
    with pytest.raises(InvalidInputError, match=":1:"):
        load_group_csv(p)
    p.write_text("identity,group\nAnn\n")
    with pytest.raises(InvalidInputError, match=":2:"):
        load_group_csv(p)


def _result(with_identification: bool) -> EvalResult:
    rng = np.random.default_rng(3)
    genuine, impostor = rng.normal(0.6, 0.1, 3000), rng.normal(0.0, 0.1, 5000)
    extra = {}
    if with_identification:
        sim = rng.normal(0, 0.1, (20, 30))
        labels = np.arange(30) % 15
        sim[np.arange(20), np.arange(20) % 15] += 0.5
        extra = dict(
            cmc=cmc(sim, np.arange(20) % 15, labels, max_rank=10),
            fnir_at_fpir=fnir_at_fpir(rng.normal(0.5, 0.1, 500), rng.normal(0.1, 0.1, 1000)),
            groups=group_breakdown(PAIRS, GROUPS, 0.5),
            calibration=Calibration.from_scores(impostor, genuine, model_id="m", source="synthetic"),
            kfold_accuracy=(0.991, 0.004, np.full(10, 0.3)),
        )
    return EvalResult.from_scores(genuine, impostor, model_id="test-model", dataset="synthetic <dev>",
                                  threshold=0.3, detect_failures=["x/a.jpg", "y/b.png"],
                                  notes=["scores are synthetic"], **extra)


def test_report_writes_all_files(tmp_path):
    r = _result(with_identification=True)
    written = write_report(r, tmp_path / "out")
    assert set(written) == FILES and all(p.is_file() for p in written.values())
    for name in ("roc.png", "det.png", "cmc.png", "scores.png"):
        assert written[name].read_bytes()[:8] == PNG_MAGIC
    html = written["report.html"].read_text()
    assert html.count("data:image/png;base64,iVBORw0KGgo") == 4  # the PNGs, embedded
    assert "synthetic &lt;dev&gt;" in html and "<dev>" not in html
    md = written["report.md"].read_text()
    assert "## TAR at fixed FAR" in md and "x/a.jpg" in md and GROUP_NOTE in md
    assert "![roc](roc.png)" in md and "| 1 |" in md  # rank-1 row
    data = json.loads(written["results.json"].read_text())
    assert data["eer"] == pytest.approx(r.eer) and data["n_genuine"] == 3000
    assert data["detect_failures"] == ["x/a.jpg", "y/b.png"]
    tar = {p["target"]: p for p in data["tar_at_far"]}
    assert tar[1e-4]["threshold"] is None  # 5000 impostors cannot resolve 1e-4
    assert tar[1e-3]["false_rate"] <= 1e-3 and 0.98 < tar[1e-3]["tar"] <= 1.0
    assert len(data["roc"]["far"]) <= 1000 and data["roc"]["threshold"][0] is None  # +inf -> null
    assert data["groups"][0]["group"] == "G1" and data["calibration"]["n_impostor"] == 5000
    assert data["cmc"][0] == pytest.approx(r.cmc[0])
    assert data["kfold_accuracy"] == {"mean": 0.991, "std": 0.004, "folds": 10, "thresholds": [0.3] * 10}
    assert "99.10% +/- 0.40% (std over 10 folds)" in md


def test_report_without_identification(tmp_path):
    written = write_report(_result(with_identification=False), tmp_path)
    assert set(written) == FILES
    assert written["cmc.png"].read_bytes()[:8] == PNG_MAGIC  # placeholder plot
    data = json.loads(written["results.json"].read_text())
    assert data["cmc"] is None and data["groups"] is None and data["group_note"] is None
