"""The incremental `people cluster` data path: what it searches and reads, and what it leaves alone.

Synthetic faceprints with identity structure (store/synthetic.py) in a real store (SQLite catalog + FAISS index);
the equivalence with the full-read path on real photos is in test_people.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faceindex.people.grouping import GroupingParams, confidence
from faceindex.people.operations import PeopleOps
from faceindex.pipeline.types import Face
from faceindex.store.face_store import FaceStore
from faceindex.store.synthetic import make_gallery

PARAMS = GroupingParams(0.918, 0.942, single_threshold=0.945)  # the calibration's defaults for dlib
MODEL = "dlib-resnet-v1+flip"


def fill(store: FaceStore, collection: str, vectors: np.ndarray, first: int) -> list[int]:
    """Synthetic faceprints as faces of synthetic photos (one face each); their face ids."""
    catalog = store.catalog
    ids = []
    with catalog.transaction():
        catalog.bind_model(MODEL)
        found = [c for c in catalog.list_collections() if c.name == collection]
        coll = found[0] if found else catalog.create_collection(collection, "legitimate-interests", "people test")
        for k, v in enumerate(vectors):
            image_id = catalog.insert_image(coll.id, f"/synthetic/{first + k:06d}.jpg", sha256=f"{first + k:064x}",
                                            size_bytes=1)
            ids += catalog.insert_faces(image_id, [Face(box=(0, 0, 100, 100), score=1.0, detector="synthetic",
                                                        landmarks=[], size_px=100, blur=100.0, embedding=v)], MODEL)
    return ids


class Spy:
    """PeopleOps over a store, counting the faces searched and the faceprints read from the catalog."""

    def __init__(self, store: FaceStore):
        self.searched: list[int] = []
        self.read = 0
        self.ops = PeopleOps(store.catalog, params=PARAMS, face_search=self.search)
        self.store = store
        embeddings = self.ops.store.embeddings

        def counted(face_ids):
            self.read += len(face_ids)
            return embeddings(face_ids)

        self.ops.store.embeddings = counted

    def search(self, vectors, k):
        self.searched.append(len(vectors))
        return self.store.search(vectors, k)

    def reset(self) -> None:
        self.searched.clear()
        self.read = 0


@pytest.fixture
def grouped(tmp_path: Path):
    gallery = make_gallery(600, seed=41)
    store = FaceStore(tmp_path / "store")
    fill(store, "a", gallery.vectors, 0)
    spy = Spy(store)
    first = spy.ops.cluster()
    assert first.new_people > 20 and spy.searched == [600]
    spy.reset()
    yield spy, gallery
    store.close()


def memberships(ops: PeopleOps) -> dict[int, tuple[int, str, float | None]]:
    return {int(f): (int(p), s, c) for f, p, s, c in ops.catalog.conn.execute(
        "SELECT face_id, person_id, state, confidence FROM person_faces")}


def test_a_run_with_nothing_new_searches_and_reads_nothing(grouped):
    spy, _ = grouped
    before = memberships(spy.ops)
    report = spy.ops.cluster()
    assert (report.faces_grouped, report.new_people, report.faces_in_scope) == (0, 0, 600)
    assert spy.searched == [] and spy.read == 0
    assert memberships(spy.ops) == before


def test_new_faces_read_only_their_neighbourhood(grouped):
    spy, gallery = grouped
    new_x, _ = gallery.probes(30, seed=43)
    new_ids = fill(spy.store, "a", new_x, 600)
    before = memberships(spy.ops)
    report = spy.ops.cluster()
    assert spy.searched == [30]
    assert report.joined_existing >= 15, report
    assert 30 < spy.read < 400, spy.read  # the new faces and the people they touch, not the 630 faces
    after = memberships(spy.ops)
    assert all(after[f][:2] == v[:2] for f, v in before.items()), "a run moved a face already in a person"
    # Grouped: new faces, and faces seen alone before that a new face's edge reached.
    assert set(after) - set(before) >= {f for f in new_ids if f in after}
    assert len(set(after) - set(before)) == report.faces_grouped


def test_confidence_is_recomputed_for_the_people_that_changed_only(grouped):
    spy, gallery = grouped
    conn = spy.ops.catalog.conn
    conn.execute("UPDATE person_faces SET confidence = 0.5")  # a marker: whatever is recomputed loses it
    conn.commit()
    new_x, _ = gallery.probes(30, seed=47)
    fill(spy.store, "a", new_x, 600)
    report = spy.ops.cluster()
    assert report.joined_existing >= 15
    after = memberships(spy.ops)
    by_person: dict[int, list[int]] = {}
    for f, (p, _, _) in after.items():
        by_person.setdefault(p, []).append(f)
    changed = {p for p, faces in by_person.items() if any(after[f][2] != 0.5 for f in faces)}
    untouched = set(by_person) - changed
    assert changed and untouched
    for p in changed:  # every face of a changed person: the mean cosine to the rest of that person
        faces = sorted(by_person[p])
        x = spy.ops.store.embeddings(faces)
        want = confidence(x, np.zeros(len(faces), np.int64))
        got = [after[f][2] for f in faces]
        assert got == pytest.approx(want.tolist(), abs=1e-4)
    # The full path as before (incremental=False) refreshes every face in a person whenever a face is free.
    fill(spy.store, "a", gallery.probes(1, seed=53)[0], 700)
    spy.ops.cluster(incremental=False)
    assert all(c != 0.5 for _, s, c in memberships(spy.ops).values() if s == "auto")


def test_a_rejected_face_is_looked_at_again_and_never_rejoins(grouped):
    spy, _ = grouped
    person = spy.ops.list()[0]
    face = spy.ops.show(person.id).faces[0].face_id
    spy.ops.reject(person.id, face)
    spy.ops.cluster()
    assert spy.searched == [1]  # the rejected face, free again: nothing else is new
    assert face not in {f.face_id for f in spy.ops.show(person.id).faces}


def test_grouping_switched_off_and_on_looks_at_the_collection_again(grouped):
    spy, gallery = grouped
    b_faces = set(fill(spy.store, "b", gallery.probes(40, seed=59)[0], 600))
    first = spy.ops.cluster()
    in_people = b_faces & set(memberships(spy.ops))
    assert len(in_people) >= 20, first
    assert spy.ops.set_grouping("b", False) == len(in_people)
    spy.ops.set_grouping("b", True)
    spy.reset()
    spy.ops.cluster()
    # b's faces that were in people, free again though older than the last run (the rest were seen alone).
    assert spy.searched == [len(in_people)]
    assert b_faces & set(memberships(spy.ops)) == in_people


def test_a_first_run_on_a_big_scope_takes_the_full_path_then_runs_are_incremental(tmp_path: Path, monkeypatch):
    from faceindex.people import grouping

    monkeypatch.setattr(grouping, "STORE_SEARCH_MAX", 100)  # "big": more new faces than the store's index takes
    gallery = make_gallery(600, seed=61)
    store = FaceStore(tmp_path / "store")
    fill(store, "a", gallery.vectors, 0)
    spy = Spy(store)
    first = spy.ops.cluster()
    assert first.new_people > 20 and spy.searched == [] and spy.read == 0  # a job graph over the scope read
    fill(store, "a", gallery.probes(30, seed=67)[0], 600)
    second = spy.ops.cluster()
    assert spy.searched == [30] and second.joined_existing >= 15, second
    store.close()


def test_cli_full_revisits_the_faces_left_alone(tmp_path: Path):
    import json

    from typer.testing import CliRunner

    from faceindex.cli import app

    gallery = make_gallery(300, seed=71)
    store = FaceStore(tmp_path / "store")
    fill(store, "a", gallery.vectors, 0)
    store.close()

    def cluster(*extra: str) -> dict:
        result = CliRunner().invoke(app, ["people", "cluster", "--store", str(tmp_path / "store"), "--json", *extra])
        assert result.exit_code == 0, result.output
        return json.loads(result.output.strip().splitlines()[-1])

    first = cluster()
    assert first["new_people"] > 10 and first["unassigned"] > 0
    again = cluster()
    assert (again["faces_grouped"], again["unassigned"]) == (0, 0)  # nothing new: nothing looked at
    full = cluster("--full")
    assert full["faces_grouped"] + full["unassigned"] == first["unassigned"]  # every free face looked at again
