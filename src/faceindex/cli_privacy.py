"""CLI commands of the privacy layer (registered on the main app): thin adapters over `engine.privacy`."""

# No `from __future__ import annotations`: typer evaluates the annotations, and StoreOpt/JsonOpt are imported
# inside register() (faceindex.cli imports this module at its end, so a top-level import would be circular).
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

CaseOpt = Annotated[str | None, typer.Option("--case", help="Purpose or case reference (recorded in the audit log).")]


def register(app: typer.Typer) -> None:
    """Add the privacy commands to the main `faceindex` app."""
    from rich.table import Table

    from faceindex.cli import JsonOpt, StoreOpt, console, emit_json, fail, open_engine, out
    from faceindex.errors import FaceIndexError, InvalidInputError
    from faceindex.store.migrations import LEGAL_BASES

    @app.command()
    def enrol(
        name: Annotated[str, typer.Argument(help="The subject's name.")],
        photos: Annotated[list[Path] | None, typer.Argument(help="Photos showing only this person.")] = None,
        collection: Annotated[str | None, typer.Option("--collection", "-c", help="Collection for the photos.")] = None,
        basis: Annotated[str | None, typer.Option(help=f"Legal basis of a new collection: {', '.join(LEGAL_BASES)}.")]
        = None,
        purpose: Annotated[str | None, typer.Option(help="Purpose of a new collection.")] = None,
        jurisdiction: Annotated[list[str] | None, typer.Option(help="The subject's ISO 3166 code(s), e.g. US-IL.")]
        = None,
        face_id: Annotated[list[int] | None, typer.Option("--face-id", help="Link an indexed face by id.")] = None,
        consent_evidence: Annotated[str | None, typer.Option(help="Reference of the consent evidence.")] = None,
        consent_scope: Annotated[str | None, typer.Option(help="What the consent covers.")] = None,
        case: CaseOpt = None, store: StoreOpt = None, as_json: JsonOpt = False,
    ) -> None:
        """Enrol a named subject from PHOTOS (one face each) or from indexed face ids."""
        try:
            with open_engine(store) as engine:
                result = engine.privacy.subjects.enrol(
                    name, photos or [], collection=collection, basis=basis, purpose=purpose,
                    jurisdictions=jurisdiction or (), face_ids=face_id or (), consent_evidence=consent_evidence,
                    consent_scope=consent_scope, case=case)
        except FaceIndexError as exc:
            fail(exc)
        if as_json:
            emit_json({"subject": result.subject.to_dict(), "linked_faces": result.linked,
                       "skipped": [{"photo": p, "reason": r} for p, r in result.skipped]})
            return
        out.print(f"enrolled {result.subject.name} (subject {result.subject.id}): {len(result.linked)} face(s) linked, "
                  f"{result.subject.faces} in all")
        for photo, reason in result.skipped:
            console.print(f"  skipped {photo}: {reason}")

    @app.command()
    def subjects(store: StoreOpt = None, as_json: JsonOpt = False) -> None:
        """List enrolled subjects with their face counts and latest consent."""
        try:
            with open_engine(store) as engine:
                rows = engine.privacy.subjects.list()
        except FaceIndexError as exc:
            fail(exc)
        if as_json:
            emit_json([s.to_dict() for s in rows])
            return
        table = Table("id", "name", "faces", "consent", "jurisdictions", "last interaction")
        for s in rows:
            table.add_row(str(s.id), s.name, str(s.faces), s.consent or "-", ",".join(s.jurisdictions) or "-",
                          s.last_interaction_at)
        out.print(table)

    @app.command()
    def consent(
        name: Annotated[str, typer.Argument(help="The subject's name.")],
        action: Annotated[str, typer.Argument(help="'give' or 'withdraw' (withdrawal erases the faceprints).")],
        evidence: Annotated[str | None, typer.Option(help="Reference of the evidence (form id, email, ...).")] = None,
        scope: Annotated[str | None, typer.Option(help="What the consent covers.")] = None,
        case: CaseOpt = None, store: StoreOpt = None, as_json: JsonOpt = False,
    ) -> None:
        """Record a subject's consent given or withdrawn."""
        status = {"give": "given", "given": "given", "withdraw": "withdrawn", "withdrawn": "withdrawn"}.get(action)
        if status is None:
            console.print("action must be 'give' or 'withdraw'")
            raise typer.Exit(2)
        try:
            with open_engine(store) as engine:
                result = engine.privacy.subjects.consent(name, status, evidence=evidence, scope=scope, case=case)
        except FaceIndexError as exc:
            fail(exc)
        erased = asdict(result.erasure) if result.erasure else None
        if as_json:
            emit_json({"subject": result.subject.to_dict(), "status": status, "erasure": erased})
        else:
            out.print(f"consent {status} for {name}" + (f"; {erased['faces']} faceprint(s) erased" if erased else ""))

    @app.command()
    def forget(
        subject: Annotated[str | None, typer.Option(help="Erase an enrolled subject and its faces.")] = None,
        selfie: Annotated[list[Path] | None, typer.Option(help="Erase every face matching this photo (strict); "
                                                                "repeat with more photos of the person.")] = None,
        collection: Annotated[str | None, typer.Option(help="Erase a collection with all its images.")] = None,
        jurisdiction: Annotated[str | None, typer.Option(help="Erase collections and subjects tagged e.g. CA.")]
        = None,
        image: Annotated[str | None, typer.Option(help="Erase an image (path or id) and every copy of it.")] = None,
        expand: Annotated[bool, typer.Option("--expand", help="With --selfie: also the faces its matches find "
                                                              "(one hop, stricter threshold; listed with 'via').")]
        = False,
        yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be erased.")] = False,
        case: CaseOpt = None, store: StoreOpt = None, as_json: JsonOpt = False,
    ) -> None:
        """Erase completely: catalog rows (secure_delete), index, derived files, WAL. Lists first, then asks."""
        try:
            with open_engine(store) as engine:
                plan = engine.privacy.plan_erasure(subject=subject, selfie=[str(p) for p in selfie] if selfie else None,
                                                   collection=collection, jurisdiction=jurisdiction, image=image,
                                                   case=case, expand=expand)
                summary = engine.privacy.eraser.summary(plan)
                if not as_json:
                    _print_plan(out, Table, summary)
                if dry_run or (not yes and (as_json or not typer.confirm("Erase all of this?", err=True))):
                    if as_json:
                        emit_json({"erased": False, "plan": summary})
                    else:
                        console.print("nothing erased")
                    return
                result = engine.privacy.erase(plan)
        except FaceIndexError as exc:
            fail(exc)
        if as_json:
            emit_json({"erased": True, "plan": summary, "result": asdict(result)})
        else:
            state = "verified: no store file holds the erased faceprints" if result.verified else (
                "complete" if result.complete else "pending: finishes when the store is next opened")
            out.print(f"erased {result.faces} face(s), {result.images} image(s), {result.collections} collection(s), "
                      f"{result.subjects} subject(s); {state}")
            if result.shared_with_copies:
                console.print(f"note: {result.shared_with_copies} erased faceprint(s) are also held by identical "
                              "photos kept in other collections; those copies were not erased (forget them by "
                              "--image or --selfie if they must go too)")

    @app.command("opt-out")
    def opt_out(
        selfie: Annotated[Path, typer.Argument(help="A photo of the person who does not want to be indexed.")],
        reference: Annotated[str | None, typer.Option(help="Request reference (recorded in the audit log).")] = None,
        store: StoreOpt = None, as_json: JsonOpt = False,
    ) -> None:
        """Never index this person: keep a protected template (not the photo), erase their indexed faces."""
        try:
            with open_engine(store) as engine:
                result = engine.privacy.opt_out(str(selfie), reference)
        except FaceIndexError as exc:
            fail(exc)
        if as_json:
            emit_json({"optout_id": result.optout_id, "threshold": result.threshold,
                       "erasure": asdict(result.erasure)})
        else:
            out.print(f"opt-out {result.optout_id} recorded (threshold {result.threshold:.3f}); "
                      f"{result.erasure.faces} indexed face(s) erased. The photo was not kept.")

    @app.command("opt-outs")
    def opt_outs(store: StoreOpt = None, as_json: JsonOpt = False) -> None:
        """List the opt-outs held: id, request reference, date (never a template or a photo)."""
        try:
            with open_engine(store) as engine:
                rows = engine.privacy.opt_outs()
        except FaceIndexError as exc:
            fail(exc)
        if as_json:
            emit_json([r.to_dict() for r in rows])
            return
        table = Table("id", "reference", "recorded", "scheme")
        for r in rows:
            table.add_row(str(r.id), r.reference or "-", r.created_at, r.scheme)
        out.print(table)

    @app.command("opt-out-withdraw")
    def opt_out_withdraw(
        optout_id: Annotated[int, typer.Argument(help="The opt-out's id (see `faceindex opt-outs`).")],
        case: CaseOpt = None,
        yes: Annotated[bool, typer.Option("--yes", help="Confirm: later ingests will index this person again.")]
        = False,
        store: StoreOpt = None, as_json: JsonOpt = False,
    ) -> None:
        """The person withdraws their opt-out: delete its template. Faces erased then stay erased."""
        if not yes:
            fail(InvalidInputError("withdrawing an opt-out lets later ingests index this person again: "
                                "add --yes to confirm"))
        try:
            with open_engine(store) as engine:
                engine.privacy.withdraw_opt_out(optout_id, case)
        except FaceIndexError as exc:
            fail(exc)
        if as_json:
            emit_json({"withdrawn": optout_id})
        else:
            out.print(f"opt-out {optout_id} withdrawn: its template is deleted; later ingests index this person again")

    @app.command("access-report")
    def access_report(
        selfie: Annotated[Path, typer.Argument(help="A photo of the requester.")],
        out_dir: Annotated[Path, typer.Option("--out", help="Folder for report.json and report.html.")],
        subject: Annotated[str | None, typer.Option(help="Also include faces enrolled as this subject.")] = None,
        case: CaseOpt = None, store: StoreOpt = None, as_json: JsonOpt = False,
    ) -> None:
        """Every image and face held for the person in SELFIE, others' faces blurred (JSON + HTML)."""
        try:
            with open_engine(store) as engine:
                report = engine.privacy.access_report(str(selfie), out_dir, subject=subject, case=case)
        except FaceIndexError as exc:
            fail(exc)
        if as_json:
            emit_json({"json": str(report.json_path), "html": str(report.html_path), **report.data["counts"]})
        else:
            out.print(f"{report.data['counts']['images']} image(s), {report.data['counts']['faces']} face(s): "
                      f"{report.html_path} and {report.json_path}")

    @app.command()
    def purge(
        bipa: Annotated[str | None, typer.Option(help="Switch the store-wide BIPA mode 'on' or 'off' first.")] = None,
        store: StoreOpt = None, as_json: JsonOpt = False,
    ) -> None:
        """Delete images past their collection's retention period, and faces under the BIPA 3-year rule."""
        if bipa not in (None, "on", "off"):
            console.print("--bipa must be 'on' or 'off'")
            raise typer.Exit(2)
        try:
            with open_engine(store) as engine:
                opened = engine.privacy.purged  # what the purge-on-open already removed
                result = engine.privacy.purge(bipa=None if bipa is None else bipa == "on")
                mode = engine.privacy.retention.bipa_mode
        except FaceIndexError as exc:
            fail(exc)
        faces = (result.faces if result else 0) + (opened.faces if opened else 0)
        images = (result.images if result else 0) + (opened.images if opened else 0)
        if as_json:
            emit_json({"faces": faces, "images": images, "bipa_mode": mode})
        else:
            out.print(f"purged {images} expired image(s) and {faces} face(s); BIPA mode {'on' if mode else 'off'}")

    @app.command()
    def redact(
        photo: Annotated[Path, typer.Argument(help="The photo to redact (not modified).")],
        keep_subject: Annotated[str, typer.Option(help="Enrolled subject whose face stays visible.")],
        out_file: Annotated[Path, typer.Option("--out", help="Where to write the redacted copy.")],
        case: CaseOpt = None, store: StoreOpt = None, as_json: JsonOpt = False,
    ) -> None:
        """Blur every face in PHOTO except the named subject's."""
        try:
            with open_engine(store) as engine:
                result = engine.privacy.redact(str(photo), keep_subject, out_file, case=case)
        except FaceIndexError as exc:
            fail(exc)
        if as_json:
            emit_json({"out": str(result.out), "kept": [list(b) for b in result.kept], "blurred": result.blurred,
                       "score": result.score})
        else:
            kept = f"kept {keep_subject}'s face (score {result.score})" if result.kept else \
                f"{keep_subject} not found: every face blurred"
            out.print(f"{result.out}: {kept}, {result.blurred} face(s) blurred")

    audit_app = typer.Typer(help="The append-only, hash-chained audit log.", no_args_is_help=True)
    app.add_typer(audit_app, name="audit")

    @audit_app.command("list")
    def audit_list(
        action: Annotated[str | None, typer.Option(help="Only events of this action.")] = None,
        limit: Annotated[int | None, typer.Option(help="At most this many events.")] = None,
        after: Annotated[int, typer.Option(help="Only events after this sequence number.")] = 0,
        store: StoreOpt = None, as_json: JsonOpt = False,
    ) -> None:
        """Show audit events, oldest first."""
        try:
            with open_engine(store) as engine:
                events = engine.audit.events(action=action, limit=limit, after=after)
        except FaceIndexError as exc:
            fail(exc)
        if as_json:
            for event in events:
                emit_json(event.to_dict())
            return
        table = Table("seq", "at", "actor", "action", "purpose", "params", "counts")
        for ev in events:
            table.add_row(str(ev.seq), ev.at or "", ev.actor, ev.action, ev.purpose or "", _short(ev.params),
                          _short(ev.counts))
        out.print(table)

    @audit_app.command("export")
    def audit_export(
        file: Annotated[Path, typer.Argument(help="JSON-lines file to write.")],
        case: CaseOpt = None, store: StoreOpt = None,
    ) -> None:
        """Export the whole log as JSON lines; keep the last hash elsewhere to anchor the chain."""
        try:
            with open_engine(store) as engine:
                count = engine.privacy.export_audit(file, case=case)
                head = engine.audit.events()[-1].hash
        except FaceIndexError as exc:
            fail(exc)
        out.print(f"{count} events written to {file}; head hash {head}")

    @audit_app.command("verify")
    def audit_verify(store: StoreOpt = None, as_json: JsonOpt = False) -> None:
        """Check the hash chain; exit status 1 names every edited, deleted, inserted or reordered event."""
        try:
            with open_engine(store) as engine:
                problems = engine.audit.verify()
                total = engine.catalog.count("SELECT count(*) FROM audit_events")
        except FaceIndexError as exc:
            fail(exc)
        if as_json:
            emit_json({"ok": not problems, "events": total, "problems": problems})
        elif problems:
            for problem in problems:
                out.print(f"[red]{problem}[/red]")
        else:
            out.print(f"audit log intact: {total} events")
        if problems:
            raise typer.Exit(1)


def _short(obj: dict, width: int = 60) -> str:
    text = ", ".join(f"{k}={v}" for k, v in obj.items())
    return text if len(text) <= width else text[:width - 1] + "…"


def _print_plan(out, table_cls, summary: dict) -> None:
    out.print(f"erasure by {summary['route']}: {summary['faces']} face(s), {summary['images']} whole image(s), "
              f"{summary['collections']} collection(s), {summary['subjects']} subject record(s)")
    if summary["matches"]:
        table = table_cls("face", "score", "collection", "path", "flag")
        for m in summary["matches"]:
            flags = (["same photo as another match"] if m["same_photo_as"] else []) + (
                [f"found via face {m['via']}"] if m.get("via") else [])
            flag = "; ".join(flags)
            table.add_row(str(m["face_id"]), f"{m['score']:.3f}", m["collection"], m["path"], flag)
        out.print(table)
