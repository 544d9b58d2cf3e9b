"""The files ingest could not index, as the catalog records them: a typed read for the adapters (no SQL there)."""

from __future__ import annotations

from faceindex.store.catalog import Catalog


def skipped_files(catalog: Catalog, limit: int = 1000) -> list[tuple[str, str]]:
    """(path, reason) of up to `limit` skipped files, in the order they were recorded."""
    rows = catalog.conn.execute("SELECT uri, error FROM images WHERE status = 'skipped' ORDER BY id LIMIT ?",
                                (limit,))
    return [(r["uri"], r["error"]) for r in rows]
