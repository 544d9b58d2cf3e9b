"""Erasure by person against erasure by selfie: the share of each person's faces an erasure plan takes away.

Usage: python bench/bench_people_forget.py [--bystanders 1500] [--workers 2] [--store DIR]

A real store through the Engine: every photo of ../shared/faces/people except one "selfie" per person (the
first photo of each folder with >= 2 photos; a new user's fresh photo, never indexed), plus LFW DevTrain photos
of people not in people/ as bystanders (one per identity), then `people cluster`. For each person with a face
left in the store, four erasure plans (`faceindex forget ... --dry-run`; erase deletes exactly a plan's faces,
tests/test_people_privacy.py checks that):

- `--selfie S`, `--selfie S --expand` (the strict threshold, one hop through the matches);
- `--person ID`, `--person ID --expand`, where ID is the person an operator would pick: the people group
  holding most of the person's faces (none: the person route erases nothing for them).

A person's faces: in each photo of their folder, the face nearest the mean faceprint of the folder's one-face
photos. Reported: faces gone / faces held (pooled over people, and the mean of per-person shares), people left
with none, and faces of anyone else that the plans would erase (false erasures).
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
    if (store / "catalog.sqlite").exists():
        selfies = {f.name: sorted(p for p in f.iterdir() if p.is_file())[0]
                   for f in (FACES / "people").iterdir() if f.is_dir() and len(list(f.iterdir())) >= 2}
    else:
        selfies = build(store, args.bystanders, args.workers)
    methods = ("selfie", "selfie --expand", "person", "person --expand")
    gone = {m: 0 for m in methods}
    shares = {m: [] for m in methods}
    none_left = {m: 0 for m in methods}
    wrong = {m: 0 for m in methods}
    others = {m: 0 for m in methods}
    held = 0
    start = time.perf_counter()
    with Engine.open(store, Settings(workers=1), mode="write") as engine:
        truth = labelled_faces(engine)
        everyone = set().union(*truth.values())
        people = engine.people.list(faces=True, include_single=True)
        print(f"gallery: {engine.store.gallery_size()} faces; {len(truth)} people with faces held; "
              f"{len(people)} people groups")
        for name, faces in sorted(truth.items()):
            held += len(faces)
            group = max(people, key=lambda p: len(faces & {f.face_id for f in p.faces or []}), default=None)
            if group is not None and not faces & {f.face_id for f in group.faces or []}:
                group = None
            for method in methods:
                if method.startswith("selfie"):
                    if name not in selfies:
                        plan_faces: set[int] = set()
                    else:
                        plan = engine.privacy.plan_erasure(selfie=str(selfies[name]), expand="expand" in method)
                        plan_faces = set(plan.face_ids)
                else:
                    plan_faces = set() if group is None else set(
                        engine.privacy.plan_erasure(person=group.id, expand="expand" in method).face_ids)
                hit = faces & plan_faces
                gone[method] += len(hit)
                shares[method].append(len(hit) / len(faces))
                none_left[method] += hit == faces
                # Anyone else's face: another person's labelled face, a bystander (LFW, or another face in a
                # people/ photo). An unlabelled face of the same person in someone else's photo would count too.
                wrong[method] += len(plan_faces - faces)
                others[method] += len(plan_faces & (everyone - faces))
    print(f"plans made in {time.perf_counter() - start:.0f} s\n")
    print(f"| forget by | faces gone (pooled, of {held}) | mean share per person | people with none left "
          f"(of {len(truth)}) | other faces in the plans (of them another person's) |")
    print("|---|---|---|---|---|")
    for m in methods:
        print(f"| `--{m}` | {gone[m]} ({gone[m] / held:.1%}) | {np.mean(shares[m]):.1%} | {none_left[m]} | "
              f"{wrong[m]} ({others[m]}) |")


if __name__ == "__main__":
    main()
