"""CLI commands of the REST service: `serve` and `keys` (registered on the main app)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the service commands to the main `faceindex` app."""
