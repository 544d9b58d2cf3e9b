"""`python -m faceindex` runs the CLI."""

from faceindex.cli import app

# The guard matters: worker processes are spawned, and spawn re-imports the main module under another name.
if __name__ == "__main__":
    app()
