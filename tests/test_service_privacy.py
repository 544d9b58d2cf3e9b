"""Privacy operations over the API on real photos: subjects and consent, two-step erasure, opt-out,
access report, redaction, purge and audit export — and that the service's own copies of photos go too."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image
from test_service_support import Service, gallery_service, officer, probe, uploaded_as

from faceindex.service.keys import KeyStore


@pytest.fixture(scope="module")
def svc(tmp_path_factory, faces_dir) -> Service:
    yield from gallery_service(tmp_path_factory.mktemp("privacy-store"), faces_dir)



def face_ids_of(svc: Service, who: str) -> list[int]:
    images = svc.client.get("/api/v1/images", headers=svc.auth("admin"), params={"limit": 500}).json()["items"]
    ids = []
    for image in images:
        if uploaded_as(image["path"]).startswith(who):
            detail = svc.client.get(f"/api/v1/images/{image['id']}", headers=svc.auth("admin")).json()
            ids += [f["id"] for f in detail["faces"] if f["rejected"] is None]
    return ids


def top_names(svc: Service, path: Path) -> list[str]:
    result = svc.client.post("/api/v1/search", headers=svc.auth("admin"), data={"purpose": "check"},
                             files={"photo": (path.name, path.read_bytes())}).json()
    return [uploaded_as(c["path"]) for c in result["faces"][0]["candidates"]]


def upload(svc: Service, path: Path, fields: dict | None = None, url: str = "/api/v1/opt-outs"):
    return svc.client.post(url, headers=officer(svc), data=fields or {},
                           files={"photo": (path.name, path.read_bytes())})


def test_enrol_consent_and_withdrawal_erases(svc, faces_dir):
    client = svc.client
    obama = face_ids_of(svc, "Barack_Obama")
    enrolled = client.post("/api/v1/subjects", headers=officer(svc),
                           json={"name": "B. Obama", "face_ids": obama, "consent_evidence": "form-7",
                                 "jurisdictions": ["US-IL"]})
    assert enrolled.status_code == 201, enrolled.text
    assert enrolled.json()["subject"]["consent"] == "given" and enrolled.json()["linked"] == obama
    listed = client.get("/api/v1/subjects", headers=officer(svc)).json()
    assert [s["name"] for s in listed] == ["B. Obama"] and listed[0]["jurisdictions"] == ["US-IL"]
    subject_id = listed[0]["id"]  # URLs carry the subject's id, never its name (issue 9 item 14)
    detail = client.get(f"/api/v1/subjects/{subject_id}", headers=officer(svc)).json()
    assert detail["face_ids"] == obama and detail["consents"][0]["evidence"] == "form-7"
    assert client.get("/api/v1/subjects/99999", headers=officer(svc)).status_code == 404
    assert client.post("/api/v1/subjects", headers=officer(svc),
                       json={"name": "x", "face_ids": [99999]}).status_code == 404
    hit = client.post("/api/v1/search", headers=svc.auth("admin"), data={"purpose": "check"},
                      files={"photo": ("p.jpg", probe(faces_dir, "Barack_Obama").read_bytes())}).json()
    assert hit["faces"][0]["candidates"][0]["subject"] == "B. Obama"
    withdrawn = client.post(f"/api/v1/subjects/{subject_id}/consent", headers=officer(svc),
                            json={"status": "withdrawn", "evidence": "letter-9"})
    assert withdrawn.status_code == 200, withdrawn.text
    body = withdrawn.json()
    assert body["status"] == "withdrawn" and body["erasure"]["faces"] == len(obama) and body["erasure"]["complete"]
    assert body["subject"]["faces"] == 0 and body["subject"]["consent"] == "withdrawn"
    assert not any(n.startswith("Barack_Obama") for n in top_names(svc, probe(faces_dir, "Barack_Obama")))
    bad = client.post(f"/api/v1/subjects/{subject_id}/consent", headers=officer(svc), json={"status": "maybe"})
    assert bad.status_code == 422


def test_access_report_json_and_html(svc, faces_dir):
    path = probe(faces_dir, "Angelina_Jolie")
    report = upload(svc, path, {"case": "SAR-1"}, "/api/v1/access-reports")
    assert report.status_code == 200, report.text
    data = report.json()
    assert data["case"] == "SAR-1" and data["counts"]["images"] >= 1
    for image in data["images"]:
        assert uploaded_as(image["path"]).startswith("Angelina_Jolie")
        assert image["collection"] == "people" and image["legal_basis"] == "consent" and image["ingested_at"]
    page = upload(svc, path, {}, "/api/v1/access-reports?format=html")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "Subject access report" in page.text and "script-src" not in page.headers["content-security-policy"]
    assert "default-src 'none'" in page.headers["content-security-policy"]
    dog = upload(svc, faces_dir / "nonfaces/dlib__dog.jpg", {}, "/api/v1/access-reports")
    assert dog.status_code == 422 and dog.json()["error"]["code"] == "no_face"


def test_redaction_keeps_only_the_subject(svc, faces_dir):
    jolie = face_ids_of(svc, "Angelina_Jolie")
    svc.client.post("/api/v1/subjects", headers=officer(svc), json={"name": "A. Jolie", "face_ids": jolie})
    path = probe(faces_dir, "Angelina_Jolie")
    redacted = upload(svc, path, {"subject": "A. Jolie"}, "/api/v1/redactions")
    assert redacted.status_code == 200 and redacted.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(redacted.content)) as im:
        assert im.format == "JPEG" and im.size == Image.open(path).size
    unknown = upload(svc, path, {"subject": "nobody"}, "/api/v1/redactions")
    assert unknown.status_code == 404


def test_selfie_erasure_is_planned_reviewed_then_executed(svc, faces_dir):
    client = svc.client
    path = probe(faces_dir, "Jennifer_Aniston")
    planned = upload(svc, path, {"case": "ERASE-3"}, "/api/v1/erasures/plans/selfie")
    assert planned.status_code == 201, planned.text
    plan = planned.json()
    assert plan["route"] == "selfie" and plan["faces"] >= 1 and plan["matches"]
    assert all(uploaded_as(m["path"]).startswith("Jennifer_Aniston") for m in plan["matches"])
    wider = upload(svc, path, {"case": "ERASE-3", "expand": "true"}, "/api/v1/erasures/plans/selfie").json()
    # The newest plan request of a key ends its earlier plans (issue 9 item 3): plan again to confirm this one.
    assert client.post(f"/api/v1/erasures/plans/{plan['plan_id']}", headers=officer(svc)).status_code == 404
    plan = upload(svc, path, {"case": "ERASE-3"}, "/api/v1/erasures/plans/selfie").json()
    assert {m["face_id"] for m in plan["matches"]} <= {m["face_id"] for m in wider["matches"]}
    assert all(uploaded_as(m["path"]).startswith("Jennifer_Aniston") for m in wider["matches"])
    assert all(m["via"] is None for m in plan["matches"])
    assert face_ids_of(svc, "Jennifer_Aniston")  # nothing deleted by planning
    with svc.engine.catalog.transaction():
        other = KeyStore(svc.engine).create("officer-2", "privacy-officer")[1]
    stolen = client.post(f"/api/v1/erasures/plans/{plan['plan_id']}", headers={"Authorization": f"Bearer {other}"})
    assert stolen.status_code == 404  # a plan is confirmed by the key that reviewed it
    done = client.post(f"/api/v1/erasures/plans/{plan['plan_id']}", headers=officer(svc))
    assert done.status_code == 200, done.text
    assert done.json()["faces"] == plan["faces"] and done.json()["verified"] is True
    assert client.post(f"/api/v1/erasures/plans/{plan['plan_id']}", headers=officer(svc)).status_code == 404
    erased = {m["face_id"] for m in plan["matches"]}
    assert not erased & set(face_ids_of(svc, "Jennifer_Aniston"))
    events = client.get("/api/v1/audit", headers=svc.auth("auditor"), params={"action": "erase"}).json()
    assert events[-1]["purpose"] == "ERASE-3" and "Jennifer" not in json.dumps(events)


def test_collection_erasure_deletes_the_uploaded_photos(svc, faces_dir):
    client, curator = svc.client, svc.auth("curator")
    client.post("/api/v1/collections", headers=curator, json={"name": "temp", "basis": "contract", "purpose": "p"})
    photo = faces_dir / "people/Jeff_Bezos/deepface__img21.jpg"
    job = client.post("/api/v1/collections/temp/uploads", headers=curator, files=[("files", ("bezos.jpg",
                                                                                             photo.read_bytes()))])
    svc.wait_job(job.json()["id"])
    items = client.get("/api/v1/images", headers=curator, params={"collection": "temp"}).json()["items"]
    stored = Path(items[0]["path"])
    assert stored.is_file()
    bad = client.post("/api/v1/erasures/plans", headers=officer(svc), json={"route": "jurisdiction", "value": "X1Y"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_input"
    plan = client.post("/api/v1/erasures/plans", headers=officer(svc),
                       json={"route": "collection", "value": "temp"}).json()
    assert plan["collections"] == 1 and plan["images"] == 1 and plan["faces"] == 1 and plan["matches"] == []
    result = client.post(f"/api/v1/erasures/plans/{plan['plan_id']}", headers=officer(svc)).json()
    assert result["collections"] == 1 and result["upload_files_deleted"] == 1
    assert not stored.exists() and client.get("/api/v1/collections/temp", headers=curator).status_code == 404


def test_opt_out_erases_and_blocks_later_ingest(svc, faces_dir):
    client = svc.client
    assert face_ids_of(svc, "Elon_Musk")
    answer = upload(svc, probe(faces_dir, "Elon_Musk"), {"reference": "REQ-5"})
    assert answer.status_code == 201, answer.text
    assert answer.json()["erasure"]["faces"] >= 1 and answer.json()["threshold"] > 0.5
    again = client.post("/api/v1/collections/people/uploads", headers=svc.auth("curator"),
                        files=[("files", ("Elon_Musk__more.jpg", probe(faces_dir, "Elon_Musk").read_bytes()))])
    job = svc.wait_job(again.json()["id"])
    assert job["counts"]["opted_out_faces"] == 1 and job["counts"]["faces"] == 0
    dog = upload(svc, faces_dir / "nonfaces/dlib__dog.jpg")
    assert dog.status_code == 422
    optout_id = answer.json()["optout_id"]
    listed = client.get("/api/v1/opt-outs", headers=officer(svc)).json()
    assert {"id": optout_id, "reference": "REQ-5"}.items() <= next(r for r in listed if r["id"] == optout_id).items()
    assert client.get("/api/v1/opt-outs", headers=svc.auth("searcher")).status_code == 403
    page = client.get("/privacy", headers=officer(svc))  # the officer's page lists it with a withdraw form
    assert page.status_code == 200 and 'id="optouts"' in page.text and "REQ-5" in page.text
    assert f'data-api="/api/v1/opt-outs/{optout_id}" data-method="DELETE"' in page.text
    gone = client.delete(f"/api/v1/opt-outs/{optout_id}", headers=officer(svc), params={"reason": "REQ-6"})
    assert gone.status_code == 204
    assert client.delete(f"/api/v1/opt-outs/{optout_id}", headers=officer(svc)).status_code == 404
    back = client.post("/api/v1/collections/people/uploads", headers=svc.auth("curator"),
                       files=[("files", ("Elon_Musk__again.jpg", probe(faces_dir, "Elon_Musk").read_bytes()))])
    assert svc.wait_job(back.json()["id"])["counts"]["faces"] == 1  # indexed again after the withdrawal


def test_purge_and_audit_export(svc):
    client = svc.client
    purged = client.post("/api/v1/purge", headers=officer(svc), json={})
    assert purged.status_code == 200 and (purged.json() is None or purged.json()["faces"] == 0)
    assert client.post("/api/v1/purge", headers=officer(svc), json={"bipa": "often"}).status_code == 422
    export = client.get("/api/v1/audit/export", headers=svc.auth("auditor"), params={"case": "AUD-1"})
    assert export.status_code == 200 and export.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in export.text.splitlines()]
    assert lines[-1]["action"] == "export" and lines[-1]["purpose"] == "AUD-1"
    assert [e["seq"] for e in lines] == list(range(1, len(lines) + 1))
    assert client.get("/api/v1/audit/verify", headers=svc.auth("auditor")).json()["ok"] is True
