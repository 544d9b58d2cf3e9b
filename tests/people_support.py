"""Shared set-up of the search/privacy-by-person tests: one real-photo store, built once per session, copied per test.

Layout (photos read in place from ../shared/faces/people, never copied into the repository):
- collection "archive" (grouping on): every photo but the last of PEOPLE's folders;
- collection "later" (created with grouping off): the last photo of each folder, so a search by a person
  grouped in "archive" has a photo of them to find that grouping never saw.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from privacy_support import open_engine  # one cached pipeline and one Settings for both test families
from typer.testing import CliRunner

from faceindex.cli import app
from faceindex.engine import Engine

PEOPLE = ("Angelina_Jolie", "Jennifer_Aniston", "Katy_Perry", "Scarlett_Johansson", "Matt_Damon", "Jack_Dorsey",
          "Mark_Zuckerberg", "Leonardo_DiCaprio")

_cache: dict[str, object] = {}


def photos_of(faces_dir: Path, person: str) -> list[Path]:
    return sorted(p for p in (faces_dir / "people" / person).iterdir() if p.is_file())


def pristine(faces_dir: Path, tmp_path_factory) -> Path:
    """The shared store (clustered once), built on first use in this session; tests copy it."""
    if "store" not in _cache:
        store = tmp_path_factory.mktemp("people-by-person") / "store"
        archive = [p for person in PEOPLE for p in photos_of(faces_dir, person)[:-1]]
        later = [photos_of(faces_dir, person)[-1] for person in PEOPLE]
        with open_engine(store) as engine:
            engine.ingest(archive, "archive", basis="legitimate-interests", purpose="people by person tests")
            engine.ingest(later, "later", basis="legitimate-interests", purpose="people by person tests",
                          grouping=False)
            engine.people.cluster()
        _cache["store"] = store
    return _cache["store"]  # type: ignore[return-value]


def fresh_copy(faces_dir: Path, tmp_path_factory, tmp_path: Path) -> Path:
    shutil.copytree(pristine(faces_dir, tmp_path_factory), tmp_path / "store")
    return tmp_path / "store"


def folder(path: str) -> str:
    return Path(path).parent.name


def person_of_folder(engine: Engine, name: str) -> int:
    """The person whose faces are (mostly) photos of folder `name` (the biggest such group)."""
    best = max(engine.people.list(faces=True), key=lambda p: sum(folder(f.path) == name for f in p.faces or []))
    assert any(folder(f.path) == name for f in best.faces or []), f"no person groups {name}'s photos"
    return best.id


def faces_of_folder(engine: Engine, name: str) -> list[int]:
    return [r[0] for r in engine.catalog.conn.execute(
        "SELECT f.id FROM faces f JOIN images i ON i.id = f.image_id WHERE f.embedding IS NOT NULL AND i.uri LIKE ?",
        (f"%/{name}/%",))]


def cli(*args: object, code: int = 0) -> str:
    """`faceindex ARGS` in-process; asserts the exit code and returns the output."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result.output
