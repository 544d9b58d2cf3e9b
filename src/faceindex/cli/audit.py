"""`faceindex audit list|export|verify`: the append-only, hash-chained audit log."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from faceindex.cli.common import (
    EXIT_PARTIAL,
    CaseOpt,
    JsonOpt,
    StoreOpt,
    add_commands,
    add_row,
    emit_json,
    open_engine,
    out,
    say,
    table,
)


def _short(obj: dict, width: int = 60) -> str:
    text = ", ".join(f"{k}={v}" for k, v in obj.items())
    return text if len(text) <= width else text[:width - 1] + "…"


def audit_list(
    action: Annotated[str | None, typer.Option(help="Only events of this action.")] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many events.")] = None,
    after: Annotated[int, typer.Option(help="Only events after this sequence number.")] = 0,
    store: StoreOpt = None, as_json: JsonOpt = False,
) -> None:
    """Show audit events, oldest first."""
    with open_engine(store) as engine:
        events = engine.audit.events(action=action, limit=limit, after=after)
    if as_json:
        for event in events:
            emit_json(event.to_dict())
        return
    tbl = table("seq", "at", "actor", "action", "purpose", "params", "counts")
    for ev in events:
        add_row(tbl, ev.seq, ev.at or "", ev.actor, ev.action, ev.purpose or "", _short(ev.params), _short(ev.counts))
    out.print(tbl)


def audit_export(
    file: Annotated[Path, typer.Argument(help="JSON-lines file to write.")],
    case: CaseOpt = None, store: StoreOpt = None,
) -> None:
    """Export the whole log as JSON lines; keep the last hash elsewhere to anchor the chain."""
    with open_engine(store, write=True) as engine:  # the export itself is an audit event
        count = engine.privacy.export_audit(file, case=case)
        head = engine.audit.events()[-1].hash
    say(f"{count} events written to {file}; head hash {head}")


def audit_verify(store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """Check the hash chain; exit status 1 names every edited, deleted, inserted or reordered event."""
    with open_engine(store) as engine:
        problems = engine.audit.verify()
        total = len(engine.audit.events())
    if as_json:
        emit_json({"ok": not problems, "events": total, "problems": problems})
    elif problems:
        for problem in problems:
            say((problem, "red"))
    else:
        say(f"audit log intact: {total} events")
    if problems:
        raise typer.Exit(EXIT_PARTIAL)


def register(app: typer.Typer) -> None:
    audit_app = typer.Typer(help="The append-only, hash-chained audit log.", no_args_is_help=True)
    add_commands(audit_app, [("list", audit_list), ("export", audit_export), ("verify", audit_verify)])
    app.add_typer(audit_app, name="audit")
