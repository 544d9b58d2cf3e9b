"""Who a caller is (Principal) and which roles hold which permission: plain data every service module may use."""

from __future__ import annotations

from dataclasses import dataclass

from faceindex.service.keys import ROLES

PERMISSIONS: dict[str, frozenset[str]] = {
    "collections:read": frozenset({"admin", "curator", "auditor", "privacy-officer"}),
    "collections:write": frozenset({"admin", "curator"}),
    "ingest": frozenset({"admin", "curator"}),
    "search": frozenset({"admin", "searcher"}),
    "images:list": frozenset({"admin", "curator", "privacy-officer"}),
    "images:view": frozenset({"admin", "curator", "searcher", "privacy-officer"}),
    "images:delete": frozenset({"admin", "curator", "privacy-officer"}),
    "stats": frozenset({"admin", "curator", "auditor", "privacy-officer"}),
    "audit:read": frozenset({"admin", "auditor"}),
    "privacy": frozenset({"admin", "privacy-officer"}),
    "keys": frozenset({"admin"}),
    "people:read": frozenset({"admin", "curator", "searcher", "privacy-officer"}),
    "people:write": frozenset({"admin", "curator"}),
    "people:grouping": frozenset({"admin", "curator", "privacy-officer"}),
}
"""Permission → roles holding it. `admin` holds every permission; a searcher may view only the photos
its own searches returned (see SearchGrants). People (faces grouped into persons): searchers see people's names
and sizes, curators group, name, merge and split them; whether a collection may be grouped at all is a purpose
decision that a privacy officer may also take."""

assert all("admin" in roles and roles <= set(ROLES) for roles in PERMISSIONS.values())


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    key_id: int
    name: str
    role: str
    via: str
    """'key' (header) or 'session' (browser cookie)."""
    csrf: str | None = None

    @property
    def actor(self) -> str:
        """How the audit log names this caller."""
        return f"key:{self.name}"

    def can(self, permission: str) -> bool:
        return self.role in PERMISSIONS[permission]

    @property
    def permissions(self) -> list[str]:
        return sorted(p for p in PERMISSIONS if self.can(p))
