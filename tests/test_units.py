"""Unit tests of the parts that need no server: budget, reset parsing, paging rules, times."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from typing import Any

import pytest

from tap_lofty.client import ClientStats
from tap_lofty.pagination import (
    HistoryPageSize,
    PaginationError,
    scroll_leads,
    to_id,
    walk_history,
)
from tap_lofty.progress import Progress
from tap_lofty.ratelimit import RESET_MARGIN_S, RequestBudget, seconds_until_reset
from tap_lofty.state import LeadHistoryBookmark, StateError
from tap_lofty.timefmt import TimeFormatError, parse_lofty_time, to_rfc3339

NOW = 1_790_000_000.0


class FakeClock:
    def __init__(self) -> None:
        self.now = NOW
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (str(int(NOW) + 30), 30.0),  # epoch seconds, as documented
        (str(int(NOW * 1000) + 12_000), 12.0),  # epoch milliseconds
        ("21000", 21.0),  # Lofty's own example: milliseconds to wait
        ("7", 7.0),  # seconds to wait
        (str(int(NOW) + 3600), 60.0 + RESET_MARGIN_S),  # capped at one window
        (str(int(NOW) - 50), 0.0),  # already past
        ("soon", None),
        (None, None),
    ],
)
def test_reset_header_is_read_defensively(raw, expected):
    assert seconds_until_reset(raw, now=NOW) == expected


def test_budget_never_exceeds_its_window_and_waits_for_reset():
    clock = FakeClock()
    budget = RequestBudget(3, 60.0, clock=clock.time, sleep=clock.sleep)
    sent = []
    for _ in range(7):
        budget.acquire()
        sent.append(clock.now)
    assert sent == [NOW] * 3 + [NOW + 60] * 3 + [NOW + 120]
    assert budget.requests_sent == 7
    assert budget.longest_wait_s == 60.0
    assert budget.held_s() == 120.0


def test_held_time_counts_threads_waiting_together_once():
    budget = RequestBudget(2, 0.5)
    budget.acquire()
    budget.acquire()  # the window is used up: the next two wait for the same reset
    waits: list[float] = []
    threads = [threading.Thread(target=lambda: waits.append(budget.acquire())) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(waits) == 2
    assert min(waits) > 0.3
    # Two threads held for ~0.5 s at the same time: ~0.5 s of wall time, not ~1 s.
    assert max(waits) <= budget.held_s() < sum(waits) * 0.8


def test_server_remaining_only_lowers_the_budget():
    clock = FakeClock()
    budget = RequestBudget(10, 60.0, clock=clock.time, sleep=clock.sleep)
    budget.acquire()
    budget.observe({"X-RateLimit-Remaining": "500"})  # never raises our own limit
    for _ in range(9):
        budget.acquire()
    assert clock.sleeps == []
    budget.acquire()
    assert clock.sleeps == [60.0]

    # The server is out of requests and resets later than our own window would.
    budget.observe({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(clock.now) + 90)})
    budget.acquire()
    assert clock.sleeps[-1] == pytest.approx(60 + 2 * RESET_MARGIN_S)  # capped, plus margin


def test_429_empties_the_budget_until_the_servers_reset():
    clock = FakeClock()
    budget = RequestBudget(100, 60.0, clock=clock.time, sleep=clock.sleep)
    budget.acquire()
    wait = budget.wait_for_reset({"X-RateLimit-Reset": str(int(NOW) + 5)})
    assert wait == pytest.approx(5 + RESET_MARGIN_S)
    budget.acquire()
    assert clock.sleeps == [pytest.approx(5 + RESET_MARGIN_S)]


class FakeClient:
    """Answers GETs from a list of canned bodies, recording the params sent."""

    def __init__(self, bodies: list[dict[str, Any]]) -> None:
        self.bodies = list(bodies)
        self.sent: list[dict[str, Any]] = []

    def get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        self.sent.append(dict(params))
        return self.bodies.pop(0)


def calls(*ids: int) -> dict[str, Any]:
    return {"calls": [{"id": i} for i in ids]}


CALLS = "/v1.0/communication/call"


def CallPageSize(limit: int) -> HistoryPageSize:  # noqa: N802
    return HistoryPageSize(CALLS, "calls_page_size", limit)


def walk_calls(client: Any, lead_id: int, after: int, size: HistoryPageSize) -> Any:
    return walk_history(client, CALLS, "calls", lead_id=lead_id, after_id=after, page_size=size)


def CallsBookmark(state: dict[str, Any], **kwargs: Any) -> LeadHistoryBookmark:  # noqa: N802
    return LeadHistoryBookmark(state, "calls", **kwargs)


def test_cursor_walk_exclusive_reading():
    client = FakeClient([calls(5, 6, 7), calls(8, 9, 10), calls(11)])
    pages = list(walk_calls(client, 42, 1, CallPageSize(3)))  # type: ignore[arg-type]
    assert [[c["id"] for c in page] for page in pages] == [[5, 6, 7], [8, 9, 10], [11]]
    assert [p["currentId"] for p in client.sent] == [1, 7, 10]


def test_cursor_walk_inclusive_reading_drops_the_repeated_row():
    client = FakeClient([calls(5, 6, 7), calls(7, 8, 9), calls(9, 10)])
    ids = [c["id"] for page in walk_calls(client, 42, 1, CallPageSize(3)) for c in page]  # type: ignore[arg-type]
    assert ids == [5, 6, 7, 8, 9, 10]


def read_ids(client: FakeClient, size: CallPageSize, after: int = 1) -> list[int]:
    return [c["id"] for page in walk_calls(client, 1, after, size) for c in page]  # type: ignore[arg-type]


def test_short_page_ends_only_when_shorter_than_a_page_lofty_served():
    size = CallPageSize(1000)
    for _ in range(HistoryPageSize.CHECKS):  # 3 < 1000, but is 3 Lofty's cap? Ask, 3 times.
        first = FakeClient([calls(5, 6, 7), calls()])
        assert read_ids(first, size) == [5, 6, 7]
        assert [p["currentId"] for p in first.sent] == [1, 7]
    trusted = FakeClient([calls(5, 6, 7)])
    assert read_ids(trusted, size) == [5, 6, 7]
    shorter = FakeClient([calls(8, 9)])  # 2 < 3, a length Lofty served: surely the end
    assert read_ids(shorter, size) == [8, 9]
    assert len(trusted.sent) == len(shorter.sent) == 1
    longer = FakeClient([calls(8, 9, 10, 11), calls()])  # a new longest page: ask again
    assert read_ids(longer, size) == [8, 9, 10, 11]
    assert len(longer.sent) == 2


def test_silently_capped_pages_are_detected_and_nothing_is_lost(caplog):
    size = CallPageSize(1000)
    capped = FakeClient([calls(2, 3, 4), calls(5, 6, 7), calls(8, 9, 10), calls(11)])
    with caplog.at_level(logging.WARNING, logger="tap_lofty"):
        ids = read_ids(capped, size)
    assert ids == list(range(2, 12))
    assert [p["currentId"] for p in capped.sent] == [1, 4, 7, 10]
    assert size.full == 3
    assert "Lofty serves at most 3 per page, not calls_page_size=1000" in caplog.text
    # Later leads page by 3 without asking twice; an inclusive cursor works too.
    inclusive = FakeClient([calls(20, 21, 22), calls(22, 23, 24), calls(24, 25)])
    assert read_ids(inclusive, size, after=19) == [20, 21, 22, 23, 24, 25]
    assert len(inclusive.sent) == 3


def test_cursor_walk_stops_on_ids_not_ascending():
    client = FakeClient([calls(5, 9, 7)])
    with pytest.raises(PaginationError, match="returned id 7 after 9"):
        list(walk_calls(client, 42, 1, CallPageSize(3)))  # type: ignore[arg-type]


def test_cursor_walk_stops_on_ids_below_the_cursor():
    client = FakeClient([calls(3, 4)])
    with pytest.raises(PaginationError, match="currentId=10 returned id 3"):
        list(walk_calls(client, 42, 10, CallPageSize(3)))  # type: ignore[arg-type]


def test_cursor_walk_stops_when_the_cursor_does_not_advance():
    client = FakeClient([calls(5, 6), calls(6, 6)])
    with pytest.raises(PaginationError):
        list(walk_calls(client, 42, 1, CallPageSize(2)))  # type: ignore[arg-type]


def test_call_id_sent_as_a_string_is_exact_and_float_is_refused():
    client = FakeClient([{"calls": [{"id": "9007199254740993"}]}, calls()])
    (page,) = walk_calls(client, 1, 1, CallPageSize(10))  # type: ignore[arg-type]
    assert page[0]["id"] == 9007199254740993
    with pytest.raises(PaginationError, match="expects a 64-bit integer id"):
        to_id(9.007199254740993e15, "a call id")


def test_scroll_ends_on_missing_scroll_id_and_accepts_get_metadata():
    client = FakeClient(
        [
            {
                "get_metadata": {"total": 3, "scrollId": "a"},
                "leads": [{"leadId": 1}, {"leadId": 2}],
            },
            {"get_metadata": {"total": 3}, "leads": [{"leadId": 3}]},
        ]
    )
    pages = list(scroll_leads(client, 2))  # type: ignore[arg-type]
    assert [[lead["leadId"] for lead in p.leads] for p in pages] == [[1, 2], [3]]
    assert pages[0].total == 3
    assert client.sent[1]["scrollId"] == "a"


def test_scroll_dedupes_and_refuses_a_stuck_scroll():
    client = FakeClient(
        [
            {"_metadata": {"scrollId": "a"}, "leads": [{"leadId": 1}, {"leadId": 2}]},
            {"_metadata": {"scrollId": "a"}, "leads": [{"leadId": 2}, {"leadId": 3}]},
            {"_metadata": {"scrollId": "a"}, "leads": [{"leadId": 3}]},
        ]
    )
    it = scroll_leads(client, 2)  # type: ignore[arg-type]
    assert [lead["leadId"] for lead in next(it).leads] == [1, 2]
    assert [lead["leadId"] for lead in next(it).leads] == [3]
    with pytest.raises(PaginationError, match="not advancing"):
        next(it)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-04-22 10:15:00", "2026-04-22T10:15:00Z"),
        ("2026-03-01T15:00:00GMT", "2026-03-01T15:00:00Z"),
        ("2026-03-01T17:00:00+02:00", "2026-03-01T15:00:00Z"),
        ("2026-03-01T15:00:00Z", "2026-03-01T15:00:00Z"),
        (1_772_377_200_000, "2026-03-01T15:00:00Z"),
        ("1772377200000", "2026-03-01T15:00:00Z"),  # epoch ms as a string
        # Python reads these digits as a compact ISO date (1739-11-07T10:00) if asked first
        ("1739110751000", "2025-02-09T14:19:11Z"),
        ("", None),
        (None, None),
    ],
)
def test_times_become_rfc3339_utc(raw, expected):
    assert to_rfc3339(raw, "t") == expected


def test_unknown_time_format_fails_clearly():
    with pytest.raises(TimeFormatError, match="'createTime' holds 'yesterday'"):
        to_rfc3339("yesterday", "createTime")


def lead(created: str, lead_id: int = 1) -> dict[str, Any]:
    return {"leadId": lead_id, "createTime": created}


def test_bookmark_promotes_only_calls_created_before_the_cutoff():
    now = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.timezone.utc)
    state: dict[str, Any] = {"replication_key_value": 100}
    bookmark = CallsBookmark(state, now=now)
    assert bookmark.start_after == 100
    bookmark.observe({"id": 150, "createTime": "2026-11-28 11:00:00"})
    bookmark.observe({"id": 900, "createTime": "2026-11-28 11:59:00"})  # during the run
    bookmark.observe({"id": 950})  # no createTime: cannot advance the bookmark
    assert bookmark.max_id == 150
    bookmark.finish()
    assert state == {
        "replication_key": "id",
        "replication_key_value": 150,
        # where the next feed window starts (the overlap, 60 min, before this run), and
        # the full scan this run was
        "feedFrom": "2026-11-28T11:00:00Z",
        "lastFullScan": "2026-11-28T11:50:00Z",
        "fullScanBookmark": 150,
    }


def test_bookmark_cutoff_boundary_in_every_time_format():
    # The cut-off is 11:50:00.5 (10 min before 12:00:00.5): the documented format is
    # compared as text to the second, so its own second counts as after (re-read).
    now = dt.datetime(2026, 11, 28, 12, 0, 0, 500_000, tzinfo=dt.timezone.utc)
    bookmark = CallsBookmark({}, now=now)
    bookmark.observe({"id": 10, "createTime": "2026-11-28 11:49:59"})
    bookmark.observe({"id": 20, "createTime": "2026-11-28 11:50:00"})
    assert bookmark.max_id == 10
    bookmark.observe({"id": 11, "createTime": "2026-11-28T11:50:00.400Z"})  # ISO, before
    assert bookmark.max_id == 11
    bookmark.observe({"id": 30, "createTime": "2026-11-28T06:50:01-05:00"})  # after
    bookmark.observe({"id": 31, "createTime": "garbage"})
    assert bookmark.max_id == 11
    bookmark.observe({"id": 12, "createTime": "2026-11-28T11:49:00GMT"})
    assert bookmark.max_id == 12


def month(n: int) -> str:
    return f"2026-{n:02d}-01T00:00:00GMT"


def interrupted_run(listing: list[dict[str, Any]], done: int) -> dict[str, Any]:
    """Run a bookmark over ``listing`` (all listed up front), finishing ``done`` leads."""
    now = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.timezone.utc)
    state: dict[str, Any] = {"replication_key_value": 100}
    bookmark = CallsBookmark(state, now=now)
    for item in listing:
        bookmark.lead_listed(item)
    bookmark.observe({"id": 150, "createTime": "2026-11-28 11:00:00"})
    for item in listing[:done]:
        bookmark.lead_done(item)
    return json.loads(json.dumps(state))  # what a STATE message carries


def resume(state: dict[str, Any], listing: list[dict[str, Any]]) -> tuple[set[int], list[int]]:
    """Resume from ``state`` over ``listing``: (leads read at once, leads read after listing)."""
    bookmark = CallsBookmark(state, now=dt.datetime(2026, 11, 28, 15, 0, tzinfo=dt.timezone.utc))
    read = [item for item in listing if bookmark.should_sync_lead(item)]
    for item in read:
        bookmark.lead_listed(item)
    for item in read:  # the resumed run reads its leads before the listing ends
        bookmark.lead_done(item)
    return {item["leadId"] for item in read}, bookmark.leads_to_reread()


ASCENDING = [lead(month(m), lead_id=m) for m in range(1, 11)]


def test_resume_skips_the_leads_an_oldest_first_listing_proved_done():
    state = interrupted_run(ASCENDING, done=4)
    resume_marker = state["resume"]
    # Leads 1-4 done; the oldest lead listed but not done is 5.
    assert resume_marker["leadsCreatedBefore"] == "2026-05-01T00:00:00Z"
    assert resume_marker["leadsDone"] == 4
    read, reread = resume(state, ASCENDING)
    assert read == {5, 6, 7, 8, 9, 10}
    assert reread == []


def test_resume_after_the_first_lead_of_a_newest_first_listing_loses_nothing():
    # The data loss of issue 10: newest first, killed after the first lead.
    newest_first = ASCENDING[::-1]
    state = interrupted_run(newest_first, done=1)
    assert state["resume"].get("leadsDone", 0) == 0  # nothing proven: the rest is older
    read, reread = resume(state, newest_first)
    assert read | set(reread) == set(range(1, 11))


@pytest.mark.parametrize("done", [0, 1, 2, 5, 9, 10])
@pytest.mark.parametrize("order", ["ascending", "newest_first", "shuffled", "interleaved"])
def test_resume_reads_every_lead_not_done_whatever_the_order(order, done):
    import random

    listing = {
        "ascending": ASCENDING,
        "newest_first": ASCENDING[::-1],
        "shuffled": random.Random(done).sample(ASCENDING, len(ASCENDING)),
        "interleaved": ASCENDING[::2] + ASCENDING[1::2],
    }[order]
    state = interrupted_run(listing, done)
    done_ids = {item["leadId"] for item in listing[:done]}
    # The resumed run may list in another order, and a lead may have been added meanwhile.
    relisted = [*random.Random(7).sample(listing, len(listing)), lead(month(1), lead_id=99)]
    read, reread = resume(state, relisted)
    assert read | set(reread) >= {item["leadId"] for item in relisted} - done_ids
    if not reread:
        assert read >= {item["leadId"] for item in relisted} - done_ids


def test_resume_rereads_when_a_lead_older_than_the_marker_appeared():
    state = interrupted_run(ASCENDING, done=4)
    newcomer = lead(month(2), lead_id=77)  # created before the marker, joined since
    read, reread = resume(state, [*ASCENDING, newcomer])
    assert 77 not in read
    assert sorted(reread) == [1, 2, 3, 4, 77]  # the skipped leads, all read after all


def test_resumed_run_interrupted_again_keeps_only_proven_leads():
    state = interrupted_run(ASCENDING, done=3)
    second = CallsBookmark(state)
    for item in ASCENDING:
        if second.should_sync_lead(item):
            second.lead_listed(item)
    for item in ASCENDING[3:6]:
        second.lead_done(item)
    third_state = json.loads(json.dumps(state))
    assert third_state["resume"]["leadsDone"] == 6
    read, reread = resume(third_state, ASCENDING)
    assert read == {7, 8, 9, 10}
    assert reread == []


def test_resume_marker_in_state_is_checked():
    state = interrupted_run(ASCENDING, done=4)
    state["resume"]["leadsDoneHash"] = "not hex"
    with pytest.raises(StateError, match="leadsDoneHash"):
        CallsBookmark(state)


def test_bad_bookmark_in_state_is_a_clear_error():
    with pytest.raises(StateError, match="must be an integer id"):
        CallsBookmark({"replication_key_value": "2024-01-01T00:00:00Z"})


def test_parse_lofty_time_handles_naive_as_utc():
    assert parse_lofty_time("2026-04-22 10:15:00") == dt.datetime(
        2026, 4, 22, 10, 15, tzinfo=dt.timezone.utc
    )


def test_progress_lines_every_interval_and_summary(caplog):
    clock = FakeClock()
    stats = ClientStats(requests=0)
    budget = RequestBudget(100, 60.0, clock=clock.time, sleep=clock.sleep)
    progress = Progress(stats, budget, clock=clock.time, interval_s=10.0)
    progress.leads_total = 40
    with caplog.at_level(logging.INFO, logger="tap_lofty"):
        for _ in range(10):  # 10 leads, 3 calls and 2 requests each, one every 2.5 s
            clock.now += 2.5
            stats.requests += 2
            progress.lead_finished("calls", 3)
        progress.lead_skipped(77)
        summary = progress.summary()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "Progress: leads 4/40, calls 12, requests 8 (48/min), rate-limit wait 0.0 s, "
        "retries 0, elapsed 10s, ETA 1m30s",
        "Progress: leads 8/40, calls 24, requests 16 (48/min), rate-limit wait 0.0 s, "
        "retries 0, elapsed 20s, ETA 1m20s",
    ]
    assert summary == (
        "Sync finished: leads 10/40, calls 30, requests 20 (48/min), rate-limit wait 0.0 s, "
        "retries 0, elapsed 25s, longest rate-limit wait 0.0 s, 429s 0; "
        "1 lead(s) gone before their records were read: 77"
    )
