"""Privacy commands: subjects and consent, erasure (`forget`), opt-outs, access reports, redaction, retention."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from faceindex.cli.common import (
    CaseOpt,
    JsonOpt,
    StoreOpt,
    add_commands,
    add_row,
    emit_json,
    open_engine,
    out,
    partial_failure,
    say,
    table,
    usage_error,
)
from faceindex.errors import InvalidInputError
from faceindex.store.migrations import LEGAL_BASES


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
    """Enrol a named subject from PHOTOS (one face each) or from indexed face ids.

    Exits 1 when a photo could not be used (no face, several faces, unreadable): the others are enrolled."""
    with open_engine(store, write=True) as engine:
        result = engine.privacy.subjects.enrol(
            name, photos or [], collection=collection, basis=basis, purpose=purpose,
            jurisdictions=jurisdiction or (), face_ids=face_id or (), consent_evidence=consent_evidence,
            consent_scope=consent_scope, case=case)
    if as_json:
        emit_json({"subject": result.subject.to_dict(), "linked_faces": result.linked,
                   "skipped": [{"photo": p, "reason": r} for p, r in result.skipped]})
    else:
        say(f"enrolled {result.subject.name} (subject {result.subject.id}): {len(result.linked)} face(s) linked, "
            f"{result.subject.faces} in all")
        for photo, reason in result.skipped:
            say(f"  skipped {photo}: {reason}", err=True)
    if result.skipped:
        partial_failure(f"{len(result.skipped)} photo(s) not enrolled (reasons {'in skipped' if as_json else 'above'});"
                        " the others were")


def subjects(store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """List enrolled subjects with their face counts and latest consent."""
    with open_engine(store) as engine:
        rows = engine.privacy.subjects.list()
    if as_json:
        emit_json([s.to_dict() for s in rows])
        return
    tbl = table("id", "name", "faces", "consent", "jurisdictions", "last interaction")
    for s in rows:
        add_row(tbl, s.id, s.name, s.faces, s.consent or "-", ",".join(s.jurisdictions) or "-", s.last_interaction_at)
    out.print(tbl)


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
        usage_error("action must be 'give' or 'withdraw'")
    with open_engine(store, write=True) as engine:
        result = engine.privacy.subjects.consent(name, status, evidence=evidence, scope=scope, case=case)
    erased = asdict(result.erasure) if result.erasure else None
    if as_json:
        emit_json({"subject": result.subject.to_dict(), "status": status, "erasure": erased})
    else:
        say(f"consent {status} for {name}" + (f"; {erased['faces']} faceprint(s) erased" if erased else ""))


def forget(
    subject: Annotated[str | None, typer.Option(help="Erase an enrolled subject and its faces.")] = None,
    selfie: Annotated[list[Path] | None, typer.Option(help="Erase every face matching this photo (strict); "
                                                            "repeat with more photos of the person.")] = None,
    collection: Annotated[str | None, typer.Option(help="Erase a collection with all its images.")] = None,
    jurisdiction: Annotated[str | None, typer.Option(help="Erase collections and subjects tagged e.g. CA.")] = None,
    image: Annotated[str | None, typer.Option(help="Erase an image (path or id) and every copy of it.")] = None,
    face_id: Annotated[list[int] | None, typer.Option("--face-id", help="Erase single faces by id (and copies), "
                                                      "e.g. a bystander's face in a photo that stays.")] = None,
    include_face: Annotated[list[int] | None, typer.Option(
        "--include-face", help="With --selfie: erase these face ids as well, e.g. ones the plan lists as found by "
        "an ordinary search but left by the strict match.")] = None,
    person: Annotated[str | None, typer.Option(
        "--person", help="Erase a person of `people list` (id or name): every face of it and its record.")] = None,
    expand: Annotated[bool, typer.Option("--expand", help="With --selfie: also the faces its matches find "
                                                          "(one hop, stricter threshold; listed with 'via'). With "
                                                          "--person: also the faces its fused search finds at the "
                                                          "strict threshold and no other person holds.")]
    = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be erased.")] = False,
    case: CaseOpt = None, store: StoreOpt = None, as_json: JsonOpt = False,
) -> None:
    """Erase completely: catalog rows (secure_delete), index, derived files, WAL. Lists first, then asks."""
    # Passed only when given: the face-id route and extending a plan are newer parts of the privacy API.
    by_face = {"faces": face_id} if face_id else {}
    by_face |= {"include_faces": include_face} if include_face else {}
    with open_engine(store, write=True) as engine:
        plan = engine.privacy.plan_erasure(subject=subject, selfie=[str(p) for p in selfie] if selfie else None,
                                           collection=collection, jurisdiction=jurisdiction, image=image,
                                           case=case, expand=expand, **by_face,
                                           **({"person": person} if person is not None else {}))
        summary = engine.privacy.eraser.summary(plan)
        if not as_json:
            _print_plan(summary)
        if dry_run or (not yes and (as_json or not typer.confirm("Erase all of this?", err=True))):
            if as_json:
                emit_json({"erased": False, "plan": summary})
            else:
                say("nothing erased", err=True)
            return
        result = engine.privacy.erase(plan)
    if as_json:
        emit_json({"erased": True, "plan": summary, "result": asdict(result)})
        return
    state = "verified: no store file holds the erased faceprints" if result.verified else (
        "complete" if result.complete else "pending: finishes when the store is next opened")
    say(f"erased {result.faces} face(s), {result.images} image(s), {result.collections} collection(s), "
        f"{result.subjects} subject(s); {state}")
    if result.vectors_residue:
        say(f"note ({result.vectors_backend}): {result.vectors_residue}", err=True)
    if result.catalog_residue:
        say(f"note ({result.catalog_backend}): {result.catalog_residue}", err=True)
    if result.shared_with_copies:
        say(f"note: {result.shared_with_copies} erased faceprint(s) are also held by identical photos kept in "
            "other collections; those copies were not erased (forget them by --image or --selfie if they must go "
            "too)", err=True)


def _print_plan(summary: dict) -> None:
    say(f"erasure by {summary['route']}: {summary['faces']} face(s), {summary['images']} whole image(s), "
        f"{summary['collections']} collection(s), {summary['subjects']} subject record(s)" +
        (f", {summary['people']} person record(s)" if summary.get("people") else ""))
    if summary["route"] == "person":
        photos = len({m["image_id"] for m in summary["matches"]})
        say(f"person {summary['person_id']}: {summary['faces']} face(s) in {photos} photo(s) (byte-identical "
            "copies included); score = cosine to the person's mean faceprint")
    if summary["matches"]:
        tbl = table("face", "score", "collection", "path", "flag")  # table() folds: a path is never cut short
        for m in summary["matches"]:
            flags = (["same photo as another match"] if m["same_photo_as"] else []) + (
                [f"found via face {m['via']}"] if m.get("via") else []) + (
                [{"search": "found by the person's search (expand)"}.get(m["state"], m["state"])]
                if m.get("state") else [])
            add_row(tbl, m["face_id"], f"{m['score']:.3f}", m["collection"], m["path"], "; ".join(flags))
        out.print(tbl)
    left = summary.get("also_found_by_search") or []
    if left:
        # Erasure matches at a stricter threshold than search (a wrong match would erase someone else's face):
        # what search would still find must be shown, never left out silently.
        fmr = summary.get("search_threshold_fmr")
        erasure_rule = (f"erasure's is {summary['threshold']}" if summary.get("threshold") is not None
                        else "erasure takes the person's grouped faces, not a search")
        say((f"NOT in this erasure: {len(left)} more face(s) an ordinary search finds", "yellow"),
            f" (search threshold {summary.get('search_threshold')}" + (f", FMR {fmr:.1e}" if fmr else "") +
            f"; {erasure_rule}). Look at them, and add the right ones with --include-face ID:")
        tbl = table("face", "score", "FMR", "collection", "path")
        for m in left:
            add_row(tbl, m["face_id"], f"{m['score']:.3f}", "-" if m.get("fmr") is None else f"{m['fmr']:.1e}",
                    m["collection"], m["path"])
        out.print(tbl)
    for odd in summary.get("unrecognised_jurisdictions") or []:
        holder = f"collection {odd['collection']!r}" if "collection" in odd else f"subject {odd.get('subject')!r}"
        say((f"NOT in this erasure: {holder}", "yellow"), f" is tagged {', '.join(odd.get('tags', []))}, "
            "which is no ISO 3166 code, so whether it belongs to this jurisdiction is unknown; erase it by "
            "--collection (or --subject) if it does")


def opt_out(
    selfie: Annotated[Path | None, typer.Argument(help="A photo of the person who does not want to be indexed.")]
    = None,
    person: Annotated[str | None, typer.Option(
        "--person", help="Instead of a photo: a person of `people list` (id or name); a template of each of its "
        "faces is kept, and its faces and record are erased.")] = None,
    reference: Annotated[str | None, typer.Option(help="Request reference (recorded in the audit log).")] = None,
    store: StoreOpt = None, as_json: JsonOpt = False,
) -> None:
    """Never index this person: keep a protected template (not the photo), erase their indexed faces."""
    if (selfie is None) == (person is None):
        usage_error("give a photo of the person or --person ID (one of them)")
    with open_engine(store, write=True) as engine:
        if person is not None:
            result = engine.privacy.opt_out_person(person, reference)
        else:
            result = engine.privacy.opt_out(str(selfie), reference)
    if as_json:
        emit_json({"optout_id": result.optout_id, "threshold": result.threshold, "templates": result.templates,
                   "person": result.person, "erasure": asdict(result.erasure)})
    elif person is not None:
        say(f"opt-out {result.optout_id} recorded for person {result.person}: {result.templates} template(s) kept "
            f"(threshold {result.threshold:.3f}); {result.erasure.faces} indexed face(s) and the person record "
            "erased.")
    else:
        say(f"opt-out {result.optout_id} recorded (threshold {result.threshold:.3f}); "
            f"{result.erasure.faces} indexed face(s) erased. The photo was not kept.")


def opt_outs(store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """List the opt-outs held: id, request reference, date (never a template or a photo)."""
    with open_engine(store) as engine:
        rows = engine.privacy.opt_outs()
    if as_json:
        emit_json([r.to_dict() for r in rows])
        return
    tbl = table("id", "reference", "recorded", "scheme", "templates")
    for r in rows:
        add_row(tbl, r.id, r.reference or "-", r.created_at, r.scheme, r.templates)
    out.print(tbl)


def opt_out_withdraw(
    optout_id: Annotated[int, typer.Argument(help="The opt-out's id (see `faceindex opt-outs`).")],
    case: CaseOpt = None,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: later ingests will index this person again.")] = False,
    store: StoreOpt = None, as_json: JsonOpt = False,
) -> None:
    """The person withdraws their opt-out: delete its template. Faces erased then stay erased."""
    if not yes:
        raise InvalidInputError("withdrawing an opt-out lets later ingests index this person again: add --yes to "
                                "confirm")
    with open_engine(store, write=True) as engine:
        engine.privacy.withdraw_opt_out(optout_id, case)
    if as_json:
        emit_json({"withdrawn": optout_id})
    else:
        say(f"opt-out {optout_id} withdrawn: its template is deleted; later ingests index this person again")


def access_report(
    selfie: Annotated[Path, typer.Argument(help="A photo of the requester.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for report.json and report.html.")],
    subject: Annotated[str | None, typer.Option(help="Also include faces enrolled as this subject.")] = None,
    case: CaseOpt = None, store: StoreOpt = None, as_json: JsonOpt = False,
) -> None:
    """Every image and face held for the person in SELFIE, others' faces blurred (JSON + HTML)."""
    with open_engine(store) as engine:
        report = engine.privacy.access_report(str(selfie), out_dir, subject=subject, case=case)
    counts = report.data["counts"]
    if as_json:
        emit_json({"json": str(report.json_path), "html": str(report.html_path), **counts,
                   "people": report.data.get("people", [])})
    else:
        say(f"{counts['images']} image(s), {counts['faces']} face(s): {report.html_path} and {report.json_path}")
        for group in report.data.get("people", []):
            say(f"  people group {group['id']}" + (f" ({group['name']})" if group["name"] else "") +
                f": {group['faces_in_report']} of its {group['faces']} face(s) in this report")


def purge(
    bipa: Annotated[str | None, typer.Option(help="Switch the store-wide BIPA mode 'on' or 'off' first.")] = None,
    store: StoreOpt = None, as_json: JsonOpt = False,
) -> None:
    """Delete images past their collection's retention period, and faces under the BIPA 3-year rule."""
    if bipa not in (None, "on", "off"):
        usage_error("--bipa must be 'on' or 'off'")
    with open_engine(store, write=True) as engine:
        opened = engine.privacy.purged  # what the purge-on-open already removed
        result = engine.privacy.purge(bipa=None if bipa is None else bipa == "on")
        mode = engine.privacy.retention.bipa_mode
    faces = (result.faces if result else 0) + (opened.faces if opened else 0)
    images = (result.images if result else 0) + (opened.images if opened else 0)
    if as_json:
        emit_json({"faces": faces, "images": images, "bipa_mode": mode})
    else:
        say(f"purged {images} expired image(s) and {faces} face(s); BIPA mode {'on' if mode else 'off'}")


def redact(
    photo: Annotated[Path, typer.Argument(help="The photo to redact (not modified).")],
    keep_subject: Annotated[str, typer.Option(help="Enrolled subject whose face stays visible.")],
    out_file: Annotated[Path, typer.Option("--out", help="Where to write the redacted copy.")],
    case: CaseOpt = None, store: StoreOpt = None, as_json: JsonOpt = False,
) -> None:
    """Blur every face in PHOTO except the named subject's."""
    with open_engine(store) as engine:
        result = engine.privacy.redact(str(photo), keep_subject, out_file, case=case)
    if as_json:
        emit_json({"out": str(result.out), "kept": [list(b) for b in result.kept], "blurred": result.blurred,
                   "score": result.score})
    else:
        kept = f"kept {keep_subject}'s face (score {result.score})" if result.kept else \
            f"{keep_subject} not found: every face blurred"
        say(f"{result.out}: {kept}, {result.blurred} face(s) blurred")


def register(app: typer.Typer) -> None:
    add_commands(app, [enrol, subjects, consent, forget, ("opt-out", opt_out), ("opt-outs", opt_outs),
                       ("opt-out-withdraw", opt_out_withdraw), ("access-report", access_report), purge, redact])
