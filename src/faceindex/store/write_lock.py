"""The store's cross-process write lock (`<store>/write.lock`, fcntl.flock) and private file modes."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

from faceindex.errors import StoreBusyError, StoreError

LOCK_FILE = "write.lock"
DEFAULT_TIMEOUT_S = 120.0
"""How long a writer waits for another process's write before StoreBusyError. A transaction holds the lock for
one batch of an ingest or one erasure (seconds), so a longer wait means the other writer is stuck or huge."""

DIR_MODE = 0o700
FILE_MODE = 0o600
"""Faceprints are biometric data: the store directory and every file in it are for the owner only."""


def make_private_dir(path: Path) -> None:
    """Create `path` (and parents) with mode 0700; tighten an existing store directory that others can read."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)  # parents get the umask default, only the leaf 0700
        if path.stat().st_mode & 0o077:
            os.chmod(path, DIR_MODE)
    except OSError as exc:
        raise StoreError(f"cannot create store directory {path}: {exc}") from exc


def make_private_file(path: Path) -> None:
    """Create `path` empty with mode 0600 when missing; remove group/other bits from an existing one.

    SQLite creates `-wal` and `-shm` with the database file's mode, so a 0600 catalog keeps them 0600 too.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, FILE_MODE)
        try:
            if os.fstat(fd).st_mode & 0o077:
                os.fchmod(fd, FILE_MODE)
        finally:
            os.close(fd)
    except OSError as exc:
        raise StoreError(f"cannot create {path}: {exc}") from exc


class StoreWriteLock:
    """One writer at a time across processes (flock on `<store>/write.lock`), re-entrant within a thread.

    Threads of one process are serialised by an RLock first, so the flock is taken once per outermost
    `hold()`; the file descriptor stays open for the object's life. flock locks die with their process, so
    a writer killed by -9 never leaves the store locked. Waiting polls every 50 ms up to `timeout` seconds,
    then raises StoreBusyError (a second `faceindex add` waits for the first one's transaction, it does not
    fail with "database is locked").
    """

    def __init__(self, root: Path, timeout: float = DEFAULT_TIMEOUT_S):
        self.path = Path(root) / LOCK_FILE
        self.timeout = timeout
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._owner: int | None = None
        self._fd: int | None = None

    @property
    def held_by_me(self) -> bool:
        """True when the calling thread holds the lock (inside `hold()`)."""
        return self._owner == threading.get_ident()

    def acquire(self) -> None:
        if not self._thread_lock.acquire(timeout=self.timeout):
            raise StoreBusyError(f"another thread has been writing to the store at {self.path.parent} for "
                                 f"{self.timeout:.0f} s; try again when it has finished")
        try:
            if self._depth == 0:
                self._flock()
        except BaseException:
            self._thread_lock.release()
            raise
        self._depth += 1
        self._owner = threading.get_ident()

    def release(self) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._owner = None
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._thread_lock.release()

    def __enter__(self) -> StoreWriteLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def _flock(self) -> None:
        if self._fd is None:
            make_private_file(self.path)
            self._fd = os.open(self.path, os.O_RDWR)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StoreBusyError(
                        f"another faceindex process has been writing to the store at {self.path.parent} for "
                        f"{self.timeout:.0f} s; try again when it has finished") from None
                time.sleep(0.05)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # also releases a flock still held
            self._fd = None
