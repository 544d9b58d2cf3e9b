"""CLI commands for accuracy: `eval` and `calibrate` (registered on the main app)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the evaluation commands to the main `faceindex` app."""
