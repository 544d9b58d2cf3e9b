"""Privacy operations over the API and the privacy officer's page (filled in as engine.privacy grows)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
