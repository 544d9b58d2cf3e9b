"""faceindex: self-hosted, privacy-first face search over photo collections you lawfully hold."""

from faceindex.config import Settings
from faceindex.engine import Engine
from faceindex.errors import FaceIndexError

__all__ = ["Engine", "FaceIndexError", "Settings"]
__version__ = "0.1.0"
