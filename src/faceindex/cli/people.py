"""`faceindex people cluster|list|show|name|merge|split|reject|confirm|review|grouping`: faces grouped into persons."""

from __future__ import annotations

from typing import Annotated

import typer

from faceindex.cli.common import JsonOpt, StoreOpt, add_commands, add_row, emit_json, open_engine, out, say, table
from faceindex.errors import NotFoundError

PersonArg = Annotated[str, typer.Argument(help="Person id, or the exact name an operator gave it.")]


def cluster(
    collection: Annotated[str | None, typer.Option("--collection", "-c", help="Only this collection.")] = None,
    full: Annotated[bool, typer.Option("--full", help="Read every faceprint and search every face not in a person "
                                       "again, not only the new ones (minutes at a million faces).")] = False,
    store: StoreOpt = None, as_json: JsonOpt = False,
) -> None:
    """Group the faces not yet in a person: they join existing people or form new ones (2 faces or more).

    Never undoes an operator's decision (names, merges, splits, rejections, confirmations); two faces of one
    photo never become one person; collections with grouping off take no part. Only faces no run has looked at
    are searched; `--full` also revisits the faces earlier runs left alone.
    """
    with open_engine(store, write=True) as engine:
        report = engine.people.cluster(collection, incremental=not full)
    if as_json:
        emit_json(report.to_dict())
        return
    say(f"{report.faces_grouped} of {report.faces_grouped + report.unassigned} ungrouped faces grouped: "
        f"{report.joined_existing} joined existing people, {report.new_people} new people; "
        f"{report.unassigned} left unassigned (seen once, or no close enough match)")


def list_people(
    faces: Annotated[bool, typer.Option("--faces", help="Include each person's faces (id, path, box).")] = False,
    single: Annotated[bool, typer.Option("--single", help="Include people with a single face.")] = False,
    unnamed: Annotated[bool, typer.Option("--unnamed", help="Only people without a name.")] = False,
    store: StoreOpt = None, as_json: JsonOpt = False,
) -> None:
    """People, biggest first (one JSON object per person per line with --json)."""
    with open_engine(store) as engine:
        people = engine.people.list(faces=faces, include_single=single, named=False if unnamed else None)
    if as_json:
        for person in people:
            emit_json(person.to_dict(faces=faces))
        return
    tbl = table("id", "name", "faces", "confirmed")
    for p in people:
        add_row(tbl, p.id, p.name or "", p.size, p.confirmed)
    out.print(tbl)
    if faces:
        for p in people:
            for f in p.faces or []:
                say(f"{p.id}\t{f.face_id}\t{f.state}\t{f.path}\t{list(f.box)}")


def show(person: PersonArg, store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """One person: name and every face with its photo, state and confidence."""
    with open_engine(store) as engine:
        ops = engine.people
        found = ops.show(ops.resolve(person))
    if as_json:
        emit_json(found.to_dict(faces=True))
        return
    say(f"person {found.id}: {found.name or '(unnamed)'}, {found.size} faces, {found.confirmed} confirmed")
    tbl = table("face", "state", "confidence", "collection", "photo", "box")
    for f in found.faces or []:
        add_row(tbl, f.face_id, f.state, "" if f.confidence is None else f"{f.confidence:.3f}", f.collection, f.path,
                list(f.box))
    out.print(tbl)


def name(person: PersonArg, new_name: Annotated[str, typer.Argument(metavar="NAME", help="The name.")],
         store: StoreOpt = None) -> None:
    """Name a person (names are unique; only an operator names a person)."""
    with open_engine(store, write=True) as engine:
        ops = engine.people
        person_id = ops.resolve(person)
        ops.name(person_id, new_name)
    say(f"person {person_id} named {new_name.strip()!r}")


def merge(keep: PersonArg, other: PersonArg, store: StoreOpt = None) -> None:
    """Move every face of OTHER into KEEP (OTHER is removed)."""
    with open_engine(store, write=True) as engine:
        ops = engine.people
        merged = ops.merge(ops.resolve(keep), ops.resolve(other))
    say(f"person {merged.id} now has {merged.size} faces")


def split(person: PersonArg,
          faces: Annotated[list[int], typer.Option("--faces", help="Face ids to move into a new person.")],
          store: StoreOpt = None) -> None:
    """Move some faces of a person into a new person; grouping never joins the two again."""
    with open_engine(store, write=True) as engine:
        ops = engine.people
        new_id = ops.split(ops.resolve(person), faces)
    say(f"{len(set(faces))} faces moved to new person {new_id}")


def reject(person: PersonArg, face: Annotated[int, typer.Argument(help="Face id that is not this person.")],
           store: StoreOpt = None) -> None:
    """This face is not this person: it leaves them and never joins them again."""
    with open_engine(store, write=True) as engine:
        ops = engine.people
        person_id = ops.resolve(person)
        ops.reject(person_id, face)
    say(f"face {face} rejected from person {person_id}")


def confirm(person: PersonArg,
            faces: Annotated[list[int] | None, typer.Option("--faces", help="Face ids (default: all).")] = None,
            store: StoreOpt = None) -> None:
    """Confirm faces of a person (an operator checked them)."""
    with open_engine(store, write=True) as engine:
        ops = engine.people
        n = ops.confirm(ops.resolve(person), faces or None)
    say(f"{n} faces confirmed")


def review(limit: Annotated[int, typer.Option(help="At most this many faces.")] = 50,
           store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """Low-confidence assignments, least confident first: confirm or reject them."""
    with open_engine(store) as engine:
        queue = engine.people.review(limit)
    if as_json:
        for person_id, f in queue:
            emit_json({"person": person_id, "face_id": f.face_id, "confidence": f.confidence, "path": f.path,
                       "box": list(f.box)})
        return
    tbl = table("person", "face", "confidence", "photo", "box")
    for person_id, f in queue:
        add_row(tbl, person_id, f.face_id, f"{f.confidence:.3f}", f.path, list(f.box))
    out.print(tbl)


def grouping(collection: Annotated[str | None, typer.Argument(help="Collection name.")] = None,
             state: Annotated[str | None, typer.Argument(help="on or off.")] = None, store: StoreOpt = None,
             as_json: JsonOpt = False) -> None:
    """Allow (on) or forbid (off) grouping the faces of a collection into people; off removes them from people.

    Without STATE: show whether grouping is allowed (for COLLECTION, or for every collection).
    """
    if state is None:
        with open_engine(store) as engine:
            rows = engine.people.groupings()
        if collection is not None:
            rows = [r for r in rows if r[0] == collection]
            if not rows:
                raise NotFoundError(f"no collection named {collection!r}")
        if as_json:
            for name_, allowed, faces in rows:
                emit_json({"collection": name_, "grouping": "on" if allowed else "off", "faces_in_people": faces})
            return
        tbl = table("collection", "grouping", "faces in people")
        for name_, allowed, faces in rows:
            add_row(tbl, name_, "on" if allowed else "off", faces)
        out.print(tbl)
        return
    if collection is None:
        raise typer.BadParameter("give the collection", param_hint="COLLECTION")
    if state not in ("on", "off"):
        raise typer.BadParameter(f"{state!r}: use on or off", param_hint="STATE")
    with open_engine(store, write=True) as engine:
        dropped = engine.people.set_grouping(collection, state == "on")
    say(f"grouping {state} for {collection}" + (f"; {dropped} faces removed from people" if dropped else ""))


def register(app: typer.Typer) -> None:
    people_app = typer.Typer(help="Faces grouped into people, named once by an operator.", no_args_is_help=True)
    add_commands(people_app, [cluster, ("list", list_people), show, name, merge, split, reject, confirm, review,
                              grouping])
    app.add_typer(people_app, name="people")
