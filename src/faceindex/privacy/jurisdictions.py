"""Jurisdiction tags as ISO 3166 codes: countries (DE) and their subdivisions (US-IL), checked against pycountry.

A tag decides which erasure by jurisdiction and which retention rule (BIPA for US-IL) reach a collection,
so a tag that is not a code ("GERMANY") would be missed by `forget --jurisdiction DE` without a word:
tags are validated when collections and subjects are created, and erasure plans name the collections of
older stores that still carry unrecognised tags.
"""

from __future__ import annotations

from collections.abc import Iterable

import pycountry

from faceindex.errors import InvalidInputError

FORMAT = ("an ISO 3166-1 alpha-2 country code (DE, FR, CA) or an ISO 3166-2 subdivision code "
          "(US-IL, CA-QC, DE-BY)")


def is_code(tag: str) -> bool:
    """Whether `tag` (already upper-case) is an assigned ISO 3166-1 alpha-2 or ISO 3166-2 code."""
    if len(tag) == 2 and tag.isalpha():
        return pycountry.countries.get(alpha_2=tag) is not None
    if "-" in tag:
        return pycountry.subdivisions.get(code=tag) is not None
    return False


def jurisdiction_code(code: str) -> str:
    """The normalised code ("de" -> "DE", " us-il " -> "US-IL"); InvalidInputError naming the format if it is none."""
    value = str(code).strip().upper()
    if not is_code(value):
        hint = ""
        country = pycountry.countries.get(name=str(code).strip()) if value.isalpha() and len(value) > 3 else None
        if country is not None:
            hint = f" (did you mean {country.alpha_2}?)"
        raise InvalidInputError(f"not an ISO 3166 code: {code!r}{hint}; a jurisdiction is {FORMAT}")
    return value


def jurisdiction_codes(codes: Iterable[str]) -> tuple[str, ...]:
    """Every code normalised, sorted and without duplicates (empty strings ignored)."""
    return tuple(sorted({jurisdiction_code(c) for c in codes if str(c).strip()}))


def unrecognised(tags: Iterable[str]) -> list[str]:
    """The stored tags that are not ISO 3166 codes (left by a version that did not validate them)."""
    return [t for t in tags if not is_code(t.strip().upper())]


def covers(query: str, tag: str) -> bool:
    """A country code covers its subdivisions (US covers US-IL); a subdivision covers only itself."""
    return tag == query or tag.startswith(query + "-")
