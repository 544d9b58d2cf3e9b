"""`faceindex eval` / `calibrate` end to end on real photos, the face choice rule, and calibration loading.

The evaluations run on small real subsets (~30 photos of ../shared/faces/people, 20 LFW DevTrain
pairs) so the module stays under ~60 s on 2 cores; the full DevTrain run is a measurement, not a test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from faceindex.cli import app
from faceindex.config import Settings
from faceindex.errors import InvalidInputError
from faceindex.evaluation.calibration import Calibration
from faceindex.evaluation.dataset import scan_labelled_folder
from faceindex.evaluation.lfw import load_pairs
from faceindex.matching import load_calibration
from faceindex.pipeline.embed import MODEL_ID
from faceindex.pipeline.face_choice import choose_face
from faceindex.pipeline.types import Face

REPORT_FILES = ("roc.png", "det.png", "cmc.png", "scores.png", "report.md", "report.html", "results.json")


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.symlink_to(src.resolve())


def _invoke(*args: str) -> dict:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def people_subset(faces_dir: Path, tmp_path_factory) -> Path:
    """10 identities x 3 photos (first by name) of people/, plus one photo without a face and one non-image."""
    root = tmp_path_factory.mktemp("people")
    photos = {d.name: sorted(p for p in d.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
              for d in (faces_dir / "people").iterdir() if d.is_dir()}
    people = sorted(name for name, files in photos.items() if len(files) >= 3)[:10]
    for name in people:
        for photo in photos[name][:3]:
            _link(photo, root / name / photo.name)
    _link(faces_dir / "nonfaces" / "dlib__giraffe.jpg", root / people[0] / "giraffe.jpg")
    (root / people[1] / "notes.txt").write_text("not a photo")
    return root


@pytest.fixture(scope="module")
def lfw_subset(faces_dir: Path, tmp_path_factory) -> tuple[Path, Path, list[str]]:
    """A miniature LFW in LFW's own layout: images/<name>/<name>_NNNN.jpg and a View-1 pairs file.

    10 same + 10 different pairs, taken from the top of each half of pairsDevTrain.txt.
    """
    lfw = faces_dir / "lfw-devtrain"
    lines = (lfw / "pairsDevTrain.txt").read_text().splitlines()
    n = int(lines[0])
    chosen = lines[1:11] + lines[1 + n: 11 + n]
    root = tmp_path_factory.mktemp("lfw")
    pairs_file = root / "pairs.txt"
    pairs_file.write_text("10\n" + "\n".join(chosen) + "\n")
    names = set()
    for pair in load_pairs(pairs_file, lfw / "images"):
        for path in (pair.path_a, pair.path_b):
            names.add(path.parent.name)
            if not (root / "images" / path.parent.name / path.name).exists():
                _link(path, root / "images" / path.parent.name / path.name)
    return root, pairs_file, sorted(names)


def test_eval_people_subset_json_and_report(people_subset: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    head = _invoke("eval", str(people_subset), "--json", "--out", str(out))
    for name in REPORT_FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert head["images"] == 32 and head["identities"] == 10
    # the giraffe has no face and the text file is no image: both counted and listed with a reason
    assert head["detect_failures"] == 2
    reasons = {Path(d["path"]).name: d["reason"] for d in head["detect_failed"]}
    assert reasons["giraffe.jpg"] == "no face found"
    assert reasons["notes.txt"].startswith("unreadable")
    # sane figures for a strong model on 10 distinct people with clear photos
    assert head["model_id"] == MODEL_ID + ("+flip" if Settings().flip_augment else "")
    assert head["rank1"] >= 0.9 and head["rank5"] >= head["rank1"]
    assert 0.0 <= head["eer"] <= 0.05
    assert head["accuracy"] >= 0.9 and 0.0 <= head["accuracy_std"] <= 0.1
    assert head["accuracy_protocol"].startswith("balanced sample")
    assert head["face_choice"] == "prominent"  # 'auto' without a pairs file
    assert head["tar_at_far"]["0.01"] >= 0.9
    assert head["tar_at_far"]["0.0001"] is None  # a few hundred impostor pairs cannot resolve 1e-4
    # 10 probes give 10 non-mated searches: FPIR 0.01 needs 100, so it is reported unresolved, not 0
    assert head["probes"] == 10 and head["fnir_at_fpir"] == {"0.003": None, "0.01": None}
    assert head["n_impostor"] > 10 * head["n_genuine"] > 0
    results = json.loads((out / "results.json").read_text())
    assert results["eer"] == pytest.approx(head["eer"])
    assert results["cmc"][0] == pytest.approx(head["rank1"])
    assert len(results["detect_failures"]) == 2
    md = (out / "report.md").read_text()
    assert "## Identification (1:N)" in md and "giraffe.jpg: no face found" in md


def test_eval_lfw_layout_with_pairs_and_groups(lfw_subset, tmp_path: Path) -> None:
    root, pairs_file, names = lfw_subset
    groups = tmp_path / "groups.csv"
    groups.write_text("identity,group\n" + "".join(f"{n},{'A' if k % 2 else 'B'}\n" for k, n in enumerate(names)))
    out = tmp_path / "report"
    head = _invoke("eval", str(root), "--pairs", str(pairs_file), "--groups", str(groups), "--json", "--out", str(out))
    assert head["accuracy_protocol"].startswith("LFW pairs file, 20 pairs in 10 folds")
    assert head["pairs"] == 20
    assert head["accuracy"] >= 0.85
    assert head["detect_failures"] == head["pairs_without_face"] == 0
    assert head["face_choice"] == "centre"  # 'auto' with a pairs file: LFW's centred crops
    results = json.loads((out / "results.json").read_text())
    assert results["kfold_accuracy"]["folds"] == 10
    by_group = {g["group"]: g for g in results["groups"]}
    assert {"A", "B"} <= set(by_group)
    assert sum(g["n_genuine"] for g in results["groups"]) == head["n_genuine"]
    md = (out / "report.md").read_text()
    assert "infers no demographic" in md and "## Pairs judged wrongly" in md
    # Equal-sized folds: the wrong pairs listed are exactly the accuracy's shortfall.
    assert len(head["wrong_pairs"]) == round((1 - head["accuracy"]) * head["pairs"])


def test_calibrate_writes_a_file_the_engine_loads(lfw_subset, tmp_path: Path, monkeypatch) -> None:
    root, pairs_file, _ = lfw_subset
    target = tmp_path / "cal.json"
    data = _invoke("calibrate", str(root), "--pairs", str(pairs_file), "--out", str(target), "--json")
    assert data["path"] == str(target)
    cal = Calibration.from_json(target.read_text())
    model_id = MODEL_ID + ("+flip" if Settings().flip_augment else "")
    assert cal.model_id == model_id and cal.n_impostor > 100
    # the file is used when named by argument or by FACEINDEX_CALIBRATION, and refused for another model
    assert load_calibration(model_id, target).to_json() == cal.to_json()
    monkeypatch.setenv("FACEINDEX_CALIBRATION", str(target))
    assert Settings().calibration == target
    assert load_calibration(model_id).n_impostor == cal.n_impostor
    with pytest.raises(InvalidInputError, match="is for model"):
        load_calibration("some-other-model")
    monkeypatch.setenv("FACEINDEX_CALIBRATION", str(tmp_path / "missing.json"))
    with pytest.raises(InvalidInputError, match="cannot read calibration"):
        load_calibration(model_id)


def test_shipped_calibration_for_default_model(monkeypatch) -> None:
    monkeypatch.delenv("FACEINDEX_CALIBRATION", raising=False)
    model_id = MODEL_ID + ("+flip" if Settings().flip_augment else "")
    cal = load_calibration(model_id)
    assert cal is not None, f"no calibration shipped for the default model id {model_id}"
    assert cal.model_id == model_id and "lfw-devtrain" in cal.source
    assert cal.n_impostor >= 1_000_000  # all-vs-all on DevTrain: FMR measured to 1e-6
    # a bigger gallery gets a stricter threshold, and the expected false candidates stay within the bound
    sizes = [10, 1_000, 100_000, 10_000_000]
    thresholds = [cal.threshold_for_gallery(n) for n in sizes]
    assert thresholds == sorted(thresholds) and thresholds[0] < thresholds[-1]
    for n, t in zip(sizes[1:3], thresholds[1:3], strict=True):
        assert cal.expected_false_candidates(t, n) <= 0.1 + 1e-9


def _face(box) -> Face:
    return Face(box=box, score=1.0, detector="test", landmarks=[], size_px=min(box[2] - box[0], box[3] - box[1]),
                blur=100.0, embedding=np.zeros(128, np.float32))


def test_choose_face_prefers_the_centred_subject_over_a_larger_bystander() -> None:
    # LFW-like 250x250 crop: subject centred (90 px box), a bystander cut by the edge (110 px box)
    subject, bystander = _face((80, 80, 170, 170)), _face((150, 0, 250, 110))
    assert choose_face([bystander, subject], 250, 250) is subject
    # an ordinary portrait: the large face wins over a small one that happens to be nearer the centre
    big, small = _face((100, 150, 500, 550)), _face((590, 380, 630, 420))
    assert choose_face([small, big], 1200, 800) is big
    assert choose_face([], 100, 100) is None


def test_centre_face_choice_follows_lfw_centred_crops() -> None:
    # LFW Charles_Schumer_0002's layout: a 126 px face 62 px right of centre beside the labelled 90 px central
    # face. 'prominent' takes the larger face; 'centre' (LFW's construction) takes the central one.
    central, nearer_camera = _face((76, 86, 166, 177)), _face((124, 67, 250, 197))
    assert choose_face([nearer_camera, central], 250, 250) is nearer_camera
    assert choose_face([nearer_camera, central], 250, 250, "centre") is central
    with pytest.raises(InvalidInputError):
        choose_face([central], 250, 250, "largest")


def test_eval_refuses_an_unknown_face_choice(lfw_subset, tmp_path: Path) -> None:
    root, _, _ = lfw_subset
    result = CliRunner().invoke(app, ["eval", str(root), "--face-choice", "largest", "--out", str(tmp_path / "x")])
    assert result.exit_code != 0 and "unknown face choice" in result.output


def test_scan_labelled_folder_uses_lfw_images_dir(lfw_subset) -> None:
    root, _, names = lfw_subset
    images = scan_labelled_folder(root)  # root holds pairs.txt and images/: the images/ folder is scanned
    assert sorted({i.identity for i in images}) == names
    assert all(i.path.parent.name == i.identity for i in images)
    with pytest.raises(InvalidInputError):
        scan_labelled_folder(root / "images" / names[0])  # files but no identity folders


def test_report_survives_perfectly_separated_scores(tmp_path: Path) -> None:
    # small clean sets often have EER 0: the DET then has no point to draw on log axes
    from faceindex.evaluation.report import EvalResult, write_report

    result = EvalResult.from_scores([0.95, 0.96, 0.97], np.linspace(0.1, 0.8, 300), model_id="m", dataset="d")
    files = write_report(result, tmp_path)
    assert result.eer == 0.0 and files["det.png"].read_bytes()[:4] == b"\x89PNG"


def test_cnn_fallback_runs_only_on_near_misses_and_maps_boxes_back(faces_dir: Path) -> None:
    from faceindex.pipeline.decode import decode_image
    from faceindex.pipeline.detect import FALLBACK_GATE, HogDetector, build_detector

    hog = HogDetector(1)
    detector = build_detector("hog+cnn")  # the default: CNN on <= 400 px, gated by HOG's near misses
    # an LFW photo HOG misses (turned head) but nearly finds: the gate opens and the CNN finds the face
    lfw = decode_image(faces_dir / "lfw-devtrain/images/Jane_Fonda/Jane_Fonda_0002.jpg").detection
    found, near = hog.detect_near(lfw, FALLBACK_GATE)
    assert found == [] and near >= FALLBACK_GATE
    (face,) = detector.detect(lfw)
    left, top, right, bottom = face.box
    assert face.detector == "dlib-cnn" and 60 <= left < right <= 190 and 60 <= top < bottom <= 200
    # a photo with nothing face-like: HOG's best rejected window is far below the gate, the CNN is skipped
    giraffe = decode_image(faces_dir / "nonfaces/dlib__giraffe.jpg").detection
    found, near = hog.detect_near(giraffe, FALLBACK_GATE)
    assert found == [] and near < FALLBACK_GATE and detector.detect(giraffe) == []
    # a 641 px profile: the CNN sees it shrunk to 400 px and the box comes back in the photo's pixels
    profile = decode_image(faces_dir / "single/insightface__right_face.png").detection
    assert hog.detect(profile) == []
    boxes = [d.box for d in detector.detect(profile)]
    assert len(boxes) == 1 and boxes[0][2] <= profile.shape[1] and boxes[0][3] <= profile.shape[0]
    assert boxes[0][2] - boxes[0][0] >= 80 * profile.shape[1] / 400  # the CNN's ~80 px window, scaled back


def test_all_pairs_scores_and_identification_match_brute_force() -> None:
    from faceindex.evaluation.dataset import Embedded, LabelledImage
    from faceindex.evaluation.runner import all_pairs_scores, identification

    rng = np.random.default_rng(3)
    labels = ["a", "a", "a", "b", "b", "c", "d"]
    centres = {k: rng.normal(size=16) for k in set(labels)}
    items = []
    for n, k in enumerate(labels):
        v = centres[k] + 0.3 * rng.normal(size=16)
        items.append(Embedded(LabelledImage(Path(f"/x/{k}/{n}.jpg"), k), (v / np.linalg.norm(v)).astype(np.float32)))
    items.insert(2, Embedded(LabelledImage(Path("/x/a/failed.jpg"), "a"), None, reason="no face found"))
    ps = all_pairs_scores(items, block=3)  # blocks smaller than the set: exercises the block seams
    ok = [e for e in items if e.ok]
    want_gen = sorted(float(x.embedding @ y.embedding) for i, x in enumerate(ok) for y in ok[i + 1:]
                      if x.image.identity == y.image.identity)
    want_imp = sorted(float(x.embedding @ y.embedding) for i, x in enumerate(ok) for y in ok[i + 1:]
                      if x.image.identity != y.image.identity)
    assert np.allclose(sorted(ps.genuine), want_gen, atol=1e-6) and len(want_gen) == 4
    assert np.allclose(sorted(ps.impostor), want_imp, atol=1e-6) and ps.impostor_total == len(want_imp) == 17
    assert all(items[i].image.identity == items[j].image.identity for i, j in ps.genuine_idx)
    sampled = all_pairs_scores(items, max_impostors=8, seed=1)
    assert sampled.sampled and 0 < sampled.impostor.size < 17 and sampled.genuine.size == 4
    ident = identification(items)  # probes: first usable photo of a and of b; gallery: the other 5
    assert (ident.n_probes, ident.n_gallery, ident.n_nonmated) == (2, 5, 2) and ident.cmc[0] == 1.0


def test_protocol_accuracy_lists_the_pairs_judged_wrongly() -> None:
    from faceindex.evaluation.dataset import Embedded, LabelledImage
    from faceindex.evaluation.lfw import Pair
    from faceindex.evaluation.runner import protocol_accuracy

    # (score, same, fold): any threshold a fold picks from the other lies in (0.2, 0.85], so exactly the
    # genuine pair at 0.05 (fold 0) and the impostor pair at 0.97 (fold 1) are judged wrongly.
    planned = [(0.955, True, 0), (0.9, True, 0), (0.05, True, 0), (0.1, False, 0), (0.2, False, 0),
               (0.95, True, 1), (0.85, True, 1), (0.0, False, 1), (0.15, False, 1), (0.97, False, 1)]
    items, pairs = [], []
    for k, (score, same, fold) in enumerate(planned):
        a = LabelledImage(Path(f"/x/p{k}a/1.jpg"), f"p{k}a")
        b = LabelledImage(Path(f"/x/p{k}{'a' if same else 'b'}/2.jpg"), f"p{k}{'a' if same else 'b'}")
        angle = np.arccos(score)
        items += [Embedded(a, np.array([1.0, 0.0], np.float32)),
                  Embedded(b, np.array([np.cos(angle), np.sin(angle)], np.float32))]
        pairs.append(Pair(a.path, b.path, same, fold))
    proto = protocol_accuracy(items, pairs)
    wrong = proto.wrong_pairs
    assert proto.mean == pytest.approx(0.8)  # one of five wrong in each fold
    assert sorted((w["a"], w["same"], round(w["score"], 3)) for w in wrong) == [
        ("p2a/1.jpg", True, 0.05), ("p9a/1.jpg", False, 0.97)]
    assert all(0.2 < w["threshold"] <= 0.85 for w in wrong)
    margins = [abs(w["score"] - w["threshold"]) for w in wrong]
    assert margins == sorted(margins, reverse=True)
