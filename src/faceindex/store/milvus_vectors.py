"""Faceprints on Milvus (a server or cluster by URI, or Milvus Lite in a local `*.db`) through pymilvus."""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from faceindex.errors import InvalidInputError, ModelMismatchError, StoreError
from faceindex.store.vectors import VectorCapabilities, backend_of, redacted

log = logging.getLogger(__name__)

COLLECTION = "faceindex_faces"
SCHEMA_VERSION = "1"
"""Version of the collection layout (fields face_id INT64 primary key, vector FLOAT_VECTOR(dim), no others)."""

_P_VERSION, _P_MODEL, _P_DIM, _P_STORE = ("faceindex.schema_version", "faceindex.model_id", "faceindex.dim",
                                          "faceindex.store_id")
_BATCH = 5_000  # rows per insert/upsert/delete call: well under Milvus' 64 MiB gRPC message limit at 128-d
_MAX_TOPK = 16_384  # Milvus' limit on topk (and on limit+offset) per search

# Index per backend. Milvus Lite: FLAT (exact; measured in bench/bench_vectors.py against HNSW, see
# BENCHMARKS.md). Server/cluster: HNSW M 32 / efConstruction 200 with ef >= 256 at search, the settings this
# project measured on faiss for recall@10 >= 0.98 on face-shaped data (Milvus' HNSW is the same algorithm).
LITE_INDEX = {"index_type": "FLAT", "params": {}}
SERVER_INDEX = {"index_type": "HNSW", "params": {"M": 32, "efConstruction": 200}}
SERVER_EF = 256

LITE_RESIDUE = (
    "Milvus Lite does not compact on request, and a delete alone leaves the erased faceprints in its segment files "
    "(measured: found byte for byte in its parquet data and flat index files after delete, flush and a compaction "
    "request). So after every erasure faceindex drops the Lite collection under {path} and refills it from the "
    "catalog, which deletes those files (measured: none of the erased bytes remain in the directory). Not proven "
    "byte by byte like the embedded store: Lite compresses its files, so a byte scan there cannot prove absence, "
    "and deleted files' disk blocks are not overwritten"
)
SERVER_RESIDUE = (
    "Milvus at {url} masks deleted rows at once (no search or query returns them, verified after the delete); "
    "their bytes stay in sealed segments and their binlogs in object storage until compaction (requested: job "
    "{job}) rewrites the segments and garbage collection then removes the old files (after "
    "dataCoord.gc.dropTolerance in milvus.yaml: 10800 s, 3 hours, in the releases we know of; check your "
    "deployment's value); backups and replicas of that storage keep them "
    "until they expire"
)


_lite_users: Counter[str] = Counter()  # open MilvusVectors per Milvus Lite directory in this process
_lite_lock = threading.Lock()


def _release_lite(path: str) -> None:
    """Stop this process's Milvus Lite server for ``path`` once its last user closed, so the directory's lock
    is free for another process (pymilvus keeps the server, and the lock, until the process exits)."""
    with _lite_lock:
        _lite_users[path] -= 1
        if _lite_users[path] > 0:
            return
        del _lite_users[path]
    try:
        from milvus_lite.server_manager import server_manager_instance
    except ImportError:
        return
    server_manager_instance.release_server(path)


def _client_class():
    try:
        from pymilvus import MilvusClient
    except ImportError as exc:
        raise StoreError(
            "vectors_url names a Milvus backend but pymilvus is not installed: pip install 'faceindex[cluster]'"
        ) from exc
    # pymilvus logs every failed RPC with a traceback at ERROR; faceindex reports them as one StoreError.
    # Milvus Lite runs its gRPC server in this process and logs its own failures (a locked directory, the
    # AllocTimestamp call it does not implement, answered by pymilvus' fallback) with tracebacks: quiet too.
    for name in ("pymilvus", "milvus_lite", "grpc._server"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    return MilvusClient


class MilvusVectors:
    """Faces as rows (face_id INT64 primary key, vector FLOAT_VECTOR(dim)) of one Milvus collection, COSINE.

    The collection's properties record the schema version, model id, dimension and the store id of the
    catalog it mirrors, so a collection made for another model, dimension, layout or store is refused rather
    than mixed. Every pymilvus failure becomes a StoreError naming the URL and the operation.

    Writes are upserts (idempotent: a repair that re-adds a present face leaves one row). Deletes are
    followed by flush, a compaction request and a query that must return none of the deleted ids.
    """

    def __init__(self, url: str, *, collection: str = COLLECTION, timeout: float = 10.0, index: dict | None = None):
        """``index``: {"index_type", "params"} for a new collection (None: LITE_INDEX or SERVER_INDEX); for
        benchmarks, an existing collection keeps the index it was made with."""
        self.url = url
        self.backend = backend_of(url)
        if self.backend == "faiss":
            raise InvalidInputError("MilvusVectors needs a Milvus URI or a Milvus Lite *.db path")
        self.collection = collection
        self.ef = SERVER_EF  # HNSW search breadth (recall/latency), raised to k when k is larger
        self.index = index or (LITE_INDEX if self.backend == "milvus-lite" else SERVER_INDEX)
        self.last_compaction: int | None = None
        client_class = _client_class()
        if self.backend == "milvus-lite":
            parent = Path(url).expanduser().resolve().parent
            if not parent.is_dir():
                raise StoreError(f"Milvus Lite at {url}: directory {parent} does not exist")
        self._lite_path = os.path.abspath(url) if self.backend == "milvus-lite" else None
        if self._lite_path:
            with _lite_lock:
                _lite_users[self._lite_path] += 1
        try:
            self._client = self._call("connect", lambda: client_class(url, timeout=timeout))
        except StoreError:
            if self._lite_path:
                _release_lite(self._lite_path)
            raise
        if self.backend == "milvus-lite" and Path(url).exists():
            os.chmod(url, 0o700)  # Lite creates its directory 0755; it holds faceprints
        self._dim: int | None = None
        self._model: str | None = None

    # -- plumbing -------------------------------------------------------------------------------
    @property
    def location(self) -> str:
        return redacted(self.url)

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except (StoreError, InvalidInputError):
            raise
        except Exception as exc:  # pymilvus raises MilvusException, grpc errors, OSError, ValueError...
            message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            raise StoreError(f"Milvus at {self.location}: {what} failed: {message}") from exc

    @property
    def capabilities(self) -> VectorCapabilities:
        if self.backend == "milvus-lite":
            path = Path(self.url).expanduser().resolve()
            return VectorCapabilities("milvus-lite", False, LITE_RESIDUE.format(path=path), (path,))
        job = self.last_compaction if self.last_compaction is not None else "none yet"
        return VectorCapabilities("milvus", False, SERVER_RESIDUE.format(url=self.location, job=job))

    @property
    def kind(self) -> str:
        return f"{self.backend}:{self.index['index_type'].lower()}"

    # -- collection lifecycle ---------------------------------------------------------------------
    def exists(self) -> bool:
        return bool(self._call("has_collection", lambda: self._client.has_collection(self.collection)))

    def bind(self, model_id: str, dim: int, store_id: str, *, create: bool) -> bool:
        """Check (and with ``create`` make) the collection for this model, dimension and store.

        Returns False when it does not exist and ``create`` is False. ModelMismatchError for another model or
        dimension; StoreError for another schema version or another store's collection (with the fix).
        """
        if not self.exists():
            if not create:
                return False
            self._create(model_id, dim, store_id)
        info = self._call("describe_collection", lambda: self._client.describe_collection(self.collection))
        props = info.get("properties") or {}
        version = props.get(_P_VERSION)
        if version != SCHEMA_VERSION:
            raise StoreError(
                f"Milvus at {self.location}: collection {self.collection!r} has layout version {version!r}, this "
                f"faceindex needs {SCHEMA_VERSION!r}. Drop it (pymilvus: MilvusClient.drop_collection) and run "
                "`faceindex reindex` to rebuild it from the catalog, or set vectors_collection to a new name"
            )
        held_model, held_dim = props.get(_P_MODEL), int(props.get(_P_DIM, -1))
        field_dims = [int(f["params"]["dim"]) for f in info.get("fields", []) if f.get("name") == "vector"]
        if field_dims and field_dims[0] != held_dim:
            held_dim = field_dims[0]
        if held_model != model_id or held_dim != dim:
            raise ModelMismatchError(
                f"Milvus collection {self.collection!r} at {self.location} holds {held_dim}-d faceprints of model "
                f"{held_model!r}; this store needs {dim}-d faceprints of {model_id!r}. Use another "
                "vectors_collection, or drop that collection and run `faceindex reindex`"
            )
        if props.get(_P_STORE) != store_id:
            raise StoreError(
                f"Milvus collection {self.collection!r} at {self.location} mirrors another store's catalog "
                f"(store id {props.get(_P_STORE)!r}, this one {store_id!r}); set vectors_collection to a name of "
                "its own"
            )
        self._dim, self._model = dim, model_id
        self._load()
        return True

    def _load(self) -> None:
        """Load the collection into memory for search if it is not (a new process finds it released)."""
        state = self._call("get_load_state", lambda: self._client.get_load_state(self.collection))
        if "Loaded" not in str(state.get("state", "")):
            self._call("load_collection", lambda: self._client.load_collection(self.collection))

    def _create(self, model_id: str, dim: int, store_id: str) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("face_id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        params = self._client.prepare_index_params()
        params.add_index(field_name="vector", metric_type="COSINE", **self.index)
        props = {_P_VERSION: SCHEMA_VERSION, _P_MODEL: model_id, _P_DIM: str(dim), _P_STORE: store_id}
        self._call("create_collection", lambda: self._client.create_collection(
            self.collection, schema=schema, index_params=params, consistency_level="Strong", properties=props))

    def drop(self) -> None:
        """Delete the collection (a rebuild from the catalog follows)."""
        self._call("drop_collection", lambda: self._client.drop_collection(self.collection))

    # -- writes ---------------------------------------------------------------------------------
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64).ravel()
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(ids):
            raise InvalidInputError(f"{len(ids)} ids for vectors of shape {vectors.shape}")
        if self._dim is not None and vectors.shape[1] != self._dim:
            raise InvalidInputError(f"vectors must be {self._dim}-d, got {vectors.shape[1]}-d")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.where(norms == 0, 1, norms)
        for lo in range(0, len(ids), _BATCH):
            rows = [{"face_id": int(i), "vector": v} for i, v in zip(ids[lo:lo + _BATCH], vectors[lo:lo + _BATCH],
                                                                       strict=True)]
            self._call("upsert", lambda rows=rows: self._client.upsert(self.collection, rows))

    def delete(self, ids: np.ndarray) -> int:
        """Delete, flush, request compaction, and check by query that no deleted id is still returned."""
        ids = [int(i) for i in np.asarray(ids, dtype=np.int64).ravel()]
        if not ids:
            return 0
        deleted = 0
        for lo in range(0, len(ids), _BATCH):
            chunk = ids[lo:lo + _BATCH]
            res = self._call("delete", lambda chunk=chunk: self._client.delete(self.collection, ids=chunk))
            deleted += int(res.get("delete_count", len(chunk))) if isinstance(res, dict) else len(chunk)
        self.flush()
        self.last_compaction = self._call("compact", lambda: self._client.compact(self.collection))
        left = self.present(ids)
        if left:
            raise StoreError(f"Milvus at {self.location}: {len(left)} deleted faces are still returned by a query "
                             f"(ids {sorted(left)[:5]}...); the erasure is not complete, run it again")
        return deleted

    def flush(self) -> None:
        self._call("flush", lambda: self._client.flush(self.collection))

    def close(self) -> None:
        if self._client is None:
            return
        try:
            self._client.close()
        except Exception as exc:  # closing a dead connection must not hide the caller's own error
            log.debug("closing the Milvus client failed: %s", exc)
        self._client = None
        if self._lite_path:
            _release_lite(self._lite_path)

    # -- reads ----------------------------------------------------------------------------------
    def count(self) -> int:
        return self._count("")

    def __len__(self) -> int:
        return self.count()

    def present(self, ids: list[int]) -> set[int]:
        """The given face ids that the collection still returns."""
        found: set[int] = set()
        for lo in range(0, len(ids), _BATCH):
            chunk = ids[lo:lo + _BATCH]
            rows = self._call("query", lambda chunk=chunk: self._client.query(
                self.collection, filter=f"face_id in {chunk}", output_fields=["face_id"]))
            found.update(int(r["face_id"]) for r in rows)
        return found

    def all_ids(self, upto: int = 0) -> np.ndarray:
        """Every face id held, sorted (a consistency check). Reads id ranges of _MAX_TOPK ids each up to
        ``upto`` (the catalog's top id), then on while rows remain above (Milvus Lite lacks the timestamp call
        pymilvus' query iterator needs; ranges of unique ids never hold more rows than a query may return)."""
        out: list[int] = []
        lo = 0
        while True:
            hi = lo + _MAX_TOPK
            expr = f"face_id >= {lo} and face_id < {hi}"
            rows = self._call("query", lambda expr=expr: self._client.query(
                self.collection, filter=expr, output_fields=["face_id"], limit=_MAX_TOPK))
            out.extend(int(r["face_id"]) for r in rows)
            lo = hi
            if lo > upto and not self._count(f"face_id >= {lo}"):
                break
        return np.unique(np.asarray(out, dtype=np.int64))

    def _count(self, expr: str) -> int:
        res = self._call("count", lambda: self._client.query(self.collection, filter=expr,
                                                             output_fields=["count(*)"]))
        return int(res[0]["count(*)"]) if res else 0

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if k < 1:
            raise InvalidInputError("k must be >= 1")
        k = min(k, _MAX_TOPK)
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        if len(queries) == 0:
            return scores, ids
        params: dict = {"metric_type": "COSINE"}
        if self.index["index_type"] == "HNSW":
            params["params"] = {"ef": max(self.ef, k)}
        res = self._call("search", lambda: self._client.search(
            self.collection, data=list(queries), limit=k, output_fields=["face_id"], search_params=params))
        for q, hits in enumerate(res):
            for j, hit in enumerate(hits):
                ids[q, j] = int(hit["face_id"] if "face_id" in hit else hit["id"])
                scores[q, j] = float(hit["distance"])
        return scores, ids
