"""The REST service over a store whose catalog is on PostgreSQL and faceprints on Milvus Lite (real models,
real photos): keys, an upload ingest job, search, access report, selfie erasure with its per-backend residue,
audit verification."""

from __future__ import annotations

from pathlib import Path

import pytest
from privacy_support import selfie
from test_service_support import GALLERY, ingest_gallery, start_service

pytest.importorskip("milvus_lite")


def post_photo(svc, url: str, path: Path, role: str, **fields):
    return svc.client.post(url, headers=svc.auth(role), data=fields, files={"photo": (path.name, path.read_bytes())})


@pytest.mark.parametrize("store", ["cluster"], indirect=True)
def test_service_search_and_privacy_routes_on_postgresql(store, root, faces_dir):
    svc = start_service(store)  # its Settings come from FACEINDEX_CATALOG_URL / FACEINDEX_VECTORS_URL
    try:
        assert svc.engine.catalog.dialect == "postgresql"
        stats = svc.client.get("/api/v1/stats", headers=svc.auth("admin")).json()
        assert stats["faces"] == 16 and stats["index"] == "milvus-lite:flat"
        # An upload ingest job: its record (ingest_jobs) is written and re-written in the same database.
        job = ingest_gallery(svc, faces_dir, "uploads")
        n = sum(len(v) for v in GALLERY.values())
        assert (job["total"], job["done"], job["counts"]["faces"]) == (n, n, n)
        assert svc.engine.catalog.count("SELECT count(*) FROM ingest_jobs WHERE status = 'done'") == 1
        jack = selfie(root, "Jack_Dorsey")
        found = post_photo(svc, "/api/v1/search", jack, "searcher", purpose="case 7").json()
        paths = [c["path"] for f in found["faces"] for c in f["candidates"]]
        assert len(paths) == 4 and all("/Jack_Dorsey/" in p for p in paths)

        report = post_photo(svc, "/api/v1/access-reports", selfie(root, "John_Simm"), "privacy-officer", case="SAR-2")
        assert report.status_code == 200, report.text
        data = report.json()
        assert data["counts"] == {"images": 3, "faces": 3}
        assert {i["collection"] for i in data["images"]} == {"canada"}

        plan = post_photo(svc, "/api/v1/erasures/plans/selfie", jack, "privacy-officer", case="DSR-4").json()
        assert plan["faces"] == 4
        done = svc.client.post(f"/api/v1/erasures/plans/{plan['plan_id']}", headers=svc.auth("privacy-officer"))
        assert done.status_code == 200, done.text
        result = done.json()
        assert result["faces"] == 4 and result["complete"] and result["verified"] is False
        assert result["catalog_backend"] == "postgresql" and "WAL" in result["catalog_residue"]
        assert result["vectors_backend"] == "milvus-lite" and result["vectors_residue"]
        again = post_photo(svc, "/api/v1/search", jack, "searcher", purpose="case 7").json()
        assert not [c for f in again["faces"] for c in f["candidates"] if "/Jack_Dorsey/" in c["path"]]

        verified = svc.client.get("/api/v1/audit/verify", headers=svc.auth("auditor")).json()
        assert verified["ok"] and verified["problems"] == []
        # The service's own tables (keys, sessions) live in the same database: a revoked key stops at once.
        key_id = next(k["id"] for k in svc.client.get("/api/v1/keys", headers=svc.auth("admin")).json()
                      if k["name"] == "searcher-1")
        assert svc.client.delete(f"/api/v1/keys/{key_id}", headers=svc.auth("admin")).status_code == 200
        assert post_photo(svc, "/api/v1/search", jack, "searcher", purpose="x").status_code == 401
    finally:
        svc.close()
