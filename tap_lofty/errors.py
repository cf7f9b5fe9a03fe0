"""The tap's user-facing error type, and a URL form fit for messages (shared by client and auth)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


class LoftyError(Exception):
    """A failure the user has to act on; ``str()`` is one paragraph saying what to do."""


def safe_url(url: str) -> str:
    """``url`` without a user:password part or a query, fit for a message or a log line."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
