"""Settings of the REST service and web UI, read from arguments or FACEINDEX_SERVICE_* environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceConfig(BaseSettings):
    """Every limit the service enforces on what clients send; each field documents its unit.

    The engine's own settings (model, thresholds, `max_pixels` for ingest) stay in `faceindex.config.Settings`;
    these are the extra guards for an HTTP front door that anyone on the network may knock on.
    """

    model_config = SettingsConfigDict(env_prefix="FACEINDEX_SERVICE_", extra="ignore")

    max_request_bytes: int = Field(
        100 * 2**20, ge=1024, description="Largest request body (bytes); bigger requests get 413 before parsing."
    )
    max_upload_bytes: int = Field(20 * 2**20, ge=1024, description="Largest single uploaded photo (bytes).")
    max_upload_pixels: int = Field(
        25_000_000, ge=1, description="Largest uploaded photo in pixels (width x height read from the header, "
        "before any pixel is decoded). A PNG cannot be decoded at reduced size, so this bounds the memory one "
        "upload takes (about 3 bytes a pixel, several copies): 25 MP holds a 24 MP camera photo.",
    )
    max_concurrent_decodes: int = Field(
        2, ge=1, description="Photos decoded at once (searches, verifications, selfies, thumbnails, crops); more "
        "wait their turn. With max_upload_pixels this bounds the memory decoding can take.",
    )
    max_video_upload_bytes: int = Field(
        4 * 2**30, ge=1024, description="Largest single uploaded video (bytes); 4 GiB holds about an hour of 1080p "
        "camera video. It is streamed to disk, never held in memory, and the request-body limit of the upload "
        "route is raised to this size (photos keep max_upload_bytes).",
    )
    max_files_per_upload: int = Field(200, ge=1, description="Most photos in one ingest upload request.")
    rate_per_minute: float = Field(
        120.0, gt=0, description="Sustained requests per minute allowed per API key (token bucket refill rate). "
        "Kept well below what one server answers (about 510 searches a minute in the issue 9 campaign; 160-240 "
        "a minute measured on a busy 2-core machine) so that one key cannot take the whole server.",
    )
    rate_burst: int = Field(30, ge=1, description="Requests a key may make at once before the rate applies.")
    anonymous_per_minute: float = Field(
        120.0, gt=0, description="Requests without credentials per minute per client address (login page, "
        "static pages, refused calls); twice as many may come at once; more get 429.",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list, description="Addresses of reverse proxies whose X-Forwarded-For header names the "
        "client. Empty (the default): the header is ignored and the TCP peer is the client.",
    )
    login_per_minute: float = Field(
        20.0, gt=0, description="Login attempts per minute per client address (guards the login form)."
    )
    auth_failures_per_minute: float = Field(
        60.0, gt=0, description="Requests with a wrong key or expired session per minute per client address "
        "(twice as many may come at once); more get 429."
    )
    session_hours: float = Field(12.0, gt=0, description="Lifetime of a browser session cookie, in hours.")
    allowed_folders: list[Path] = Field(
        default_factory=list,
        description="Server-side folders (and their subfolders) that curators may register for ingest. "
        "Empty = registering server folders is refused; uploads still work.",
    )
    search_grant_hours: float = Field(
        8.0, gt=0, description="How long a searcher may view the photos of candidates their own searches returned.",
    )
    thumbnail_max_px: int = Field(1024, ge=64, le=4096, description="Largest thumbnail side served, in pixels.")
