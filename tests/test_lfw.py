"""LFW pairs/people parsing on the real DevTrain files and on synthetic View-2 files."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from faceindex.errors import InvalidInputError
from faceindex.evaluation.lfw import Pair, load_pairs, load_people, person_images


@pytest.fixture(scope="module")
def devtrain(faces_dir) -> Path:
    return faces_dir / "lfw-devtrain"


def test_devtrain_pairs(devtrain):
    pairs = load_pairs(devtrain / "pairsDevTrain.txt")  # checks every image exists
    assert len(pairs) == 2200
    assert sum(p.same for p in pairs) == 1100
    assert all(p.path_a.is_file() and p.path_b.is_file() for p in pairs)
    images = devtrain / "images"
    assert pairs[0] == Pair(images / "Aaron_Peirsol" / "Aaron_Peirsol_0001.jpg",
                            images / "Aaron_Peirsol" / "Aaron_Peirsol_0002.jpg", True, 0)
    first_diff = pairs[1100]
    assert (first_diff.identity_a, first_diff.identity_b, first_diff.same) == ("AJ_Cook", "Marsha_Thomason", False)
    assert first_diff.path_b.name == "Marsha_Thomason_0001.jpg"
    # Deterministic interleaved folds: 10 folds of 110 same + 110 different pairs.
    per_fold = Counter((p.fold, p.same) for p in pairs)
    assert per_fold == {(f, s): 110 for f in range(10) for s in (True, False)}
    assert [p.fold for p in pairs[:12]] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert pairs[1100].fold == 0 and pairs[1111].fold == 1


def test_devtrain_images_folder_accepted(devtrain):
    a = load_pairs(devtrain / "pairsDevTrain.txt", devtrain, check_exists=False)
    b = load_pairs(devtrain / "pairsDevTrain.txt", devtrain / "images", check_exists=False)
    assert a == b


def test_devtrain_people(devtrain):
    people = load_people(devtrain / "peopleDevTrain.txt")
    assert len(people) == 4038
    assert (people[0].name, people[0].n_images, people[0].fold) == ("AJ_Cook", 1, 0)
    assert sum(p.n_images >= 2 for p in people) == 1184
    many = next(p for p in people if p.name == "Aaron_Peirsol")
    assert all(p.is_file() for p in person_images(devtrain, many))


VIEW2 = """2\t2
Ann\t1\t2
Bob\t1\t3
Ann\t1\tBob\t2
Cy\t1\tAnn\t2
Cy\t1\t2
Dee\t2\t3
Bob\t1\tCy\t1
Dee\t1\tAnn\t1
"""


def test_view2_folds(tmp_path):
    (tmp_path / "pairs.txt").write_text(VIEW2)
    root = tmp_path / "images"
    for name, n in {"Ann": 2, "Bob": 3, "Cy": 2, "Dee": 3}.items():
        (root / name).mkdir(parents=True)
        for i in range(1, n + 1):
            (root / name / f"{name}_{i:04d}.jpg").write_bytes(b"")
    pairs = load_pairs(tmp_path / "pairs.txt")
    assert [(p.same, p.fold) for p in pairs] == [(True, 0), (True, 0), (False, 0), (False, 0),
                                                 (True, 1), (True, 1), (False, 1), (False, 1)]
    assert pairs[1].path_b == root / "Bob" / "Bob_0003.jpg"
    assert pairs[3].path_a == root / "Cy" / "Cy_0001.jpg" and pairs[3].identity_b == "Ann"
    assert load_pairs(tmp_path / "pairs.txt", root) == pairs


@pytest.mark.parametrize("text, where", [
    ("1\nAnn 1 2\nAnn 1 Bob\n", ":3:"),           # different-people line with 3 fields
    ("1\nAnn 1 x\nAnn 1 Bob 2\n", ":2:"),         # non-integer index
    ("1\nAnn 0 2\nAnn 1 Bob 2\n", ":2:"),         # LFW indices start at 1
    ("1\nAnn 1 2\n", ":3:"),                      # missing line
    ("1\nAnn 1 2\nAnn 1 Bob 2\nCy 1 2\n", ":4:"),  # extra line
    ("1 2 3\n", ":1:"),                           # bad header
    ("1\n../etc 1 2\nAnn 1 Bob 2\n", ":2:"),      # a name that would escape the images folder
])
def test_malformed_pairs(tmp_path, text, where):
    (tmp_path / "pairs.txt").write_text(text)
    with pytest.raises(InvalidInputError, match=where):
        load_pairs(tmp_path / "pairs.txt", check_exists=False)


def test_missing_images_reported(tmp_path):
    (tmp_path / "pairs.txt").write_text("1\nAnn 1 2\nAnn 1 Bob 2\n")
    with pytest.raises(InvalidInputError, match="3 image"):
        load_pairs(tmp_path / "pairs.txt")


def test_view2_people(tmp_path):
    (tmp_path / "people.txt").write_text("2\n2\nAnn 2\nBob 3\n1\nCy 2\n")
    people = load_people(tmp_path / "people.txt")
    assert [(p.name, p.n_images, p.fold) for p in people] == [("Ann", 2, 0), ("Bob", 3, 0), ("Cy", 2, 1)]
    (tmp_path / "bad.txt").write_text("2\n2\nAnn 2\nBob 3\n2\nCy 2\n")
    with pytest.raises(InvalidInputError, match="ends early"):
        load_people(tmp_path / "bad.txt")
