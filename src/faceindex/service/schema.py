"""Catalog migrations owned by the service (API keys, sessions)."""

MIGRATIONS: list[tuple[str, str]] = []
