"""A plain `pip install faceindex` gives every command: each third-party module it imports is a base dependency."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, distribution, packages_distributions, requires
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OPTIONAL = {"cv2": "yunet", "face_recognition": "bench", "pymilvus": "cluster", "milvus_lite": "cluster",
            "psycopg": "cluster", "ray": "cluster"}
"""Modules only optional parts import (each behind a message naming its extra)."""


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def imported_modules() -> set[str]:
    """Top-level names of every absolute import in src/faceindex (lazy imports inside functions included)."""
    names = set()
    for path in (REPO / "src" / "faceindex").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"faceindex", "__future__"}


def providers_of(module: str, candidates: set[str]) -> set[str]:
    """Installed distributions that hold `module` (by their metadata, else by their file lists)."""
    found = {d.lower().replace("_", "-") for d in packages_distributions().get(module, [])}
    for name in candidates if not found else ():
        try:
            files = distribution(name).files or []
        except PackageNotFoundError:
            continue
        if any(f.parts[0] == module or f.name.startswith(f"{module}.") for f in files):
            found.add(name)
    return found


def with_their_requirements(names: set[str]) -> set[str]:
    """`names` plus what they require unconditionally (a plain install brings those too)."""
    out = set(names)
    for name in names:
        try:
            out.update(_name(r) for r in requires(name) or [] if "extra ==" not in r)
        except PackageNotFoundError:
            continue
    return out


def test_every_imported_module_is_installed_by_a_plain_pip_install():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    base = with_their_requirements({_name(r) for r in project["dependencies"]})
    extras = {extra: {_name(r) for r in reqs} for extra, reqs in project["optional-dependencies"].items()}
    everything = base.union(*extras.values())
    missing = {}
    for module in sorted(imported_modules()):
        dists = providers_of(module, everything)
        assert dists, f"{module} is imported by faceindex but no installed distribution provides it"
        if module in OPTIONAL:
            assert dists & extras[OPTIONAL[module]], f"{module} should come with the {OPTIONAL[module]} extra"
        elif not dists & base:
            missing[module] = sorted(dists)
    assert missing == {}, f"imported by faceindex but not a base dependency: {missing}"
    for dropped in ("fastapi", "uvicorn", "matplotlib", "pillow-heif"):
        assert dropped in {_name(r) for r in project["dependencies"]}


def test_the_readme_installs_without_extras_for_what_it_shows():
    readme = (REPO / "README.md").read_text()
    quick_start = readme[readme.index("## Quick start"):readme.index("## A tour of the CLI")]
    assert "pip install -e ." in quick_start or "pip install ." in quick_start
    assert "[service]" not in readme and "[eval]" not in readme
