"""People over the service, on real photos grouped by the real pipeline: every /api/v1/people route, its roles,
bad input (self-merge, splitting off every face, empty and 10 kB names, unknown ids, two operators merging the
same people at once), the audit trail, the People / person / review pages with their CSRF-protected forms, and
a real Chromium renaming a person (screenshots: see SCREENSHOTS).

One store for the module (the gallery of test_service_support plus a few more photos of the same people, ~20
photos): the tests run in file order and each works on its own people, so later ones see earlier decisions.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections import Counter
from pathlib import Path

import pytest
from browser_support import CHROMIUM, fits_a_phone, screenshot, served, signed_in_page
from fastapi.testclient import TestClient
from test_service_support import Service, gallery_service, login, upload_name, uploaded_as

EXTRA = {
    "Angelina_Jolie": ["deepface__img5.jpg", "deepface__img6.jpg"],
    "Jennifer_Aniston": ["deepface__img56.jpg"],
    "Elon_Musk": ["deepface__img19.jpg"],
    "Barack_Obama": ["face_recognition__obama1.jpg", "face_recognition__obama2.jpg"],
    "Mark_Zuckerberg": ["deepface__img14.jpg", "deepface__img15.jpg", "deepface__img57.jpg"],
    "Kit_Harington": ["face_recognition__john1.jpeg", "face_recognition__john2.jpeg"],
}
"""Added to the service gallery so that each of these people has 2-4 photos: enough to form a person."""
GROUP_PHOTO = "deepface__couple.jpg"
"""Angelina Jolie with Brad Pitt (../shared/faces/MANIFEST.tsv): two faces of one photo, never one person."""
# The docs' screenshots are made with FACEINDEX_SCREENSHOTS=docs/screenshots; by default they go to test-artifacts/
# (ignored by git), so a test run never rewrites tracked files.
SCREENSHOTS = Path(os.environ.get("FACEINDEX_SCREENSHOTS")
                   or Path(__file__).resolve().parents[1] / "test-artifacts")


def upload(svc: Service, collection: str, files: list[tuple[str, Path]]) -> dict:
    parts = [("files", (upload_name(who, p), p.read_bytes(), "image/jpeg")) for who, p in files]
    response = svc.client.post(f"/api/v1/collections/{collection}/uploads", headers=svc.auth("curator"), files=parts)
    assert response.status_code == 202, response.text
    job = svc.wait_job(response.json()["id"])
    assert job["status"] == "done", job
    return job


def cluster(svc: Service, collection: str | None = None, *, full: bool = False) -> dict:
    body = ({"collection": collection} if collection else {}) | ({"full": True} if full else {})
    response = svc.client.post("/api/v1/people/cluster", headers=svc.auth("curator"), json=body or None)
    assert response.status_code == 202, response.text
    assert response.json()["kind"] == ("people.cluster.full" if full else "people.cluster")
    job = svc.wait_job(response.json()["id"])
    assert job["status"] == "done", job
    return job


@pytest.fixture(scope="module")
def svc(tmp_path_factory, faces_dir) -> Service:
    body = gallery_service(tmp_path_factory.mktemp("people-store"), faces_dir)
    service = next(body)
    extra = [(who, faces_dir / "people" / who / name) for who, names in EXTRA.items() for name in names]
    upload(service, "people", extra + [("groups", faces_dir / "groups" / GROUP_PHOTO)])
    service.cluster_job = cluster(service)
    yield service
    next(body, None)  # the rest of the fixture body: closes the service


def identity(face: dict) -> str:
    return uploaded_as(face["path"]).split("__")[0]


def person(svc: Service, person_id: int, role: str = "curator"):
    return svc.client.get(f"/api/v1/people/{person_id}", headers=svc.auth(role))


def people_of(svc: Service) -> dict[str, dict]:
    """Identity (photo folder) -> the person holding most of its faces, with its faces."""
    listed = svc.client.get("/api/v1/people", headers=svc.auth("curator"), params={"limit": 500}).json()["items"]
    found: dict[str, dict] = {}
    for item in listed:
        detail = person(svc, item["id"]).json()
        who = Counter(identity(f) for f in detail["faces"]).most_common(1)[0][0]
        if who not in found or detail["size"] > found[who]["size"]:
            found[who] = detail
    return found


def client_json(svc: Service, url: str, role: str = "curator"):
    response = svc.client.get(url, headers=svc.auth(role))
    assert response.status_code == 200, response.text
    return response.json()


def audit(svc: Service, action: str) -> list[dict]:
    return [e.to_dict() for e in svc.engine.audit.events(action=action)]


# -- grouping --------------------------------------------------------------------------------------------------
def test_grouping_job_finds_each_person_apart(svc):
    counts = svc.cluster_job["counts"]
    assert counts["faces_in_scope"] == 20 and counts["new_people"] >= 5, counts  # 18 portraits, the couple
    assert svc.cluster_job["actor"] == "key:curator-1"
    found = people_of(svc)
    for who in ("Angelina_Jolie", "Barack_Obama", "Mark_Zuckerberg", "Elon_Musk", "Kit_Harington"):
        assert who in found, f"{who} not grouped: {sorted(found)}"
    for who, detail in found.items():
        others = {identity(f) for f in detail["faces"]} - {who, "groups"}
        assert not others, f"person {detail['id']} ({who}) mixes in {others}"
        photos = [f["image_id"] for f in detail["faces"]]
        assert len(photos) == len(set(photos)), "two faces of one photo in one person"
    assert found["Barack_Obama"]["size"] == 3 and found["Mark_Zuckerberg"]["size"] == 3
    events = audit(svc, "people.cluster")
    assert events and events[-1]["actor"] == "key:curator-1" and events[-1]["counts"]["faces"] == 20
    jobs = svc.client.get("/api/v1/jobs", headers=svc.auth("curator"))
    assert jobs.status_code == 200 and svc.cluster_job["id"] in [j["id"] for j in jobs.json()]


def test_grouping_refuses_what_it_cannot_do(svc):
    client, curator = svc.client, svc.auth("curator")
    made = client.post("/api/v1/collections", headers=curator, json={"name": "empty", "basis": "consent",
                                                                       "purpose": "nothing yet"})
    assert made.status_code == 201
    empty = client.post("/api/v1/people/cluster", headers=curator, json={"collection": "empty"})
    assert empty.status_code == 409 and empty.json()["error"]["code"] == "empty_store"
    assert "ingest photos first" in empty.json()["error"]["message"]
    missing = client.post("/api/v1/people/cluster", headers=curator, json={"collection": "nope"})
    assert missing.status_code == 404 and "nope" in missing.json()["error"]["message"]
    assert client.post("/api/v1/people/cluster").status_code == 401
    assert client.post("/api/v1/people/cluster", headers=svc.auth("searcher")).status_code == 403
    assert client.post("/api/v1/people/cluster", headers=curator, json={"collection": 5}).status_code == 422


def test_list_filters_and_pages(svc):
    client, searcher = svc.client, svc.auth("searcher")
    everyone = client.get("/api/v1/people", headers=searcher, params={"limit": 500}).json()
    assert everyone["total"] == len(everyone["items"]) >= 5
    sizes = [p["size"] for p in everyone["items"]]
    assert sizes == sorted(sizes, reverse=True) and min(sizes) >= 2  # people seen once are kept apart
    assert all(p["cover_face_id"] is not None and p["name"] is None for p in everyone["items"])
    first = client.get("/api/v1/people", headers=searcher, params={"limit": 2}).json()
    second = client.get("/api/v1/people", headers=searcher, params={"limit": 2, "offset": 2}).json()
    assert [p["id"] for p in first["items"] + second["items"]] == [p["id"] for p in everyone["items"][:4]]
    assert first["total"] == everyone["total"]
    with_single = client.get("/api/v1/people", headers=searcher, params={"min_size": 1, "limit": 500}).json()
    assert with_single["total"] >= everyone["total"]
    assert client.get("/api/v1/people", headers=searcher, params={"limit": 0}).status_code == 422
    assert client.get("/api/v1/people", headers=svc.auth("auditor")).status_code == 403
    assert client.get("/api/v1/people").status_code == 401


def test_show_gives_faces_to_roles_that_may_list_photos(svc):
    found = people_of(svc)["Barack_Obama"]
    assert found["faces_total"] == 3 and len(found["faces"]) == 3
    face = found["faces"][0]
    assert set(face) == {"face_id", "image_id", "box", "state", "confidence", "collection", "path"}
    assert face["state"] == "auto" and 0 < face["confidence"] <= 1 and face["collection"] == "people"
    left, top, right, bottom = face["box"]
    assert right > left and bottom > top
    image = svc.client.get(f"/api/v1/images/{face['image_id']}", headers=svc.auth("curator")).json()
    assert face["face_id"] in [f["id"] for f in image["faces"]]
    paged = svc.client.get(f"/api/v1/people/{found['id']}", headers=svc.auth("curator"),
                           params={"limit": 1, "offset": 1}).json()
    assert [f["face_id"] for f in paged["faces"]] == [found["faces"][1]["face_id"]]
    seen_by_searcher = person(svc, found["id"], "searcher").json()
    assert seen_by_searcher["faces"] is None and seen_by_searcher["size"] == 3
    assert person(svc, found["id"], "privacy-officer").json()["faces_total"] == 3
    missing = person(svc, 999_999)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert person(svc, 2**63).status_code == 422


# -- decisions ------------------------------------------------------------------------------------------------
def test_naming_a_person(svc):
    client, curator = svc.client, svc.auth("curator")
    obama, musk = people_of(svc)["Barack_Obama"], people_of(svc)["Elon_Musk"]
    url = f"/api/v1/people/{obama['id']}/name"
    named = client.put(url, headers=curator, json={"name": "  Barack Obama "})
    assert named.status_code == 200 and named.json()["name"] == "Barack Obama"
    assert person(svc, obama["id"], "searcher").json()["name"] == "Barack Obama"  # searchers see names
    listed = client.get("/api/v1/people", headers=curator, params={"q": "obama"}).json()["items"]
    assert [p["id"] for p in listed] == [obama["id"]]
    unnamed = client.get("/api/v1/people", headers=curator, params={"unnamed": True, "limit": 500}).json()
    assert obama["id"] not in [p["id"] for p in unnamed["items"]] and musk["id"] in [p["id"] for p in unnamed["items"]]

    for bad, status, words in (("", 400, "cannot be empty"), ("   ", 400, "cannot be empty"),
                               ("x" * 10_240, 422, "at most 200 characters"), ("a\x07b", 400, "control characters")):
        refused = client.put(url, headers=curator, json={"name": bad})
        assert refused.status_code == status and words in refused.json()["error"]["message"], refused.text
    taken = client.put(f"/api/v1/people/{musk['id']}/name", headers=curator, json={"name": "Barack Obama"})
    assert taken.status_code == 409 and "already named" in taken.json()["error"]["message"]
    assert client.put(url, headers=curator, json={"nom": "x"}).status_code == 422
    assert client.put(url, headers=svc.auth("searcher"), json={"name": "Someone"}).status_code == 403
    assert client.put(url, json={"name": "Someone"}).status_code == 401
    assert client.put("/api/v1/people/999999/name", headers=curator, json={"name": "Nobody"}).status_code == 404
    assert person(svc, obama["id"]).json()["name"] == "Barack Obama"  # none of that changed it

    events = audit(svc, "people.name")
    assert len(events) == 1 and events[0]["params"] == {"person": obama["id"]} and events[0]["actor"] == "key:curator-1"
    everything = json.dumps([e.to_dict() for e in svc.engine.audit.events()])
    assert "Barack Obama" not in everything  # names are personal data: the log keeps ids only


def test_merge_refusals_and_two_operators_at_once(svc):
    client, curator = svc.client, svc.auth("curator")
    found = people_of(svc)
    zuck, kit = found["Mark_Zuckerberg"], found["Kit_Harington"]
    assert client.post(f"/api/v1/people/{zuck['id']}/merge", headers=svc.auth("searcher"),
                       json={"others": [kit["id"]]}).status_code == 403
    itself = client.post(f"/api/v1/people/{zuck['id']}/merge", headers=curator, json={"others": [zuck["id"]]})
    assert itself.status_code == 400 and "with itself" in itself.json()["error"]["message"]
    unknown = client.post(f"/api/v1/people/{zuck['id']}/merge", headers=curator, json={"others": [kit["id"], 999_999]})
    assert unknown.status_code == 404 and "999999" in unknown.json()["error"]["message"]
    assert person(svc, kit["id"]).json()["size"] == 2  # all or none: the first merge of that request was undone
    assert client.post(f"/api/v1/people/{zuck['id']}/merge", headers=curator, json={"others": []}).status_code == 422

    # Two operators, each merging the other's way, at the same moment: one wins, the other is told why.
    barrier, answers = threading.Barrier(2), {}

    def merge(keep: int, other: int) -> None:
        barrier.wait()
        answers[keep] = client.post(f"/api/v1/people/{keep}/merge", headers=curator, json={"others": [other]})

    threads = [threading.Thread(target=merge, args=pair) for pair in ((zuck["id"], kit["id"]), (kit["id"], zuck["id"]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    statuses = sorted(a.status_code for a in answers.values())
    assert statuses == [200, 409], {k: a.text for k, a in answers.items()}
    winner = next(k for k, a in answers.items() if a.status_code == 200)
    loser = next(k for k, a in answers.items() if a.status_code == 409)
    assert f"merged into person {winner}" in answers[loser].json()["error"]["message"]
    merged = person(svc, winner).json()
    all_faces = {f["face_id"] for f in zuck["faces"] + kit["faces"]}
    assert merged["size"] == 5 and {f["face_id"] for f in merged["faces"]} == all_faces  # nothing lost
    gone = person(svc, loser)
    assert gone.status_code == 404 and f"merged into person {winner}" in gone.json()["error"]["message"]
    events = audit(svc, "people.merge")
    assert len(events) == 1 and events[0]["params"] == {"person": winner, "other": loser} and \
        events[0]["counts"] == {"faces": 2 if winner == zuck["id"] else 3}


def test_split_takes_faces_into_a_new_person(svc):
    client, curator = svc.client, svc.auth("curator")
    mixed = next(p for p in people_of(svc).values() if {identity(f) for f in p["faces"]} >=
                 {"Mark_Zuckerberg", "Kit_Harington"})  # the merge above, made on purpose
    kit_faces = [f["face_id"] for f in mixed["faces"] if identity(f) == "Kit_Harington"]
    url = f"/api/v1/people/{mixed['id']}/split"
    every = client.post(url, headers=curator, json={"faces": [f["face_id"] for f in mixed["faces"]]})
    assert every.status_code == 400 and "every face" in every.json()["error"]["message"]
    stranger = client.post(url, headers=curator, json={"faces": [kit_faces[0], 999_999]})
    assert stranger.status_code == 400 and "999999" in stranger.json()["error"]["message"]
    assert client.post(url, headers=curator, json={"faces": []}).status_code == 422
    assert client.post(url, headers=curator, json={"faces": [-1]}).status_code == 422
    assert client.post(url, headers=svc.auth("searcher"), json={"faces": kit_faces}).status_code == 403
    assert client.post("/api/v1/people/999999/split", headers=curator, json={"faces": [1]}).status_code == 404

    split = client.post(url, headers=curator, json={"faces": kit_faces})
    assert split.status_code == 201, split.text
    body = split.json()
    assert body["person"]["size"] == 3 and body["new_person"]["size"] == 2
    assert body["person"]["confirmed"] == 3 and body["new_person"]["confirmed"] == 2  # both sides now anchors
    new = person(svc, body["new_person"]["id"]).json()
    assert {identity(f) for f in new["faces"]} == {"Kit_Harington"}
    event = audit(svc, "people.split")[-1]
    assert event["params"] == {"person": mixed["id"], "other": new["id"]} and event["counts"] == {"faces": 2}


def test_reject_a_face(svc):
    client, curator = svc.client, svc.auth("curator")
    jolie = people_of(svc)["Angelina_Jolie"]
    wrong = next((f for f in jolie["faces"] if identity(f) == "groups"), jolie["faces"][-1])
    url = f"/api/v1/people/{jolie['id']}/reject"
    elsewhere = people_of(svc)["Barack_Obama"]["faces"][0]["face_id"]
    not_hers = client.post(url, headers=curator, json={"faces": [elsewhere]})
    assert not_hers.status_code == 404 and "is not a face of person" in not_hers.json()["error"]["message"]
    assert client.post(url, headers=svc.auth("privacy-officer"), json={"faces": [wrong["face_id"]]}).status_code == 403
    assert client.post("/api/v1/people/999999/reject", headers=curator, json={"faces": [1]}).status_code == 404
    rejected = client.post(url, headers=curator, json={"faces": [wrong["face_id"]]})
    assert rejected.status_code == 200 and rejected.json()["size"] == jolie["size"] - 1
    assert wrong["face_id"] not in [f["face_id"] for f in person(svc, jolie["id"]).json()["faces"]]
    event = audit(svc, "people.reject")[-1]
    assert event["params"] == {"person": jolie["id"], "face": wrong["face_id"]}


def test_confirm_faces(svc):
    client, curator = svc.client, svc.auth("curator")
    musk = people_of(svc)["Elon_Musk"]
    url = f"/api/v1/people/{musk['id']}/confirm"
    stranger = client.post(url, headers=curator, json={"faces": [999_999]})
    assert stranger.status_code == 400 and "not faces of person" in stranger.json()["error"]["message"]
    chosen = min(musk["faces"], key=lambda f: f["confidence"])["face_id"]
    assert musk["cover_face_id"] != chosen  # until now the most confident face was shown
    one = client.post(url, headers=curator, json={"faces": [chosen]})
    assert one.status_code == 200 and one.json()["confirmed"] == 1 and one.json()["person"]["confirmed"] == 1
    assert one.json()["person"]["cover_face_id"] == chosen  # a face an operator confirmed is the one shown
    everything = client.post(url, headers=curator)  # no body: all of them
    assert everything.json()["confirmed"] == musk["size"] == everything.json()["person"]["confirmed"]
    states = {f["state"] for f in person(svc, musk["id"]).json()["faces"]}
    assert states == {"confirmed"}
    assert client.post(url, headers=svc.auth("searcher")).status_code == 403


def test_review_queue(svc):
    client, curator = svc.client, svc.auth("curator")
    queue = client.get("/api/v1/people/review", headers=curator, params={"below": 1.0, "limit": 500})
    assert queue.status_code == 200
    items = queue.json()
    confidences = [it["face"]["confidence"] for it in items]
    assert items and confidences == sorted(confidences)  # least confident first
    assert all(it["face"]["state"] == "auto" for it in items)  # confirmed faces need no review
    musk = people_of(svc)["Elon_Musk"]["id"]
    assert musk not in {it["person"]["id"] for it in items}  # all of Musk's faces were confirmed above
    default = client.get("/api/v1/people/review", headers=curator).json()
    assert all(it["face"]["confidence"] < 0.93 for it in default)
    assert client.get("/api/v1/people/review", headers=curator, params={"limit": 0}).status_code == 422
    assert client.get("/api/v1/people/review", headers=svc.auth("searcher")).status_code == 403


def test_a_new_grouping_run_keeps_every_decision(svc):
    """Both runs the REST job offers keep every decision: the incremental one, then `full` (`people cluster
    --full`), which looks again at every face earlier runs left alone — so it looks at more faces."""
    before = people_of(svc)
    looked = {}
    for full in (False, True):
        job = cluster(svc, full=full)
        assert job["counts"]["new_people"] == 0
        looked[full] = job["counts"]["faces_grouped"] + job["counts"]["unassigned"]
        after = people_of(svc)
        for who, detail in before.items():
            assert after[who]["id"] == detail["id"] and after[who]["name"] == detail["name"]
            assert {f["face_id"] for f in after[who]["faces"]} >= {f["face_id"] for f in detail["faces"]}
        assert after["Barack_Obama"]["name"] == "Barack Obama"
        assert not any(identity(f) == "groups" for f in after["Angelina_Jolie"]["faces"])  # the rejected face stays out
    assert looked[True] > looked[False], looked


def test_grouping_switch_per_collection(svc, faces_dir):
    client, curator = svc.client, svc.auth("curator")
    assert client.post("/api/v1/collections", headers=curator, json={"name": "other", "basis": "consent",
                                                                     "purpose": "switch test"}).status_code == 201
    bezos = faces_dir / "people" / "Jeff_Bezos"
    upload(svc, "other", [("Jeff_Bezos", bezos / "deepface__img20.jpg"), ("Jeff_Bezos", bezos / "deepface__img21.jpg")])
    assert cluster(svc, "other")["counts"]["new_people"] == 1
    person_id = people_of(svc)["Jeff_Bezos"]["id"]
    states = {g["collection"]: g["allowed"] for g in client.get("/api/v1/people/grouping", headers=curator).json()}
    assert states == {"people": True, "empty": True, "other": True}
    assert client.put("/api/v1/people/grouping/other", headers=svc.auth("searcher"),
                      json={"allowed": False}).status_code == 403
    off = client.put("/api/v1/people/grouping/other", headers=svc.auth("privacy-officer"), json={"allowed": False})
    assert off.status_code == 200 and off.json()["faces_removed"] == 2 and off.json()["allowed"] is False
    assert person(svc, person_id).status_code == 404  # its only faces left: the person (and a name) goes
    refused = client.post("/api/v1/people/cluster", headers=curator, json={"collection": "other"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "policy"
    assert client.put("/api/v1/people/grouping/nope", headers=curator, json={"allowed": True}).status_code == 404
    event = audit(svc, "people.grouping")[-1]
    assert event["params"] == {"collection": "other", "allowed": "off"} and event["actor"] == "key:privacy-officer-1"


# -- pages ------------------------------------------------------------------------------------------------------
def browser_client(svc: Service, role: str) -> tuple[TestClient, str]:
    """A client logged in through the form as `role`, and its session's CSRF token."""
    client = TestClient(svc.client.app)
    assert login(client, svc.keys[role]).status_code == 303
    page = client.get("/people")
    return client, re.search(r'name="csrf-token" content="([^"]*)"', page.text).group(1)


def test_pages_and_their_forms(svc):
    web, csrf = browser_client(svc, "curator")
    page = web.get("/people")
    assert page.status_code == 200 and "Barack Obama" in page.text and 'href="/people"' in page.text
    crops = re.findall(r'/api/v1/faces/(\d+)/crop', page.text)
    assert len(crops) == page.text.count('class="person-card"') >= 5
    crop = web.get(f"/api/v1/faces/{crops[0]}/crop?size=240")
    assert crop.status_code == 200 and crop.headers["content-type"] == "image/jpeg"
    assert audit(svc, "image.view")[-1]["params"]["view"] == "crop"  # each crop shown is audited
    unnamed = web.get("/people", params={"unnamed": "true"})
    assert "Barack Obama" not in unnamed.text and "Unnamed #" in unnamed.text

    aniston = people_of(svc)["Jennifer_Aniston"]
    url = f"/people/{aniston['id']}"
    shown = web.get(url)
    assert shown.status_code == 200 and shown.text.count('class="face-tile') == aniston["size"]
    assert f'/images/{aniston["faces"][0]["image_id"]}?focus={aniston["faces"][0]["face_id"]}' in shown.text
    no_token = web.post(f"{url}/name", data={"name": "Jennifer Aniston"}, follow_redirects=False)
    assert no_token.status_code == 403 and person(svc, aniston["id"]).json()["name"] is None
    renamed = web.post(f"{url}/name", data={"name": "Jennifer Aniston", "csrf_token": csrf}, follow_redirects=False)
    assert renamed.status_code == 303 and renamed.headers["location"] == f"{url}?done=renamed"
    assert person(svc, aniston["id"]).json()["name"] == "Jennifer Aniston"
    assert "Name saved." in web.get(renamed.headers["location"]).text
    empty = web.post(f"{url}/name", data={"name": " ", "csrf_token": csrf})
    assert empty.status_code == 400 and "cannot be empty" in empty.text
    nothing = web.post(f"{url}/faces", data={"action": "split", "csrf_token": csrf})
    assert nothing.status_code == 400 and "select one or more faces" in nothing.text
    one = web.post("/people/merge", data={"people": [str(aniston["id"])], "csrf_token": csrf})
    assert one.status_code == 400 and "at least two people" in one.text
    confirmed = web.post(f"{url}/faces", data={"action": "confirm", "faces": [str(aniston["faces"][0]["face_id"])],
                                               "csrf_token": csrf}, follow_redirects=False)
    assert confirmed.status_code == 303 and person(svc, aniston["id"]).json()["confirmed"] == 1
    review = web.get("/people/review")
    assert review.status_code == 200 and "Review queue" in review.text
    from_review = web.post(f"{url}/faces", data={"action": "confirm", "faces": [str(aniston["faces"][1]["face_id"])],
                                                 "back": "review", "csrf_token": csrf}, follow_redirects=False)
    assert from_review.headers["location"] == "/people/review?done=confirmed"

    # Merge two people by selecting them, then split one's faces back off by selecting its crops.
    musk, kit = people_of(svc)["Elon_Musk"], people_of(svc)["Kit_Harington"]
    merged = web.post("/people/merge", data={"people": [str(kit["id"]), str(musk["id"])], "csrf_token": csrf},
                      follow_redirects=False)
    assert merged.status_code == 303 and merged.headers["location"] == f"/people/{musk['id']}?done=merged"
    assert person(svc, musk["id"]).json()["size"] == musk["size"] + kit["size"]  # into the bigger one
    again = web.post("/people/merge", data={"people": [str(kit["id"]), str(musk["id"])], "csrf_token": csrf})
    assert again.status_code == 409 and f"merged into person {musk['id']}" in again.text
    back = web.post(f"/people/{musk['id']}/faces", follow_redirects=False, data={
        "action": "split", "faces": [str(f["face_id"]) for f in kit["faces"]], "csrf_token": csrf})
    assert back.status_code == 303 and "done=split&new=" in back.headers["location"]
    kit_again = int(back.headers["location"].rsplit("=", 1)[1])
    assert {identity(f) for f in person(svc, kit_again).json()["faces"]} == {"Kit_Harington"}
    assert f'href="/people/{kit_again}"' in web.get(back.headers["location"]).text

    # A name is shown as text, never as markup.
    svc.client.put(f"/api/v1/people/{kit_again}/name", headers=svc.auth("curator"), json={"name": "<b>Kit</b>"})
    listed = web.get("/people").text
    assert "&lt;b&gt;Kit&lt;/b&gt;" in listed and "<b>Kit</b>" not in listed
    svc.client.put(f"/api/v1/people/{kit_again}/name", headers=svc.auth("curator"), json={"name": "Kit Harington"})

    # The grouping switch of a collection, from the page (a privacy officer may take that decision too).
    officer, officer_csrf = browser_client(svc, "privacy-officer")
    states = client_json(svc, "/api/v1/people/grouping")
    empty_id = next(g["collection_id"] for g in states if g["collection"] == "empty")
    assert f'action="/people/grouping/{empty_id}"' in officer.get("/people").text
    unticked = officer.post(f"/people/grouping/{empty_id}", data={"allowed": "off", "csrf_token": officer_csrf})
    assert unticked.status_code == 400 and "tick the box" in unticked.text
    off = officer.post(f"/people/grouping/{empty_id}", data={"allowed": "off", "confirm": "yes",
                                                             "csrf_token": officer_csrf}, follow_redirects=False)
    assert off.headers["location"] == "/people?done=grouping-off"
    assert {g["collection"]: g["allowed"] for g in client_json(svc, "/api/v1/people/grouping")}["empty"] is False
    on = officer.post(f"/people/grouping/{empty_id}", data={"allowed": "on", "csrf_token": officer_csrf},
                      follow_redirects=False)
    assert on.status_code == 303 and audit(svc, "people.grouping")[-1]["params"] == {"collection": "empty",
                                                                                      "allowed": "on"}
    assert 'action="/people/grouping/' in web.get("/people").text  # curators hold the switch as well

    searcher, _ = browser_client(svc, "searcher")
    names_only = searcher.get("/people")
    assert names_only.status_code == 200 and "Barack Obama" in names_only.text and "/crop" not in names_only.text
    assert "merge-form" in page.text and 'action="/people/merge"' not in names_only.text
    assert "Photos are shown to roles" in searcher.get(url).text and "/people/grouping/" not in names_only.text
    assert searcher.get(f"/api/v1/faces/{crops[0]}/crop").status_code == 403  # a searcher does not browse faces
    assert searcher.get("/people/review").status_code == 403
    assert searcher.post(f"{url}/name", data={"name": "X", "csrf_token": "x"}).status_code == 403
    anonymous = TestClient(svc.client.app).get("/people", follow_redirects=False)
    assert anonymous.headers["location"] == "/login?next=%2Fpeople"


@pytest.fixture(scope="module")
def live_url(svc):
    """The module's app served by uvicorn on a free loopback port (the TestClient keeps owning its lifespan)."""
    with served(svc.client.app, lifespan="off") as url:
        yield url


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed at /usr/bin/chromium")
def test_people_pages_in_chromium(svc, live_url):
    """A curator renames a person on its page; screenshots of the People page and a person page for the docs."""
    zuck = people_of(svc)["Mark_Zuckerberg"]
    with signed_in_page(live_url, "/people", svc.keys["curator"]) as (page, problems):
        page.click("#people-filter input[name=unnamed]")
        page.click("#people-filter button[type=submit]")
        page.wait_for_selector(f".person-card[data-person='{zuck['id']}']")
        page.click(f".person-card[data-person='{zuck['id']}'] a.person-name")
        page.wait_for_url(f"{live_url}/people/{zuck['id']}")
        assert page.locator(".face-tile").count() == zuck["size"]
        page.fill("#rename-form input[name=name]", "Mark Zuckerberg")
        page.click("#rename-form button[type=submit]")
        page.wait_for_selector("#people-notice")
        assert page.inner_text("#person-name").startswith("Mark Zuckerberg")
        assert person(svc, zuck["id"]).json()["name"] == "Mark Zuckerberg"
        page.check(f".face-tile[data-face='{zuck['faces'][0]['face_id']}'] input")  # a selected crop, as shown
        screenshot(page, SCREENSHOTS / "person.png")

        page.goto(f"{live_url}/people")
        page.wait_for_selector(".person-card")
        assert "Mark Zuckerberg" in page.inner_text("#people")
        screenshot(page, SCREENSHOTS / "people.png")
        assert fits_a_phone(page)
    assert not problems, problems
    for name in ("people.png", "person.png"):
        assert (SCREENSHOTS / name).stat().st_size > 20_000
