"""Collections and ingest: create, list, get, delete; upload photos and videos or register a server folder as a job."""

from __future__ import annotations

import pathlib
from typing import Annotated

from fastapi import APIRouter, File, Path, UploadFile
from starlette.concurrency import run_in_threadpool

from faceindex.errors import InvalidInputError, NotFoundError, PolicyError
from faceindex.service.deps import (
    ERRORS,
    MEDIA_UPLOAD_ERRORS,
    NOT_FOUND,
    CanIngest,
    CanReadCollections,
    CanWriteCollections,
    StateDep,
)
from faceindex.service.errors import UploadTooLargeError
from faceindex.service.schemas import CollectionCreate, CollectionPublic, DeletedPublic, FolderCreate, JobPublic
from faceindex.service.shared import collection_public, find_collection, sweep
from faceindex.service.state import ServiceState
from faceindex.service.uploads import Upload, read_upload, safe_name, save_uploads
from faceindex.service.video_uploads import HEAD, VideoUpload, is_video_head, keep_video, stage_video
from faceindex.store import reads

router = APIRouter(prefix="/api/v1", tags=["collections"], responses=ERRORS)


@router.get("/collections", response_model=list[CollectionPublic])
def list_collections(principal: CanReadCollections, state: StateDep):
    """Every collection with its legal basis, purpose, retention and counts."""
    with state.gate.read(principal) as engine:
        return [collection_public(engine, c) for c in engine.catalog.list_collections()]


@router.post("/collections", response_model=CollectionPublic, status_code=201, responses={409: ERRORS[422]})
def create_collection(body: CollectionCreate, principal: CanWriteCollections, state: StateDep):
    """Create a collection; its legal basis and purpose (and `grouping`, when given) are recorded in the audit log."""
    with state.gate.write(principal) as engine:
        collection = engine.create_collection(body.name, body.basis, body.purpose, jurisdictions=body.jurisdictions,
                                              retention_days=body.retention_days, owner=body.owner or principal.name,
                                              grouping=body.grouping)
        return collection_public(engine, collection)


REF = "Collection id (digits), or its name."


@router.get("/collections/{ref}", response_model=CollectionPublic, responses=NOT_FOUND)
def get_collection(ref: Annotated[str, Path(description=REF)], principal: CanReadCollections, state: StateDep):
    with state.gate.read(principal) as engine:
        return collection_public(engine, find_collection(engine, ref))


@router.delete("/collections/{ref}", response_model=DeletedPublic, responses=NOT_FOUND)
def delete_collection(ref: Annotated[str, Path(description=REF)], principal: CanWriteCollections, state: StateDep):
    """Delete a collection with every image and face in it (faceprints leave the index file too)."""
    with state.gate.write(principal) as engine:
        collection = find_collection(engine, ref)
        images = reads.collection_image_count(engine.catalog, collection.id)
        faces = engine.remove_collection(collection.name)
    sweep(state)
    return DeletedPublic(images_removed=images, faces_removed=faces)


@router.post("/collections/{ref}/uploads", response_model=JobPublic, status_code=202,
             responses={**NOT_FOUND, **MEDIA_UPLOAD_ERRORS})
async def upload_photos(ref: Annotated[str, Path(description=REF)], principal: CanIngest, state: StateDep,
                        files: Annotated[list[UploadFile], File(description="Photos and videos to index.")]):
    """Upload photos and videos into a collection; they are indexed by a background job whose progress you poll
    (`video` in the job shows the video being analysed, with its timecode).

    Every file is checked by content first (format, bytes, pixels; a video's header is opened): one bad file
    refuses the whole request, so nothing is half-uploaded. Photos are limited by `max_upload_bytes`, videos by
    `max_video_upload_bytes` and streamed to disk, never held in memory. Files are kept under the store's
    `uploads/` folder and deleted with their collection.
    """
    config = state.config
    if not files:
        raise InvalidInputError("no files uploaded")
    if len(files) > config.max_files_per_upload:
        raise InvalidInputError(f"at most {config.max_files_per_upload} files per upload; got {len(files)}")
    settings = state.jobs.settings  # the engine's own settings (the store, its video limits)
    store = settings.store
    photos: list[Upload] = []
    videos: list[VideoUpload] = []
    try:
        for f in files:
            head = await f.read(HEAD)
            if is_video_head(head):
                videos.append(await stage_video(f, head, safe_name(f.filename), store, config, settings))
            else:
                photos.append(await read_upload(f, config, head))
                # Photos are held in memory until saved: the route's raised body limit is for videos only.
                if sum(len(p.data) for p in photos) > config.max_request_bytes:
                    raise UploadTooLargeError(f"photos over {config.max_request_bytes:,} bytes in one request; "
                                              "upload them in several requests")

        def store_and_queue():
            with state.gate.write(principal) as engine:
                collection = find_collection(engine, ref)
                paths = save_uploads(engine.settings.store, collection.id, photos)
                paths += [keep_video(engine.settings.store, collection.id, v) for v in videos]
                return state.jobs.submit("upload", collection.name, paths, principal.actor)

        return (await run_in_threadpool(store_and_queue)).to_dict()
    finally:
        for video in videos:  # staged but not kept (a later file was refused, or no such collection)
            video.discard()


def allowed_folder(state: ServiceState, raw: str) -> pathlib.Path:
    """The resolved path if it lies inside a configured allowed folder; refuses anything else.

    Resolving first (symlinks, `..`) and then checking containment is what stops path traversal.
    """
    if not state.config.allowed_folders:
        raise PolicyError("this server does not allow registering server folders (start it with --allow-folder)")
    if "\x00" in raw:
        raise InvalidInputError("invalid path")
    try:
        path = pathlib.Path(raw).expanduser().resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise NotFoundError(f"no such folder or file on the server: {raw}") from exc
    for root in state.config.allowed_folders:
        if path.is_relative_to(pathlib.Path(root).expanduser().resolve()):
            return path
    raise PolicyError(f"{raw} is outside the folders this server allows for ingest")


@router.post("/collections/{ref}/folders", response_model=JobPublic, status_code=202, responses=NOT_FOUND)
def register_folder(ref: Annotated[str, Path(description=REF)], body: FolderCreate, principal: CanIngest,
                    state: StateDep):
    """Index a folder on the server (recursively) into a collection, as a background job.

    The folder must lie inside one of the service's allowed folders (`--allow-folder`); photos stay where
    they are and the catalog records their paths as provenance.
    """
    path = allowed_folder(state, body.path)
    with state.gate.read(principal) as engine:
        collection = find_collection(engine, ref)
    return state.jobs.submit("folder", collection.name, [path], principal.actor).to_dict()


@router.get("/jobs", response_model=list[JobPublic], tags=["jobs"])
def list_jobs(principal: CanIngest, state: StateDep):
    """Ingest jobs of this server process, newest first."""
    return [job.to_dict() for job in state.jobs.list()]


@router.get("/jobs/{job_id}", response_model=JobPublic, tags=["jobs"], responses=NOT_FOUND)
def get_job(job_id: str, principal: CanIngest, state: StateDep):
    """One job's status and progress (`done` of `total` files) — poll this while it runs."""
    job = state.jobs.get(job_id)
    if job is None:
        raise NotFoundError(f"no job {job_id!r} (jobs are forgotten when the server restarts)")
    return job.to_dict()
