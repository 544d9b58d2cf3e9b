"""`python -m faceindex` and the `faceindex` console script run the CLI through `main`."""


def main() -> None:
    """Run the CLI.

    The import is inside the function on purpose: ingest's worker processes are spawned, and spawn runs the
    parent's main script again in each worker (as `__mp_main__`). The console script imports this module at its
    top, so importing the CLI (typer, rich and every command module) here would cost each worker ~0.3-0.5 CPU-s
    for nothing; a worker only needs the pipeline.
    """
    from faceindex.cli import app

    app()


# The guard matters: worker processes are spawned, and spawn re-imports the main module under another name.
if __name__ == "__main__":
    main()
