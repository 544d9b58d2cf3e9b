"""The one error hierarchy of faceindex: every failure the engine reports is a FaceIndexError."""

from __future__ import annotations


class FaceIndexError(Exception):
    """Base of every error faceindex raises on purpose.

    `code` is a stable machine-readable string (used by the CLI's JSON output and the REST
    service's `{"error": {"code", "message"}}` shape); `http_status` is what the service answers.
    """

    code = "error"
    http_status = 400

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class InvalidInputError(FaceIndexError):
    """A parameter given by the caller is malformed or out of range."""

    code = "invalid_input"


class ImageError(FaceIndexError):
    """An image could not be used: unreadable, corrupt, not an image, or too large."""

    code = "bad_image"
    http_status = 422


class ImageTooLargeError(ImageError):
    """The image exceeds the pixel or byte limit (decompression-bomb guard)."""

    code = "image_too_large"
    http_status = 413


class VideoError(ImageError):
    """A video could not be used: unreadable, damaged, no video stream, unsupported codec, over a limit, or
    changed while being read. Ingest records its message as the file's skip reason."""

    code = "bad_video"


class ProbeQualityError(FaceIndexError):
    """A probe face is too small, too blurred or otherwise unfit to search with."""

    code = "probe_quality"
    http_status = 422


class NoFaceError(FaceIndexError):
    """No usable face was found where one was required."""

    code = "no_face"
    http_status = 422


class NotFoundError(FaceIndexError):
    """A named collection, image, subject or other record does not exist."""

    code = "not_found"
    http_status = 404


class ConflictError(FaceIndexError):
    """The request conflicts with existing state (duplicate name, wrong model, ...)."""

    code = "conflict"
    http_status = 409


class ModelMismatchError(ConflictError):
    """Embeddings of different models would be mixed in one store or compared."""

    code = "model_mismatch"


class PolicyError(FaceIndexError):
    """A privacy rule forbids the operation (missing purpose, basis, consent, ...)."""

    code = "policy"
    http_status = 403


class ModelFileError(FaceIndexError):
    """A model file is missing or fails its checksum."""

    code = "model_file"
    http_status = 500


class StoreError(FaceIndexError):
    """The store on disk is unusable: locked, corrupt, or from an unknown version."""

    code = "store"
    http_status = 500


class AuthError(FaceIndexError):
    """Missing or invalid credentials."""

    code = "unauthorized"
    http_status = 401


class ForbiddenError(FaceIndexError):
    """Valid credentials without the role the operation needs."""

    code = "forbidden"
    http_status = 403


class StoreNotFoundError(StoreError):
    """A command that only reads was pointed at a store that does not exist (a mistyped --store).

    Only commands that write may create a store; a read on a missing store is never "no match".
    """

    code = "store_not_found"
    http_status = 404


class EmptyStoreError(StoreError):
    """A search or other read needs faces, and the store holds none: never answered as "no match"."""

    code = "empty_store"
    http_status = 409


class StoreBusyError(StoreError):
    """Another process holds the store's write lock; the caller should wait and retry."""

    code = "store_busy"
    http_status = 503


class WorkerPoolError(FaceIndexError):
    """The analysis worker processes could not run (e.g. a script without an `if __name__ == "__main__":` guard).

    Nothing the failed workers touched is recorded as done.
    """

    code = "worker_pool"
    http_status = 500
