"""Ingest: find the declared files, analyse them on every core, commit the results in audited batches."""
