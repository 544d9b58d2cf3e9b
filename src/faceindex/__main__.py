"""`python -m faceindex` runs the CLI."""

from faceindex.cli import app

app()
