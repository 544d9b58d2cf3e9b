"""Subject access report: every image and face held for one person, as JSON and a self-contained HTML page."""

from __future__ import annotations

import base64
import html
import io
import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from faceindex.errors import FaceIndexError
from faceindex.people.store import PeopleStore
from faceindex.privacy.actions import AccessReported
from faceindex.privacy.context import ImageSource, PrivacyContext
from faceindex.privacy.obscure import blur_all_but, detect_boxes
from faceindex.privacy.probe import selfie_faceprint, strict_threshold
from faceindex.privacy.subjects import Subjects
from faceindex.privacy.video_report import mark_videos, video_picture
from faceindex.store.uris import uri_to_path

FORMAT = "faceindex.access-report/1"
DISPLAY_MAX_SIDE = 1280
"""Photos are shown at most this many pixels wide or high (keeps a report of many photos openable)."""
NOTE = ("Faces listed were found by comparing the requester's photo with every face held, at a strict "
        "threshold, and from the faces enrolled under the requester's name. They are candidates for human "
        "review before release. Other people's faces in these photos are blurred.")


@dataclass
class AccessReport:
    json_path: Path
    html_path: Path
    data: dict[str, Any]


def build_access_report(ctx: PrivacyContext, people: Subjects, selfie: ImageSource, out_dir: str | os.PathLike, *,
                        subject: str | None = None, case: str | None = None) -> AccessReport:
    """Write `report.json` and `report.html` about the person in `selfie` into `out_dir`.

    Faces held for the person: those scoring >= the strict threshold against the selfie (a looser one would
    disclose other people's photos to the requester), plus every face enrolled as a subject one of those
    faces is enrolled as, or as `subject` when the operator has verified the requester's identity.
    The selfie is not kept.
    """
    vector = selfie_faceprint(ctx, selfie)
    gallery = len(ctx.store.index())
    threshold = strict_threshold(ctx.policy(), gallery)
    scores = dict(ctx.store.search_above(vector, threshold, limit=1_000_000))
    del vector
    names = people.names_for_faces(list(scores))
    subject_names = sorted(set(names.values()) | ({subject} if subject else set()))
    subjects = [people.get(n) for n in subject_names]
    enrolled = {f: s.name for s in subjects for f in people.face_ids(s.id)}
    face_ids = sorted(set(scores) | set(enrolled))
    details = ctx.catalog.face_details(face_ids)
    groups = PeopleStore(ctx.catalog)
    person_of = groups.persons_of(face_ids)
    images: dict[int, dict[str, Any]] = {}
    for fid in face_ids:
        row = details.get(fid)
        if row is None:
            continue
        item = images.get(row["image_id"]) or _image_entry(ctx, row["image_id"])
        images[row["image_id"]] = item
        face = ctx.catalog.conn.execute("SELECT created_at FROM faces WHERE id = ?", (fid,)).fetchone()
        item["faces"].append({
            "face_id": fid, "box": [row["box_left"], row["box_top"], row["box_right"], row["box_bottom"]],
            "score": round(scores[fid], 4) if fid in scores else None,
            "found_by": "selfie match" if fid in scores else "enrolment",
            "enrolled_as": enrolled.get(fid) or names.get(fid), "created_at": face["created_at"],
            "person": person_of[fid][0] if fid in person_of else None})
    mark_videos(ctx, images)  # a video's faces get their timecodes
    data = {
        "format": FORMAT, "generated_at": ctx.clock().isoformat(timespec="seconds"), "case": case,
        "threshold": round(threshold, 4), "gallery_size": gallery, "note": NOTE,
        "subjects": [{**s.to_dict(), "consents": people.consents(s.id)} for s in subjects],
        "images": sorted(images.values(), key=lambda i: i["image_id"]),
        "people": _people_groups(groups, person_of),
    }
    data["counts"] = {"images": len(images), "faces": sum(len(i["faces"]) for i in images.values())}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pictures = {i["image_id"]: _redacted_picture(ctx, i) for i in data["images"]}
    json_path, html_path = out / "report.json", out / "report.html"
    json_path.write_text(json.dumps(data, indent=2, ensure_ascii=False))
    html_path.write_text(_html(data, pictures))
    with ctx.catalog.transaction():
        people.touch([s.id for s in subjects])  # a request by the person is an interaction (BIPA)
        ctx.record(AccessReported(purpose=case, subject_ids=[s.id for s in subjects], threshold=round(threshold, 4),
                                  **data["counts"]))
    return AccessReport(json_path, html_path, data)


def _people_groups(groups: PeopleStore, person_of: dict[int, tuple[int, str | None]]) -> list[dict[str, Any]]:
    """The people groups (faces grouped into persons, named only by an operator) the requester's faces fell
    into: id, name, how many faces the group holds and how many of them this report lists. A group holding
    more faces than listed here may hold more of the requester's photos: the officer reviews it."""
    listed: dict[int, int] = {}
    for person, _ in person_of.values():
        listed[person] = listed.get(person, 0) + 1
    names = {person: name for person, name in person_of.values()}
    return [{"id": person, "name": names[person], "faces": len(groups.faces_of(person)), "faces_in_report": n}
            for person, n in sorted(listed.items())]


def _image_entry(ctx: PrivacyContext, image_id: int) -> dict[str, Any]:
    row = ctx.catalog.conn.execute(
        "SELECT i.*, c.name AS collection, c.legal_basis, c.purpose, c.jurisdictions, c.retention_days, c.owner"
        " FROM images i JOIN collections c ON c.id = i.collection_id WHERE i.id = ?", (image_id,)).fetchone()
    expires = None
    if row["retention_days"]:
        expires = (datetime.fromisoformat(row["ingested_at"]) + timedelta(days=row["retention_days"])).isoformat()
    return {"image_id": image_id, "path": row["uri"], "sha256": row["sha256"], "width": row["width"],
            "height": row["height"], "collection": row["collection"], "legal_basis": row["legal_basis"],
            "purpose": row["purpose"], "jurisdictions": [j for j in row["jurisdictions"].split(",") if j],
            "owner": row["owner"], "retention_days": row["retention_days"], "captured_at": row["captured_at"],
            "ingested_at": row["ingested_at"], "expires_at": expires, "faces": []}


def _redacted_picture(ctx: PrivacyContext, item: dict[str, Any]) -> dict[str, Any] | None:
    """The photo with the person's faces outlined and every other face blurred, as a JPEG data URI."""
    if item.get("media") == "video":
        return video_picture(ctx, item)
    try:
        decoded = ctx.pipeline().decode(uri_to_path(item["path"]))  # provenance: may be an fsbytes: uri
        image = Image.fromarray(decoded.full())
    except (FaceIndexError, OSError):
        item["available"] = False  # moved or deleted since ingest: listed, not shown
        return None
    mine = [tuple(f["box"]) for f in item["faces"]]
    stored = [tuple(r) for r in ctx.catalog.conn.execute(
        "SELECT box_left, box_top, box_right, box_bottom FROM faces WHERE image_id = ?", (item["image_id"],))]
    # Stored boxes plus a fresh detection: faces never stored (opted-out people) are blurred too.
    others = [b for b in stored + detect_boxes(ctx.pipeline(), decoded) if b not in mine]
    item["other_faces_blurred"] = blur_all_but(image, mine, others)
    item["available"] = True
    scale = min(1.0, DISPLAY_MAX_SIDE / max(image.size))
    if scale < 1.0:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    draw = ImageDraw.Draw(image)
    for box in mine:
        draw.rectangle([round(v * scale) for v in box], outline=(255, 200, 0), width=3)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=88)
    return {"uri": "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode(), "scale": scale}


def _html(data: dict[str, Any], pictures: dict[int, dict[str, Any] | None]) -> str:
    e = html.escape
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Subject access report</title>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        "<style>body{font:15px/1.4 system-ui,sans-serif;margin:2em;max-width:70em}img{max-width:100%;height:auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}"
        "section{margin:2em 0;padding-top:1em;border-top:2px solid #888}</style></head><body>",
        "<h1>Subject access report</h1>",
        f"<p>Generated {e(data['generated_at'])}. {e(str(data['counts']['images']))} image(s), "
        f"{e(str(data['counts']['faces']))} face(s). Case: {e(data['case'] or '-')}.</p><p>{e(NOTE)}</p>",
    ]
    for subject in data["subjects"]:
        parts.append(f"<h2>Enrolled as {e(subject['name'])}</h2><table><tr><th>consent</th><th>when</th>"
                     "<th>evidence</th><th>scope</th></tr>")
        parts += [f"<tr><td>{e(c['status'])}</td><td>{e(c['at'])}</td><td>{e(c['evidence'] or '')}</td>"
                  f"<td>{e(c['scope'] or '')}</td></tr>" for c in subject["consents"]]
        parts.append("</table>")
    if data["people"]:
        parts.append("<h2>People groups</h2><p>The faces above were grouped with these people (faces the "
                     "system judged to be one person, named only by an operator):</p><table><tr><th>group</th>"
                     "<th>name</th><th>faces in the group</th><th>of them in this report</th></tr>")
        parts += [f"<tr><td>{g['id']}</td><td>{e(g['name'] or '(unnamed)')}</td><td>{g['faces']}</td>"
                  f"<td>{g['faces_in_report']}</td></tr>" for g in data["people"]]
        parts.append("</table>")
    for item in data["images"]:
        rows = [("collection", item["collection"]), ("legal basis", item["legal_basis"]),
                ("purpose", item["purpose"]), ("jurisdictions", ", ".join(item["jurisdictions"]) or "-"),
                ("captured", item["captured_at"] or "unknown"), ("held since", item["ingested_at"]),
                ("deleted by", item["expires_at"] or "no retention period set"), ("file", item["path"])]
        parts.append(f"<section id='image-{item['image_id']}'><h2>Image {item['image_id']}</h2><table>")
        parts += [f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in rows]
        parts.append("</table><ul>")
        parts += [f"<li>face {f['face_id']} at {e(str(f['box']))}: {e(f['found_by'])}"
                  + (f", score {f['score']}" if f["score"] is not None else "")
                  + (f", enrolled as {e(f['enrolled_as'])}" if f["enrolled_as"] else "") + "</li>"
                  for f in item["faces"]]
        parts.append("</ul>")
        if item.get("appearances"):
            parts.append("<p>Appears in this video:</p><ul>")
            parts += [f"<li class='appearance'>{e(a['start'])} to {e(a['end'])} (best frame at {e(a['best'])})</li>"
                      for a in item["appearances"]]
            parts.append("</ul>")
        picture = pictures.get(item["image_id"])
        if picture is None:
            parts.append("<p><em>The photo file is no longer available at this path.</em></p>")
        else:
            parts.append(f"<img alt='image {item['image_id']}' data-image-id='{item['image_id']}' "
                         f"data-scale='{picture['scale']:.6f}' src='{picture['uri']}'>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)
