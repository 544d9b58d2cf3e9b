"""The default pipeline on real photos: face counts of annotated groups, no faces in non-face photos."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from faceindex.config import Settings
from faceindex.pipeline.analyse import FacePipeline


def manifest(faces_dir: Path, prefix: str) -> list[tuple[Path, int | None]]:
    with open(faces_dir / "MANIFEST.tsv", newline="") as handle:
        rows = csv.DictReader(handle, delimiter="\t")
        return [(faces_dir / r["path"], int(r["n_faces_expected"]) if r["n_faces_expected"] else None)
                for r in rows if r["path"].startswith(prefix)]


@pytest.fixture(scope="module")
def pipeline() -> FacePipeline:
    return FacePipeline()


def test_pascal_group_photos_give_the_annotated_face_count(faces_dir, pipeline):
    # dlib's HOG detector was trained on these PASCAL VOC photos' annotations: exact counts expected.
    for path, expected in manifest(faces_dir, "groups/dlib__20"):
        assert len(pipeline.analyse(path).faces) == expected, path.name


def test_annotated_group_photos_recall_and_no_phantom_faces(faces_dir, pipeline):
    found_total = expected_total = 0
    for path, expected in manifest(faces_dir, "groups/"):
        if expected is None:
            continue
        found = len(pipeline.analyse(path).faces)
        assert found <= expected, f"{path.name}: {found} faces found, {expected} annotated"
        found_total += found
        expected_total += expected
    # Measured 2026-11-26: 79 of 83 annotated faces (HOG misses 3 of the 7 in the group selfie, 1 profile).
    assert found_total / expected_total >= 0.9


def test_photos_without_people_give_no_accepted_face(faces_dir, pipeline):
    for path, expected in manifest(faces_dir, "nonfaces/"):
        assert expected == 0
        assert pipeline.analyse(path).accepted == [], path.name


def test_faces_are_embedded_as_unit_vectors_with_boxes_inside_the_image(faces_dir, pipeline):
    analysis = pipeline.analyse(faces_dir / "groups" / "face_recognition__kit_with_rose.jpg")
    assert len(analysis.accepted) == 2
    for face in analysis.accepted:
        left, top, right, bottom = face.box
        assert 0 <= left < right <= analysis.width and 0 <= top < bottom <= analysis.height
        assert face.embedding.shape == (128,) and abs(float((face.embedding ** 2).sum()) - 1) < 1e-5
        assert len(face.landmarks) == 5
    a, b = (f.embedding for f in analysis.accepted)
    assert float(a @ b) < 0.9  # two different people (impostor cosines here: mean 0.83, sd 0.04)


def test_scaled_copies_of_one_portrait_give_the_same_person(faces_dir, pipeline):
    obama = faces_dir / "people" / "Barack_Obama"
    vectors = [pipeline.analyse(obama / f"face_recognition__obama-{r}.jpg").accepted[0].embedding
               for r in ("480p", "720p", "1080p")]
    assert min(float(vectors[0] @ v) for v in vectors[1:]) > 0.93


@pytest.mark.parametrize("turned", ["rot_90", "rot_180", "rot_270", "r90", "r180", "r270"])
def test_sideways_copies_without_an_orientation_tag_are_found_and_mapped_back(faces_dir, pipeline, turned):
    # The r* copies carry EXIF orientation 1 with turned pixels (an editor's output); rot_* carry no tag.
    folder = faces_dir / "people" / "Cai_Xukun"
    upright = pipeline.analyse(folder / f"insightface__{'rot_0' if turned.startswith('rot') else 'r0'}.jpg")
    analysis = pipeline.analyse(folder / f"insightface__{turned}.jpg")
    assert len(upright.accepted) == 1 and len(analysis.accepted) == 1
    face = analysis.accepted[0]
    assert face.detector == f"dlib-hog@turned{turned.split('_')[-1].lstrip('r')}"
    assert float(face.embedding @ upright.accepted[0].embedding) > 0.95  # the same face, upright again
    left, top, right, bottom = face.box
    assert 0 <= left < right <= analysis.width and 0 <= top < bottom <= analysis.height
    # The landmarks lie inside the box in the photo's own (turned) coordinates.
    assert all(left <= x <= right and top <= y <= bottom for x, y in face.landmarks)


def test_turned_look_is_not_taken_when_disabled_or_when_exif_turned_the_photo(faces_dir, tmp_path):
    from PIL import Image

    folder = faces_dir / "people" / "Cai_Xukun"
    assert FacePipeline(Settings(rotate_retry=False)).analyse(folder / "insightface__rot_90.jpg").faces == []
    # The same pixels with EXIF orientation 3 (the viewer turns them 180°): the tag is trusted, so no retry.
    tagged = tmp_path / "tagged.jpg"
    with Image.open(folder / "insightface__rot_90.jpg") as im:
        exif = im.getexif()
        exif[0x0112] = 3
        im.save(tagged, exif=exif)
    assert FacePipeline().analyse(tagged).accepted == []


def test_fallback_detector_takes_a_second_look_when_the_primary_found_only_unusable_faces(faces_dir, pipeline):
    # HOG finds only a small blurred face in the background here and misses the subject in the centre.
    analysis = pipeline.analyse(faces_dir / "lfw-devtrain" / "images" / "Xanana_Gusmao" / "Xanana_Gusmao_0002.jpg")
    rejected = [f for f in analysis.faces if not f.ok]
    assert [f.detector for f in rejected] == ["dlib-hog"] and "blurred" in rejected[0].rejected
    assert [f.detector for f in analysis.accepted] == ["dlib-cnn"]
    left, top, right, bottom = analysis.accepted[0].box
    assert left < analysis.width / 2 < right and top < analysis.height / 2 < bottom
