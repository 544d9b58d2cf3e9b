"""Ingest jobs survive a service restart: finished ones can be polled, interrupted ones resume (up to a limit)."""

from __future__ import annotations

import json
import time

import pytest

from faceindex.config import Settings
from faceindex.engine import Engine
from faceindex.service.job_records import MAX_ATTEMPTS, JobRecords
from faceindex.service.jobs import Job, JobManager
from faceindex.service.schema import ensure_service_schema
from faceindex.store.catalog import Catalog


@pytest.fixture()
def store(tmp_path):
    with Engine(tmp_path / "store", Settings(workers=1)) as engine:
        engine.create_collection("people", "consent", "job tests")
        ensure_service_schema(engine)  # what the service's start-up does before its JobRecords
        return engine.settings, engine.catalog.path


def manager(settings, catalog_path) -> JobManager:
    return JobManager(settings, records=JobRecords(Catalog(catalog_path)))


def wait(jobs: JobManager, job_id: str) -> Job:
    job = jobs.wait(job_id, 120)
    assert job is not None and job.status in ("done", "failed"), job
    return job


def test_a_finished_job_can_be_polled_after_a_restart_and_keeps_no_paths(store, faces_dir):
    settings, catalog_path = store
    first = manager(settings, catalog_path)
    photos = [str(p) for p in sorted((faces_dir / "people" / "Barack_Obama").iterdir())[:2]]
    job = wait(first, first.submit("folder", "people", photos, "tester").id)
    assert job.status == "done" and job.counts["faces"] == 2 and job.attempts == 1
    first.shutdown()
    again = manager(settings, catalog_path)
    restored = again.get(job.id)
    assert restored.to_dict() == job.to_dict()
    row = again.records.catalog.conn.execute("SELECT paths FROM ingest_jobs WHERE id = ?", (job.id,)).fetchone()
    assert json.loads(row[0]) == []  # file names are not kept once the job is over
    again.shutdown()


def test_an_interrupted_job_is_resumed_and_one_interrupted_too_often_fails(store, faces_dir):
    settings, catalog_path = store
    photos = [str(p) for p in sorted((faces_dir / "people" / "Angelina_Jolie").iterdir())[:2]]
    records = JobRecords(Catalog(catalog_path))
    # What a killed service leaves behind: a job marked running (started once), and one started MAX_ATTEMPTS times.
    running = Job("resume-me", "folder", "people", photos, "tester", status="running", attempts=1)
    doomed = Job("give-up", "folder", "people", photos, "tester", status="running", attempts=MAX_ATTEMPTS)
    for job in (running, doomed):
        records.save(job.record())
    records.close()
    jobs = manager(settings, catalog_path)
    resumed = wait(jobs, "resume-me")
    assert resumed.status == "done" and resumed.attempts == 2 and resumed.counts["faces"] == 2
    failed = jobs.get("give-up")
    assert failed.status == "failed" and failed.error["code"] == "interrupted"
    time.sleep(0.2)
    assert jobs.get("give-up").attempts == MAX_ATTEMPTS  # never started again
    jobs.shutdown()
    with Engine(catalog_path.parent, Settings(workers=1)) as engine:
        assert engine.stats()["faces"] == 2  # the failed job ingested nothing
