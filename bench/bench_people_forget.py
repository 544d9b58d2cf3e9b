"""Erasure by person against erasure by selfie: the share of each person's faces an erasure plan takes away.

Usage: python bench/bench_people_forget.py [--bystanders 1500] [--workers 2] [--store DIR]

A real store through the Engine: every photo of ../shared/faces/people except one "selfie" per person (the
first photo of each folder with >= 2 photos; a new user's fresh photo, never indexed), plus LFW DevTrain photos
of people not in people/ as bystanders (one per identity), then `people cluster`. For each person with >= 2
faces left in the store (a single face forms no group), four erasure plans (`faceindex forget ... --dry-run`;
erase deletes exactly a plan's faces, tests/test_people_privacy.py checks that):

- `--selfie S`, `--selfie S --expand` (the strict threshold, one hop through the matches);
- `--person ID`, `--person ID --expand`, where ID is the person an operator would pick: the people group
  holding most of the person's faces (none: the person route erases nothing for them).

Run twice: on the groups as `people cluster` made them, and after an operator's review (the groups holding one
person's faces only merged, as on the People page). A person's faces: in each photo of their folder, the face
nearest the mean faceprint of the folder's one-face photos. Reported: faces gone / faces held (pooled, and the
mean of per-person shares), people left with none, and faces of anyone else the plans would erase.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from benchlib import machine_line  # noqa: E402
from people_data import FACES  # noqa: E402

from faceindex.config import Settings  # noqa: E402
from faceindex.engine import Engine  # noqa: E402
from faceindex.errors import FaceIndexError  # noqa: E402


def build(store: Path, bystanders: int, workers: int) -> dict[str, Path]:
    """Ingest the store (see the module docstring); returns each person's selfie."""
    selfies, photos = {}, []
    for folder in sorted(p for p in (FACES / "people").iterdir() if p.is_dir()):
        files = sorted(p for p in folder.iterdir() if p.is_file())
        if len(files) >= 2:
            selfies[folder.name] = files[0]
            files = files[1:]
        photos += files
    names = {p.name for p in (FACES / "people").iterdir()}
    lfw = sorted(p for p in (FACES / "lfw-devtrain/images").iterdir() if p.is_dir() and p.name not in names)
    extra = [next(iter(sorted(d.iterdir()))) for d in lfw[:bystanders]]
    start = time.perf_counter()
    with Engine(store, Settings(workers=workers)) as engine:
        engine.ingest(photos, "people", basis="legitimate-interests", purpose="bench")
        if extra:
            engine.ingest(extra, "bystanders", basis="legitimate-interests", purpose="bench")
        report = engine.people.cluster()
    print(f"store: {len(photos)} people/ photos, {len(extra)} bystanders, {time.perf_counter() - start:.0f} s; "
          f"cluster: {report.to_dict()}")
    return selfies


def labelled_faces(engine: Engine) -> dict[str, set[int]]:
    """Person (folder) -> the face id of them in each of their photos."""
    rows = engine.catalog.conn.execute(
        "SELECT f.id, f.image_id, i.uri, f.embedding FROM faces f JOIN images i ON i.id = f.image_id"
        " WHERE f.embedding IS NOT NULL AND i.uri LIKE '%/people/%'").fetchall()
    by_image: dict[int, list] = defaultdict(list)
    for fid, image, uri, emb in rows:
        by_image[image].append((fid, Path(uri).parent.name, np.frombuffer(emb, np.float32)))
    alone: dict[str, list[np.ndarray]] = defaultdict(list)
    for faces in by_image.values():
        if len(faces) == 1:
            alone[faces[0][1]].append(faces[0][2])
    centre = {p: np.mean(v, axis=0) for p, v in alone.items()}
    out: dict[str, set[int]] = defaultdict(set)
    for faces in by_image.values():
        person = faces[0][1]
        if person in centre:
            out[person].add(max(faces, key=lambda f: float(f[2] @ centre[person]))[0])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bystanders", type=int, default=1500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--store", type=Path, help="Reuse (or build) the store here.")
    args = parser.parse_args()
    print(machine_line())
    store = args.store or Path(tempfile.mkdtemp(prefix="bench-people-forget-")) / "store"
    if (store / "catalog.sqlite").exists():  # note: the review step merges people in this store
        selfies = {f.name: sorted(p for p in f.iterdir() if p.is_file())[0]
                   for f in (FACES / "people").iterdir() if f.is_dir() and len(list(f.iterdir())) >= 2}
    else:
        selfies = build(store, args.bystanders, args.workers)
    start = time.perf_counter()
    with Engine.open(store, Settings(workers=1), mode="write") as engine:
        truth = labelled_faces(engine)
        print(f"gallery: {engine.store.gallery_size()} faces; {len(truth)} people with faces held, "
              f"{sum(len(f) >= 2 for f in truth.values())} with >= 2 (a single face forms no group); "
              f"{len(engine.people.list(include_single=True))} people groups")
        table(measure(engine, truth, selfies), "as grouped (no operator review)")
        merged = review(engine, truth)
        print(f"\noperator review: {merged} merges of groups that hold the same person")
        table(measure(engine, truth, selfies), "after review")
    print(f"\n{time.perf_counter() - start:.0f} s")


METHODS = ("selfie", "selfie --expand", "selfie --expand + listed", "person", "person --expand",
           "person --expand + listed")
"""'+ listed': the officer also includes every face the plan lists as found by an ordinary search but left by
the strict match (`--include-face`), unchecked: the upper bound of that review."""


def measure(engine: Engine, truth: dict[str, set[int]], selfies: dict[str, Path]) -> dict:
    """Per method: faces gone, shares, people cleared, other faces in the plans; over people with >= 2 faces."""
    everyone = set().union(*truth.values())
    people = engine.people.list(faces=True, include_single=True)
    rows = {m: {"gone": 0, "shares": [], "cleared": 0, "wrong": 0, "others": 0} for m in METHODS}
    held = [(name, faces) for name, faces in sorted(truth.items()) if len(faces) >= 2]
    for name, faces in held:
        group = max(people, key=lambda p: len(faces & {f.face_id for f in p.faces or []}), default=None)
        if group is not None and not faces & {f.face_id for f in group.faces or []}:
            group = None
        for method in METHODS:
            if method.startswith("selfie"):
                plan = engine.privacy.plan_erasure(selfie=str(selfies[name]), expand="expand" in method)
            else:
                plan = None if group is None else engine.privacy.plan_erasure(person=group.id,
                                                                              expand="expand" in method)
            plan_faces = set() if plan is None else set(plan.face_ids)
            if plan is not None and method.endswith("listed"):
                plan_faces |= {m.face_id for m in plan.also_found_by_search}
            hit = faces & plan_faces
            row = rows[method]
            row["gone"] += len(hit)
            row["shares"].append(len(hit) / len(faces))
            row["cleared"] += hit == faces
            # Anyone else's face: another person's labelled face, a bystander (LFW, or another face in a people/
            # photo). An unlabelled face of the same person in someone else's photo would count too.
            row["wrong"] += len(plan_faces - faces)
            row["others"] += len(plan_faces & (everyone - faces))
    rows["_held"] = (sum(len(f) for _, f in held), len(held))
    return rows


def review(engine: Engine, truth: dict[str, set[int]]) -> int:
    """What an operator does on the People page: merge the groups whose faces are all one person's."""
    label = {f: name for name, faces in truth.items() for f in faces}
    by_name: dict[str, list[int]] = defaultdict(list)
    for p in engine.people.list(faces=True):
        names = {label.get(f.face_id) for f in p.faces or []} - {None}
        if len(names) == 1:
            by_name[names.pop()].append(p.id)
    merged = 0
    for ids in by_name.values():
        for other in ids[1:]:
            try:
                engine.people.merge(ids[0], other)
                merged += 1
            except FaceIndexError as exc:
                print(f"  merge {ids[0]} + {other} refused: {exc.message}")
    return merged


def table(rows: dict, title: str) -> None:
    faces, people = rows["_held"]
    print(f"\n{title}: people with >= 2 faces held ({people} people, {faces} faces)\n")
    print(f"| forget by | faces gone (pooled) | mean share per person | people with none left (of {people}) |"
          " other faces in the plans (of them another person's) |")
    print("|---|---|---|---|---|")
    for m in METHODS:
        r = rows[m]
        print(f"| `--{m}` | {r['gone']} ({r['gone'] / faces:.1%}) | {np.mean(r['shares']):.1%} | {r['cleared']} | "
              f"{r['wrong']} ({r['others']}) |")


if __name__ == "__main__":
    main()
