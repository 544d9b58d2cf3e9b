"""Walks the paths an operator declares and yields candidate files with their content hash."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from faceindex.errors import InvalidInputError
from faceindex.store.uris import BYTES_URI_PREFIX, path_to_uri, uri_to_path
from faceindex.store.uris import uri_of as _uri_of

__all__ = ["BYTES_URI_PREFIX", "Found", "SourceFile", "describe", "hash_file", "iter_files", "path_to_uri", "scan",
           "uri_to_path"]

@dataclass(frozen=True)
class SourceFile:
    """A declared file: where it is (its provenance) and what it holds (sha256 of the bytes)."""

    path: Path
    uri: str
    size: int
    sha256: str | None
    error: str | None = None


@dataclass(frozen=True)
class Found:
    """A file the walk found: to be hashed and analysed, or (error set) recorded as skipped with that reason."""

    path: Path
    uri: str
    error: str | None = None


def scan(paths: Iterable[str | os.PathLike]) -> Iterator[Found]:
    """Every regular file under the given files/folders, sorted, hidden names skipped; missing paths raise
    InvalidInputError.

    Symbolic links inside a declared folder are followed when their target lies inside a declared path
    (a link tree within the archive, loop-safe: each real folder is walked once and each real file taken
    once). A link leading outside every declared path is not followed but reported as skipped with its
    reason: the declared paths are the boundary of what is indexed (the service only lets curators declare
    allowed folders), and the operator can declare the target to include it.
    """
    roots = [Path(raw) for raw in paths]
    for root in roots:
        if not root.exists():
            raise InvalidInputError(f"no such file or folder: {os.fsdecode(root)!r}")
    boundary = [r.resolve() for r in roots]
    seen_dirs: set[Path] = set()
    seen_files: set[Path] = set()
    for root in roots:
        if root.is_file():
            real = root.resolve()
            if real not in seen_files:
                seen_files.add(real)
                yield Found(root, _uri_of(real))
            continue
        if not root.is_dir():  # a FIFO, socket or device: never read (it could block or never end)
            yield Found(root, _uri_of(root.absolute()), "not a regular file")
            continue
        yield from _walk(root, boundary, seen_dirs, seen_files)


def _walk(folder: Path, boundary: list[Path], seen_dirs: set[Path], seen_files: set[Path]) -> Iterator[Found]:
    real = folder.resolve()
    if real in seen_dirs:
        return
    seen_dirs.add(real)
    try:
        entries = sorted(os.scandir(folder), key=lambda e: os.fsencode(e.name))
    except OSError as exc:
        yield Found(folder, _uri_of(folder.absolute()), f"unreadable folder: {exc.strerror or exc}")
        return
    files, dirs = [], []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        try:
            is_link = entry.is_symlink()
            is_dir = entry.is_dir()  # follows a link
            is_file = entry.is_file()
        except OSError:
            continue
        here = real / entry.name  # where the entry itself is (a link's own place, not its target's)
        if is_link:
            if not path.exists():
                files.append(Found(path, _uri_of(here), "broken symbolic link"))
                continue
            target = path.resolve()
            if not any(target == b or b in target.parents for b in boundary):
                what = "folder" if is_dir else "file"
                files.append(Found(path, _uri_of(here), f"symbolic link to a {what} outside the declared folders: "
                                   "not followed (declare its target to index it)"))
                continue
        if is_dir:
            dirs.append(path)
        elif not is_file:  # a FIFO, socket or device: never read (it could block or never end)
            files.append(Found(path, _uri_of(here), "not a regular file"))
        else:
            target = path.resolve() if is_link else here  # no resolve() syscalls for plain files
            if target not in seen_files:
                seen_files.add(target)
                files.append(Found(path, _uri_of(target)))
    yield from files
    for sub in dirs:
        yield from _walk(sub, boundary, seen_dirs, seen_files)


def iter_files(paths: Iterable[str | os.PathLike]) -> Iterator[Path]:
    """The files of `scan` that can be read (skipped links left out). Missing paths raise InvalidInputError."""
    return (found.path for found in scan(paths) if found.error is None)


def hash_file(path: Path, chunk: int = 1 << 20) -> tuple[int, str]:
    """(size in bytes, sha256 hex) of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def describe(found: Found | Path) -> SourceFile:
    """Hash one file; an unreadable file (or a skipped link) becomes a SourceFile with an error instead of raising."""
    if not isinstance(found, Found):
        found = Found(found, path_to_uri(found))
    if found.error:
        return SourceFile(found.path, found.uri, 0, None, found.error)
    try:
        size, sha = hash_file(found.path)
    except OSError as exc:
        return SourceFile(found.path, found.uri, 0, None, f"unreadable: {exc.strerror or exc}")
    return SourceFile(found.path, found.uri, size, sha)
