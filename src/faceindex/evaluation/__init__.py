"""Evaluation maths and reporting for `faceindex eval`: error rates, LFW files, calibration, reports."""

from faceindex.evaluation.calibration import FMR_GRID, Calibration, CalibrationPoint
from faceindex.evaluation.lfw import Pair, Person, load_pairs, load_people, person_images
from faceindex.evaluation.metrics import (
    OperatingPoint,
    cmc,
    det_curve,
    eer,
    fnir_at_fpir,
    open_set_scores,
    roc_curve,
    tar_at_far,
    thin_curve,
    verification_accuracy_kfold,
)
from faceindex.evaluation.report import (
    GROUP_NOTE,
    EvalResult,
    GroupStats,
    group_breakdown,
    load_group_csv,
    write_report,
)

__all__ = [
    "FMR_GRID", "GROUP_NOTE", "Calibration", "CalibrationPoint", "EvalResult", "GroupStats",
    "OperatingPoint", "Pair", "Person", "cmc", "det_curve", "eer", "fnir_at_fpir", "group_breakdown",
    "load_group_csv", "load_pairs", "load_people", "open_set_scores", "person_images", "roc_curve",
    "tar_at_far", "thin_curve", "verification_accuracy_kfold", "write_report",
]
