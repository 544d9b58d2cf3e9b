"""Storage: the SQLite catalog (source of truth) and the FAISS vector index (rebuildable cache)."""
