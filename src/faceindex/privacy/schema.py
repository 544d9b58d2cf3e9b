"""Catalog migrations owned by the privacy layer (subjects, consent, opt-out, retention)."""

MIGRATIONS: list[tuple[str, str]] = []
