"""Catalog migrations owned by the privacy layer (subjects, consent, opt-out, erasure journal).

The Engine registers `PRIVACY_MIGRATIONS` after the store's core set, so its write start-up applies both.
Step names never change once released (see store.migrations).
"""

from faceindex.store.migrations import MigrationSet

MIGRATIONS: list[tuple[str, str]] = [
    (
        # Subjects are referred to by id everywhere outside this table (audit log included), so
        # erasing a subject removes its name from the store: the append-only log never holds it.
        # AUTOINCREMENT: an erased subject's id is never reused by a later, different person.
        "0002_subjects_consent",
        """
        CREATE TABLE subjects (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL UNIQUE CHECK (length(trim(name)) > 0),
            jurisdictions TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            last_interaction_at TEXT NOT NULL
        );
        CREATE TABLE subject_faces (
            face_id INTEGER PRIMARY KEY REFERENCES faces(id) ON DELETE CASCADE,
            subject_id INTEGER NOT NULL REFERENCES subjects(id) ON DELETE CASCADE,
            linked_at TEXT NOT NULL
        );
        CREATE INDEX subject_faces_subject ON subject_faces(subject_id);
        CREATE TABLE consents (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            subject_id INTEGER NOT NULL REFERENCES subjects(id) ON DELETE CASCADE,
            status TEXT NOT NULL CHECK (status IN ('given', 'withdrawn')),
            at TEXT NOT NULL,
            evidence TEXT,
            scope TEXT
        );
        CREATE INDEX consents_subject ON consents(subject_id, id);
        """,
    ),
    (
        # Protected opt-out templates (see privacy/optout.py): keyed sign projections, never the faceprint.
        "0003_optout_templates",
        """
        CREATE TABLE optout_templates (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            scheme TEXT NOT NULL,
            key_id TEXT NOT NULL,
            template BLOB NOT NULL,
            reference TEXT,
            created_at TEXT NOT NULL
        );
        """,
    ),
    (
        # Write-ahead intent of each erasure: the ids to delete (never a faceprint). A row that is
        # still here when the store opens belongs to an erasure that crashed; it is finished then.
        "0004_erasure_journal",
        """
        CREATE TABLE erasure_jobs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            route TEXT NOT NULL,
            face_ids TEXT NOT NULL,
            image_ids TEXT NOT NULL,
            collection_ids TEXT NOT NULL,
            subject_ids TEXT NOT NULL,
            purpose TEXT,
            params TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        """,
    ),
    (
        # Write-ahead work of an erasure on photos the store itself keeps (privacy/uploads.py): the file,
        # the face boxes to obscure in it ('[]': delete it) and, once computed, the digest of the rewritten
        # file, so a resumed erasure recognises a rewrite that a crash left unrecorded.
        "0005_upload_erasures",
        """
        CREATE TABLE upload_erasures (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            job_id INTEGER NOT NULL,
            uri TEXT NOT NULL,
            boxes TEXT NOT NULL,
            redacted_sha256 TEXT
        );
        """,
    ),
]

PRIVACY_MIGRATIONS = MigrationSet("privacy", MIGRATIONS)
