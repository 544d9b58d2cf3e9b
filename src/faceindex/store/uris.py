"""Provenance strings of files (the catalog's `images.uri`): lossless for names that are not valid UTF-8.

Here, below ingest and privacy, so that both the scanner (which writes provenance) and the privacy layer
(which finds, erases and reports images by path) use the one mapping without an upward import.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote_from_bytes, unquote_to_bytes

BYTES_URI_PREFIX = "fsbytes:"
"""Prefix of the provenance of a file whose name is not valid UTF-8 (a catalog stores text): the absolute
path's bytes follow, percent-encoded. Ordinary provenance is an absolute path (starts with "/" or a drive),
so the two never collide, and `uri_to_path` gives back the exact bytes."""

# Printable ASCII kept as is in a bytes uri so it stays readable; everything else (and "%") is escaped.
_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def path_to_uri(path: str | os.PathLike | bytes) -> str:
    """The provenance string of a file: its absolute real path, or a lossless `fsbytes:` form when the name
    holds bytes that are not UTF-8 (Python gives those as lone surrogates, which no catalog text can hold)."""
    return uri_of(Path(os.fsdecode(path)).resolve())


def uri_of(absolute: Path) -> str:
    """The provenance string of an absolute path as given (no link resolved)."""
    text = str(absolute)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return BYTES_URI_PREFIX + quote_from_bytes(os.fsencode(absolute), safe=_SAFE)
    return text


def uri_to_path(uri: str) -> Path:
    """The file a provenance string names (the inverse of `path_to_uri`)."""
    if uri.startswith(BYTES_URI_PREFIX):
        return Path(os.fsdecode(unquote_to_bytes(uri[len(BYTES_URI_PREFIX):])))
    return Path(uri)


def uri_candidates(ref: str | os.PathLike | bytes) -> list[str]:
    """The provenance strings a reference to a catalogued file may match, most literal first: the text as
    given (a stored uri, `fsbytes:` ones included, when it is valid UTF-8), its absolute form (links kept:
    how the scanner records a link it did not follow) and its real path. Never touches the file's content;
    a name that is not UTF-8 gives its `fsbytes:` forms instead of failing to bind as SQL text."""
    text = os.fsdecode(ref)
    forms = []
    try:
        text.encode("utf-8")
        forms.append(text)
    except UnicodeEncodeError:
        pass
    if not text.startswith(BYTES_URI_PREFIX):
        forms += [uri_of(Path(os.path.abspath(text))), path_to_uri(text)]
    return list(dict.fromkeys(forms))
