"""The people tables' queries (people, person_faces, person_decisions, collections.grouping): SQL lives here only."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from faceindex.errors import NotFoundError
from faceindex.people import schema
from faceindex.store.catalog import Catalog, id_chunks, marks, utcnow

SEEN_THROUGH = "people_seen_through"
"""Meta key: the face id up to which a whole-scope grouping run looked at every face (PeopleStore.pending)."""


@dataclass
class ScopeFaces:
    """The faces grouping may use: accepted faces of collections that allow grouping, in face id order.

    `x` float32 (n, dim) unit faceprints; `face_ids`, `image_ids` int64 (n,); `person` int64 (n,): the
    person each face belongs to (auto or confirmed), -1 when free; `rejected`: (face id, person id) pairs.
    """

    face_ids: np.ndarray
    image_ids: np.ndarray
    x: np.ndarray
    person: np.ndarray
    rejected: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class PersonFace:
    face_id: int
    state: str
    confidence: float | None
    image_id: int
    path: str
    box: tuple[int, int, int, int]
    collection: str


@dataclass
class Person:
    id: int
    name: str | None
    size: int
    confirmed: int
    faces: list[PersonFace] | None = None

    def to_dict(self, *, faces: bool = False) -> dict:
        out: dict = {"id": self.id, "name": self.name, "size": self.size}
        if faces:
            out["faces"] = [{"face_id": f.face_id, "path": f.path, "box": list(f.box), "state": f.state,
                             "confidence": f.confidence} for f in self.faces or []]
        return out


class PeopleStore:
    """Reads and writes of the people tables through one catalog. Writes belong in `catalog.transaction()`."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self._ready = False

    def ready(self) -> bool:
        """Apply the people migrations when missing (call outside any transaction: migrations run their own);
        False when the store lacks them and cannot get them (read-only): reads then find no people."""
        if not self._ready:
            self._ready = schema.apply(self.catalog)
        return self._ready

    @property
    def available(self) -> bool:
        return self.ready()

    @property
    def conn(self):
        self.ready()
        return self.catalog.conn

    # -- collections ------------------------------------------------------------------------------
    def collection_grouping(self, name: str) -> tuple[int, bool]:
        row = self.conn.execute("SELECT id, grouping FROM collections WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFoundError(f"no collection named {name!r}")
        return int(row[0]), bool(row[1])

    def set_grouping(self, collection_id: int, allowed: bool) -> None:
        self.conn.execute("UPDATE collections SET grouping = ? WHERE id = ?", (int(allowed), collection_id))

    def unassign_collection(self, collection_id: int) -> int:
        """Drop every face of a collection from every person (its grouping was switched off); returns rows."""
        return self.conn.execute(
            "DELETE FROM person_faces WHERE face_id IN (SELECT f.id FROM faces f JOIN images i ON i.id = f.image_id"
            " WHERE i.collection_id = ?)", (collection_id,)).rowcount

    # -- the faces grouping works on -----------------------------------------------------------------
    def scope(self, collection_id: int | None = None, chunk: int = 50_000) -> ScopeFaces:
        """Accepted faces of the collections that allow grouping (only `collection_id` when given)."""
        where = "f.embedding IS NOT NULL AND c.grouping = 1" + (" AND c.id = ?" if collection_id is not None else "")
        args: tuple = (collection_id,) if collection_id is not None else ()
        ids, imgs, vecs, person = [], [], [], []
        last = 0
        while True:
            rows = self.conn.execute(
                "SELECT f.id, f.image_id, f.embedding, pf.person_id FROM faces f JOIN images i ON i.id = f.image_id"
                " JOIN collections c ON c.id = i.collection_id LEFT JOIN person_faces pf ON pf.face_id = f.id"
                f" AND pf.state != 'rejected' WHERE {where} AND f.id > ? ORDER BY f.id LIMIT ?",
                (*args, last, chunk)).fetchall()
            if not rows:
                break
            ids += [r[0] for r in rows]
            imgs += [r[1] for r in rows]
            vecs.append(np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32).reshape(len(rows), -1))
            person += [-1 if r[3] is None else r[3] for r in rows]
            last = rows[-1][0]
        rejected = [(int(f), int(p)) for f, p in self.conn.execute(
            "SELECT face_id, person_id FROM person_faces WHERE state = 'rejected'")]
        x = np.concatenate(vecs) if vecs else np.zeros((0, 0), np.float32)
        return ScopeFaces(np.array(ids, np.int64), np.array(imgs, np.int64), x, np.array(person, np.int64), rejected)

    # -- what an incremental run reads (people/incremental.py) -----------------------------------------
    def _in_scope(self, collection_id: int | None) -> tuple[str, tuple]:
        where = "f.embedding IS NOT NULL AND c.grouping = 1" + (" AND c.id = ?" if collection_id is not None else "")
        return where, ((collection_id,) if collection_id is not None else ())

    def scope_size(self, collection_id: int | None = None) -> int:
        """Faces in scope (accepted faces of the collections that allow grouping); ~0.4 s at 1 M faces."""
        where, args = self._in_scope(collection_id)
        return int(self.conn.execute(
            "SELECT count(*) FROM faces f JOIN images i ON i.id = f.image_id JOIN collections c"
            f" ON c.id = i.collection_id WHERE {where}", args).fetchone()[0])

    def pending(self, collection_id: int | None, after_id: int, limit: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(face ids, image ids) int64 of faces in scope no grouping run has looked at: in no person, not seen;
        None when there are more than `limit` (the caller then reads the whole scope anyway).

        Only faces above `after_id` (the `seen_through` watermark) and faces an operator rejected are
        candidates, so the query reads a range of new faces, not the whole faces table.
        """
        where, args = self._in_scope(collection_id)
        free = (" AND NOT EXISTS (SELECT 1 FROM person_faces pf WHERE pf.face_id = f.id AND pf.state != 'rejected')"
                " AND NOT EXISTS (SELECT 1 FROM person_seen s WHERE s.face_id = f.id)")
        base = ("SELECT f.id, f.image_id FROM faces f JOIN images i ON i.id = f.image_id JOIN collections c"
                f" ON c.id = i.collection_id WHERE {where}{free}")
        rows = self.conn.execute(f"{base} AND f.id > ? ORDER BY f.id LIMIT ?", (*args, after_id, limit + 1)).fetchall()
        rows += self.conn.execute(f"{base} AND f.id <= ? AND f.id IN (SELECT face_id FROM person_faces"
                                  " WHERE state = 'rejected') LIMIT ?", (*args, after_id, limit + 1)).fetchall()
        if len(rows) > limit:
            return None
        pairs = sorted((int(r[0]), int(r[1])) for r in rows)
        return np.array([p[0] for p in pairs], np.int64), np.array([p[1] for p in pairs], np.int64)

    def face_states(self, face_ids: list[int], collection_id: int | None) -> dict[int, tuple[int, int]]:
        """Face id -> (image id, person id or -1) of the given faces that are in scope (others are left out)."""
        where, args = self._in_scope(collection_id)
        return {int(r[0]): (int(r[1]), -1 if r[2] is None else int(r[2])) for chunk in id_chunks(face_ids)
                for r in self.conn.execute(
                    "SELECT f.id, f.image_id, pf.person_id FROM faces f JOIN images i ON i.id = f.image_id"
                    " JOIN collections c ON c.id = i.collection_id LEFT JOIN person_faces pf ON pf.face_id = f.id"
                    f" AND pf.state != 'rejected' WHERE {where} AND f.id IN ({marks(chunk)})", (*args, *chunk))}

    def members(self, person_ids: list[int]) -> list[tuple[int, int, int]]:
        """(face id, image id, person id) of every face of the given people (auto and confirmed)."""
        return [(int(f), int(i), int(p)) for chunk in id_chunks(person_ids) for f, i, p in self.conn.execute(
            "SELECT pf.face_id, f.image_id, pf.person_id FROM person_faces pf JOIN faces f ON f.id = pf.face_id"
            f" WHERE pf.state != 'rejected' AND pf.person_id IN ({marks(chunk)})", chunk)]

    def embeddings(self, face_ids: list[int]) -> np.ndarray:
        """float32 (n, dim) faceprints of the given faces, in the order given (primary-key lookups)."""
        if not face_ids:
            return np.zeros((0, 0), np.float32)
        found: dict[int, bytes] = {}
        for chunk in id_chunks(face_ids):
            found.update((int(f), e) for f, e in self.conn.execute(
                f"SELECT id, embedding FROM faces WHERE id IN ({marks(chunk)})", chunk))
        missing = [f for f in face_ids if f not in found]
        if missing:
            raise NotFoundError(f"face(s) {missing[:10]} have no faceprint in the catalog")
        return np.frombuffer(b"".join(found[f] for f in face_ids), dtype=np.float32).reshape(len(face_ids), -1)

    def rejections_of(self, face_ids: list[int]) -> list[tuple[int, int]]:
        """(face id, person id) rejections of the given faces."""
        return [(int(f), int(p)) for chunk in id_chunks(face_ids) for f, p in self.conn.execute(
            f"SELECT face_id, person_id FROM person_faces WHERE state = 'rejected' AND face_id IN ({marks(chunk)})",
            chunk)]

    def mark_seen(self, face_ids: list[int]) -> None:
        """Faces a run looked at and left free: the next incremental run does not search for them again."""
        self.conn.executemany("INSERT OR IGNORE INTO person_seen (face_id) VALUES (?)", [(f,) for f in face_ids])

    @property
    def seen_through(self) -> int:
        """Every face in scope up to this id is in a person, seen, or rejected (the `pending` watermark)."""
        return int(self.catalog.get_meta(SEEN_THROUGH, "0"))

    def set_seen_through(self, face_id: int) -> None:
        self.catalog.set_meta(SEEN_THROUGH, str(int(face_id)))

    # -- people ---------------------------------------------------------------------------------------
    def create_person(self, name: str | None = None) -> int:
        now = utcnow()
        return int(self.conn.execute("INSERT INTO people (name, created_at, updated_at) VALUES (?, ?, ?)",
                                     (name, now, now)).lastrowid)

    def exists(self, person_id: int) -> bool:
        if not self.available:
            return False
        return self.conn.execute("SELECT 1 FROM people WHERE id = ?", (person_id,)).fetchone() is not None

    def merged_into(self, person_id: int) -> int | None:
        """The person a removed person was merged into (the latest such decision), if any."""
        if not self.available:
            return None
        row = self.conn.execute("SELECT person_id FROM person_decisions WHERE action = 'merge' AND other_id = ?"
                                " ORDER BY id DESC LIMIT 1", (person_id,)).fetchone()
        return None if row is None else int(row[0])

    def name_of(self, person_id: int) -> str | None:
        row = self.conn.execute("SELECT name FROM people WHERE id = ?", (person_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no person with id {person_id}")
        return row[0]

    def by_name(self, name: str) -> int | None:
        row = self.conn.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
        return None if row is None else int(row[0])

    def set_name(self, person_id: int, name: str | None) -> None:
        self.conn.execute("UPDATE people SET name = ?, updated_at = ? WHERE id = ?", (name, utcnow(), person_id))

    def delete_person(self, person_id: int) -> None:
        self.conn.execute("DELETE FROM people WHERE id = ?", (person_id,))

    def prune_empty(self) -> int:
        """Delete people left without faces (all split off, rejected or erased): their names go with them."""
        return self.conn.execute("DELETE FROM people WHERE id NOT IN (SELECT person_id FROM person_faces"
                                 " WHERE state != 'rejected')").rowcount

    def assign(self, rows: list[tuple[int, int, str, float | None]]) -> None:
        """(face id, person id, state, confidence) memberships, replacing any membership of those faces."""
        now = utcnow()
        self.conn.executemany("DELETE FROM person_faces WHERE face_id = ? AND state != 'rejected'",
                              [(r[0],) for r in rows])
        self.conn.executemany("DELETE FROM person_seen WHERE face_id = ?", [(r[0],) for r in rows])
        self.conn.executemany("INSERT OR REPLACE INTO person_faces (face_id, person_id, state, confidence, at)"
                              " VALUES (?, ?, ?, ?, ?)", [(*r, now) for r in rows])

    def set_confidence(self, rows: list[tuple[int, float | None]]) -> None:
        """(face id, confidence) of auto assignments (confirmed faces need none: an operator checked them)."""
        self.conn.executemany("UPDATE person_faces SET confidence = ? WHERE face_id = ? AND state = 'auto'",
                              [(c, f) for f, c in rows])

    def faces_of(self, person_id: int, states: tuple[str, ...] = ("auto", "confirmed")) -> dict[int, str]:
        return {int(f): s for f, s in self.conn.execute(
            f"SELECT face_id, state FROM person_faces WHERE person_id = ? AND state IN ({marks(list(states))})",
            (person_id, *states))}

    def rejected_from(self, person_id: int) -> set[int]:
        return set(self.faces_of(person_id, ("rejected",)))

    def move_faces(self, face_ids: list[int], to_person: int, state: str | None = None) -> None:
        """Move memberships (not rejections) to another person; `state` overrides theirs when given."""
        for chunk in id_chunks(face_ids):
            self.conn.execute(
                f"UPDATE person_faces SET person_id = ?, state = coalesce(?, state), at = ? WHERE face_id IN"
                f" ({marks(chunk)}) AND state != 'rejected'", (to_person, state, utcnow(), *chunk))

    def move_rejections(self, from_person: int, to_person: int) -> None:
        # Skips rejections `to_person` already has (what SQLite's UPDATE OR IGNORE did; PostgreSQL has none).
        self.conn.execute("UPDATE person_faces SET person_id = ? WHERE person_id = ? AND state = 'rejected' AND face_id"
                          " NOT IN (SELECT face_id FROM person_faces WHERE person_id = ?)",
                          (to_person, from_person, to_person))
        self.conn.execute("DELETE FROM person_faces WHERE person_id = ? AND state = 'rejected'", (from_person,))

    def reject(self, face_id: int, person_id: int) -> None:
        self.conn.execute("UPDATE person_faces SET state = 'rejected', confidence = NULL, at = ? WHERE face_id = ?"
                          " AND person_id = ?", (utcnow(), face_id, person_id))

    def image_ids_of(self, face_ids: list[int]) -> dict[int, int]:
        return {int(f): int(i) for chunk in id_chunks(face_ids) for f, i in self.conn.execute(
            f"SELECT id, image_id FROM faces WHERE id IN ({marks(chunk)})", chunk)}

    def record_decision(self, actor: str, action: str, person_id: int | None, other_id: int | None = None,
                        n_faces: int = 0) -> None:
        self.conn.execute("INSERT INTO person_decisions (at, actor, action, person_id, other_id, n_faces)"
                          " VALUES (?, ?, ?, ?, ?, ?)", (utcnow(), actor, action, person_id, other_id, n_faces))

    # -- reading people ------------------------------------------------------------------------------
    def people(self, *, min_size: int = 1, named: bool | None = None) -> list[Person]:
        """People with at least `min_size` faces, biggest first (then by id); `named` filters on having a name."""
        if not self.available:
            return []
        cond = "" if named is None else (" AND p.name IS NOT NULL" if named else " AND p.name IS NULL")
        rows = self.conn.execute(
            "SELECT p.id, p.name, count(pf.face_id), sum(CASE WHEN pf.state = 'confirmed' THEN 1 ELSE 0 END)"
            " FROM people p JOIN person_faces pf"
            f" ON pf.person_id = p.id AND pf.state != 'rejected' WHERE 1 = 1{cond} GROUP BY p.id"
            " HAVING count(pf.face_id) >= ? ORDER BY count(pf.face_id) DESC, p.id", (min_size,)).fetchall()
        return [Person(int(r[0]), r[1], int(r[2]), int(r[3] or 0)) for r in rows]

    def person_faces(self, person_id: int, states: tuple[str, ...] = ("auto", "confirmed")) -> list[PersonFace]:
        rows = self.conn.execute(
            "SELECT pf.face_id, pf.state, pf.confidence, f.image_id, i.uri, f.box_left, f.box_top, f.box_right,"
            " f.box_bottom, c.name FROM person_faces pf JOIN faces f ON f.id = pf.face_id JOIN images i"
            " ON i.id = f.image_id JOIN collections c ON c.id = i.collection_id WHERE pf.person_id = ?"
            f" AND pf.state IN ({marks(list(states))}) ORDER BY pf.face_id", (person_id, *states)).fetchall()
        return [PersonFace(int(r[0]), r[1], r[2], int(r[3]), r[4], (r[5], r[6], r[7], r[8]), r[9]) for r in rows]

    def review(self, limit: int, below: float) -> list[tuple[int, PersonFace]]:
        """Auto assignments with confidence below `below`, least confident first: (person id, face)."""
        if not self.available:
            return []
        rows = self.conn.execute(
            "SELECT pf.person_id, pf.face_id, pf.state, pf.confidence, f.image_id, i.uri, f.box_left, f.box_top,"
            " f.box_right, f.box_bottom, c.name FROM person_faces pf JOIN faces f ON f.id = pf.face_id JOIN images i"
            " ON i.id = f.image_id JOIN collections c ON c.id = i.collection_id WHERE pf.state = 'auto'"
            " AND pf.confidence < ? ORDER BY pf.confidence, pf.face_id LIMIT ?", (below, limit)).fetchall()
        return [(int(r[0]), PersonFace(int(r[1]), r[2], r[3], int(r[4]), r[5], (r[6], r[7], r[8], r[9]), r[10]))
                for r in rows]

    def covers(self, person_ids: list[int]) -> dict[int, int]:
        """A face to show for each person (the People page's crop): a confirmed face first, then the most
        confident, then the oldest. One query per chunk of ids, whatever the people's sizes."""
        if not self.available:
            return {}
        out: dict[int, int] = {}
        for chunk in id_chunks(person_ids):
            out.update((int(p), int(f)) for p, f in self.conn.execute(
                "SELECT person_id, face_id FROM (SELECT person_id, face_id, row_number() OVER (PARTITION BY person_id"
                " ORDER BY CASE WHEN state = 'confirmed' THEN 0 ELSE 1 END, coalesce(confidence, 0) DESC, face_id)"
                f" AS rn FROM person_faces WHERE state != 'rejected' AND person_id IN ({marks(chunk)})) AS ranked"
                " WHERE rn = 1",  # the alias: PostgreSQL before 16 needs one on a sub-select
                chunk))
        return out

    # -- for search and privacy by person (engine/search.py, privacy/) ------------------------------------
    def persons_of(self, face_ids: list[int]) -> dict[int, tuple[int, str | None]]:
        """Face id -> (person id, name) of the faces that belong to a person (rejections are not belonging)."""
        if not face_ids or not self.available:
            return {}
        return {int(r[0]): (int(r[1]), r[2]) for chunk in id_chunks(face_ids) for r in self.conn.execute(
            "SELECT pf.face_id, p.id, p.name FROM person_faces pf JOIN people p ON p.id = pf.person_id"
            f" WHERE pf.state != 'rejected' AND pf.face_id IN ({marks(chunk)})", chunk)}

    def groupings(self) -> list[tuple[str, bool, int]]:
        """(collection name, grouping allowed, faces of it in people) of every collection, by name."""
        if not self.available:
            return []
        return [(r[0], bool(r[1]), int(r[2])) for r in self.conn.execute(
            "SELECT c.name, c.grouping, (SELECT count(*) FROM person_faces pf JOIN faces f ON f.id = pf.face_id"
            " JOIN images i ON i.id = f.image_id WHERE i.collection_id = c.id AND pf.state != 'rejected')"
            " FROM collections c ORDER BY c.name")]
