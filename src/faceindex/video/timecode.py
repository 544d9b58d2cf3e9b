"""Timecodes as people read them: `HH:MM:SS.mmm` from seconds, and back."""

from __future__ import annotations

import re

from faceindex.errors import InvalidInputError

_TIMECODE = re.compile(r"^(\d+):([0-5]\d):([0-5]\d)(?:\.(\d{1,3}))?$")


def timecode(seconds: float) -> str:
    """`HH:MM:SS.mmm` (hours not capped at 24; rounded to the millisecond; negative input is 0)."""
    ms = max(0, round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{ms:03d}"


def parse_timecode(text: str) -> float:
    """Seconds of a `H:MM:SS[.mmm]` timecode; InvalidInputError names the expected format."""
    match = _TIMECODE.match(text.strip())
    if match is None:
        raise InvalidInputError(f"not a timecode: {text!r} (expected HH:MM:SS.mmm)")
    hours, minutes, secs, frac = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + int(secs) + (int(frac.ljust(3, "0")) / 1000 if frac else 0.0)
