"""Audit events the service defines (the privacy layer's typed-event scheme: counts, ids and short text only)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from faceindex.events import Event, param


@dataclass(frozen=True, kw_only=True)
class LoggedIn(Event):
    """A browser session was opened (who can look at faces, from when, is part of the record)."""

    action: ClassVar[str] = "login"
    via: str = param("text")
    """"key" (pasted an API key) or "link" (a one-time login link)."""
    role: str = param("text")


@dataclass(frozen=True, kw_only=True)
class PhotoViewed(Event):
    """A photo (or a face crop of it) was shown to a caller: who saw whose picture."""

    action: ClassVar[str] = "image.view"
    image_id: int = param("id")
    view: str = param("text")
    """"page", "thumbnail" or "crop"."""
