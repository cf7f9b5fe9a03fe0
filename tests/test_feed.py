"""Change detection through the team communications feed: runs cost what changed, lose nothing."""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

import pytest

from tap_lofty.client import LoftyAPIError, LoftyError
from tap_lofty.feed import FeedUnavailableError, read_feed, windows
from tap_lofty.pagination import PaginationError
from tests.tap_support import run_tap, sim_config

FEED = "GET /v2.0/communication/agent 200"
CALLS = "GET /v1.0/communication/call 200"
LEADS = "GET /v1.0/leads 200"
CALLS_ONLY = {"leads": False, "texts": False, "emails": False}


def catalog_selecting(config: dict[str, Any], selected: dict[str, bool]) -> dict[str, Any]:
    """The tap's catalog with streams (de)selected as given (the others stay selected)."""
    from tap_lofty.tap import TapLofty

    catalog = TapLofty(config=config, validate_config=False).catalog_dict
    for entry in catalog["streams"]:
        chosen = selected.get(entry["tap_stream_id"], True)
        for item in entry["metadata"]:
            if item["breadcrumb"] == []:
                item["metadata"]["selected"] = chosen
    return catalog


def call_ids(sim) -> set[int]:
    return {c["id"] for c in sim.all_calls()}


@pytest.fixture
def synced(make_sim):
    """A simulator with an account already loaded once (a full scan), and that run's STATE."""

    def build(**sim_kwargs: Any):
        kwargs = {
            "leads": 120,
            "seed": 31,
            "calls_per_lead_mean": 4,
            "big_leads": 0,
            "rate_limit": None,
        }
        sim = make_sim(**{**kwargs, **sim_kwargs})
        config = sim_config(sim, leads_page_size=50)
        first = run_tap(config)
        assert set(first.ids("calls")) == call_ids(sim)
        calls_state = first.final_state["bookmarks"]["calls"]
        assert {"feedFrom", "lastFullScan", "fullScanBookmark"} <= set(calls_state)
        sim.reset_counters()
        return sim, config, first.final_state

    return build


@pytest.mark.parametrize("selected", ["all", "calls_only"])
def test_incremental_run_reads_only_the_leads_the_feed_names(synced, selected):
    sim, config, state = synced()
    before = call_ids(sim)
    new = sim.append_calls(existing_leads=5, new_leads=2, calls_per_lead=3)
    texts = sim.append_messages(existing_leads=3, texts_per_lead=2, emails_per_lead=1)
    catalog = catalog_selecting(config, CALLS_ONLY) if selected == "calls_only" else None
    out = run_tap(config, state=state, catalog=catalog)
    got = set(out.ids("calls"))
    assert {c["id"] for c in new} <= got
    assert got <= call_ids(sim)
    assert not (got & before) - {c["id"] for c in sim.all_calls() if _recent(c)}
    if selected == "all":
        assert {t["id"] for t in texts["texts"]} <= set(out.ids("texts"))
        assert {e["id"] for e in texts["emails"]} <= set(out.ids("emails"))
    counters = sim.counters
    changed_leads = len({c["leadId"] for c in new})
    print(selected, {k: v for k, v in counters.items() if " 200" in k})
    assert counters[FEED] == 1  # one feed pass serves every selected stream
    if selected == "calls_only":
        assert counters.get(LEADS, 0) == 0  # the feed's leads are the parent contexts
        assert counters.get("GET /v1.0/communication/text 200", 0) == 0
    else:
        assert counters[LEADS] == 4  # 122 leads in pages of 50, and the empty page that ends it
    assert changed_leads <= counters[CALLS] <= changed_leads + 10


def _recent(call: dict[str, Any]) -> bool:
    created = dt.datetime.fromisoformat(call["createTime"].replace(" ", "T") + "+00:00")
    return created >= dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=90)


def test_a_call_started_before_a_full_scan_and_logged_after_it_is_found(synced):
    # Logged now, but started 30 minutes ago (within the 60-minute overlap): its
    # communicationTime lies before the full scan that just ran.
    sim, config, state = synced()
    late = sim.append_calls(
        existing_leads=5,
        new_leads=0,
        calls_per_lead=1,
        backdated_per_lead=1,
        backdate_days=30 / 1440,
    )
    out = run_tap(config, state=state)
    assert sim.counters[FEED] >= 1
    assert {c["id"] for c in late} <= set(out.ids("calls"))


def test_a_feed_delay_within_the_overlap_loses_nothing(synced):
    sim, config, state = synced(feed_delay_s=1.5)
    new = {c["id"] for c in sim.append_calls(existing_leads=4, new_leads=0, calls_per_lead=2)}
    second = run_tap(config, state=state)  # the feed does not show the new calls yet
    missed = new - set(second.ids("calls"))
    time.sleep(1.6)
    third = run_tap(config, state=second.final_state)
    assert missed, "the delay did not hide anything: the test tests nothing"
    assert missed <= set(third.ids("calls"))


@pytest.mark.parametrize(
    ("feed_mode", "missing"),
    [
        ("no_team_permission", "Access All Team Leads"),
        ("no_scope", "app scope"),
        ("absent", "the endpoint GET /v2.0/communication/agent"),
    ],
)
def test_a_refused_feed_falls_back_to_a_full_scan(synced, caplog, feed_mode, missing):
    sim, config, state = synced()
    sim.configure(feed_mode=feed_mode)
    new = {c["id"] for c in sim.append_calls(existing_leads=5, new_leads=1, calls_per_lead=2)}
    with caplog.at_level(logging.WARNING, logger="tap_lofty"):
        out = run_tap(config, state=state)
    assert new <= set(out.ids("calls"))
    assert sim.counters[CALLS] >= 121  # every lead, as a full scan
    warnings = [
        r.getMessage() for r in caplog.records if "reads every lead instead" in r.getMessage()
    ]
    assert len(warnings) == 1 and missing in warnings[0], warnings
    with pytest.raises(LoftyError, match="change_detection is 'feed', so the run stopped"):
        run_tap({**config, "change_detection": "feed"}, state=state)


def test_a_gap_longer_than_90_days_is_read_in_several_windows(synced):
    sim, config, state = synced()
    calls_state = state["bookmarks"]["calls"]
    calls_state["feedFrom"] = "2026-01-01T00:00:00Z"  # a long pause since the last run
    calls_state["lastFullScan"] = dt.datetime.now(dt.timezone.utc).isoformat()
    new = {c["id"] for c in sim.append_calls(existing_leads=3, new_leads=1, calls_per_lead=2)}
    out = run_tap(config, state=state)
    assert new <= set(out.ids("calls"))
    assert sim.counters[FEED] >= 4  # about 11 months in windows of at most 90 days


def test_a_back_dated_logged_call_is_missed_by_the_feed_and_loaded_by_the_next_full_scan(synced):
    sim, config, state = synced()
    new = sim.append_calls(
        existing_leads=2, new_leads=0, calls_per_lead=1, backdated_per_lead=1, backdate_days=3
    )
    backdated = {c["id"] for c in new}
    feed_run = run_tap(config, state=state)
    assert not backdated & set(feed_run.ids("calls")), "the feed showed a back-dated call"
    due = {**config, "full_scan_interval_days": 0.0001}  # 8.6 s: the last full scan is older
    full_run = run_tap(due, state=feed_run.final_state)
    assert backdated <= set(full_run.ids("calls"))
    assert sim.counters[CALLS] >= 120


class FakeFeed:
    """Pages of the feed, and the errors a client would raise, in order."""

    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.sent: list[dict[str, Any]] = []

    def get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        self.sent.append(dict(params))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def page(lead_ids: list[int], cursor: str | None, event: str = "Call", total: int = 0):
    data = [{"id": i, "leadId": i, "eventType": event} for i in lead_ids]
    return {"data": data, "nextCursor": cursor, "hasMore": cursor is not None, "totalCount": total}


START = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
END = dt.datetime(2026, 11, 2, tzinfo=dt.timezone.utc)


def bad_request(message: str = "invalid cursor") -> LoftyAPIError:
    return LoftyAPIError("refused", status=400, endpoint="feed", code=20012, detail=message)


def test_feed_windows_are_inclusive_and_at_most_90_days():
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    parts = windows(start, start + dt.timedelta(days=200))
    assert len(parts) == 3
    assert all(b - a <= 90 * 86_400_000 for a, b in parts)
    assert all(parts[i + 1][0] == parts[i][1] + 1 for i in range(len(parts) - 1))
    assert parts[0][0] == int(start.timestamp() * 1000)


def test_feed_follows_next_cursor_and_sorts_items_by_type():
    client = FakeFeed([page([1, 2], "c1", total=4), page([3], "c2"), page([], None, event="Text")])
    client.answers[1]["data"].append({"leadId": "4", "eventType": "Opened Email"})
    result = read_feed(client, ["CALL", "EMAIL"], START, END)  # type: ignore[arg-type]
    assert [p.get("cursor") for p in client.sent] == [None, "c1", "c2"]
    assert all(p["teamView"] == "true" and p["type"] == "ALL" for p in client.sent)
    assert result.leads_for("CALL") == {1, 2, 3}
    assert result.leads_for("EMAIL") == {4}


def test_feed_restarts_a_window_whose_cursor_is_refused():
    client = FakeFeed([page([1], "c1"), bad_request(), page([1], "c1"), page([2], None)])
    result = read_feed(client, ["CALL"], START, END)  # type: ignore[arg-type]
    assert result.leads_for("CALL") == {1, 2}
    assert [p.get("cursor") for p in client.sent] == [None, "c1", None, "c1"]


def test_feed_that_keeps_refusing_its_cursor_stops_the_run():
    answers: list[Any] = []
    for _ in range(4):
        answers += [page([1], "c1"), bad_request()]
    with pytest.raises(PaginationError, match="refused its own nextCursor 4 times"):
        read_feed(FakeFeed(answers), ["CALL"], START, END)  # type: ignore[arg-type]


def test_feed_whose_cursor_does_not_advance_stops_the_run():
    client = FakeFeed([page([1], "c1"), page([2], "c1")])
    with pytest.raises(PaginationError, match="not advancing"):
        read_feed(client, ["CALL"], START, END)  # type: ignore[arg-type]


def test_feed_shorter_than_its_total_count_is_not_trusted():
    client = FakeFeed([page([1, 2], None, total=5)])
    with pytest.raises(FeedUnavailableError, match="totalCount=5"):
        read_feed(client, ["CALL"], START, END)  # type: ignore[arg-type]


def test_unknown_event_types_count_for_every_stream():
    client = FakeFeed([page([7], None, event="Voicemail Drop")])
    result = read_feed(client, ["CALL", "TEXT"], START, END)  # type: ignore[arg-type]
    assert result.leads_for("CALL") == {7} == result.leads_for("TEXT")
    assert result.unknown_events == {"Voicemail Drop"}
