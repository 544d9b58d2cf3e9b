"""Subject access report and bystander redaction on real photos: exactly the person's photos, others blurred."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
from PIL import Image
from privacy_support import GROUP, faces_in, fresh_copy, open_engine, pristine, selfie


@pytest.fixture(scope="module")
def enrolled(faces_dir, tmp_path_factory):
    """A store where Kit is enrolled from his two solo photos; the group photo shows him with Rose."""
    root = pristine(faces_dir, tmp_path_factory)
    store = fresh_copy(faces_dir, tmp_path_factory, tmp_path_factory.mktemp("access"))
    with open_engine(store) as engine:
        engine.privacy.subjects.enrol("Kit", [root / "photos/press/Kit_Harington"], collection="press",
                                      consent_evidence="release form 3")
        boxes = {r[0]: tuple(r[1:]) for r in engine.catalog.conn.execute(
            "SELECT f.id, box_left, box_top, box_right, box_bottom FROM faces f JOIN images i ON i.id = f.image_id"
            " WHERE i.uri LIKE ?", (f"%{GROUP}",))}
    return root, store, boxes


def _sharpness(rgb: np.ndarray) -> float:
    grey = rgb.astype(np.float32).mean(axis=2)
    return float((grey[1:-1, 1:-1] * 4 - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:]).var())


def _inner(box, scale=1.0, shrink=0.2):
    left, top, right, bottom = (v * scale for v in box)
    dx, dy = (right - left) * shrink, (bottom - top) * shrink
    return round(left + dx), round(top + dy), round(right - dx), round(bottom - dy)


def _region(image: Image.Image, box) -> np.ndarray:
    return np.asarray(image.crop(box), dtype=np.float32)


def test_access_report_lists_exactly_the_persons_photos_and_blurs_others(enrolled, tmp_path):
    root, store, group_boxes = enrolled
    with open_engine(store) as engine:
        report = engine.privacy.access_report(str(selfie(root, "Kit_Harington")), tmp_path / "report", case="SAR-7")
        kit_faces = set(faces_in(engine, "Kit_Harington"))
        event = engine.audit.events(action="access-report")[-1]
    data = json.loads(report.json_path.read_text())
    assert data == report.data
    paths = sorted(i["path"].rsplit("/", 1)[-1] for i in data["images"])
    assert paths == sorted(["face_recognition__john2.jpeg", "face_recognition__johnsnow_test1.jpg", GROUP])
    assert data["counts"] == {"images": 3, "faces": 3}
    for image in data["images"]:
        assert image["collection"] == "press" and image["legal_basis"] == "legitimate-interests"
        assert image["purpose"] == "press archive" and image["jurisdictions"] == ["DE"] and image["ingested_at"]
        assert len(image["faces"]) == 1 and image["available"]
    solo = {f["face_id"] for i in data["images"] for f in i["faces"] if GROUP not in i["path"]}
    assert solo == kit_faces
    assert all(f["enrolled_as"] == "Kit" for i in data["images"] for f in i["faces"] if GROUP not in i["path"])
    assert [c["status"] for c in data["subjects"][0]["consents"]] == ["given"]
    assert (event.purpose, event.counts) == ("SAR-7", {"images": 3, "faces": 3})

    group = next(i for i in data["images"] if GROUP in i["path"])
    kit_id = group["faces"][0]["face_id"]
    rose_box = next(b for fid, b in group_boxes.items() if fid != kit_id)
    assert group["other_faces_blurred"] >= 1
    html = report.html_path.read_text()
    assert "<script" not in html and "http://" not in html and "https://" not in html  # self-contained
    match = re.search(rf"data-image-id='{group['image_id']}' data-scale='([0-9.]+)' "
                      r"src='data:image/jpeg;base64,([A-Za-z0-9+/=]+)'", html)
    assert match, "group photo missing from the HTML"
    scale = float(match.group(1))
    shown = Image.open(io.BytesIO(base64.b64decode(match.group(2)))).convert("RGB")
    original = Image.open(root / "photos/press" / GROUP).convert("RGB")
    original = original.resize(shown.size, Image.Resampling.LANCZOS)
    rose_shown, rose_orig = _region(shown, _inner(rose_box, scale)), _region(original, _inner(rose_box, scale))
    kit_box = tuple(group["faces"][0]["box"])
    kit_shown, kit_orig = _region(shown, _inner(kit_box, scale)), _region(original, _inner(kit_box, scale))
    # Rose: detail destroyed and far from the original; Kit: the same picture up to JPEG noise.
    assert _sharpness(rose_shown) < 0.1 * _sharpness(rose_orig)
    assert np.abs(rose_shown - rose_orig).mean() > 10
    assert np.abs(kit_shown - kit_orig).mean() < 6
    assert _sharpness(kit_shown) > 0.5 * _sharpness(kit_orig)


def test_redact_keeps_only_the_subject(enrolled, tmp_path):
    root, store, group_boxes = enrolled
    out = tmp_path / "redacted.png"  # lossless, so the kept face can be compared exactly
    with open_engine(store) as engine:
        result = engine.privacy.redact(str(root / "photos/press" / GROUP), "Kit", out)
        event = engine.audit.events(action="redact")[-1]
    assert len(result.kept) == 1 and result.blurred == 1 and result.score >= 0.94
    assert event.counts == {"faces": 2, "kept": 1, "blurred": 1}
    redacted = Image.open(out).convert("RGB")
    original = Image.open(root / "photos/press" / GROUP).convert("RGB")
    kit_box = result.kept[0]
    rose_box = next(b for b in group_boxes.values() if b != kit_box)
    assert np.array_equal(_region(redacted, kit_box), _region(original, kit_box))
    assert _sharpness(_region(redacted, _inner(rose_box))) < 0.1 * _sharpness(_region(original, _inner(rose_box)))


def test_redact_blurs_everyone_when_the_subject_is_absent(enrolled, tmp_path):
    root, store, _ = enrolled
    with open_engine(store) as engine:
        result = engine.privacy.redact(str(root / "photos/press/Rose_Leslie/face_recognition__img1.jpg"), "Kit",
                                       tmp_path / "r.jpg")
    assert result.kept == [] and result.blurred == 1 and result.score is None
