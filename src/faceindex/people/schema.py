"""Catalog migrations owned by the people layer (people, their faces, operator decisions, the grouping purpose).

`PEOPLE_MIGRATIONS` is this layer's named set (store/migrations.MigrationSet); step names never change once
released. The Engine registers it with the other layers' sets; `apply(catalog)` registers it too, so
PeopleOps also works on a catalog opened without the Engine (tests, scripts).
"""

from __future__ import annotations

from faceindex.store.migrations import MigrationSet

MAX_NAME = 200
"""Longest person name (characters): a full name with titles fits; a pasted document does not."""

MIGRATIONS: list[tuple[str, str]] = [
    (
        # Grouping faces into people is a processing purpose of its own: a collection records whether it is
        # allowed (on by default, as the issue asks); people are never formed from a collection without it.
        # person_faces.state: 'auto' (the grouping put it there), 'confirmed' (an operator did), 'rejected'
        # (an operator said this face is not this person: it never joins them again). A face belongs to at
        # most one person (the partial unique index); rejections are kept beside that.
        # Decisions name ids only: the person's name lives in `people` alone, so erasing the person erases it.
        "people_0001_tables",
        f"""
        ALTER TABLE collections ADD COLUMN grouping INTEGER NOT NULL DEFAULT 1 CHECK (grouping IN (0, 1));
        CREATE TABLE people (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT CHECK (name IS NULL OR (length(trim(name)) > 0 AND length(name) <= {MAX_NAME})),
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE UNIQUE INDEX people_name ON people(name) WHERE name IS NOT NULL;
        CREATE TABLE person_faces (
            face_id INTEGER NOT NULL REFERENCES faces(id) ON DELETE CASCADE,
            person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
            state TEXT NOT NULL CHECK (state IN ('auto', 'confirmed', 'rejected')),
            confidence REAL,
            at TEXT NOT NULL,
            PRIMARY KEY (face_id, person_id)
        );
        CREATE UNIQUE INDEX person_faces_one_person ON person_faces(face_id) WHERE state != 'rejected';
        CREATE INDEX person_faces_person ON person_faces(person_id, state);
        CREATE TABLE person_decisions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL CHECK (action IN ('name', 'merge', 'split', 'reject', 'confirm', 'grouping')),
            person_id INTEGER,
            other_id INTEGER,
            n_faces INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX person_decisions_other ON person_decisions(other_id);
        """,
    ),
    (
        # Faces a grouping run looked at and left free (seen once, or no close enough match). An incremental
        # run searches neighbours only for faces neither in a person nor seen, instead of every free face
        # again: at 1 M faces a quarter stay free, which would be a whole-store graph on every run. A face
        # leaves this table when it joins a person (assign) and with the face itself (erasure: the cascade).
        "people_0002_seen",
        """
        CREATE TABLE person_seen (
            face_id INTEGER NOT NULL REFERENCES faces(id) ON DELETE CASCADE,
            PRIMARY KEY (face_id)
        );
        """,
    ),
]


PEOPLE_MIGRATIONS = MigrationSet("people", MIGRATIONS)


def apply(catalog) -> bool:
    """Register the people set on `catalog` and apply what a writable store lacks; False when the tables are
    missing and cannot be made (a read-only store, or none yet): its reads then treat people as empty."""
    catalog.use_migrations(PEOPLE_MIGRATIONS)
    return catalog.upgrade()
