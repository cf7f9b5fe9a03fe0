"""How the tap walks Lofty's two kinds of pages, and the checks that keep it honest.

Leads use scroll pagination (``scrollId``); a lead's call history uses an id cursor
(``currentId``). Lofty documents neither end signal, so the rules below accept every
plausible reading and raise :class:`PaginationError` when the API breaks an
assumption the tap relies on, instead of silently skipping data.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tap_lofty.client import LoftyAPIError, LoftyClient, LoftyError

LOGGER = logging.getLogger("tap_lofty")

LEADS_PATH = "/v1.0/leads"
#: Lofty's docs name the metadata key ``get_metadata``; live responses use ``_metadata``.
METADATA_KEYS = ("_metadata", "get_metadata")
#: Leads are listed oldest first, so that "leads created before T" is a finished prefix.
LEADS_SORT = {"sort": "CreateTime", "desc": "false"}


class PaginationError(LoftyError):
    """The API broke an assumption the tap needs to page without losing data."""


def to_id(value: Any, what: str) -> int:
    """Return a Lofty id as an exact int; accepts ints and digit strings, never floats."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    raise PaginationError(
        f"Lofty sent {what} as {value!r} ({type(value).__name__}); the tap expects a 64-bit "
        "integer id and stopped rather than guess. Please report this response."
    )


def records_of(body: dict[str, Any], key: str, request: str) -> list[dict[str, Any]]:
    """Return the records under ``key``; a missing or null key is an empty page."""
    records = body.get(key)
    if records is None:
        return []
    if not isinstance(records, list):
        raise PaginationError(
            f"{request} returned {key!r} as {type(records).__name__}, not a list. The API has "
            "changed or api_url points at something else."
        )
    return records


@dataclass
class LeadsPage:
    """One page of the leads listing."""

    leads: list[dict[str, Any]]
    total: int | None


def scroll_leads(client: LoftyClient, page_size: int) -> Iterator[LeadsPage]:
    """Yield pages of leads, oldest first, until Lofty's scroll ends.

    The scroll ends at an empty ``leads`` page or a response without a ``scrollId``.
    The same params are resent with every ``scrollId`` since Lofty does not say
    whether a scroll remembers them. A lead seen twice is dropped; a page holding only
    leads already seen means the scroll is not advancing, which is an error.
    """
    seen: set[int] = set()
    params: dict[str, Any] = {"limit": page_size, **LEADS_SORT}
    while True:
        body = client.get(LEADS_PATH, params)
        leads = records_of(body, "leads", f"GET {LEADS_PATH}")
        metadata: dict[str, Any] = next(
            (body[k] for k in METADATA_KEYS if isinstance(body.get(k), dict)), {}
        )
        fresh = []
        for lead in leads:
            lead_id = to_id(lead.get("leadId"), "leadId")
            if lead_id in seen:
                continue
            seen.add(lead_id)
            lead["leadId"] = lead_id
            fresh.append(lead)
        if leads and not fresh:
            raise PaginationError(
                f"GET {LEADS_PATH}: a whole page repeated leads already listed, so the "
                "scroll is not advancing; the tap stopped rather than loop. Please report it."
            )
        if fresh:
            total = metadata.get("total")
            yield LeadsPage(fresh, total if isinstance(total, int) else None)
        scroll_id = metadata.get("scrollId")
        if not leads or not scroll_id:
            return
        params = {"limit": page_size, **LEADS_SORT, "scrollId": scroll_id}


class HistoryPageSize:
    """A per-lead history endpoint's real page size, learnt during a run, shared by threads.

    A page shorter than ``limit`` ends a lead's history only if Lofty really serves
    ``limit`` rows per page. Lofty documents 1..1000, but another of its endpoints
    silently serves 10 rows for a ``limit`` it does not accept, so the tap does not
    take it on trust. Lofty never serves more rows than its real cap, so a page
    shorter than the longest one seen so far is surely the last. A page as long as
    the longest seen (and shorter than ``limit``) may be a capped one, so the walk
    asks once more; if that brings new calls, Lofty caps pages at that length, and
    from then on such pages count as full (with a warning). A length is asked about
    at most :attr:`CHECKS` times: if Lofty capped pages there, every lead with more
    calls would return exactly that many, so three leads in a row having exactly that
    many is not a coincidence to expect. The cost is a few extra requests per run.
    """

    CHECKS = 3

    def __init__(self, path: str, setting: str, limit: int) -> None:
        """Start from the ``limit`` the tap sends to ``path`` (the value of ``setting``)."""
        self.path = path
        self.setting = setting
        self.limit = limit
        self.full = limit  # rows in a page that is not the last one
        self._longest = 0
        self._ends: dict[int, int] = {}  # page length -> times it proved to be a last page
        self._lock = threading.Lock()

    def is_last(self, rows: int) -> bool | None:
        """Whether a page of ``rows`` rows is a lead's last one; None when unsure."""
        with self._lock:
            longest, self._longest = self._longest, max(self._longest, rows)
            if rows >= self.full:
                return False
            if rows < longest or self._ends.get(rows, 0) >= self.CHECKS:
                return True
            return None

    def was_last(self, rows: int) -> None:
        """Record that a page of ``rows`` rows, which :meth:`is_last` was unsure of, was last."""
        with self._lock:
            self._ends[rows] = self._ends.get(rows, 0) + 1

    def capped_at(self, rows: int, lead_id: int) -> None:
        """Record that Lofty served ``rows`` rows although more calls followed."""
        with self._lock:
            if rows >= self.full:
                return
            self.full = rows
        LOGGER.warning(
            "GET %s returned %d records for leadId %s although more followed: Lofty serves "
            "at most %d per page, not %s=%d. The tap pages by %d from now on (nothing is "
            "lost); set %s to %d to save requests.",
            self.path,
            rows,
            lead_id,
            rows,
            self.setting,
            self.limit,
            rows,
            self.setting,
            rows,
        )


def walk_history(
    client: LoftyClient,
    path: str,
    key: str,
    *,
    lead_id: int,
    after_id: int,
    page_size: HistoryPageSize,
) -> Iterator[list[dict[str, Any]]]:
    """Yield a lead's records (calls, ...) with ids above ``after_id``, ascending, once each.

    Cursor mode throughout: ``currentId`` is the last id returned (``after_id``, at
    least 1, for the first page), so the tap depends neither on what ``currentId=0``
    means nor on the order of offset mode. Lofty does not say whether the cursor is
    exclusive or inclusive; both work, because a returned id equal to the cursor is
    dropped. The history ends at a page without new calls, or at a page that
    :class:`HistoryPageSize` shows to be short. Raises :class:`PaginationError` if ids
    are not ascending or a full page does not move the cursor.
    """
    cursor = max(after_id, 1)
    unsure_rows = 0  # length of the previous page if it may have been a capped one
    while True:
        params = {"leadId": lead_id, "limit": page_size.limit, "currentId": cursor}
        body = client.get(path, params)
        calls = records_of(body, key, f"GET {path} for leadId {lead_id}")
        fresh: list[dict[str, Any]] = []
        previous = cursor
        for position, call in enumerate(calls):
            call_id = to_id(call.get("id"), f"an id from GET {path}")
            if call_id == cursor and position == 0:
                continue  # an inclusive cursor repeats its own row
            if call_id <= previous:
                raise PaginationError(
                    f"GET {path} for leadId {lead_id} with currentId={cursor} returned "
                    f"id {call_id} after {previous}. The tap relies on ids ascending "
                    "from the cursor and stopped rather than skip records. Please report it."
                )
            call["id"] = call_id
            fresh.append(call)
            previous = call_id
        if not fresh:
            if calls and len(calls) >= page_size.full:
                raise PaginationError(
                    f"GET {path} for leadId {lead_id}: a full page at currentId={cursor} "
                    "brought no new record, so the cursor cannot advance. With an inclusive "
                    "cursor this happens when the page size is 1; use 2 or more."
                )
            if unsure_rows:
                page_size.was_last(unsure_rows)
            return  # nothing new: the end under any reading of the cursor
        yield fresh
        if unsure_rows:
            page_size.capped_at(unsure_rows, lead_id)
        last = page_size.is_last(len(calls))
        if last:
            return
        unsure_rows = len(calls) if last is None else 0
        cursor = previous


# ------------------------------------------------------------------------------------------
# Team-level listings (members, lead stages, lead ponds, transactions): a few pages each.

#: Lofty's "limit too large" answers: ``LIMIT_PARAM_OVERSIZE`` (members) or 20042
#: ``LIMIT_NOT_VALID`` (the other endpoints).
LIMIT_NOT_VALID = 20042
#: ``GET /v1.0/members`` answers 404 with this code when no member matches: an empty team.
USER_NOT_EXIST = 20003


def _is_limit_refusal(exc: LoftyAPIError) -> bool:
    said = f"{exc.code} {exc.detail}".upper()
    return exc.status == 400 and (str(exc.code) == str(LIMIT_NOT_VALID) or "LIMIT" in said)


def _total_of(body: dict[str, Any], total_key: str | None) -> int | None:
    """Return the listing's total: top-level ``total_key``, else the metadata's ``total``."""
    if total_key is not None:
        total = body.get(total_key)
    else:
        metadata: dict[str, Any] = next(
            (body[k] for k in METADATA_KEYS if isinstance(body.get(k), dict)), {}
        )
        total = metadata.get("total")
    return total if isinstance(total, int) and not isinstance(total, bool) else None


@dataclass
class TeamListing:
    """How one team-level endpoint pages, from its documentation.

    ``by_page``: the position parameter is a zero-based page number (``currPage``,
    ``pageNum``); otherwise it is an offset into the listing (``offset``).
    ``size``: the page size asked for; ``documented_size``: the endpoint's documented
    default, which it always accepts (the floor when it refuses a larger size).
    """

    path: str
    key: str
    id_field: str
    size_param: str
    position_param: str
    by_page: bool
    size: int
    documented_size: int
    params: dict[str, Any]
    total_key: str | None = None  # None: the metadata's ``total``

    def pages(self, client: LoftyClient) -> TeamPages:
        """Walk the listing; see :class:`TeamPages`."""
        return TeamPages(self, client)


class TeamPages:
    """Iterates a team-level listing's pages; :attr:`complete` says whether it ended cleanly.

    The listing ends at an empty page, once the rows consumed reach the total Lofty
    reports, or (no total) at a page shorter than asked. Lofty does not state every
    maximum page size (``GET /v1.0/members`` only says "too large" answers 400
    ``LIMIT_PARAM_OVERSIZE``), so a refused size is learnt at run time: the tap asks
    for the size the refusal names, else half, never below the documented default.
    A page shorter than asked while the total says more follow means a silent cap:
    page-number listings go on at that size. A page of rows all seen before is an
    error (the listing is not advancing). A listing that ends with fewer rows than its
    total is not :attr:`complete` (with a warning): no row is marked deleted after it.
    """

    def __init__(self, listing: TeamListing, client: LoftyClient) -> None:
        """Prepare to walk ``listing`` through ``client`` (nothing is requested yet)."""
        self.listing = listing
        self.client = client
        self.complete = False
        self.requests = 0
        self.size = listing.size

    def __iter__(self) -> Iterator[list[dict[str, Any]]]:
        """Yield each page's new rows (ids made exact ints, each id once)."""
        listing = self.listing
        endpoint = f"GET {listing.path}"
        seen: set[int] = set()
        position = page_no = 0
        refused: int | None = None
        while True:
            where = page_no if listing.by_page else position
            params = {
                **listing.params,
                listing.size_param: self.size,
                listing.position_param: where,
            }
            try:
                self.requests += 1
                body = self.client.get(listing.path, params)
            except LoftyAPIError as exc:
                if exc.status == 404 and str(exc.code) == str(USER_NOT_EXIST):
                    self.complete = True  # documented: no member matches (an empty team)
                    return
                # A page-number listing must keep its page size once rows came.
                can_shrink = not (listing.by_page and seen)
                if _is_limit_refusal(exc) and self.size > listing.documented_size and can_shrink:
                    refused = refused or self.size  # the size asked for first
                    self.size = _smaller_size(self.size, listing.documented_size, exc.detail)
                    continue
                raise
            if refused is not None:
                LOGGER.info(
                    "%s refused %s=%d as too large and accepted %d; the tap pages by %d.",
                    endpoint,
                    listing.size_param,
                    refused,
                    self.size,
                    self.size,
                )
                refused = None
            rows = records_of(body, listing.key, endpoint)
            total = _total_of(body, listing.total_key)
            fresh = []
            for row in rows:
                row_id = to_id(row.get(listing.id_field), f"{listing.id_field} from {endpoint}")
                row[listing.id_field] = row_id
                if row_id not in seen:
                    seen.add(row_id)
                    fresh.append(row)
            if rows and not fresh:
                raise PaginationError(
                    f"{endpoint}: the page at {listing.position_param}={where} repeated only "
                    f"rows already listed, so the listing is not advancing; the tap stopped "
                    "rather than loop. Please report it."
                )
            if fresh:
                yield fresh
            position += len(rows)
            if not rows or (total is not None and position >= total):
                self._finish(endpoint, position, total)
                return
            if len(rows) < self.size:
                if total is None:
                    self.complete = True  # a short page is the last one
                    return
                if listing.by_page:
                    # Fewer rows than asked although more follow: Lofty caps the page size
                    # silently. Page numbers count pages of that size from now on.
                    if position % len(rows):
                        raise PaginationError(
                            f"{endpoint} returned {len(rows)} rows for {listing.size_param}="
                            f"{self.size} at page {page_no} with {total} in total; the tap "
                            "cannot tell where the next page starts and stopped. Please "
                            "report it."
                        )
                    self.size = len(rows)
                    page_no = position // self.size
                    continue
            page_no += 1

    def _finish(self, endpoint: str, position: int, total: int | None) -> None:
        if total is not None and position < total:
            LOGGER.warning(
                "%s ended after %d of the %d rows it reported; the rows loaded are kept, "
                "and none of the rows missing from this listing is marked deleted.",
                endpoint,
                position,
                total,
            )
            return
        self.complete = True


def _smaller_size(size: int, floor: int, message: str) -> int:
    """Return the next page size to ask for after ``size`` was refused as too large."""
    named = [int(n) for n in re.findall(r"\d+", message) if floor <= int(n) < size]
    return max(named) if named else max(floor, size // 2)
