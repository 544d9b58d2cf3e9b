"""People on real photos: grouping matches the people/ folders, operator decisions survive re-runs, bad input.

One store is built per module (the real pipeline on 174 photos of people/ and three group photos; ~1 min on
2 busy cores); tests that change people work on a copy of its catalog file so they do not disturb each other.
"""

from __future__ import annotations

import shutil
import threading
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from faceindex.config import Settings
from faceindex.engine import Engine
from faceindex.errors import ConflictError, EmptyStoreError, InvalidInputError, NotFoundError, PolicyError
from faceindex.people import schema
from faceindex.people.grouping import GroupingParams, agglomerate, confidence, knn_edges
from faceindex.people.metrics import cluster_scores
from faceindex.people.operations import PeopleOps
from faceindex.store.catalog import Catalog

GROUP_PHOTOS = ("face_recognition__obama_and_biden.jpg", "face_recognition__two_people.jpg", "dlib__bald_guys.jpg",
                "deepface__couple.jpg")


@pytest.fixture(scope="module")
def built(faces_dir: Path, tmp_path_factory) -> Path:
    """A store with people/ (the last photo of each folder in collection 'later') and a few group photos."""
    root = tmp_path_factory.mktemp("people") / "store"
    first, later = [], []
    for folder in sorted(p for p in (faces_dir / "people").iterdir() if p.is_dir()):
        photos = sorted(p for p in folder.iterdir() if p.is_file())
        first += photos[:-1] if len(photos) > 2 else photos
        later += photos[-1:] if len(photos) > 2 else []
    groups = [faces_dir / "groups" / name for name in GROUP_PHOTOS if (faces_dir / "groups" / name).exists()]
    assert len(groups) >= 2, "expected group photos missing from ../shared/faces/groups"
    with Engine(root, Settings(workers=2)) as engine:
        engine.ingest(first, "first", basis="legitimate-interests", purpose="people test")
        engine.ingest(later, "later", basis="legitimate-interests", purpose="people test")
        engine.ingest(groups, "groups", basis="legitimate-interests", purpose="people test")
    return root


@pytest.fixture
def ops(built: Path, tmp_path: Path):
    """PeopleOps on a private copy of the module's store, with the audit events it would write."""
    shutil.copytree(built, tmp_path / "store")
    catalog = Catalog(tmp_path / "store" / "catalog.sqlite")
    events: list[tuple[str, dict, dict]] = []
    people = PeopleOps(catalog, audit=lambda e: events.append((e.action, e.params(), e.counts())))
    people.events = events
    yield people
    catalog.close()


def folder_of(ops: PeopleOps) -> dict[int, str]:
    """Face id -> people/ folder, for faces that are alone in their photo (bystanders have no label)."""
    rows = ops.catalog.conn.execute(
        "SELECT f.id, i.uri, i.n_faces FROM faces f JOIN images i ON i.id = f.image_id WHERE f.embedding IS NOT NULL")
    return {r[0]: Path(r[1]).parent.name for r in rows if "/people/" in r[1] and r[2] == 1}


def test_groups_match_the_folders(ops: PeopleOps):
    report = ops.cluster("first")
    assert report.new_people > 20
    label = folder_of(ops)
    people = ops.list(faces=True)
    mixed = {p.id: Counter(label[f.face_id] for f in p.faces if f.face_id in label) for p in people}
    assert all(len(c) <= 1 for c in mixed.values()), f"a person mixes folders: {mixed}"
    # Recall: each folder with >= 2 labelled faces in 'first' is found, mostly as one person.
    faces_in = {f.face_id: p.id for p in people for f in p.faces}
    by_folder = defaultdict(list)
    for face_id, folder in label.items():
        if face_id in faces_in or ops.catalog.conn.execute(
                "SELECT c.name FROM faces f JOIN images i ON i.id = f.image_id JOIN collections c ON c.id ="
                " i.collection_id WHERE f.id = ?", (face_id,)).fetchone()[0] == "first":
            by_folder[folder].append(faces_in.get(face_id, -1))
    truth = [folder for folder, faces in by_folder.items() for _ in faces]
    pred = [p for faces in by_folder.values() for p in faces]
    scores = cluster_scores(np.array(pred), np.array(truth))
    assert scores.pairwise_precision == 1.0
    assert scores.bcubed_f >= 0.95, scores


def test_new_faces_join_existing_people(ops: PeopleOps):
    ops.cluster("first")
    before = {p.id: {f.face_id for f in p.faces} for p in ops.list(faces=True)}
    report = ops.cluster()  # now 'later' and 'groups' too
    assert report.joined_existing >= 15
    label = folder_of(ops)
    after = {p.id: {f.face_id for f in p.faces} for p in ops.list(faces=True, include_single=True)}
    for person_id, faces in before.items():
        assert faces <= after[person_id], "a re-run took faces away from a person"
        folders = {label[f] for f in after[person_id] if f in label}
        assert len(folders) == 1, f"person {person_id} now mixes {folders}"


def test_two_faces_of_one_photo_never_share_a_person(ops: PeopleOps):
    ops.cluster()
    rows = ops.catalog.conn.execute(
        "SELECT pf.person_id, f.image_id, count(*) FROM person_faces pf JOIN faces f ON f.id = pf.face_id"
        " WHERE pf.state != 'rejected' GROUP BY pf.person_id, f.image_id HAVING count(*) > 1").fetchall()
    assert rows == []
    n_group_faces = ops.catalog.conn.execute(
        "SELECT count(*) FROM faces f JOIN images i ON i.id = f.image_id WHERE i.uri LIKE '%/groups/%'"
        " AND f.embedding IS NOT NULL").fetchone()[0]
    assert n_group_faces >= 6  # the constraint was exercised on photos with several faces


def test_confirmed_split_and_rejection_survive_a_rerun(ops: PeopleOps):
    ops.cluster("first")
    biggest = ops.list(faces=True)[0]
    faces = [f.face_id for f in biggest.faces]
    off, rejected = faces[: len(faces) // 2], faces[-1]
    new_id = ops.split(biggest.id, off)
    ops.reject(biggest.id, rejected)
    ops.cluster()
    ops.cluster()
    assert {f.face_id for f in ops.show(new_id).faces} >= set(off)
    kept = {f.face_id for f in ops.show(biggest.id).faces}
    assert not kept & set(off)
    assert rejected not in kept
    assert ops.catalog.conn.execute("SELECT count(*) FROM person_faces WHERE face_id = ? AND person_id = ?"
                                    " AND state = 'rejected'", (rejected, biggest.id)).fetchone()[0] == 1
    assert [e[0] for e in ops.events].count("people.split") == 1


def test_name_merge_and_bad_input(ops: PeopleOps):
    ops.cluster("first")
    a, b = (p.id for p in ops.list()[:2])
    ops.name(a, "  Ada Lovelace ")
    assert ops.show(a).name == "Ada Lovelace"
    assert ops.resolve("Ada Lovelace") == a
    with pytest.raises(InvalidInputError, match="empty"):
        ops.name(a, "   ")
    with pytest.raises(InvalidInputError, match="at most"):
        ops.name(a, "x" * 10_000)
    with pytest.raises(ConflictError, match="already named"):
        ops.name(b, "Ada Lovelace")
    with pytest.raises(InvalidInputError, match="itself"):
        ops.merge(a, a)
    with pytest.raises(NotFoundError):
        ops.merge(a, 999_999)
    size_a = ops.show(a).size
    with pytest.raises(InvalidInputError, match="every face"):
        ops.split(a, [f.face_id for f in ops.show(a).faces])
    with pytest.raises(InvalidInputError, match="not faces of person"):
        ops.split(a, [f.face_id for f in ops.show(b).faces][:1])
    assert ops.show(a).size == size_a  # nothing lost by the refused operations
    size_b = ops.show(b).size
    merged = ops.merge(a, b)  # the wrong merge an operator then undoes with a split
    assert merged.size == size_a + size_b and merged.name == "Ada Lovelace"
    with pytest.raises(NotFoundError, match=f"merged into person {a}"):
        ops.show(b)


def test_concurrent_merges_of_the_same_people(ops: PeopleOps):
    ops.cluster("first")
    a, b = (p.id for p in ops.list()[:2])
    total = ops.show(a).size + ops.show(b).size
    outcomes: list[object] = []

    def merge(keep: int, other: int) -> None:
        try:
            outcomes.append(ops.merge(keep, other).id)
        except NotFoundError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=merge, args=args) for args in ((a, b), (b, a))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o in outcomes if isinstance(o, int)]
    assert len(winners) == 1 and len(outcomes) == 2
    assert isinstance(next(o for o in outcomes if not isinstance(o, int)), NotFoundError)
    assert ops.show(winners[0]).size == total  # nothing lost


def test_grouping_off_forms_no_people_from_that_collection(ops: PeopleOps):
    ops.cluster()
    dropped = ops.set_grouping("groups", False)
    assert dropped >= 0
    with pytest.raises(PolicyError, match="does not allow grouping"):
        ops.cluster("groups")
    ops.cluster()
    in_groups = ops.catalog.conn.execute(
        "SELECT count(*) FROM person_faces pf JOIN faces f ON f.id = pf.face_id JOIN images i ON i.id = f.image_id"
        " WHERE i.uri LIKE '%/groups/%'").fetchone()[0]
    assert in_groups == 0
    assert ("people.grouping", {"collection": "groups", "allowed": "off"}, {"faces": dropped}) in ops.events


def test_empty_store_and_unknown_collection(tmp_path: Path):
    catalog = Catalog(tmp_path / "empty.sqlite3")
    people = PeopleOps(catalog)
    with pytest.raises(EmptyStoreError):
        people.cluster()
    with pytest.raises(NotFoundError):
        people.cluster("nope")
    assert people.list() == []
    with pytest.raises(NotFoundError):
        people.show(1)
    assert schema.apply(catalog)  # registered and applied on first use; again: nothing to do
    assert "people_0001_tables" not in catalog.pending_migrations()
    catalog.close()


def test_agglomerate_constraints_on_real_faceprints(ops: PeopleOps):
    """Pure function: same-photo rows and cannot-join pairs stay apart even when their faceprints are identical."""
    vec = np.frombuffer(ops.catalog.conn.execute("SELECT embedding FROM faces WHERE embedding IS NOT NULL LIMIT 1")
                        .fetchone()[0], dtype=np.float32)
    x = np.stack([vec, vec, vec, vec])
    params = GroupingParams(0.9, 0.9, k=3)
    edges = knn_edges(x, 3)
    assert len(edges[0]) == 6
    labels = agglomerate(x, edges, params, photo=np.array([1, 1, 2, 3]))
    assert labels[0] != labels[1]
    start = np.array([5, -1, -1, -1])
    labels = agglomerate(x, edges, params, start=start, photo=np.array([1, 2, 3, 4]), cannot_join=[(1, 5)])
    assert labels[0] == 5 and labels[1] != 5 and labels[2] == 5 and labels[3] == 5
    conf = confidence(x, labels)
    assert np.isnan(conf[1]) and np.allclose(conf[[0, 2, 3]], 1.0, atol=1e-5)


def _people_state(catalog: Catalog) -> dict[int, tuple[int, str, float | None]]:
    """Face id -> (person, state, confidence) of every membership (rejections included)."""
    return {int(f): (int(p), s, c) for f, p, s, c in catalog.conn.execute(
        "SELECT face_id, person_id, state, confidence FROM person_faces WHERE state != 'rejected'")}


def test_incremental_run_equals_the_full_read_path(built: Path, tmp_path: Path):
    """New faces ('later', 'groups') grouped by the incremental path give the people and confidences the
    full-read path gives, after the same first run and operator decisions, while searching fewer faces."""
    outcome, asked = {}, {}
    for name, incremental in (("full", False), ("incremental", True)):
        shutil.copytree(built, tmp_path / name)
        with Engine.open(tmp_path / name, mode="write") as engine:
            searched: list[int] = []

            def face_search(vectors, k, store=engine.store, searched=searched):
                searched.append(len(vectors))
                return store.search(vectors, k)

            ops = PeopleOps(engine.catalog, face_search=face_search)
            ops.cluster("first", incremental=False)  # the same start on both copies
            biggest = ops.list(faces=True)[0]
            ops.reject(biggest.id, biggest.faces[-1].face_id)
            ops.split(biggest.id, [f.face_id for f in biggest.faces[:2]])
            before = _people_state(engine.catalog)
            searched.clear()
            report = ops.cluster(incremental=incremental)
            outcome[name] = (report, before, _people_state(engine.catalog))
            asked[name] = sum(searched)
    (full, before, after_full), (inc, before_inc, after_inc) = outcome["full"], outcome["incremental"]
    assert before == before_inc
    assert full.joined_existing >= 15 and full.new_people >= 1, full
    assert (inc.faces_grouped, inc.joined_existing, inc.new_people) == (
        full.faces_grouped, full.joined_existing, full.new_people)
    assert {f: v[:2] for f, v in after_inc.items()} == {f: v[:2] for f, v in after_full.items()}
    # Confidence of every face of the people that changed (gained faces, or new): the same.
    changed = {after_full[f][0] for f in after_full if f not in before}
    touched = [f for f, v in after_full.items() if v[0] in changed]
    assert len(touched) > len(set(after_full) - set(before))
    assert all(after_inc[f][2] == pytest.approx(after_full[f][2], abs=1e-4) for f in touched)
    for f, v in before.items():  # decisions kept: confirmed faces stay where the operator put them
        if v[1] == "confirmed":
            assert after_inc[f][:2] == v[:2]
    assert 0 < asked["incremental"] < asked["full"], asked
