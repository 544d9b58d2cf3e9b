"""faceindex: self-hosted, privacy-first face search over photo collections you lawfully hold."""

__all__ = ["Engine", "FaceIndexError", "Settings"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy, so `import faceindex.evaluation` does not load the models' and the store's modules.
    if name == "Engine":
        from faceindex.engine import Engine

        return Engine
    if name == "Settings":
        from faceindex.config import Settings

        return Settings
    if name == "FaceIndexError":
        from faceindex.errors import FaceIndexError

        return FaceIndexError
    raise AttributeError(name)
