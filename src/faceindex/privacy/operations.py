"""Privacy operations over an Engine: consent, erasure, opt-out, access reports, retention."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from faceindex.engine import Engine


class PrivacyOps:
    """Attached to every Engine as `engine.privacy`."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def on_open(self) -> None:
        """Run when a store opens (retention purge, opt-out filter installation)."""

    def subject_names(self, face_ids: list[int]) -> dict[int, str]:
        """Enrolled subject name of each face id that has one."""
        return {}
