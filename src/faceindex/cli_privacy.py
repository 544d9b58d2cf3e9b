"""CLI commands of the privacy layer (registered on the main app)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the privacy commands to the main `faceindex` app."""
