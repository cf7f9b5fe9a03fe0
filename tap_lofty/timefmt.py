"""Lofty's time formats, and their conversion to RFC 3339 UTC.

Calls carry ``yyyy-MM-dd HH:mm:ss`` in UTC (documented); leads have been seen with
``2026-03-01T15:00:00GMT``; some endpoints use ISO 8601 with an offset or epoch
milliseconds. All of them are read; anything else is an error, never a guess.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

UTC = dt.timezone.utc
#: Lofty's documented call time format, ``yyyy-MM-dd HH:mm:ss`` in UTC. Fixed width,
#: so two such strings compare like the times they hold.
LOFTY_UTC = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
LOFTY_UTC_FORMAT = "%Y-%m-%d %H:%M:%S"


def parse_lofty_time(value: str) -> dt.datetime | None:
    """Parse one of Lofty's time strings into an aware UTC datetime, or None."""
    text = value.strip()
    if not text:
        return None
    if text.endswith(("GMT", "UTC")):
        text = text[:-3].rstrip()
    if text.endswith(("Z", "z")):
        text = text[:-1]
    if text.isdigit() and len(text) >= 12:  # epoch milliseconds
        # Before fromisoformat: Python 3.11 reads many 13-digit strings as a compact ISO
        # date and time ("1739110751000" as 1739-11-07T10:00), without an error.
        return dt.datetime.fromtimestamp(int(text) / 1000, tz=UTC)
    try:
        parsed = dt.datetime.fromisoformat(text)  # also takes "yyyy-MM-dd HH:mm:ss"
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)  # Lofty documents these times as UTC
    return parsed.astimezone(UTC)


def format_rfc3339(value: dt.datetime) -> str:
    """Format an aware datetime as RFC 3339 in UTC with a ``Z``."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class TimeFormatError(ValueError):
    """A time field held something that is not one of Lofty's time formats."""


def to_rfc3339(value: Any, field: str) -> str | None:
    """Convert a Lofty time field for output; empty values become None."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and LOFTY_UTC.fullmatch(value):
        # The common case, by string surgery: it is already UTC.
        return f"{value[:10]}T{value[11:]}Z"
    if isinstance(value, int) and not isinstance(value, bool):
        return format_rfc3339(dt.datetime.fromtimestamp(value / 1000, tz=UTC))
    parsed = parse_lofty_time(value) if isinstance(value, str) else None
    if parsed is None:
        msg = (
            f"field {field!r} holds {value!r}, which is not a time format Lofty uses "
            "('yyyy-MM-dd HH:mm:ss' UTC, ISO 8601, '...GMT' or epoch milliseconds)"
        )
        raise TimeFormatError(msg)
    return format_rfc3339(parsed)
