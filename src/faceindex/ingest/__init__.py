"""Ingest: find the declared files, analyse them on every core, commit each photo atomically."""
