"""REST API in-process (TestClient) on real photos: collections, ingest jobs, search, verify, images, faces."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat
from test_service_support import (
    GALLERY,
    NONFACE,
    Service,
    gallery_files,
    gallery_service,
    jpeg_bytes,
    probe,
    start_service,
    upload_name,
    uploaded_as,
)

from faceindex.service.config import ServiceConfig
from faceindex.service.keys import KeyStore


@pytest.fixture(scope="module")
def folder_root(tmp_path_factory, faces_dir) -> Path:
    """A server-side folder the service allows: two Jeff Bezos photos and a photo without a face."""
    root = tmp_path_factory.mktemp("server-photos")
    (root / "inside").mkdir()
    shutil.copy(faces_dir / "people" / "Jeff_Bezos" / "deepface__img20.jpg", root / "inside" / "bezos.jpg")
    shutil.copy(faces_dir / NONFACE, root / "inside" / "dog.jpg")
    return root


@pytest.fixture(scope="module")
def svc(tmp_path_factory, faces_dir, folder_root) -> Service:
    yield from gallery_service(tmp_path_factory.mktemp("store"), faces_dir,
                               ServiceConfig(allowed_folders=[folder_root / "inside"]))


def search(svc: Service, path: Path, role: str = "searcher", **form):
    return svc.client.post("/api/v1/search", headers=svc.auth(role), data={"purpose": "case 42", **form},
                           files={"photo": (path.name, path.read_bytes(), "image/jpeg")})


def test_ingest_job_reports_progress_and_counts(svc):
    job = svc.job
    n = sum(len(v) for v in GALLERY.values())
    assert job["total"] == n and job["done"] == n
    assert job["counts"]["indexed"] == n and job["counts"]["faces"] == n and job["counts"]["skipped"] == 0
    assert job["actor"] == "key:curator-1"
    listed = svc.client.get("/api/v1/jobs", headers=svc.auth("curator")).json()
    assert job["id"] in [j["id"] for j in listed]
    missing = svc.client.get("/api/v1/jobs/nope", headers=svc.auth("curator"))
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_collections_crud(svc):
    client, curator = svc.client, svc.auth("curator")
    people = client.get("/api/v1/collections/people", headers=curator).json()
    assert people["basis"] == "consent" and people["jurisdictions"] == ["DE"] and people["faces"] == 7
    assert [c["name"] for c in client.get("/api/v1/collections", headers=svc.auth("auditor")).json()] == ["people"]
    made = client.post("/api/v1/collections", headers=curator, json={"name": "tmp", "basis": "contract",
                                                                       "purpose": "p", "retention_days": 30})
    assert made.status_code == 201 and made.json()["retention_days"] == 30 and made.json()["owner"] == "curator-1"
    duplicate = client.post("/api/v1/collections", headers=curator, json={"name": "tmp", "basis": "contract",
                                                                            "purpose": "p"})
    assert duplicate.status_code == 409 and duplicate.json()["error"]["code"] == "conflict"
    bad = client.post("/api/v1/collections", headers=curator, json={"name": "x", "basis": "because", "purpose": "p"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_input"
    assert "basis" in bad.json()["error"]["message"]
    sneaky = client.post("/api/v1/collections", headers=curator, json={"name": "../etc", "basis": "consent",
                                                                         "purpose": "p"})
    assert sneaky.status_code == 422
    assert client.delete("/api/v1/collections/tmp", headers=curator).json() == {"images_removed": 0,
                                                                                 "faces_removed": 0}
    gone = client.get("/api/v1/collections/tmp", headers=curator)
    assert gone.status_code == 404 and gone.json() == {"error": {"code": "not_found",
                                                                 "message": "no collection named 'tmp'"}}
    assert client.delete("/api/v1/collections/tmp", headers=curator).status_code == 404


def test_search_finds_the_right_person_first_in_cli_json_shape(svc, faces_dir):
    for who in GALLERY:
        response = search(svc, probe(faces_dir, who))
        assert response.status_code == 200, response.text
        data = response.json()
        assert data["gallery_size"] == 7 and len(data["faces"]) == 1
        face = data["faces"][0]
        assert face["status"] == "searched" and face["match"] and face["note"] == "candidates for human review"
        assert uploaded_as(face["candidates"][0]["path"]).startswith(who), (who, face["candidates"][0])
    # The same probe through the engine (what `faceindex search --json` prints) gives the same document.
    path = probe(faces_dir, "Angelina_Jolie")
    api = search(svc, path).json()
    cli = svc.engine.search([path.read_bytes()], "case 42", probe_names=[f"upload:{path.name}"])[0].to_dict()
    assert api == cli


def test_search_refusals(svc, faces_dir):
    path = probe(faces_dir, "Elon_Musk")
    no_purpose = svc.client.post("/api/v1/search", headers=svc.auth("searcher"),
                                 files={"photo": ("p.jpg", path.read_bytes())})
    assert no_purpose.status_code == 422 and "purpose" in no_purpose.json()["error"]["message"]
    blank = search(svc, path, purpose="   ")
    assert blank.status_code == 403 and blank.json()["error"]["code"] == "policy"
    lowered = search(svc, path, threshold="0.1")
    assert lowered.status_code == 403 and "threshold" in lowered.json()["error"]["message"]
    assert search(svc, path, role="admin", threshold="0.99").status_code == 200
    text = svc.client.post("/api/v1/search", headers=svc.auth("searcher"), data={"purpose": "x"},
                           files={"photo": ("face.jpg", b"<html><body>not a photo</body></html>", "image/jpeg")})
    assert text.status_code == 415 and text.json()["error"]["code"] == "unsupported_media_type"
    empty = svc.client.post("/api/v1/search", headers=svc.auth("searcher"), data={"purpose": "x"},
                            files={"photo": ("e.jpg", b"", "image/jpeg")})
    assert empty.status_code == 422 and empty.json()["error"]["code"] == "bad_image"
    truncated = svc.client.post("/api/v1/search", headers=svc.auth("searcher"), data={"purpose": "x"},
                                files={"photo": ("t.jpg", path.read_bytes()[:2000], "image/jpeg")})
    assert truncated.status_code == 422 and truncated.json()["error"]["code"] == "bad_image"
    dog = search(svc, faces_dir / NONFACE).json()
    assert dog["faces"] == [] and dog["gallery_size"] == 7


def test_search_is_audited_with_purpose_and_key(svc, faces_dir):
    search(svc, probe(faces_dir, "Barack_Obama"))
    events = svc.client.get("/api/v1/audit", headers=svc.auth("auditor"), params={"action": "search"}).json()
    assert events[-1]["purpose"] == "case 42" and events[-1]["actor"] == "key:searcher-1"
    verified = svc.client.get("/api/v1/audit/verify", headers=svc.auth("auditor")).json()
    assert verified["ok"] and verified["problems"] == [] and verified["events"] >= len(events)


def test_verify_two_photos(svc, faces_dir):
    def verify(a: Path, b: Path):
        return svc.client.post("/api/v1/verify", headers=svc.auth("searcher"),
                               files={"photo_a": ("a.jpg", a.read_bytes()), "photo_b": ("b.jpg", b.read_bytes())})

    same = verify(probe(faces_dir, "Jennifer_Aniston"), faces_dir / "people/Jennifer_Aniston/deepface__img12.jpg")
    assert same.status_code == 200 and same.json()["same_person"] is True and same.json()["score"] > 0.9
    other = verify(probe(faces_dir, "Jennifer_Aniston"), probe(faces_dir, "Barack_Obama")).json()
    assert other["same_person"] is False and other["score"] < other["threshold"]
    dog = verify(probe(faces_dir, "Elon_Musk"), faces_dir / NONFACE)
    assert dog.status_code == 422 and dog.json()["error"]["code"] == "no_face"


def test_images_and_faces_listing_and_detail(svc):
    client, curator = svc.client, svc.auth("curator")
    page = client.get("/api/v1/images", headers=curator, params={"collection": "people", "limit": 3}).json()
    assert page["total"] == 7 and len(page["items"]) == 3 and page["limit"] == 3
    items = client.get("/api/v1/images", headers=curator).json()["items"]
    names = {uploaded_as(i["path"]) for i in items}
    assert names == {upload_name(w, p) for w, p in gallery_files(Path("/"))}
    image = client.get(f"/api/v1/images/{page['items'][0]['id']}", headers=curator).json()
    assert image["status"] == "indexed" and len(image["faces"]) == 1 and image["format"] == "JPEG"
    face = image["faces"][0]
    assert "embedding" not in face and face["rejected"] is None and face["model_id"]
    assert client.get(f"/api/v1/faces/{face['id']}", headers=curator).json() == face
    faces = client.get("/api/v1/faces", headers=curator, params={"image_id": image["id"]}).json()
    assert faces["total"] == 1 and faces["items"] == [face]
    assert client.get("/api/v1/faces", headers=curator, params={"collection": "people"}).json()["total"] == 7
    for url in ("/api/v1/images/99999", "/api/v1/faces/99999", "/api/v1/images/99999/thumbnail",
                "/api/v1/faces/99999/crop"):
        response = client.get(url, headers=curator)
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found", url
    bad = client.get("/api/v1/images", headers=curator, params={"limit": 100000})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_input"
    assert client.get("/api/v1/images", headers=curator, params={"collection": "nope"}).status_code == 404


def test_thumbnail_and_crop_are_reencoded_jpegs(svc):
    client, officer = svc.client, svc.auth("privacy-officer")
    image = client.get("/api/v1/images", headers=officer, params={"limit": 1}).json()["items"][0]
    thumb = client.get(f"/api/v1/images/{image['id']}/thumbnail", headers=officer, params={"size": 200})
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert "no-store" in thumb.headers["cache-control"]
    with Image.open(io.BytesIO(thumb.content)) as im:
        assert im.format == "JPEG" and max(im.size) == 200 and not im.getexif()
        plain = im.convert("L")
    detail = client.get(f"/api/v1/images/{image['id']}", headers=officer).json()
    face = detail["faces"][0]
    crop = client.get(f"/api/v1/faces/{face['id']}/crop", headers=officer, params={"size": 128})
    with Image.open(io.BytesIO(crop.content)) as im:
        assert im.format == "JPEG" and max(im.size) <= 128
    # Focusing on a face that is not this one obscures the face that is: the pixels there change.
    obscured = client.get(f"/api/v1/images/{image['id']}/thumbnail", headers=officer,
                          params={"size": 200, "focus": 0})
    with Image.open(io.BytesIO(obscured.content)) as im:
        other = im.convert("L")
    scale = 200 / max(detail["width"], detail["height"])
    box = tuple(round(v * scale) for v in face["box"])
    diff = ImageChops.difference(plain.crop(box), other.crop(box))
    assert ImageStat.Stat(diff).mean[0] > 5


def test_a_tampered_catalog_path_never_serves_other_files(svc, tmp_path):
    """A catalog path pointing at another file is refused (410: not the catalogued photo), never served."""
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:top secret\n")
    image_id = svc.client.get("/api/v1/images", headers=svc.auth("admin")).json()["items"][0]["id"]
    conn = svc.engine.catalog.conn
    original = conn.execute("SELECT uri FROM images WHERE id = ?", (image_id,)).fetchone()[0]
    conn.execute("UPDATE images SET uri = ? WHERE id = ?", (str(secret), image_id))
    try:
        served = svc.client.get(f"/api/v1/images/{image_id}/thumbnail", headers=svc.auth("admin"))
        assert served.status_code == 410 and served.json()["error"]["code"] == "photo_changed"
        assert "top secret" not in served.text
        conn.execute("UPDATE images SET uri = ? WHERE id = ?", (str(tmp_path / "gone.jpg"), image_id))
        gone = svc.client.get(f"/api/v1/images/{image_id}/thumbnail", headers=svc.auth("admin"))
        assert gone.status_code == 404
    finally:
        conn.execute("UPDATE images SET uri = ? WHERE id = ?", (original, image_id))


def test_searcher_sees_only_photos_its_searches_returned(svc, faces_dir):
    client = svc.client
    with svc.engine.catalog.transaction():  # a fresh searcher: earlier tests' searches granted it other photos
        svc.keys["searcher"] = KeyStore(svc.engine).create("searcher-2", "searcher")[1]
    assert client.get("/api/v1/images", headers=svc.auth("searcher")).status_code == 403
    ids = [i["id"] for i in client.get("/api/v1/images", headers=svc.auth("admin")).json()["items"]]
    musk = search(svc, probe(faces_dir, "Elon_Musk"), role="searcher").json()["faces"][0]["candidates"]
    shown = {c["image_id"] for c in musk}
    hidden = [i for i in ids if i not in shown]
    assert shown and hidden
    shown_url = f"/api/v1/images/{musk[0]['image_id']}/thumbnail"
    assert client.get(shown_url, headers=svc.auth("searcher")).status_code == 200
    assert client.get(f"/api/v1/faces/{musk[0]['face_id']}/crop", headers=svc.auth("searcher")).status_code == 200
    refused = client.get(f"/api/v1/images/{hidden[0]}/thumbnail", headers=svc.auth("searcher"))
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert client.get(f"/api/v1/images/{hidden[0]}/thumbnail", headers=svc.auth("auditor")).status_code == 403


def test_register_server_folder(svc, folder_root):
    client, curator = svc.client, svc.auth("curator")
    client.post("/api/v1/collections", headers=curator, json={"name": "server", "basis": "contract", "purpose": "p"})
    outside = client.post("/api/v1/collections/server/folders", headers=curator, json={"path": str(folder_root)})
    assert outside.status_code == 403 and outside.json()["error"]["code"] == "policy"
    traversal = client.post("/api/v1/collections/server/folders", headers=curator,
                            json={"path": str(folder_root / "inside" / ".." / "..")})
    assert traversal.status_code == 403
    missing = client.post("/api/v1/collections/server/folders", headers=curator,
                          json={"path": str(folder_root / "inside" / "nope")})
    assert missing.status_code == 404
    no_collection = client.post("/api/v1/collections/nope/folders", headers=curator,
                                json={"path": str(folder_root / "inside")})
    assert no_collection.status_code == 404
    started = client.post("/api/v1/collections/server/folders", headers=curator,
                          json={"path": str(folder_root / "inside")})
    assert started.status_code == 202 and started.json()["kind"] == "folder"
    job = svc.wait_job(started.json()["id"])
    assert job["status"] == "done" and job["counts"]["indexed"] == 2 and job["counts"]["faces"] == 1
    images = client.get("/api/v1/images", headers=curator, params={"collection": "server"}).json()["items"]
    assert sorted(Path(i["path"]).name for i in images) == ["bezos.jpg", "dog.jpg"]
    assert all(Path(i["path"]).parent == (folder_root / "inside").resolve() for i in images)
    removed = client.delete("/api/v1/collections/server", headers=curator).json()
    assert removed == {"images_removed": 2, "faces_removed": 1}
    assert (folder_root / "inside" / "bezos.jpg").exists()  # the operator's own files are never deleted


def test_upload_refusals(svc, faces_dir):
    client, curator = svc.client, svc.auth("curator")
    good = (faces_dir / "people/Elon_Musk/deepface__img18.jpg").read_bytes()
    mixed = client.post("/api/v1/collections/people/uploads", headers=curator,
                        files=[("files", ("ok.jpg", good)), ("files", ("evil.jpg", b"MZ\x90\x00 not an image"))])
    assert mixed.status_code == 415 and "evil.jpg" in mixed.json()["error"]["message"]
    missing = client.post("/api/v1/collections/nope/uploads", headers=curator, files=[("files", ("a.jpg", good))])
    assert missing.status_code == 404
    none = client.post("/api/v1/collections/people/uploads", headers=curator)
    assert none.status_code == 422
    assert client.get("/api/v1/collections/people", headers=curator).json()["images"] == 7


def test_delete_face_and_image_remove_faceprints_and_uploaded_file(svc, faces_dir):
    client, curator = svc.client, svc.auth("curator")
    upload = client.post("/api/v1/collections/people/uploads", headers=curator,
                         files=[("files", ("Jeff_Bezos__x.jpg", (faces_dir / "people/Jeff_Bezos/deepface__img21.jpg")
                                           .read_bytes()))])
    svc.wait_job(upload.json()["id"])
    image = [i for i in client.get("/api/v1/images", headers=curator).json()["items"] if "Jeff_Bezos" in i["path"]][0]
    path = Path(image["path"])
    assert path.is_file() and path.is_relative_to(svc.store.resolve() / "uploads")
    face_id = client.get(f"/api/v1/images/{image['id']}", headers=curator).json()["faces"][0]["id"]
    assert client.delete(f"/api/v1/faces/{face_id}", headers=curator).json()["faces_removed"] == 1
    assert client.get(f"/api/v1/faces/{face_id}", headers=curator).status_code == 404
    assert client.get(f"/api/v1/images/{image['id']}", headers=curator).json()["n_faces"] == 0
    assert svc.client.get("/api/v1/stats", headers=svc.auth("auditor")).json()["faces"] == 7
    removed = client.delete(f"/api/v1/images/{image['id']}", headers=curator)
    assert removed.json() == {"images_removed": 1, "faces_removed": 0}
    assert not path.exists()  # the uploaded photo the service kept is gone too
    assert client.delete(f"/api/v1/images/{image['id']}", headers=curator).status_code == 404
    assert client.delete("/api/v1/faces/99999", headers=curator).status_code == 404
    erase = client.get("/api/v1/audit", headers=svc.auth("auditor"), params={"action": "erase"}).json()[-1]
    assert erase["params"]["route"] == "face" and erase["params"]["face_id"] == face_id
    assert erase["actor"] == "key:curator-1"


def test_stats_and_small_upload_limits(svc, tmp_path):
    stats = svc.client.get("/api/v1/stats", headers=svc.auth("curator")).json()
    assert stats["faces"] >= 7 and stats["model_id"] and stats["index"] != "empty"
    small = start_service(tmp_path / "limits", ServiceConfig(max_upload_bytes=4096, max_upload_pixels=100 * 100,
                                                             max_request_bytes=64 * 1024))
    try:
        small.client.post("/api/v1/collections", headers=small.auth("curator"),
                          json={"name": "c", "basis": "consent", "purpose": "p"})

        def upload(data: bytes):
            return small.client.post("/api/v1/collections/c/uploads", headers=small.auth("curator"),
                                     files=[("files", ("x.jpg", data))])

        assert upload(jpeg_bytes(64, 64)).status_code == 202
        big_pixels = upload(jpeg_bytes(200, 200, (0, 0, 0)))
        assert big_pixels.status_code == 413 and big_pixels.json()["error"]["code"] == "image_too_large"
        noisy = io.BytesIO()
        Image.effect_noise((90, 90), 80).save(noisy, "PNG")
        too_big = upload(noisy.getvalue())
        assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "upload_too_large"
        body = upload(b"\xff\xd8\xff" + b"0" * 100_000)
        assert body.status_code == 413 and body.json()["error"]["code"] == "upload_too_large"

        def chunks():
            for _ in range(100):
                yield b"x" * 1024

        streamed = small.client.post("/api/v1/collections", headers={**small.auth("curator"),
                                                                      "content-type": "application/json"},
                                     content=chunks())
        assert streamed.status_code == 413 and streamed.json()["error"]["code"] == "upload_too_large"
    finally:
        small.close()
