"""The ``texts`` and ``emails`` streams: every text and email event exactly once, incrementally."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tap_lofty.timefmt import to_rfc3339
from tests.tap_support import run_tap, sim_config
from tests.test_feed import catalog_selecting

STREAMS = {"texts": "all_texts", "emails": "all_emails"}


def truth(sim, stream: str) -> list[dict[str, Any]]:
    return getattr(sim, STREAMS[stream])()


@pytest.mark.parametrize("cursor_mode", ["exclusive", "inclusive"])
@pytest.mark.parametrize("page_cap", [None, 100])
def test_every_text_and_email_exactly_once(make_sim, cursor_mode, page_cap):
    sim = make_sim(
        leads=30,
        seed=5,
        calls_per_lead_mean=2,
        big_leads=0,
        big_text_leads=1,  # a lead with 2,000+ texts: several pages, capped or not
        cursor_mode=cursor_mode,
        calls_page_cap=page_cap,
        rate_limit=None,
    )
    out = run_tap(sim_config(sim))
    for stream in STREAMS:
        ids = out.ids(stream)
        assert len(ids) == len(set(ids)), f"{stream}: a record twice"
        assert sorted(ids) == sorted(r["id"] for r in truth(sim, stream)), stream
    assert max(len(sim.texts(i)) for i in sim.lead_ids()) > 2000


def test_texts_and_emails_keep_every_value_with_times_in_utc(make_sim):
    sim = make_sim(leads=25, seed=6, calls_per_lead_mean=1, big_leads=0, rate_limit=None)
    out = run_tap(sim_config(sim))
    for stream, time_field in (("texts", "textTime"), ("emails", "emailEventTime")):
        emitted = {r["id"]: r for r in out.records[stream]}
        epoch_ms_seen = False
        for source in truth(sim, stream):
            expected = dict(source)
            epoch_ms_seen |= str(source.get(time_field, "")).isdigit()
            expected[time_field] = to_rfc3339(source.get(time_field), time_field)
            assert emitted[source["id"]] == expected, (stream, source["id"])
        assert epoch_ms_seen, f"{stream}: no epoch-ms time in the data, the test tests less"
    contents = [r["textContent"] for r in out.records["texts"]]
    assert None in contents and any(c and not c.isascii() for c in contents)
    assert {r["eventType"] for r in out.records["emails"]} >= {"Sent", "Opened", "Bounced"}


@pytest.mark.parametrize("change_detection", ["full", "auto"])
def test_incremental_runs_read_only_new_texts_and_emails(make_sim, change_detection):
    sim = make_sim(leads=40, seed=7, calls_per_lead_mean=2, big_leads=0, rate_limit=None)
    config = sim_config(sim, change_detection=change_detection)
    first = run_tap(config)
    added = sim.append_messages(existing_leads=6, texts_per_lead=2, emails_per_lead=1)
    second = run_tap(config, state=first.final_state)
    for stream in STREAMS:
        new = {r["id"] for r in added[stream]}
        got = set(second.ids(stream))
        assert new <= got, stream
        # Only records created within the bookmark's overlap are read again.
        assert len(got - new) < len(first.ids(stream)) / 2, stream
        union = set(first.ids(stream)) | got
        assert union == {r["id"] for r in truth(sim, stream)}, stream


def test_nothing_changed_costs_the_same_with_texts_and_emails_as_calls_only(make_sim):
    sim = make_sim(leads=60, seed=8, calls_per_lead_mean=2, big_leads=0, rate_limit=None)
    config = sim_config(sim)
    # The team-level streams cost the same few requests in every run: left out here.
    team = {"members": False, "lead_stages": False, "ponds": False, "transactions": False}
    calls_only = catalog_selecting(
        config, {"leads": False, "texts": False, "emails": False, **team}
    )
    children = catalog_selecting(config, {"leads": False, **team})
    costs = {}
    for name, catalog in (("calls only", calls_only), ("calls+texts+emails", children)):
        first = run_tap(config, catalog=catalog)
        sim.reset_counters()
        run_tap(config, state=first.final_state, catalog=catalog)
        costs[name] = dict(sim.counters)
    print(costs)
    assert costs["calls only"] == costs["calls+texts+emails"]
    assert costs["calls only"] == {"GET /v2.0/communication/agent 200": 1}


def test_an_app_without_the_texts_scope_skips_texts_and_goes_on(make_sim, caplog):
    sim = make_sim(leads=20, seed=9, calls_per_lead_mean=2, big_leads=0, rate_limit=None)
    sim.configure(missing_scopes=["texts"])
    with caplog.at_level(logging.WARNING, logger="tap_lofty"):
        out = run_tap(sim_config(sim))
    assert "texts" not in out.records
    assert sorted(out.ids("calls")) == sorted(c["id"] for c in sim.all_calls())
    assert sorted(out.ids("emails")) == sorted(e["id"] for e in sim.all_emails())
    skipped = [r.getMessage() for r in caplog.records if "lacks the scope" in r.getMessage()]
    assert len(skipped) == 1 and "GET /v1.0/communication/text" in skipped[0], skipped
    assert "texts" not in out.final_state["bookmarks"] or (
        "replication_key_value" not in out.final_state["bookmarks"]["texts"]
    )
