"""Collections in the catalog: the `Collection` record and the catalog's reads and writes of them."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from faceindex.errors import ConflictError, InvalidInputError, NotFoundError
from faceindex.store.catalog_sql import utcnow
from faceindex.store.migrations import LEGAL_BASES
from faceindex.store.sql_dialect import IntegrityError


@dataclass(frozen=True)
class Collection:
    id: int
    name: str
    legal_basis: str
    purpose: str
    jurisdictions: tuple[str, ...]
    retention_days: int | None
    owner: str | None
    created_at: str

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Collection:
        juris = tuple(j for j in row["jurisdictions"].split(",") if j)
        return cls(row["id"], row["name"], row["legal_basis"], row["purpose"], juris,
                   row["retention_days"], row["owner"], row["created_at"])


class CollectionRecords:
    """The collection methods of `Catalog` (a mixin: it uses the catalog's `conn` and `transaction`)."""

    conn: Any
    transaction: Callable[..., AbstractContextManager]

    def create_collection(self, name: str, legal_basis: str, purpose: str, *, jurisdictions: tuple[str, ...] = (),
                          retention_days: int | None = None, owner: str | None = None) -> Collection:
        if not name or not name.strip():
            raise InvalidInputError("a collection needs a name")
        if legal_basis not in LEGAL_BASES:
            raise InvalidInputError(f"legal basis must be one of {', '.join(LEGAL_BASES)}; got {legal_basis!r}")
        if not purpose or not purpose.strip():
            raise InvalidInputError("a collection needs a purpose")
        juris = ",".join(sorted({j.strip().upper() for j in jurisdictions if j.strip()}))
        try:
            self.conn.execute(
                "INSERT INTO collections (name, legal_basis, purpose, jurisdictions, retention_days, owner, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (name, legal_basis, purpose.strip(), juris, retention_days, owner, utcnow()),
            )
        except IntegrityError as exc:
            raise ConflictError(f"collection {name!r} already exists") from exc
        return self.get_collection(name)

    def get_or_create_collection(self, name: str, legal_basis: str, purpose: str, **policy) -> tuple[Collection, bool]:
        """The collection named `name`, created when missing, atomically: (collection, created).

        Check and insert run in one write transaction, so two writers asking for the same new collection
        both get it (one creates it), never "already exists".
        """
        with self.transaction():
            existing = self.find_collection(name)
            if existing is not None:
                return existing, False
            return self.create_collection(name, legal_basis, purpose, **policy), True

    def get_collection(self, name: str) -> Collection:
        row = self.conn.execute("SELECT * FROM collections WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFoundError(f"no collection named {name!r}")
        return Collection.from_row(row)

    def find_collection(self, name: str) -> Collection | None:
        try:
            return self.get_collection(name)
        except NotFoundError:
            return None

    def list_collections(self) -> list[Collection]:
        return [Collection.from_row(r) for r in self.conn.execute("SELECT * FROM collections ORDER BY name")]
