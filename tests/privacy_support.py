"""Shared set-up of the privacy tests: one small real-photo store, built once per session, copied per test.

Layout (photos copied from ../shared/faces so paths are stable and nothing outside tmp is touched):
- collection "press" (legitimate-interests, DE): Jack Dorsey x4, Mark Zuckerberg x4, Kit Harington x2,
  Rose Leslie x1, and the group photo of Kit with Rose;
- collection "canada" (consent, CA): John Simm x3.
One more photo of each person, never ingested, is their "selfie". The selfies were chosen from measured
scores (all >= 0.96 against the person's other photos, <= 0.93 against everyone else), so the strict
threshold (0.94) separates them without luck.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from faceindex.config import Settings
from faceindex.engine import Engine
from faceindex.pipeline.analyse import FacePipeline

PRESS = {
    "Jack_Dorsey": ["deepface__img17.jpg", "deepface__img59.jpg", "deepface__img61.jpg", "deepface__img62.jpg"],
    "Mark_Zuckerberg": ["deepface__img13.jpg", "deepface__img14.jpg", "deepface__img15.jpg", "deepface__img57.jpg"],
    "Kit_Harington": ["face_recognition__john2.jpeg", "face_recognition__johnsnow_test1.jpg"],
    "Rose_Leslie": ["face_recognition__img1.jpg"],
}
CANADA = {"John_Simm": ["dlib__000300_00470148.jpg", "dlib__000305_00470717.jpg", "dlib__000310_00470511.jpg"]}
GROUP = "face_recognition__kit_with_rose.jpg"
SELFIES = {
    "Jack_Dorsey": "deepface__img16.jpg",
    "Mark_Zuckerberg": "deepface__img58.jpg",
    "Kit_Harington": "face_recognition__john1.jpeg",
    "Rose_Leslie": "face_recognition__img2.jpg",
    "John_Simm": "dlib__000305_00470162.jpg",
}

_cache: dict[str, object] = {}


def settings() -> Settings:
    # One worker: the test machine has 2 shared cores, and a pool would load the models again per process.
    return Settings(workers=1)


def pipeline() -> FacePipeline:
    if "pipeline" not in _cache:
        _cache["pipeline"] = FacePipeline(settings())
    return _cache["pipeline"]  # type: ignore[return-value]


def open_engine(store: Path, *, mode: str = "write", **kwargs) -> Engine:
    """Open for writing by default: these tests check what opening for writes does (resume, purge, filter)."""
    return Engine.open(store, settings(), pipeline=pipeline(), mode=mode, **kwargs)


def build_photos(faces_dir: Path, root: Path) -> Path:
    photos = root / "photos"
    for collection, people in (("press", PRESS), ("canada", CANADA)):
        for name, files in people.items():
            (photos / collection / name).mkdir(parents=True, exist_ok=True)
            for file in files:
                shutil.copy(faces_dir / "people" / name / file, photos / collection / name / file)
    shutil.copy(faces_dir / "groups" / GROUP, photos / "press" / GROUP)
    selfies = root / "selfies"
    selfies.mkdir()
    for name, file in SELFIES.items():
        shutil.copy(faces_dir / "people" / name / file, selfies / f"{name}{Path(file).suffix}")
    return root


def ingest_pristine(engine: Engine, root: Path) -> None:
    """The shared store's two collections (see the module docstring)."""
    engine.ingest([root / "photos" / "press"], "press", basis="legitimate-interests",
                  purpose="press archive", jurisdictions=["DE"])
    engine.ingest([root / "photos" / "canada"], "canada", basis="consent", purpose="event photos",
                  jurisdictions=["CA"])


def pristine(faces_dir: Path, tmp_path_factory) -> Path:
    """The root (photos/, selfies/, store/) of the shared store, built on first use in this session (always on
    the embedded backends, whatever FACEINDEX_CATALOG_URL / FACEINDEX_VECTORS_URL a test has set)."""
    if "root" not in _cache:
        root = build_photos(faces_dir, tmp_path_factory.mktemp("privacy-pristine"))
        embedded = Settings(workers=1, catalog_url="", vectors_url="faiss")
        with Engine.open(root / "store", embedded, pipeline=pipeline(), mode="write") as engine:
            ingest_pristine(engine, root)
        _cache["root"] = root
    return _cache["root"]  # type: ignore[return-value]


def fresh_copy(faces_dir: Path, tmp_path_factory, tmp_path: Path) -> Path:
    """A private copy of the pristine store for one test: photos and selfies are shared, read-only."""
    root = pristine(faces_dir, tmp_path_factory)
    shutil.copytree(root / "store", tmp_path / "store")
    return tmp_path / "store"


@pytest.fixture()
def root(faces_dir, tmp_path_factory):
    """The pristine shared store (built once per session); tests must not write to it."""
    return pristine(faces_dir, tmp_path_factory)


@pytest.fixture()
def store(request, faces_dir, tmp_path_factory, tmp_path):
    """A private copy of the shared store for one test. Parametrised indirectly with "cluster" (e.g.
    `@pytest.mark.parametrize("store", BACKENDS, indirect=True)`), the copy's catalog is a PostgreSQL database
    and its vectors Milvus Lite, both named by FACEINDEX_CATALOG_URL / FACEINDEX_VECTORS_URL for the test."""
    if getattr(request, "param", "embedded") == "cluster":
        from pg_support import cluster_copy

        return cluster_copy(request, faces_dir, tmp_path_factory, tmp_path)
    return fresh_copy(faces_dir, tmp_path_factory, tmp_path)


def selfie(root: Path, name: str) -> Path:
    return next((root / "selfies").glob(f"{name}.*"))


def found_people(engine: Engine, probe: Path, purpose: str = "test") -> set[str]:
    """Identities (folder names, or 'group') of every candidate the search returns for the probe's faces."""
    people = set()
    for result in engine.search([str(probe)], purpose):
        assert result.error is None, result.error
        for face in result.faces:
            for cand in face.candidates:
                people.add(Path(cand.path).parent.name if GROUP not in cand.path else "group")
    return people


def candidate_paths(engine: Engine, probe: Path) -> set[str]:
    return {Path(c.path).name for r in engine.search([str(probe)], "test") for f in r.faces for c in f.candidates}


def faces_in(engine: Engine, folder_name: str) -> list[int]:
    """Face ids (with faceprints) of images whose path has `folder_name` as a component or file name."""
    return [r[0] for r in engine.catalog.conn.execute(
        "SELECT f.id FROM faces f JOIN images i ON i.id = f.image_id WHERE f.embedding IS NOT NULL AND"
        " (i.uri LIKE ? OR i.uri LIKE ?)", (f"%/{folder_name}/%", f"%/{folder_name}"))]


def needles(vectors: np.ndarray) -> list[bytes]:
    """Byte forms of faceprints to look for: float32 (how the catalog and the index store them), and
    float16 / float64 too, so a future change of storage dtype cannot slip past the scan."""
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    return [v.astype(dtype).tobytes() for v in vectors for dtype in (np.float32, np.float16, np.float64)]


def scan_store(store: Path, vectors: np.ndarray) -> list[str]:
    """Every file under the store (catalog.sqlite, -wal, -shm, index.faiss, anything else) that contains any
    of the vectors' bytes. Deliberately naive (`bytes in bytes`): it must not share code with what it checks."""
    targets = needles(vectors)
    hits = []
    for path in sorted(p for p in store.rglob("*") if p.is_file()):
        data = path.read_bytes()
        hits += [f"{path.name}: vector {n // 3} as {('float32', 'float16', 'float64')[n % 3]}"
                 for n, t in enumerate(targets) if t in data]
    return hits


ANISTON_SELFIE = "deepface__img55.jpg"
"""Measured (dlib-resnet-v1, this pipeline): against Jennifer Aniston's 5 other photos in people/ it scores
0.973-0.982 on three and 0.937 / 0.949 on two, i.e. between search's threshold (0.929 for this gallery) and
erasure's strict one (0.954): the case the campaign found ("search still finds 2 of her 5 photos"). Every
other face of the shared store scores <= 0.90 against it."""


def add_aniston(faces_dir: Path, store: Path, photos: Path) -> Path:
    """Index Jennifer Aniston's photos other than ANISTON_SELFIE (copied to `photos`) into a collection of their
    own; returns the selfie's path."""
    photos.mkdir()
    for path in sorted((faces_dir / "people/Jennifer_Aniston").iterdir()):
        if path.name != ANISTON_SELFIE:
            shutil.copy(path, photos / path.name)
    with open_engine(store) as engine:
        engine.ingest([photos], "fans", basis="legitimate-interests", purpose="fan photos", jurisdictions=["US"])
    return faces_dir / "people/Jennifer_Aniston" / ANISTON_SELFIE


def privacy_cli():
    """The privacy commands exactly as `faceindex` registers them, on an app of their own: a command group
    of another layer that fails to build must not fail these tests."""
    import typer

    from faceindex.cli import audit, privacy

    app = typer.Typer()
    privacy.register(app)
    audit.register(app)
    return app


def audit_scenario(engine: Engine, root: Path, out: Path) -> None:
    """Every audited action once, through the public API only, on a copy of the shared store (`root`'s photos).

    Written against the API that has not changed since audit events became typed, so the same function
    produced tests/data/audit_events_v1.jsonl with the code before that change (see test_audit.py).
    """
    selfies = root / "selfies"
    jack, kit, mark = (next(selfies.glob(f"{n}.*")) for n in ("Jack_Dorsey", "Kit_Harington", "Mark_Zuckerberg"))
    engine.create_collection("badges", "contract", "staff badges", jurisdictions=["US-IL"], retention_days=30)
    engine.ingest([root / "photos/press/Rose_Leslie"], "badges")
    engine.search([str(jack)], "case 1")
    engine.verify(str(kit), str(root / "photos/press/Kit_Harington/face_recognition__john2.jpeg"))
    engine.privacy.subjects.enrol("Kit", [root / "photos/press/Kit_Harington"], collection="press",
                                  jurisdictions=["DE"], consent_evidence="release form 3", case="case 2")
    engine.privacy.subjects.consent("Kit", "withdrawn", evidence="email", scope="all", case="case 3")
    engine.privacy.erase(engine.privacy.plan_erasure(selfie=str(jack), case="case 4"))
    optout = engine.privacy.opt_out(str(mark), reference="request 5")
    engine.privacy.withdraw_opt_out(optout.optout_id, "changed mind")
    engine.privacy.access_report(str(kit), out / "report", case="case 6")
    engine.privacy.subjects.enrol("Rose", face_ids=[faces_in(engine, "face_recognition__img1.jpg")[0]])
    engine.privacy.redact(str(root / "photos/press" / GROUP), "Rose", out / "redacted.jpg", case="case 7")
    engine.privacy.purge(bipa=False)
    engine.remove_image(str(root / "photos/canada/John_Simm" / CANADA["John_Simm"][0]))
    engine.remove_collection("badges")
    engine.reindex()
    engine.privacy.export_audit(out / "audit.jsonl", case="case 8")
