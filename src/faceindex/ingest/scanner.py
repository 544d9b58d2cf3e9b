"""Walks the paths an operator declares and yields candidate files with their content hash."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from faceindex.errors import InvalidInputError


@dataclass(frozen=True)
class SourceFile:
    """A declared file: where it is (its provenance) and what it holds (sha256 of the bytes)."""

    path: Path
    uri: str
    size: int
    sha256: str | None
    error: str | None = None


def iter_files(paths: Iterable[str | os.PathLike]) -> Iterator[Path]:
    """Every regular file under the given files/folders, sorted, hidden names skipped, symbolic links inside
    folders skipped (a link loop cannot trap the walk). Missing paths raise InvalidInputError."""
    for raw in paths:
        root = Path(raw)
        if root.is_file():
            yield root
            continue
        if not root.is_dir():
            raise InvalidInputError(f"no such file or folder: {root}")
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                path = Path(dirpath) / name
                # A link inside a declared folder could pull in a file from outside it: only files that
                # really live under the folder are taken (an operator can still name a link explicitly).
                if not name.startswith(".") and not path.is_symlink() and path.is_file():
                    yield path


def hash_file(path: Path, chunk: int = 1 << 20) -> tuple[int, str]:
    """(size in bytes, sha256 hex) of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def describe(path: Path) -> SourceFile:
    """Hash one file; an unreadable file becomes a SourceFile with an error instead of raising."""
    uri = str(path.resolve())
    try:
        size, sha = hash_file(path)
    except OSError as exc:
        return SourceFile(path, uri, 0, None, f"unreadable: {exc.strerror or exc}")
    return SourceFile(path, uri, size, sha)
