"""Shared pytest fixtures: where the real test photos live, and fresh stores."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# The privacy tests' shared store fixtures (`root`, `store`) live beside their helpers; the PostgreSQL server
# (`postgres`, `pg_url`) in pg_support.
pytest_plugins = ["privacy_support", "pg_support"]


def shared_dir() -> Path:
    """The shared folder beside the checkout (photos and optional models); FACEINDEX_SHARED overrides."""
    return Path(os.environ.get("FACEINDEX_SHARED", REPO_ROOT.parent / "shared"))


def faces_root() -> Path:
    """The real test photos; FACEINDEX_TEST_FACES overrides the default ../shared/faces."""
    return Path(os.environ.get("FACEINDEX_TEST_FACES", shared_dir() / "faces"))


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    root = faces_root()
    if not (root / "people").is_dir():
        pytest.fail(f"test photos not found at {root}; set FACEINDEX_TEST_FACES")
    return root


@pytest.fixture(scope="session")
def models_dir() -> Path:
    return Path(os.environ.get("FACEINDEX_TEST_MODELS", shared_dir() / "models"))
