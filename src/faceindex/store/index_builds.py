"""Index rebuilds of a FaceStore that stop neither searches nor writers: snapshot builds, dropped on deletions."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from faceindex.store.vector_index import VectorIndex

log = logging.getLogger("faceindex.store.face_store")  # one logger for the store's index upkeep

BUILD_TRIES = 3
"""Builds without the write lock that deletions may drop before the next one holds the lock throughout."""
LOCKED_BUILD_BELOW = 20_000
"""Faces (top face id) below which a rebuild holds the write lock throughout: an exact index that small builds
in well under a second, less than the snapshot bookkeeping and a possible drop would cost."""
DROP_WAIT_S = 60.0
"""How long a deletion waits for a build of its process to drop its work file (one build checkpoint: a batch of
50 k faces read or 256 k added, or one IVF training: seconds, a minute at 10 M faces)."""


class _BuildDropped(Exception):
    """The catalog's epoch moved during a snapshot build: faces were deleted, the build may hold them."""


class IndexBuilds:
    """The rebuild methods of `FaceStore` (a mixin: it uses the store's catalog, locks and index state).

    State (set by `_init_builds`): `_build` (one snapshot build at a time in this process; never held while
    waiting for the write lock), `_builds` (builds in progress: a locked one may run beside a snapshot one),
    `_builds_done` (a Condition notified whenever a build starts or ends), `_snapshot_epoch` (the catalog epoch
    the snapshot build in progress started from), `_swaps` and `locked_build_below`.
    """

    build_hook: Callable[[VectorIndex], None] | None

    def _init_builds(self) -> None:
        self._build = threading.Lock()
        self._builds = 0
        self._builds_done = threading.Condition()
        self._snapshot_epoch: int | None = None
        self._swaps = 0  # indexes swapped in by builds (a waiting rebuild_index joins a build that swapped)
        self.locked_build_below = LOCKED_BUILD_BELOW
        """Stores with fewer faces (top face id) rebuild under the write lock: see `rebuild_index`."""

    def rebuild_index(self) -> VectorIndex:
        """Rebuild the index from the catalog's faceprints and persist it (`faceindex reindex`).

        Neither searches nor writers wait for the build (minutes at millions of faces). It is made from a
        snapshot without the store's write lock: the catalog's epoch and top face id are noted, the faceprints
        up to there are built beside the index in use (which keeps serving), and the write lock is taken only
        for the short end: faces added meanwhile are appended (the catch-up of `index()`), then the index is
        saved and swapped in. A deletion or erasure meanwhile (the epoch moved: by this process or another)
        means the build may hold erased faceprints: it is dropped — its work file zeroed and deleted, no file
        ever written from it — as soon as a checkpoint of the build sees the new epoch, and built again. After
        `BUILD_TRIES` dropped builds, or for a store under `locked_build_below` faces (an exact index builds
        in well under a second), the build holds the write lock throughout as before: it cannot be dropped.

        An index with no faces is not served meanwhile (it would answer "no match"): searches then wait for
        the build. A kill -9 mid-build leaves the saved index untouched (the next save removes the dead
        process's work file).
        """
        if self._mirror is not None:
            with self._file_lock(), self._rw.write():
                return self._mirror.rebuild()
        if self._holds_write_lock():
            return self._locked_build()  # the catalog cannot change under this caller: nothing to drop
        swaps = self._swaps
        with self._build:  # one build at a time in this process; never held while waiting for the write lock
            if self._swaps != swaps and self._index is not None:
                # A build swapped in while this call waited: it was caught up with the catalog and its epoch
                # checked at the swap, after this call began, so it is the index this call would build.
                return self._index
            fresh = None
            small = self.catalog.max_face_id() < self.locked_build_below
            for attempt in range(0 if small or not self._writes else BUILD_TRIES):
                fresh = self._snapshot_build()
                if fresh is not None:
                    return fresh
                log.info("index build %d/%d dropped: faces were deleted meanwhile", attempt + 1, BUILD_TRIES)
            if not small and self._writes:
                log.warning("index build dropped %d times by deletions; building under the write lock", BUILD_TRIES)
            return self._locked_build()

    def _holds_write_lock(self) -> bool:
        """Whether the calling thread holds the store's write lock (the catalog cannot change under it)."""
        if not self._writes:
            return False
        lock = getattr(self.catalog._db, "lock", None)
        return bool(lock is not None and lock.held_by_me)

    def _building_state(self, delta: int, snapshot_epoch: int | None = None) -> None:
        """Count builds in progress; the first one stops serving an empty index (it would answer "no match")."""
        with self._rw.write():
            self._builds += delta
            self._building = self._builds > 0
            if delta > 0 and self._index is not None and len(self._index) == 0:
                self._index = None
        with self._builds_done:
            if delta > 0 and snapshot_epoch is not None:
                self._snapshot_epoch = snapshot_epoch
            elif delta < 0 and snapshot_epoch is not None:
                self._snapshot_epoch = None
            self._builds_done.notify_all()

    def _snapshot_build(self) -> VectorIndex | None:
        """One build without the write lock; the swapped-in index, or None when a deletion dropped it."""
        epoch = self.catalog.epoch  # before the top id: a deletion between the two reads moves the epoch
        top = self.catalog.max_face_id()
        fresh = self._new_index()

        def checkpoint() -> None:
            if self.catalog.epoch != epoch:
                raise _BuildDropped

        def batches():
            for batch in self.catalog.iter_embeddings():
                checkpoint()
                yield batch

        self._building_state(+1, epoch)
        try:
            fresh.checkpoint = checkpoint
            fresh.extend(batches())  # one build sized for the snapshot (VectorIndex wipes its work file if dropped)
            fresh.checkpoint = None
            watermark = {"max_face_id": max(top, int(fresh.max_id())), "epoch": epoch}
            if self.build_hook is not None:
                self.build_hook(fresh)
            while self._append_batch(fresh, watermark, mark_dirty=False):  # faces committed during the build:
                checkpoint()  # appended without the lock first (this index is not shared yet), then the rest
            with self._file_lock():
                checkpoint()
                while self._append_batch(fresh, watermark, mark_dirty=False):
                    pass
                self._swap(fresh, watermark)
            return fresh
        except _BuildDropped:
            fresh.discard()
            return None
        except BaseException:
            fresh.discard()
            raise
        finally:
            self._building_state(-1, epoch)

    def _locked_build(self) -> VectorIndex:
        """The build as before: the write lock held throughout, so the catalog cannot change under it."""
        with self._file_lock():
            self._building_state(+1)
            try:
                watermark = {"max_face_id": 0, "epoch": self.catalog.epoch}
                fresh = self._new_index()
                top = self.catalog.max_face_id()
                try:
                    fresh.extend(self.catalog.iter_embeddings())
                    watermark["max_face_id"] = max(top, int(fresh.max_id()))
                    if self.build_hook is not None:
                        self.build_hook(fresh)
                    self._swap(fresh, watermark)
                except BaseException:
                    fresh.discard()
                    raise
            finally:
                self._building_state(-1)
        return fresh

    def _swap(self, fresh: VectorIndex, watermark: dict) -> None:
        """Save `fresh` (under the write lock) and make it the index in use."""
        if self._writes:
            self._save_as(fresh, watermark)
        with self._rw.write():
            self._index, self._watermark, self._dirty = fresh, watermark, False
            self._swaps += 1

    def _wait_for_dropped_build(self, timeout: float = DROP_WAIT_S) -> None:
        """After a deletion: wait until a build of this process that started before it has dropped its work
        file (it holds faceprints just erased; an erasure's scrub comes next and must not find them there)."""
        epoch = self.catalog.epoch
        with self._builds_done:
            # A build started at this epoch or later (a retry, or after yet another deletion) holds none of them.
            if not self._builds_done.wait_for(lambda: self._snapshot_epoch is None or self._snapshot_epoch >= epoch,
                                              timeout):
                log.warning("an index build has not dropped its work file after %.0f s", timeout)
