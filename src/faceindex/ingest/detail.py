"""Detail levels on record: each collection's chosen level and the level each image was analysed at.

A collection remembers the detail (`fast`, `auto`, `thorough`: config.Settings.detail) it was created with
or later given; ingests and the service's uploads into it use that level unless the call names one. Each
indexed image records the level it was analysed at, so re-adding a folder with a *higher* level analyses
its unchanged files again (ingest.runner), while an equal or lower level skips them as before.

`INGEST_MIGRATIONS` is this layer's own migration set (store/migrations.MigrationSet); step names never
change once released. Both columns are NULL on rows written before it: a collection without a level
follows the store's setting, and an image without one counts as UNRECORDED.
"""

from __future__ import annotations

from faceindex.errors import InvalidInputError, NotFoundError
from faceindex.store.catalog_sql import id_chunks, marks
from faceindex.store.migrations import MigrationSet

LEVELS = ("fast", "auto", "thorough")
"""The detail levels, least thorough first: a later one finds every face an earlier one finds (auto = fast
plus the crowd pass where its probe sees a crowd; thorough = the crowd pass on every photo)."""

UNRECORDED = "auto"
"""The level assumed for an image indexed before levels were recorded: the default of that release. So only
an explicit `thorough` analyses such photos again (treating them as `fast` would make the first default
`add` after an upgrade re-analyse a whole archive)."""

_CHECK = ", ".join(f"'{level}'" for level in LEVELS)

MIGRATIONS: list[tuple[str, str]] = [
    (
        "ingest_0001_detail",
        f"""
        ALTER TABLE collections ADD COLUMN detail TEXT CHECK (detail IS NULL OR detail IN ({_CHECK}));
        ALTER TABLE images ADD COLUMN detail TEXT CHECK (detail IS NULL OR detail IN ({_CHECK}));
        """,
    ),
]

INGEST_MIGRATIONS = MigrationSet("ingest", MIGRATIONS)


def check_level(level: str) -> str:
    """`level` if it is a detail level, else InvalidInputError naming the choices."""
    if level not in LEVELS:
        raise InvalidInputError(f"detail {level!r}: use {', '.join(LEVELS)}")
    return level


def higher(requested: str, recorded: str | None) -> bool:
    """Whether analysing at `requested` may find faces that an analysis at `recorded` (None: UNRECORDED) did not."""
    return LEVELS.index(requested) > LEVELS.index(recorded or UNRECORDED)


def collection_detail(catalog, collection_id: int) -> str | None:
    """The level a collection keeps (None: it follows the store's setting); None too before the migration."""
    if not catalog.upgrade():  # a read-only store written before this set: every collection follows the setting
        return None
    row = catalog.conn.execute("SELECT detail FROM collections WHERE id = ?", (collection_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"no collection with id {collection_id}")
    return row[0]


def set_collection_detail(catalog, collection_id: int, level: str | None) -> None:
    """Give a collection its level (None: follow the store's setting again); call inside a transaction."""
    catalog.conn.execute("UPDATE collections SET detail = ? WHERE id = ?",
                         (None if level is None else check_level(level), collection_id))


def image_detail(row) -> str | None:
    """The level an image row was analysed at (None: not recorded)."""
    return row["detail"] if "detail" in row.keys() else None  # noqa: SIM118 (sqlite3.Row: `in` tests values)


def record_image_detail(catalog, image_id: int, level: str | None) -> None:
    """Record the level an image was analysed at (in the caller's transaction)."""
    catalog.conn.execute("UPDATE images SET detail = ? WHERE id = ?", (level, image_id))


def record_images_detail(catalog, image_ids: list[int], level: str | None) -> None:
    """Record the level several images were analysed at, one statement per ID_CHUNK of them (a batch's images)."""
    for chunk in id_chunks(image_ids):
        catalog.conn.execute(f"UPDATE images SET detail = ? WHERE id IN ({marks(chunk)})", (level, *chunk))


def face_boxes(catalog, image_id: int) -> list[tuple[int, int, int, int]]:
    """Boxes (left, top, right, bottom; photo px) of the faces an image holds."""
    return [tuple(r) for r in catalog.conn.execute(
        "SELECT box_left, box_top, box_right, box_bottom FROM faces WHERE image_id = ?", (image_id,))]


def add_to_image(catalog, image_id: int, *, faces: int, withheld: int, level: str) -> None:
    """After faces were added to an image by a higher-detail analysis: its counts and level (in a transaction)."""
    catalog.conn.execute("UPDATE images SET n_faces = n_faces + ?, faces_withheld = faces_withheld + ?, detail = ?"
                         " WHERE id = ?", (faces, withheld, level, image_id))
