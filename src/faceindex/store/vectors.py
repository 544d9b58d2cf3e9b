"""The vector-store interface (add, search, delete, count, flush) and the choice of backend by URL."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from faceindex.errors import InvalidInputError

FAISS = "faiss"
"""`vectors_url` of the embedded default: FAISS in the process, `<store>/index.faiss` beside the catalog."""


@dataclass(frozen=True)
class VectorCapabilities:
    """What a vector backend can promise, read by the layers above instead of guessing from its type.

    - ``backend``: "faiss", "milvus-lite" or "milvus".
    - ``proves_erasure_bytes``: True only where faceindex itself writes every byte of the vector files and can
      scan them afterwards (the embedded FAISS files). A server keeps its own segments, logs and object-store
      copies, which faceindex can neither rewrite nor read byte for byte.
    - ``residue_note``: what may linger after a delete, and until when (shown with every erasure result).
    - ``local_paths``: files or directories of this backend under the store's control (scanned, or excluded
      from the byte scan when the backend cannot prove erasure there).
    """

    backend: str
    proves_erasure_bytes: bool
    residue_note: str
    local_paths: tuple[Path, ...] = ()


FAISS_CAPABILITIES = VectorCapabilities(
    FAISS, True,
    "nothing: erased vectors are deleted or zeroed in memory, the index file is rewritten atomically, and the "
    "store's files are scanned for the erased bytes before the erasure is reported verified",
)


@runtime_checkable
class VectorStore(Protocol):
    """A rebuildable cache of the catalog's faceprints, keyed by int64 face id (the catalog is the truth).

    Vectors are L2-normalised float32 (n, dim); scores are cosine similarities, best first. Implemented by
    ``VectorIndex`` (FAISS, embedded; FaceStore persists it with the catalog's watermark) and
    ``MilvusVectors`` (a Milvus server or Milvus Lite). The layers above talk to FaceStore, which owns
    keeping this cache in step with the catalog.
    """

    @property
    def capabilities(self) -> VectorCapabilities: ...

    @property
    def kind(self) -> str: ...

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add faces whose ids are not present yet (re-adding a present id is the backend's to reject or
        overwrite; FaceStore never does it on FAISS and uses it for idempotent repair on Milvus)."""

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores float32 (q, k), ids int64 (q, k)); empty slots score -inf with id -1."""

    def delete(self, ids: np.ndarray) -> int:
        """Remove faces by id (unknown ids ignored); returns how many the backend reports removed."""

    def count(self) -> int:
        """Faces held (live rows)."""

    def flush(self) -> None:
        """Make what was written durable and visible to the next search."""

    def close(self) -> None:
        """Release connections and mappings; the object is not used afterwards."""


def backend_of(url: str | None) -> str:
    """"faiss" for the embedded default (None, "" or "faiss"), "milvus-lite" for a local ``*.db`` path,
    "milvus" for a server URI (http(s)://, tcp://, grpc://, unix:); anything else is InvalidInputError."""
    url = (url or FAISS).strip()
    if url.lower() == FAISS:
        return FAISS
    if url.startswith(("http://", "https://", "tcp://", "grpc://", "unix:")):
        return "milvus"
    if url.endswith(".db") and "://" not in url:
        return "milvus-lite"
    raise InvalidInputError(
        f"vectors_url {url!r} is not understood: use 'faiss' (the default), a Milvus server URI such as "
        "http://host:19530, or a local path ending in .db for Milvus Lite"
    )


def redacted(url: str) -> str:
    """The URL without a password (``http://user:secret@host`` -> ``http://user:***@host``) for messages."""
    if "://" in url and "@" in url.split("://", 1)[1].split("/", 1)[0]:
        scheme, rest = url.split("://", 1)
        cred, host = rest.split("@", 1)
        user = cred.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url
