"""Change detection: which leads had calls, texts or emails in a time window.

Lofty's one team-wide, time-windowed source is ``GET /v2.0/communication/agent``
(api-notes §12). The tap pages it with ``teamView=true`` (``false`` covers only the
caller, so it would miss other agents' leads), ``limit=1000``, in windows of at most
90 days (both ends inclusive, epoch milliseconds), following ``nextCursor`` until it is
null. It uses only the items' ``leadId`` and ``eventType``: the item ``id`` is not
documented to be the call/text/email id, so the per-lead endpoints stay the source of
the records.

When Lofty refuses the feed (400 for the ``teamView`` permission, 403 code 200100 for
the app scope, 404/405 where the endpoint does not exist), :class:`FeedUnavailableError`
says what is missing; the caller decides whether to fall back to a full scan.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tap_lofty.client import NO_PERMISSION, LoftyAPIError, LoftyClient, LoftyError
from tap_lofty.pagination import PaginationError, records_of, to_id

LOGGER = logging.getLogger("tap_lofty")

FEED_PATH = "/v2.0/communication/agent"
#: Lofty's limit on ``endTime - startTime``.
MAX_WINDOW = dt.timedelta(days=90)
FEED_PAGE_SIZE = 1000
#: How often one window restarts after Lofty refuses its cursor before the run fails.
CURSOR_RESTARTS = 3
#: ``eventType`` values (api-notes §12) and the ``type`` they belong to.
EVENT_TYPES = {
    "call": "CALL",
    "text": "TEXT",
    "sent email": "EMAIL",
    "opened email": "EMAIL",
    "bounced email": "EMAIL",
}


class FeedUnavailableError(LoftyError):
    """Lofty refused the feed; ``missing`` names the permission, scope or endpoint."""

    def __init__(self, message: str, *, missing: str) -> None:
        super().__init__(message)
        self.missing = missing


@dataclass
class FeedResult:
    """The leads with communications in the windows read, by ``type``."""

    leads: dict[str, set[int]] = field(default_factory=dict)
    requests: int = 0
    items: int = 0
    #: eventType values the tap does not know; their leads count for every type.
    unknown_events: set[str] = field(default_factory=set)

    def leads_for(self, kind: str) -> set[int]:
        """Leads whose items are of ``kind`` (CALL, TEXT or EMAIL), or of an unknown type."""
        return self.leads.get(kind, set()) | self.leads.get("?", set())


def windows(start: dt.datetime, end: dt.datetime) -> list[tuple[int, int]]:
    """Split ``[start, end]`` into inclusive epoch-millisecond windows Lofty accepts."""
    first, last = _ms(start), _ms(end)
    span = int(MAX_WINDOW.total_seconds() * 1000)
    out = []
    while first <= last:
        stop = min(first + span, last)
        out.append((first, stop))
        first = stop + 1
    return out


def read_feed(
    client: LoftyClient, kinds: Iterable[str], start: dt.datetime, end: dt.datetime
) -> FeedResult:
    """Read every item of ``kinds`` (CALL, TEXT, EMAIL) from ``start`` to ``end``."""
    kinds = sorted(set(kinds))
    kind = kinds[0] if len(kinds) == 1 else "ALL"
    result = FeedResult()
    for window in windows(start, end):
        for restart in range(CURSOR_RESTARTS + 1):
            try:
                _read_window(client, kind, window, result)
                break
            except _CursorRefusedError as exc:
                if restart == CURSOR_RESTARTS:
                    msg = (
                        f"GET {FEED_PATH} refused its own nextCursor {CURSOR_RESTARTS + 1} "
                        f"times in a row ({exc}); the tap stopped rather than skip "
                        "communications. Run again, or set change_detection=full."
                    )
                    raise PaginationError(msg) from exc
                LOGGER.warning(
                    "GET %s refused the cursor it returned (%s); reading that window again.",
                    FEED_PATH,
                    exc,
                )
    return result


class _CursorRefusedError(Exception):
    pass


def _read_window(
    client: LoftyClient, kind: str, window: tuple[int, int], result: FeedResult
) -> None:
    params: dict[str, Any] = {
        "type": kind,
        "startTime": window[0],
        "endTime": window[1],
        "limit": FEED_PAGE_SIZE,
        "teamView": "true",
    }
    seen: dict[str, set[int]] = {}
    total: int | None = None
    items = 0
    cursors: set[str] = set()
    while True:
        try:
            body = client.get(FEED_PATH, params)
        except LoftyAPIError as exc:
            if "cursor" in params and exc.status == 400:
                raise _CursorRefusedError(f"HTTP 400: {exc.detail!r}") from exc
            raise _refusal(exc) from exc
        result.requests += 1
        data = records_of(body, "data", f"GET {FEED_PATH}")
        if total is None and isinstance(body.get("totalCount"), int):
            total = body["totalCount"]
        for item in data:
            lead_id = to_id(item.get("leadId"), f"leadId of a GET {FEED_PATH} item")
            event = str(item.get("eventType") or "")
            item_kind = EVENT_TYPES.get(event.strip().lower())
            if item_kind is None:
                result.unknown_events.add(event)
                item_kind = "?"
            seen.setdefault(item_kind, set()).add(lead_id)
        items += len(data)
        cursor = body.get("nextCursor")
        if cursor is None or cursor == "":
            break
        if not isinstance(cursor, str) or cursor in cursors:
            msg = (
                f"GET {FEED_PATH} returned nextCursor {cursor!r} again or in a form the tap "
                "does not know, so its paging is not advancing; the tap stopped rather than "
                "loop. Please report it; change_detection=full avoids the feed."
            )
            raise PaginationError(msg)
        cursors.add(cursor)
        params = {**params, "cursor": cursor}
    if total is not None and items < total:
        msg = (
            f"GET {FEED_PATH} announced totalCount={total} for the window "
            f"{window[0]}..{window[1]} but its pages held {items} items"
        )
        raise FeedUnavailableError(msg, missing="a complete feed (its pages fell short)")
    for item_kind, lead_ids in seen.items():
        result.leads.setdefault(item_kind, set()).update(lead_ids)
    result.items += items


def _refusal(exc: LoftyAPIError) -> LoftyError:
    said = f"HTTP {exc.status}" + (f", Lofty code {exc.code}" if exc.code is not None else "")
    said += f": {exc.detail!r}" if exc.detail else ""
    if exc.status == 403 and str(exc.code) == str(NO_PERMISSION):
        missing = (
            f"the app scope for GET {FEED_PATH} (grant it to the app in the Lofty "
            "Developer Portal; its users then authorize again)"
        )
    elif exc.status == 400:
        missing = (
            "the user permission Access All Team Leads (ACCESS_ALL_TEAM_LEADS) for the "
            "credential's user (a team owner or admin turns it on under Settings > Team > "
            "Agent > Agent Permissions)"
        )
    elif exc.status in (404, 405):
        missing = f"the endpoint GET {FEED_PATH} (this Lofty deployment does not serve it)"
    else:
        return exc
    message = f"GET {FEED_PATH} with teamView=true failed ({said})"
    return FeedUnavailableError(message, missing=missing)


def _ms(when: dt.datetime) -> int:
    return int(when.timestamp() * 1000)
