"""Helpers shared by the service tests (no tests here): a real store, real photos, a key per role.

Everything runs the real pipeline on real photos from ../shared/faces; nothing is mocked.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fastapi.testclient import TestClient
from PIL import Image

from faceindex.config import Settings
from faceindex.engine import Engine
from faceindex.service.app import create_app
from faceindex.service.config import ServiceConfig
from faceindex.service.keys import ROLES, KeyStore
from faceindex.service.schema import ensure_service_schema

GALLERY = {
    "Barack_Obama": ["face_recognition__obama.jpg"],
    "Angelina_Jolie": ["deepface__img10.jpg", "deepface__img11.jpg"],
    "Jennifer_Aniston": ["deepface__img12.jpg", "deepface__img53.jpg"],
    "Elon_Musk": ["deepface__img18.jpg", "deepface__img67.jpg"],
}
"""Photos indexed into the test collection: one face each, small files so the ingest takes seconds."""
PROBES = {
    "Barack_Obama": "face_recognition__obama2.jpg",
    "Angelina_Jolie": "deepface__img2.jpg",
    "Jennifer_Aniston": "deepface__img55.jpg",
    "Elon_Musk": "deepface__img19.jpg",
}
"""A different photo of each gallery person, used to search."""
NONFACE = "nonfaces/dlib__dog.jpg"
REPO_ROOT_ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
"""Screenshots of the browser test land here too (the folder ignores itself in git)."""


def gallery_files(faces_dir: Path) -> list[tuple[str, Path]]:
    return [(who, faces_dir / "people" / who / name) for who, names in GALLERY.items() for name in names]


def upload_name(who: str, path: Path) -> str:
    """The name a test uploads a photo under: the identity first, so a result shows whose photo it is."""
    return f"{who}__{path.name}"


def uploaded_as(stored_path: str) -> str:
    """The name a photo was uploaded under, from the path the service stored it at (`<sha256 prefix>-<name>`)."""
    return Path(stored_path).name.split("-", 1)[1]


def probe(faces_dir: Path, who: str) -> Path:
    return faces_dir / "people" / who / PROBES[who]


def jpeg_bytes(width: int = 64, height: int = 64, color=(120, 90, 60)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "JPEG")
    return out.getvalue()


@dataclass
class Service:
    """A running app over a fresh store, with one API key per role (plus a second admin)."""

    engine: Engine
    client: TestClient
    keys: dict[str, str] = field(default_factory=dict)
    store: Path | None = None
    job: dict | None = None
    """The gallery's ingest job, once `gallery_service` has run it."""

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    def wait_job(self, job_id: str, role: str = "curator", timeout: float = 120.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.client.get(f"/api/v1/jobs/{job_id}", headers=self.auth(role)).json()
            if job["status"] in ("done", "failed"):
                return job
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} did not finish in {timeout} s")

    def close(self) -> None:
        self.client.__exit__(None, None, None)
        self.engine.close()


ROOMY_LIMITS = {"rate_per_minute": 60_000.0, "rate_burst": 10_000, "anonymous_per_minute": 60_000.0}
"""Request limits for functional tests (which poll jobs and reload pages far faster than a person): a test of
a limit sets that limit itself, and the defaults keep applying to every field a test does not name."""


def start_service(store: Path, config: ServiceConfig | None = None) -> Service:
    """Open a store with a key per role and an app over it. workers=1: no process pool on 2 shared cores."""
    engine = Engine(store, Settings(workers=1), actor="test")
    ensure_service_schema(engine)  # what the service's start-up does; the keys are made before it here
    keys = KeyStore(engine)
    secrets = {role: keys.create(f"{role}-1", role)[1] for role in ROLES}
    config = config or ServiceConfig()
    config = config.model_copy(update={k: v for k, v in ROOMY_LIMITS.items() if k not in config.model_fields_set})
    app = create_app(engine, config)
    client = TestClient(app)
    client.__enter__()
    return Service(engine, client, secrets, store)


def gallery_service(store: Path, faces_dir: Path, config: ServiceConfig | None = None) -> Iterator[Service]:
    """A module fixture's body: a service over a new store with the gallery ingested through the API (the
    finished job in `service.job`), closed when the fixture ends."""
    service = start_service(store, config)
    service.job = ingest_gallery(service, faces_dir)
    yield service
    service.close()


def officer(svc: Service) -> dict[str, str]:
    """Headers of the privacy officer's key."""
    return svc.auth("privacy-officer")


def ingest_gallery(service: Service, faces_dir: Path, collection: str = "people") -> dict:
    """Create a collection and upload the gallery through the API; returns the finished job."""
    response = service.client.post("/api/v1/collections", headers=service.auth("curator"),
                                   json={"name": collection, "basis": "consent", "purpose": "service tests",
                                         "jurisdictions": ["DE"]})
    assert response.status_code == 201, response.text
    files = [("files", (upload_name(who, path), path.read_bytes(), "application/octet-stream"))
             for who, path in gallery_files(faces_dir)]
    response = service.client.post(f"/api/v1/collections/{collection}/uploads", headers=service.auth("curator"),
                                   files=files)
    assert response.status_code == 202, response.text
    job = service.wait_job(response.json()["id"])
    assert job["status"] == "done", job
    return job


def login(client: TestClient, key: str | None = None, token: str | None = None, next_url: str = "/"):
    """Log a client in through the login form (as a browser does); returns the POST /login answer."""
    form = client.get("/login", params={"token": token} if token else None)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    data = {"csrf_token": csrf, "next": next_url, **({"token": token} if token else {"key": key})}
    return client.post("/login", data=data, follow_redirects=False)
