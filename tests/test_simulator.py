"""Contract tests for the Lofty API simulator itself (issue 2)."""

from __future__ import annotations

import calendar
import json
import re
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
import requests

from lofty_sim import Fault, LoftySimulator, SimConfig

TIMEOUT = 5.0
CALL_FIELDS = {
    "id", "dialerCallRecordId", "userId", "userPhoneNumber", "leadId", "leadPhoneNumber",
    "direction", "status", "startTime", "endTime", "duration", "callingOutcome", "rateScore",
    "recordingSwitch", "showUserNumber", "createTime", "updateTime", "note", "isMachineAnswered",
    "price", "agentId", "elapsedTime",
}  # fmt: skip
DIALER_ONLY = {
    "dialerCallRecordId", "elapsedTime", "status", "recordingSwitch", "isMachineAnswered",
    "price", "showUserNumber",
}  # fmt: skip
CALL_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")
LEAD_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dGMT$")


def get(
    sim: LoftySimulator,
    path: str,
    params: dict[str, Any] | None = None,
    auth: str | None = "key",
    timeout: float = TIMEOUT,
) -> requests.Response:
    """GET with the API key (``auth="key"``), the access token (``"bearer"``) or a raw header."""
    headers = {}
    if auth == "key":
        headers["Authorization"] = f"token {sim.config.api_key}"
    elif auth == "bearer":
        headers["Authorization"] = f"Bearer {sim.config.access_token}"
    elif auth is not None:
        headers["Authorization"] = auth
    return requests.get(sim.url + path, params=params, headers=headers, timeout=timeout)


def leads_page(sim: LoftySimulator, **params: Any) -> dict[str, Any]:
    resp = get(sim, "/v1.0/leads", params)
    assert resp.status_code == 200, resp.text
    return resp.json()


def calls_page(sim: LoftySimulator, **params: Any) -> list[dict[str, Any]]:
    resp = get(sim, "/v1.0/communication/call", params)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert list(body) == ["calls"]  # no total, no cursor
    return body["calls"]


def scroll_all(sim: LoftySimulator, **first: Any) -> tuple[list[int], list[dict[str, Any]]]:
    """Scroll to the end sending only scrollId after the first page; return ids and metadata."""
    body = leads_page(sim, **first)
    ids: list[int] = []
    metas = []
    while True:
        metas.append(body["_metadata"])
        ids += [lead["leadId"] for lead in body["leads"]]
        token = body["_metadata"].get("scrollId")
        if not token:
            return ids, metas
        body = leads_page(sim, scrollId=token)


def lead_with_calls(sim: LoftySimulator, at_least: int) -> int:
    return next(i for i in sim.lead_ids() if len(sim.calls(i)) >= at_least)


# ----------------------------------------------------------------------------- /v1.0/leads


@pytest.mark.parametrize("limit", ["0", "101", "-1", "1000"])
def test_leads_limit_out_of_range_is_400_limit_not_valid(make_sim, limit):
    sim = make_sim(leads=5)
    resp = get(sim, "/v1.0/leads", {"limit": limit})
    assert resp.status_code == 400
    assert resp.json() == {
        "code": 20042,
        "message": "LIMIT_NOT_VALID: limit must be between 1 and 100",
    }


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": "ten"}, "INVALID_PARAMETER: limit must be an integer"),
        ({"limit": "1_0"}, "INVALID_PARAMETER: limit must be an integer"),
        ({"offset": "x"}, "INVALID_PARAMETER: offset must be an integer"),
        ({"offset": "-3"}, "INVALID_PARAMETER: offset must be >= 0"),
        ({"desc": "maybe"}, "INVALID_PARAMETER: desc must be true or false"),
    ],
)
def test_leads_invalid_parameters_are_400_invalid_parameter(make_sim, params, message):
    sim = make_sim(leads=5)
    resp = get(sim, "/v1.0/leads", params)
    assert resp.status_code == 400
    assert resp.json() == {"code": 20012, "message": message}


def test_leads_default_limit_metadata_and_unknown_params(make_sim):
    sim = make_sim(leads=30)
    body = leads_page(sim, pageSize=5, keyword="x", sortField="name")  # undocumented: ignored
    meta = body["_metadata"]
    assert list(body) == ["_metadata", "leads"]
    assert meta["collection"] == "leads"
    assert (meta["limit"], meta["offset"], meta["total"]) == (25, 0, 30)
    assert isinstance(meta["scrollId"], str)
    assert meta["scrollId"]
    assert len(body["leads"]) == 25
    assert [lead["leadId"] for lead in leads_page(sim, limit=1, offset=0)["leads"]] == [
        body["leads"][0]["leadId"]
    ]
    for bounds in ("1", "100"):
        assert get(sim, "/v1.0/leads", {"limit": bounds}).status_code == 200


def test_leads_default_limit_is_configurable(make_sim):
    sim = make_sim(leads=30, leads_default_limit=7)
    assert len(leads_page(sim)["leads"]) == 7


def test_default_order_is_newest_first_and_offset_pages(make_sim):
    sim = make_sim(leads=40)
    newest_first = sorted(sim.lead_ids(), reverse=True)
    first = leads_page(sim, limit=15)
    second = leads_page(sim, limit=15, offset=15)
    assert [x["leadId"] for x in first["leads"]] == newest_first[:15]
    assert [x["leadId"] for x in second["leads"]] == newest_first[15:30]
    assert second["_metadata"]["offset"] == 15
    assert leads_page(sim, limit=10, offset=40)["leads"] == []


def test_sort_create_time_ascending_and_last_call(make_sim):
    sim = make_sim(leads=60, calls_per_lead_mean=3)
    asc = leads_page(sim, sort="CreateTime", desc="false", limit=100)["leads"]
    assert [x["leadId"] for x in asc] == sorted(sim.lead_ids())
    assert [x["createTime"] for x in asc] == sorted(x["createTime"] for x in asc)

    by_call = leads_page(sim, sort="LastCall", desc="true", limit=100)["leads"]
    last_call = {i: (sim.calls(i)[-1]["id"] if sim.calls(i) else -1) for i in sim.lead_ids()}
    keys = [last_call[x["leadId"]] for x in by_call]
    assert keys == sorted(keys, reverse=True)
    assert keys[-1] == -1  # leads without calls come last

    for sort in ("LastActivity", "Score", "Inquries"):  # others accepted
        got = leads_page(sim, sort=sort, limit=100)["leads"]
        assert sorted(x["leadId"] for x in got) == sorted(sim.lead_ids())


def test_scroll_to_the_end_returns_every_lead_once_then_empty_page(make_sim):
    sim = make_sim(leads=53)
    ids, metas = scroll_all(sim, limit=10)
    assert sorted(ids) == sorted(sim.lead_ids())
    assert len(ids) == len(set(ids)) == 53
    # 6 non-empty pages, each with a scrollId, then an empty page without one.
    assert len(metas) == 7
    assert all(m["scrollId"] for m in metas[:6])
    assert "scrollId" not in metas[-1]
    assert metas[-1]["total"] == 53
    assert sim.counters["GET /v1.0/leads 200"] == 7


def test_scroll_token_can_be_retried(make_sim):
    sim = make_sim(leads=30)
    token = leads_page(sim, limit=10)["_metadata"]["scrollId"]
    again = [get(sim, "/v1.0/leads", {"scrollId": token}).content for _ in range(2)]
    assert json.loads(again[0])["leads"] == json.loads(again[1])["leads"]


@pytest.mark.parametrize("sort", ["Default", "LastCall"])
def test_scroll_never_skips_or_repeats_under_deletes_and_appends(make_sim, sort):
    sim = make_sim(leads=45, calls_per_lead_mean=2)
    first = leads_page(sim, limit=10, sort=sort)
    seen = [x["leadId"] for x in first["leads"]]
    unseen = [i for i in sim.lead_ids() if i not in seen]
    sim.delete_lead(unseen[0])  # not served yet: must not appear
    sim.delete_lead(seen[0])  # already served: nothing changes
    # New calls reorder the LastCall sort and add leads mid-scroll.
    sim.append_calls(existing_leads=20, new_leads=3, calls_per_lead=2)
    token = first["_metadata"]["scrollId"]
    while token:
        body = leads_page(sim, scrollId=token)
        seen += [x["leadId"] for x in body["leads"]]
        token = body["_metadata"].get("scrollId")
    assert len(seen) == len(set(seen))
    existed_throughout = set(unseen[1:]) | set(seen[:10])
    assert existed_throughout <= set(seen)
    assert unseen[0] not in seen


def test_scroll_id_expires(make_sim):
    sim = make_sim(leads=30, scroll_ttl_s=0.2)
    token = leads_page(sim, limit=10)["_metadata"]["scrollId"]
    assert get(sim, "/v1.0/leads", {"scrollId": token}).status_code == 200
    time.sleep(0.3)
    for bad in (token, "not-a-token"):
        resp = get(sim, "/v1.0/leads", {"scrollId": bad})
        assert resp.status_code == 400
        assert resp.json() == {
            "code": 20012,
            "message": "INVALID_PARAMETER: scrollId expired or unknown",
        }


def test_metadata_key_switch(make_sim):
    sim = make_sim(leads=3, metadata_key="get_metadata")
    body = leads_page(sim)
    assert "get_metadata" in body
    assert "_metadata" not in body
    assert body["get_metadata"]["total"] == 3
    sim.configure(metadata_key="_metadata")
    assert "_metadata" in leads_page(sim)


# ----------------------------------------------------------------------------- leads_order


def page_ids(sim: LoftySimulator, **params: Any) -> list[int]:
    return [x["leadId"] for x in leads_page(sim, **params)["leads"]]


def test_leads_order_as_asked_is_the_default_and_honours_sort(make_sim):
    sim = make_sim(leads=40, calls_per_lead_mean=3)
    assert sim.config.leads_order == "as_asked"
    assert page_ids(sim, sort="CreateTime", desc="false", limit=100) == sorted(sim.lead_ids())
    assert page_ids(sim, limit=100) == sorted(sim.lead_ids(), reverse=True)


def test_leads_order_newest_first_ignores_sort_and_desc(make_sim):
    sim = make_sim(leads=40, calls_per_lead_mean=3, leads_order="newest_first")
    newest = sorted(sim.lead_ids(), reverse=True)
    for params in (
        {},
        {"sort": "CreateTime", "desc": "false"},
        {"sort": "LastCall", "desc": "true"},
        {"sort": "Score", "desc": "false"},
    ):
        assert page_ids(sim, limit=100, **params) == newest, params
    assert page_ids(sim, sort="CreateTime", desc="false", limit=10, offset=10) == newest[10:20]
    ids, _ = scroll_all(sim, sort="CreateTime", desc="false", limit=15)
    assert ids == newest


def test_leads_order_shuffled_per_page_keeps_page_contents_but_not_their_order(make_sim):
    sim = make_sim(leads=50, seed=4, leads_order="shuffled_per_page")
    asked = sorted(sim.lead_ids())  # CreateTime ascending = leadId ascending
    pages = [
        page_ids(sim, sort="CreateTime", desc="false", limit=10, offset=o) for o in range(0, 50, 10)
    ]
    for n, page in enumerate(pages):
        assert sorted(page) == asked[10 * n : 10 * n + 10]
    assert sum(page != sorted(page) for page in pages) >= 4  # shuffled, not sorted
    # Deterministic: the same request gets the same order, a fresh simulator too.
    params = {"sort": "CreateTime", "desc": "false", "limit": 10}
    assert page_ids(sim, **params) == page_ids(sim, **params) == pages[0]
    twin = make_sim(leads=50, seed=4, leads_order="shuffled_per_page")
    assert page_ids(twin, **params) == pages[0]
    # A scroll serves the asked order page by page, each page shuffled; every lead once.
    ids, _ = scroll_all(sim, sort="CreateTime", desc="false", limit=10)
    assert [sorted(ids[i : i + 10]) for i in range(0, 50, 10)] == [
        asked[i : i + 10] for i in range(0, 50, 10)
    ]
    assert ids != asked


def test_leads_order_ignore_sort_stable_is_one_fixed_order(make_sim):
    sim = make_sim(leads=60, seed=9, calls_per_lead_mean=2, leads_order="ignore_sort_stable")
    order = page_ids(sim, limit=100)
    assert sorted(order) == sorted(sim.lead_ids())
    assert order not in (sorted(order), sorted(order, reverse=True))
    for params in (
        {"sort": "CreateTime", "desc": "false"},
        {"sort": "CreateTime", "desc": "true"},
        {"sort": "LastCall"},
    ):
        assert page_ids(sim, limit=100, **params) == order, params
    assert page_ids(sim, limit=20, offset=20) == order[20:40]
    ids, _ = scroll_all(sim, sort="LastCall", limit=25)
    assert ids == order
    # New leads slot in at a deterministic place; the old leads keep their relative order.
    sim.append_calls(existing_leads=5, new_leads=4, calls_per_lead=1)
    after = page_ids(sim, limit=100)
    new = set(after) - set(order)
    assert len(new) == 4
    assert [i for i in after if i not in new] == order
    assert after[-4:] != sorted(new)  # not simply appended at an end
    # (New leadIds embed the wall clock, so where they land differs from run to run; it is a
    # function of the id and the seed only, hence stable from request to request.)
    assert page_ids(sim, sort="CreateTime", limit=100) == after
    assert scroll_all(sim, limit=30)[0] == after


def test_leads_order_switch_does_not_change_a_running_scroll(make_sim):
    sim = make_sim(leads=40)
    first = leads_page(sim, limit=10)
    ids = [x["leadId"] for x in first["leads"]]
    sim.configure(leads_order="ignore_sort_stable")
    token = first["_metadata"]["scrollId"]
    while token:
        body = leads_page(sim, scrollId=token)
        ids += [x["leadId"] for x in body["leads"]]
        token = body["_metadata"].get("scrollId")
    assert ids == sorted(sim.lead_ids(), reverse=True)
    assert page_ids(sim, limit=100) != ids
    with pytest.raises(ValueError):
        sim.configure(leads_order="sideways")


def test_lead_objects_carry_documented_fields(make_sim):
    sim = make_sim(leads=80)
    leads = sim.leads()
    assert leads == sorted(leads, key=lambda x: x["leadId"])
    for lead in leads:
        assert lead["leadId"] > 2**53
        for key in ("createTime", "assignTime", "lastUpdateTime"):
            assert LEAD_TIME.match(lead[key]), lead[key]
        for key in ("emails", "phones", "tags", "leadTypes", "segments", "leadPropertyList"):
            assert isinstance(lead[key], list)
        for tag in lead["tags"]:
            assert set(tag) == {
                "leadId", "tagId", "createTime", "updateTime", "tagName", "creatorUserId",
                "visibleType",
            }  # fmt: skip
            assert tag["leadId"] == lead["leadId"]
        assert {"priceMin", "priceMax", "locations", "bathroomsMin"} <= set(lead["leadInquiry"])
        # A string as the spec says; on live-shaped leads a float or null (api-notes §16).
        live = "privateFlag" in lead
        bath = (str,) if not live else (float, type(None))
        assert isinstance(lead["leadInquiry"]["bathroomsMin"], bath)
        for flag in ("cannotText", "cannotCall", "cannotEmail", "hiddenFlag", "unsubscription"):
            assert isinstance(lead[flag], bool)
        assert lead["ownershipScope"] in ("TEAM", "OFFICE", "PERSONAL")
    names = " ".join(f"{x['firstName']} {x['lastName']}" for x in leads)
    assert not names.isascii()
    assert any(x["leadSource"] == -1 for x in leads)
    assert any(x["opportunity"] is None for x in leads)
    assert any(x["leadPropertyList"] for x in leads)
    # Served bytes are exactly the ground truth.
    served = leads_page(sim, sort="CreateTime", desc="false", limit=100)["leads"]
    assert served == leads


LIVE_ONLY = {"leadType", "privateFlag"}


def test_some_leads_carry_the_live_observed_shapes(make_sim):
    sim = make_sim(leads=300, seed=7)
    leads = sim.leads()
    live = [x for x in leads if set(x) >= LIVE_ONLY]
    spec = [x for x in leads if not LIVE_ONLY & set(x)]
    assert len(live) + len(spec) == len(leads)
    assert 0.2 < len(live) / len(leads) < 0.4
    for lead in live:
        assert isinstance(lead["leadType"], int)
        assert isinstance(lead["privateFlag"], bool)
        opp = lead["opportunity"]
        assert opp is None or (
            set(opp) == {"id", "type", "status"}
            and opp["id"] > 2**53
            and isinstance(opp["type"], str)
        )
        for prop in lead["leadPropertyList"]:
            assert isinstance(prop["propertySource"], str)
            assert isinstance(prop["county"], str)
            assert LEAD_TIME.match(prop["createTime"])
        roles = lead["customRoleList"]
        assert len(roles) >= 3
        for role in roles:
            assert (role["assigneeId"] == 0) == (role["assignee"] is None)
        assert lead["pondId"] == 0 or lead["pondName"] is not None
        for key in ("bathroomsMin", "bathroomsMax"):
            assert lead["leadInquiry"][key] is None or isinstance(lead["leadInquiry"][key], float)
    for lead in spec:
        assert lead["opportunity"] is None or isinstance(lead["opportunity"], str)
        assert lead["pondId"] != 0
        assert len(lead["customRoleList"]) <= 1
        assert all("propertySource" not in p for p in lead["leadPropertyList"])
    # Each shape occurs, on some leads but not all.
    assert any(isinstance(x["opportunity"], dict) for x in live)
    assert any(x["opportunity"] is None for x in live)
    assert any(isinstance(x["opportunity"], str) for x in spec)
    assert any(x["leadPropertyList"] for x in live)
    assert any(x["pondId"] == 0 for x in live)
    frames = {x["buyingTimeFrame"] for x in live} | {x["sellingTimeFrame"] for x in live}
    assert {"0-3", "N/A"} <= frames
    bath = [x["leadInquiry"]["bathroomsMin"] for x in live]
    assert None in bath
    assert any(isinstance(b, float) for b in bath)
    assert any(r["assigneeId"] == 0 for x in live for r in x["customRoleList"])
    assert any(r["assigneeId"] != 0 for x in live for r in x["customRoleList"])
    # Deterministic, and switchable off.
    assert make_sim(leads=300, seed=7).leads() == leads
    assert not any(LIVE_ONLY & set(x) for x in make_sim(leads=100, live_shape_share=0).leads())


def test_extra_lead_fields_reach_every_lead_served_and_truth(make_sim):
    sim = make_sim(leads=30, extra_lead_fields={"brandNewField": {"a": 1}, "zz": [1, None]})
    served = leads_page(sim, limit=100)["leads"]
    assert all(x["brandNewField"] == {"a": 1} and x["zz"] == [1, None] for x in served)
    assert all(x["brandNewField"] == {"a": 1} for x in sim.leads())
    sim.configure(extra_lead_fields=None)  # runtime switch: cached bytes are dropped
    assert not any("brandNewField" in x for x in leads_page(sim, limit=100)["leads"])
    with pytest.raises(ValueError):
        sim.configure(extra_lead_fields={"": 1})
    resp = requests.post(
        sim.url + "/_sim/configure",
        json={"extra_lead_fields": {"other": "x"}},
        timeout=TIMEOUT,
    )
    assert resp.json()["extra_lead_fields"] == {"other": "x"}
    assert all(x["other"] == "x" for x in leads_page(sim, limit=5)["leads"])


# ----------------------------------------------------------------------------- calls


@pytest.mark.parametrize(
    ("params", "status", "body"),
    [
        ({}, 400, {"code": 20012, "message": "INVALID_PARAMETER: leadId is required"}),
        ({"leadId": ""}, 400, {"code": 20012, "message": "INVALID_PARAMETER: leadId is required"}),
        (
            {"leadId": "0"},
            400,
            {"code": 20012, "message": "INVALID_PARAMETER: leadId must be >= 1"},
        ),
        (
            {"leadId": "-4"},
            400,
            {"code": 20012, "message": "INVALID_PARAMETER: leadId must be >= 1"},
        ),
        (
            {"leadId": "abc"},
            400,
            {"code": 20012, "message": "INVALID_PARAMETER: leadId must be an integer"},
        ),
        (
            {"leadId": "LEAD", "limit": "0"},
            400,
            {"code": 20042, "message": "LIMIT_NOT_VALID: limit must be between 1 and 1000"},
        ),
        (
            {"leadId": "LEAD", "limit": "1001"},
            400,
            {"code": 20042, "message": "LIMIT_NOT_VALID: limit must be between 1 and 1000"},
        ),
        (
            {"leadId": "LEAD", "offset": "-1"},
            400,
            {"code": 20012, "message": "INVALID_PARAMETER: offset must be >= 0"},
        ),
        (
            {"leadId": "LEAD", "currentId": "-1"},
            400,
            {"code": 20012, "message": "INVALID_PARAMETER: currentId must be >= 0"},
        ),
        (
            {"leadId": "LEAD", "currentId": str(-(2**63))},
            400,
            {"code": 20012, "message": "INVALID_PARAMETER: currentId must be >= 0"},
        ),
        (
            {"leadId": "LEAD", "currentId": str(2**63)},
            400,
            {
                "code": 20012,
                "message": "INVALID_PARAMETER: currentId must be <= 9223372036854775807"
                " (a 64-bit integer)",
            },
        ),
        (
            {"leadId": "LEAD", "currentId": str(2**63 - 1)},
            200,
            {"calls": []},
        ),
        (
            {"leadId": str(2**63)},
            400,
            {
                "code": 20012,
                "message": "INVALID_PARAMETER: leadId must be <= 9223372036854775807"
                " (a 64-bit integer)",
            },
        ),
        (
            {"leadId": "LEAD", "currentId": "1.5"},
            400,
            {"code": 20012, "message": "INVALID_PARAMETER: currentId must be an integer"},
        ),
        ({"leadId": "123456789"}, 404, {"code": 20006, "message": "LEAD_NOT_EXIST"}),
    ],
)
def test_calls_parameter_validation(make_sim, params, status, body):
    sim = make_sim(leads=5)
    params = {k: (str(sim.lead_ids()[0]) if v == "LEAD" else v) for k, v in params.items()}
    resp = get(sim, "/v1.0/communication/call", params)
    assert resp.status_code == status
    assert resp.json() == body


def test_calls_default_limit_and_descending_offset_mode(make_sim):
    sim = make_sim(leads=20, calls_per_lead_mean=12)
    lead = lead_with_calls(sim, 25)
    newest_first = [c["id"] for c in reversed(sim.calls(lead))]
    assert [c["id"] for c in calls_page(sim, leadId=lead)] == newest_first[:10]
    assert [c["id"] for c in calls_page(sim, leadId=lead, currentId=0)] == newest_first[:10]
    got: list[int] = []
    offset = 0
    while page := calls_page(sim, leadId=lead, limit=7, offset=offset):
        got += [c["id"] for c in page]
        offset += 7
    assert got == newest_first
    assert calls_page(sim, leadId=lead, offset=len(newest_first)) == []
    for bound in (1, 1000):
        assert len(calls_page(sim, leadId=lead, limit=bound)) == min(bound, len(newest_first))


def test_cursor_exclusive_walks_ascending_and_ignores_offset(make_sim):
    sim = make_sim(leads=20, calls_per_lead_mean=12, cursor_mode="exclusive")
    lead = lead_with_calls(sim, 25)
    want = [c["id"] for c in sim.calls(lead)]
    page = calls_page(sim, leadId=lead, currentId=want[4], limit=3, offset=50)
    assert [c["id"] for c in page] == want[5:8]
    got: list[int] = []
    cursor = 1
    while page := calls_page(sim, leadId=lead, currentId=cursor, limit=6):
        got += [c["id"] for c in page]
        cursor = page[-1]["id"]
    assert got == want


def test_cursor_inclusive_starts_at_current_id(make_sim):
    sim = make_sim(leads=20, calls_per_lead_mean=12, cursor_mode="inclusive")
    lead = lead_with_calls(sim, 25)
    want = [c["id"] for c in sim.calls(lead)]
    page = calls_page(sim, leadId=lead, currentId=want[4], limit=3)
    assert [c["id"] for c in page] == want[4:7]
    last = calls_page(sim, leadId=lead, currentId=want[-1], limit=5)
    assert [c["id"] for c in last] == [want[-1]]
    sim.configure(cursor_mode="exclusive")  # switchable at runtime
    assert calls_page(sim, leadId=lead, currentId=want[-1], limit=5) == []


def test_calls_page_cap_serves_fewer_rows_silently(make_sim):
    sim = make_sim(leads=20, calls_per_lead_mean=12, calls_page_cap=4)
    lead = lead_with_calls(sim, 25)
    want = [c["id"] for c in sim.calls(lead)]
    page = calls_page(sim, leadId=lead, currentId=1, limit=1000)
    assert [c["id"] for c in page] == want[:4]
    assert len(calls_page(sim, leadId=lead, limit=1000)) == 4  # offset mode too
    assert len(calls_page(sim, leadId=lead, currentId=1, limit=2)) == 2  # below the cap: as asked


def test_call_records_fields_enums_and_formats(make_sim):
    sim = make_sim(leads=60, calls_per_lead_mean=10)
    calls = sim.all_calls()
    assert len(calls) == sim.total_calls() > 300
    manual = [c for c in calls if "status" not in c]
    dialer = [c for c in calls if "status" in c]
    assert 0.08 < len(manual) / len(calls) < 0.25
    for call in dialer:
        assert set(call) == CALL_FIELDS
        assert call["status"] in ("Completed", "Missed", "Failed", "Busy", "NoAnswer", "VoiceMail")
        assert isinstance(call["price"], float)
        assert re.fullmatch(r"\d\d:\d\d", call["elapsedTime"])
    for call in manual:
        assert set(call) == CALL_FIELDS - DIALER_ONLY
    for call in calls:
        assert call["direction"] in ("Outbound", "Inbound")
        assert call["callingOutcome"] in (
            "Talked", "VoiceMessage", "NoAnswer", "BadNumber", "DNCNumber", "DNCContact",
        )  # fmt: skip
        assert 0 <= call["rateScore"] <= 5
        for key in ("startTime", "endTime", "createTime", "updateTime"):
            assert CALL_TIME.match(call[key]), call[key]
    notes = [c["note"] for c in calls]
    assert None in notes
    assert any(n and not n.isascii() for n in notes)


def test_call_ids_exceed_2_53_are_exact_unique_and_time_ordered(make_sim):
    sim = make_sim(leads=40, calls_per_lead_mean=6)
    calls = sim.all_calls()
    ids = [c["id"] for c in calls]
    assert min(ids) > 2**53
    assert len(set(ids)) == len(ids)
    assert [c["createTime"] for c in calls] == sorted(c["createTime"] for c in calls)
    assert any(i % 2 == 1 and float(i) != i for i in ids)
    # The wire text holds the exact digits.
    lead = lead_with_calls(sim, 3)
    resp = get(sim, "/v1.0/communication/call", {"leadId": lead, "limit": 1000})
    wire = [int(x) for x in re.findall(rb'"id":(\d+)', resp.content)]
    assert wire == [c["id"] for c in reversed(sim.calls(lead))]


def test_big_lead_has_more_than_2500_calls_over_several_pages(make_sim):
    sim = make_sim(leads=3, calls_per_lead_mean=2, big_leads=1)
    big = max(sim.lead_ids(), key=lambda i: len(sim.calls(i)))
    want = [c["id"] for c in sim.calls(big)]
    assert 2600 <= len(want) <= 3200
    pages = []
    cursor = 1
    while page := calls_page(sim, leadId=big, currentId=cursor, limit=1000):
        pages.append(len(page))
        cursor = page[-1]["id"]
    assert pages[:2] == [1000, 1000]
    assert len(pages) == -(-len(want) // 1000)
    assert sum(pages) == len(want)


def test_zero_big_leads_and_leads_without_calls(make_sim):
    sim = make_sim(leads=100, calls_per_lead_mean=4, big_leads=0)
    counts = [len(sim.calls(i)) for i in sim.lead_ids()]
    assert max(counts) < 2600
    assert 3 <= counts.count(0) <= 25
    empty = sim.lead_ids()[counts.index(0)]
    assert calls_page(sim, leadId=empty) == []


# ----------------------------------------------------------------------------- texts and emails

HISTORY = [("/v1.0/communication/text", "texts"), ("/v1.0/communication/email", "emails")]
TEXT_FIELDS = {
    "id", "leadId", "direction", "agentId", "textOutcome", "textTime", "textType", "textContent",
}  # fmt: skip
EMAIL_FIELDS = {
    "id", "leadId", "direction", "agentId", "eventType", "emailEventTime", "emailType",
    "emailSubject", "fromPond",
}  # fmt: skip
EPOCH_MS = re.compile(r"^\d{13}$")


def history_page(sim: LoftySimulator, path: str, key: str, **params: Any) -> list[dict[str, Any]]:
    resp = get(sim, path, params)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert list(body) == [key]
    return body[key]


def truth_of(sim: LoftySimulator, key: str, lead: int) -> list[dict[str, Any]]:
    return sim.texts(lead) if key == "texts" else sim.emails(lead)


def lead_with(sim: LoftySimulator, key: str, at_least: int) -> int:
    return next(i for i in sim.lead_ids() if len(truth_of(sim, key, i)) >= at_least)


@pytest.mark.parametrize(("path", "key"), HISTORY)
def test_text_and_email_endpoints_validate_like_calls(make_sim, path, key):
    sim = make_sim(leads=5)
    lead = str(sim.lead_ids()[0])
    cases = [
        ({}, 400, 20012, "INVALID_PARAMETER: leadId is required"),
        ({"leadId": "0"}, 400, 20012, "INVALID_PARAMETER: leadId must be >= 1"),
        ({"leadId": "x"}, 400, 20012, "INVALID_PARAMETER: leadId must be an integer"),
        ({"leadId": lead, "limit": "0"}, 400, 20042, None),
        ({"leadId": lead, "limit": "1001"}, 400, 20042, None),
        ({"leadId": lead, "offset": "-1"}, 400, 20012, "INVALID_PARAMETER: offset must be >= 0"),
        (
            {"leadId": lead, "currentId": str(-(2**63))},
            400,
            20012,
            "INVALID_PARAMETER: currentId must be >= 0",
        ),
        ({"leadId": lead, "currentId": str(2**63)}, 400, 20012, None),
        ({"leadId": "123456789"}, 404, 20006, "LEAD_NOT_EXIST"),
    ]
    for params, status, code, message in cases:
        resp = get(sim, path, params)
        assert resp.status_code == status, (params, resp.text)
        assert resp.json()["code"] == code
        if message:
            assert resp.json()["message"] == message


@pytest.mark.parametrize(("path", "key"), HISTORY)
def test_text_and_email_paging_offset_newest_first_and_cursor(make_sim, path, key):
    sim = make_sim(leads=40, seed=5, texts_per_lead_mean=12, emails_per_lead_mean=10)
    lead = lead_with(sim, key, 25)
    want = [r["id"] for r in truth_of(sim, key, lead)]
    assert want == sorted(want)
    newest = want[::-1]
    assert [r["id"] for r in history_page(sim, path, key, leadId=lead)] == newest[:10]
    got: list[int] = []
    offset = 0
    while page := history_page(sim, path, key, leadId=lead, limit=7, offset=offset):
        got += [r["id"] for r in page]
        offset += 7
    assert got == newest
    # Cursor, exclusive then inclusive (switchable at runtime).
    page = history_page(sim, path, key, leadId=lead, currentId=want[4], limit=3, offset=50)
    assert [r["id"] for r in page] == want[5:8]
    sim.configure(cursor_mode="inclusive")
    page = history_page(sim, path, key, leadId=lead, currentId=want[4], limit=3)
    assert [r["id"] for r in page] == want[4:7]
    # calls_page_cap applies here too, silently.
    sim.configure(calls_page_cap=4)
    assert len(history_page(sim, path, key, leadId=lead, limit=1000)) == 4
    served = history_page(sim, path, key, leadId=lead, limit=1000, currentId=1)
    assert [r["id"] for r in served] == want[:4]
    sim.configure(calls_page_cap=None)
    assert history_page(sim, path, key, leadId=lead, limit=1000) == truth_of(sim, key, lead)[::-1]


@pytest.mark.parametrize(("path", "key"), HISTORY)
def test_text_and_email_404_faults_and_scope(make_sim, path, key):
    sim = make_sim(leads=10, seed=2, texts_per_lead_mean=3, emails_per_lead_mean=3)
    ids = sim.lead_ids()
    sim.delete_lead(ids[0])
    sim.delete_after_listing({ids[1]})
    for gone in ids[:2]:
        resp = get(sim, path, {"leadId": gone})
        assert (resp.status_code, resp.json()) == (
            404,
            {"code": 20006, "message": "LEAD_NOT_EXIST"},
        )
        assert truth_of(sim, key, gone) == []
    sim.configure(faults_at={sim.request_count + 1: "lead_deleted"})
    assert get(sim, path, {"leadId": ids[2]}).status_code == 404
    assert get(sim, path, {"leadId": ids[2]}).status_code == 404  # it sticks
    assert truth_of(sim, key, ids[2]) == []
    sim.configure(faults_at={sim.request_count + 1: "503_json"})
    assert get(sim, path, {"leadId": ids[3]}).status_code == 503
    assert get(sim, path, {"leadId": ids[3]}).status_code == 200
    scope = key  # "texts" / "emails"
    sim.configure(missing_scopes=(scope,))
    resp = get(sim, path, {"leadId": ids[3]})
    assert (resp.status_code, resp.json()["code"]) == (403, 200100)
    assert get(sim, "/v1.0/communication/call", {"leadId": ids[3]}).status_code == 200
    sim.configure(missing_scopes=())
    assert get(sim, path, {"leadId": ids[3]}).status_code == 200


def test_missing_scopes_for_leads_and_calls(make_sim):
    sim = make_sim(leads=3, missing_scopes=("leads", "calls"))
    for path in ("/v1.0/leads", "/v1.0/communication/call"):
        resp = get(sim, path, {"leadId": sim.lead_ids()[0]})
        assert (resp.status_code, resp.json()["code"]) == (403, 200100)
    with pytest.raises(ValueError):
        sim.configure(missing_scopes=("everything",))


def test_text_data_shapes_and_big_text_lead(make_sim):
    sim = make_sim(leads=120, seed=7)
    texts = sim.all_texts()
    assert len(texts) == sim.total_texts()
    per_lead = [len(sim.texts(i)) for i in sim.lead_ids()]
    assert max(per_lead) >= 2000
    assert 0 < per_lead.count(0) < len(per_lead)
    for text in texts:
        assert set(text) == TEXT_FIELDS
        assert text["direction"] in ("Outbound", "Inbound")
        assert text["textType"] in ("Manual", "Auto")
        assert isinstance(text["textOutcome"], str)
        assert CALL_TIME.match(text["textTime"]) or EPOCH_MS.match(text["textTime"])
    contents = [t["textContent"] for t in texts]
    assert None in contents
    assert any(c and not c.isascii() for c in contents)
    formats = [bool(EPOCH_MS.match(t["textTime"])) for t in texts]
    assert 0.03 < sum(formats) / len(formats) < 0.2  # mostly yyyy-MM-dd HH:mm:ss, some epoch ms
    # The big text lead pages in several 1,000-row pages by cursor.
    big = sim.lead_ids()[per_lead.index(max(per_lead))]
    got, cursor = [], 1
    while page := history_page(
        sim, "/v1.0/communication/text", "texts", leadId=big, currentId=cursor, limit=1000
    ):
        got += [t["id"] for t in page]
        cursor = page[-1]["id"]
    assert got == [t["id"] for t in sim.texts(big)]
    assert sim.texts(big) == make_sim(leads=120, seed=7).texts(big)  # deterministic


def test_email_data_has_every_event_kind(make_sim):
    sim = make_sim(leads=80, seed=3)
    emails = sim.all_emails()
    assert len(emails) > 100
    for event in emails:
        assert set(event) == EMAIL_FIELDS
        assert event["eventType"] in ("Sent", "Opened", "Bounced")
        assert event["emailType"] in ("Manual", "Auto")
        assert isinstance(event["fromPond"], bool)
        assert CALL_TIME.match(event["emailEventTime"]) or EPOCH_MS.match(event["emailEventTime"])
    assert {e["eventType"] for e in emails} == {"Sent", "Opened", "Bounced"}
    subjects = [e["emailSubject"] for e in emails]
    assert None in subjects
    assert any(s and not s.isascii() for s in subjects)
    assert any(e["fromPond"] for e in emails)
    assert any(EPOCH_MS.match(e["emailEventTime"]) for e in emails)
    assert {e["direction"] for e in emails} == {"Outbound", "Inbound"}


def test_ids_are_unique_64_bit_and_time_ordered_across_channels(make_sim):
    sim = make_sim(leads=60, seed=4, calls_per_lead_mean=6)
    rows = sim.all_calls() + sim.all_texts() + sim.all_emails()
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == len(ids)
    assert min(ids) > 2**53

    def when(row: dict[str, Any]) -> str:
        text = row.get("createTime") or row.get("textTime") or row["emailEventTime"]
        if EPOCH_MS.match(text):
            return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(int(text) // 1000))
        return text

    ordered = sorted(rows, key=lambda r: r["id"])
    times = [when(r) for r in ordered]
    assert times == sorted(times)


# ----------------------------------------------------------------------------- the feed

FEED = "/v2.0/communication/agent"
DATA_NOW_MS = 1_793_491_200_000  # lofty_sim.data.DATA_NOW_MS
DAY = 86_400_000
WINDOW = {"startTime": DATA_NOW_MS - 90 * DAY, "endTime": DATA_NOW_MS}
FEED_FIELDS = {
    "id", "leadId", "agentId", "direction", "callOutcome", "callDuration", "status",
    "communicationTime", "communicationType", "eventType", "fromPond",
}  # fmt: skip


def feed_page(sim: LoftySimulator, **params: Any) -> dict[str, Any]:
    resp = get(sim, FEED, params)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert list(body) == ["data", "nextCursor", "hasMore", "limit", "totalCount"]
    return body


def feed_all(sim: LoftySimulator, **params: Any) -> tuple[list[dict[str, Any]], list[dict]]:
    """Page to the end; return the items and the page bodies."""
    body = feed_page(sim, **params)
    items, bodies = [], []
    while True:
        bodies.append(body)
        items += body["data"]
        if body["nextCursor"] is None:
            return items, bodies
        body = feed_page(sim, **params, cursor=body["nextCursor"])


def feed_ms(item: dict[str, Any]) -> int:
    return calendar.timegm(time.strptime(item["communicationTime"], "%Y-%m-%d %H:%M:%S")) * 1000


@pytest.mark.parametrize(
    ("params", "code", "message"),
    [
        ({"endTime": 1}, 20012, "INVALID_PARAMETER: startTime is required (epoch milliseconds)"),
        ({"startTime": 1}, 20012, "INVALID_PARAMETER: endTime is required (epoch milliseconds)"),
        ({"startTime": 5, "endTime": 4}, 20012, "INVALID_PARAMETER: endTime must be >= startTime"),
        (
            {"startTime": 0, "endTime": 90 * DAY + 1},
            20012,
            "INVALID_PARAMETER: the time window (endTime - startTime) must not exceed 90 days",
        ),
        (
            {**WINDOW, "type": "SMS"},
            20012,
            "INVALID_PARAMETER: type must be one of CALL, TEXT, EMAIL, ALL",
        ),
        ({**WINDOW, "type": "call"}, 20012, None),
        ({**WINDOW, "limit": 0}, 20042, "LIMIT_NOT_VALID: limit must be between 1 and 1000"),
        ({**WINDOW, "limit": 1001}, 20042, "LIMIT_NOT_VALID: limit must be between 1 and 1000"),
        ({**WINDOW, "teamView": "yes"}, 20012, None),
        ({**WINDOW, "cursor": "garbage"}, 20012, "INVALID_PARAMETER: cursor is invalid"),
        ({"startTime": -1, "endTime": 5}, 20012, "INVALID_PARAMETER: startTime must be >= 0"),
    ],
)
def test_feed_parameter_validation(make_sim, params, code, message):
    sim = make_sim(leads=5)
    resp = get(sim, FEED, params)
    assert resp.status_code == 400, resp.text
    assert resp.json()["code"] == code
    if message:
        assert resp.json()["message"] == message


def test_feed_pages_to_the_end_and_matches_ground_truth(make_sim):
    sim = make_sim(leads=150, seed=6)
    want = sim.feed_items(
        "ALL", team_view=True, **{"start_ms": WINDOW["startTime"], "end_ms": WINDOW["endTime"]}
    )
    assert len(want) > 300
    items, bodies = feed_all(sim, type="ALL", teamView="true", limit=97, **WINDOW)
    assert items == want
    assert len({i["id"] for i in items}) == len(items)
    assert all(b["totalCount"] == len(want) and b["limit"] == 97 for b in bodies)
    assert all(b["nextCursor"] for b in bodies[:-1])
    assert [b["hasMore"] for b in bodies] == [True] * (len(bodies) - 1) + [False]
    for item in items:
        assert set(item) == FEED_FIELDS
        assert WINDOW["startTime"] <= feed_ms(item) <= WINDOW["endTime"]
        assert item["communicationType"] in ("AUTO", "MANUAL", "LOGGED")
        assert isinstance(item["callDuration"], (str, type(None)))
    keys = [(feed_ms(i), i["id"]) for i in items]
    assert keys == sorted(keys)  # the simulator's order: communicationTime, then id
    # Type omitted = ALL (the spec: optional, default undocumented).
    assert feed_page(sim, teamView="true", limit=5, **WINDOW)["data"] == items[:5]
    # An exact multiple of the limit: the last full page has a cursor, the next page is empty
    # with a null cursor (the spec: "a non-null value does not guarantee further entries").
    limit = len(want) // 2 if len(want) % 2 == 0 else len(want)
    if limit <= 1000:
        _, bodies = feed_all(sim, teamView="true", limit=limit, **WINDOW)
        assert bodies[-1]["data"] == [] and bodies[-1]["nextCursor"] is None
        assert bodies[-2]["hasMore"] is False and bodies[-2]["nextCursor"]
    # A cursor belongs to its query.
    cursor = bodies[0]["nextCursor"]
    resp = get(sim, FEED, {**WINDOW, "type": "CALL", "cursor": cursor, "teamView": "true"})
    assert resp.status_code == 400


def test_feed_window_is_inclusive_and_types_filter(make_sim):
    sim = make_sim(leads=80, seed=8)
    items = sim.feed_items(
        "ALL", team_view=True, start_ms=WINDOW["startTime"], end_ms=WINDOW["endTime"]
    )
    pick = items[len(items) // 2]
    t = feed_ms(pick)
    exact = feed_page(sim, teamView="true", startTime=t, endTime=t, limit=1000)["data"]
    assert pick in exact
    assert all(feed_ms(i) == t for i in exact)
    kinds = {
        "CALL": {"Call"},
        "TEXT": {"Text"},
        "EMAIL": {"Sent Email", "Opened Email", "Bounced Email"},
    }
    total = 0
    for kind, events in kinds.items():
        got, _ = feed_all(sim, type=kind, teamView="true", limit=1000, **WINDOW)
        assert {i["eventType"] for i in got} == events, kind
        total += len(got)
    assert total == len(items)


def test_feed_items_derive_from_the_per_lead_rows(make_sim):
    sim = make_sim(leads=60, seed=9)
    items, _ = feed_all(sim, type="ALL", teamView="true", limit=1000, **WINDOW)
    rows = {}
    for lead in sim.lead_ids():
        for c in sim.calls(lead):
            rows[c["id"]] = ("Call", c)
        for t in sim.texts(lead):
            rows[t["id"]] = ("Text", t)
        for e in sim.emails(lead):
            rows[e["id"]] = ("Email", e)
    for item in items:
        kind, row = rows[item["id"]]
        assert (item["leadId"], item["agentId"], item["direction"]) == (
            row["leadId"], row["agentId"], row["direction"],
        )  # fmt: skip
        if kind == "Call":
            assert item["eventType"] == "Call"
            assert item["callOutcome"] == row["callingOutcome"]
            assert item["callDuration"] == str(row["duration"])
            assert item["status"] == row.get("status")
            assert item["communicationTime"] == row["startTime"]
            assert (item["communicationType"] == "LOGGED") == ("dialerCallRecordId" not in row)
        elif kind == "Text":
            assert item["eventType"] == "Text"
            assert item["status"] == row["textOutcome"]
            assert item["communicationType"] == row["textType"].upper()
        else:
            assert item["eventType"] == f"{row['eventType']} Email"
            assert item["fromPond"] == row["fromPond"]


def test_feed_without_team_view_serves_only_the_callers_items(make_sim):
    sim = make_sim(leads=150, seed=6)
    mine, _ = feed_all(sim, limit=1000, **WINDOW)  # teamView defaults to false
    team, _ = feed_all(sim, teamView="true", limit=1000, **WINDOW)
    assert mine
    assert {i["agentId"] for i in mine} == {sim.caller_agent_id}
    assert len({i["agentId"] for i in team}) >= 6
    assert len(mine) < 0.25 * len(team)  # without teamView a sync misses most of the team
    assert mine == [i for i in team if i["agentId"] == sim.caller_agent_id]


def test_feed_modes(make_sim):
    sim = make_sim(leads=5, feed_mode="no_team_permission")
    resp = get(sim, FEED, {**WINDOW, "teamView": "true"})
    assert resp.status_code == 400
    assert resp.json()["code"] == 20017
    assert "ACCESS_ALL_TEAM_LEADS" in resp.json()["message"]
    assert get(sim, FEED, WINDOW).status_code == 200
    sim.configure(feed_mode="no_scope")
    resp = get(sim, FEED, WINDOW)
    assert (resp.status_code, resp.json()) == (
        403,
        {"code": 200100, "message": "Sorry, the vendor does not have permission for this API."},
    )
    sim.configure(feed_mode="absent")
    resp = get(sim, FEED, WINDOW)
    assert (resp.status_code, resp.json()["code"]) == (404, 20007)
    sim.configure(feed_mode="available")
    assert get(sim, FEED, {**WINDOW, "teamView": "true"}).status_code == 200


def test_feed_reflects_appends_after_the_indexing_delay(make_sim):
    sim = make_sim(leads=30, seed=2, feed_delay_s=0.6)
    now = int(time.time() * 1000)
    recent = {"startTime": now - DAY, "endTime": now + DAY, "teamView": "true", "limit": 1000}
    assert feed_page(sim, **recent)["data"] == []
    calls = sim.append_calls(existing_leads=3, new_leads=1, calls_per_lead=2)
    messages = requests.post(
        sim.url + "/_sim/append_messages",
        json={"existing_leads": 2, "texts_per_lead": 2, "emails_per_lead": 1},
        timeout=TIMEOUT,
    ).json()
    new_ids = {r["id"] for r in calls + messages["texts"] + messages["emails"]}
    assert len(messages["texts"]) == 4 and len(messages["emails"]) >= 2
    # The per-lead endpoints serve them at once ...
    lead = messages["texts"][0]["leadId"]
    served = history_page(sim, "/v1.0/communication/text", "texts", leadId=lead, limit=2)
    assert {t["id"] for t in served} <= new_ids
    # ... the feed only after the delay.
    assert feed_page(sim, **recent)["data"] == []
    assert sim.feed_items(start_ms=now - DAY) == []
    time.sleep(0.7)
    body = feed_page(sim, **recent)
    assert {i["id"] for i in body["data"]} == new_ids
    assert body["totalCount"] == len(new_ids)
    truth = requests.get(sim.url + "/_sim/truth", timeout=TIMEOUT).json()
    assert {t["id"] for t in messages["texts"]} <= {t["id"] for t in truth["texts"]}
    assert {e["id"] for e in messages["emails"]} <= {e["id"] for e in truth["emails"]}


def test_backdated_logged_calls_fall_outside_a_recent_window(make_sim):
    sim = make_sim(leads=20, seed=3)
    now = int(time.time() * 1000)
    new = sim.append_calls(
        existing_leads=2, new_leads=0, calls_per_lead=2, backdated_per_lead=1, backdate_days=5
    )
    backdated = [c for c in new if c["startTime"] < c["createTime"]]
    assert len(backdated) == 2
    for call in backdated:
        assert "dialerCallRecordId" not in call  # a logged call
        created = calendar.timegm(time.strptime(call["createTime"], "%Y-%m-%d %H:%M:%S"))
        started = calendar.timegm(time.strptime(call["startTime"], "%Y-%m-%d %H:%M:%S"))
        assert 5 * 86_400 - 2 <= created - started <= 5 * 86_400
        # Newest id on the per-lead endpoint ...
        page = calls_page(sim, leadId=call["leadId"], limit=2)
        assert call["id"] in {c["id"] for c in page}
    # ... but a window over the last day misses it; one over 5 days ago finds it as LOGGED.
    recent, _ = feed_all(sim, teamView="true", startTime=now - DAY, endTime=now + DAY)
    ids = {i["id"] for i in recent}
    assert {c["id"] for c in new} - ids == {c["id"] for c in backdated}
    old, _ = feed_all(
        sim, teamView="true", type="CALL", startTime=now - 6 * DAY, endTime=now - 4 * DAY
    )
    found = [i for i in old if i["id"] in {c["id"] for c in backdated}]
    assert len(found) == 2
    assert {i["communicationType"] for i in found} == {"LOGGED"}
    with pytest.raises(ValueError):
        sim.append_calls(backdated_per_lead=-1)


def test_feed_drops_leads_deleted_after_listing(make_sim):
    sim = make_sim(leads=40, seed=5)
    before = sim.feed_items(start_ms=WINDOW["startTime"], end_ms=WINDOW["endTime"])
    gone = before[0]["leadId"]
    sim.delete_after_listing({gone})
    items, _ = feed_all(sim, teamView="true", limit=1000, **WINDOW)
    assert gone not in {i["leadId"] for i in items}
    assert len(items) == len([i for i in before if i["leadId"] != gone])


def test_feed_index_kept_up_to_date_equals_a_fresh_build(make_sim):
    sim = make_sim(leads=40, seed=12)
    feed_page(sim, teamView="true", **WINDOW)  # builds the index
    sim.append_calls(existing_leads=4, new_leads=2, calls_per_lead=2, backdated_per_lead=1)
    sim.append_messages(existing_leads=3, texts_per_lead=2, emails_per_lead=2)
    ids = sim.lead_ids()
    sim.delete_lead(ids[0])
    sim.delete_after_listing({ids[1]})
    sim.configure(faults_at={sim.request_count + 1: "lead_deleted"})
    assert get(sim, "/v1.0/communication/email", {"leadId": ids[2]}).status_code == 404
    kept = sim.feed_items()
    sim._feed = None  # force a rebuild from the rows
    assert sim.feed_items() == kept
    assert not {ids[0], ids[1], ids[2]} & {i["leadId"] for i in kept}


def test_cli_parses_the_new_switches():
    from lofty_sim.__main__ import build_parser

    args = build_parser().parse_args(
        [
            "--leads-order", "newest_first", "--extra-lead-field", 'brandNewField={"a": 1}',
            "--extra-lead-field", "plain=text", "--live-shape-share", "0.5",
            "--texts-per-lead", "2", "--emails-per-lead", "1", "--big-text-leads", "0",
            "--feed-mode", "no_scope", "--feed-delay", "1.5", "--missing-scopes", "texts,emails",
        ]
    )  # fmt: skip
    assert args.leads_order == "newest_first"
    assert dict(args.extra_lead_field) == {"brandNewField": {"a": 1}, "plain": "text"}
    assert (args.live_shape_share, args.texts_per_lead, args.emails_per_lead) == (0.5, 2, 1)
    assert (args.big_text_leads, args.feed_mode, args.feed_delay) == (0, "no_scope", 1.5)
    assert args.missing_scopes == "texts,emails"


# ----------------------------------------------------------------------------- auth


@pytest.mark.parametrize("form", ["token {key}", "Token {key}", "Bearer {tok}", "bearer {tok}"])
def test_both_auth_header_forms_are_accepted(make_sim, form):
    sim = make_sim(leads=3)
    header = form.format(key=sim.config.api_key, tok=sim.config.access_token)
    assert get(sim, "/v1.0/leads", auth=header).status_code == 200
    lead = sim.lead_ids()[0]
    assert get(sim, "/v1.0/communication/call", {"leadId": lead}, auth=header).status_code == 200


@pytest.mark.parametrize(
    "header", [None, "", "Bearer wrong", "token {tok}", "Basic {key}", "{key}"]
)
def test_bad_or_missing_credentials_are_401(make_sim, header):
    sim = make_sim(leads=3)
    if header is not None:
        header = header.format(key=sim.config.api_key, tok=sim.config.access_token)
    for path in ("/v1.0/leads", "/v1.0/communication/call"):
        resp = get(sim, path, {"leadId": sim.lead_ids()[0]}, auth=header)
        assert resp.status_code == 401
        assert resp.json() == {"code": 401, "message": "BAD_CREDENTIALS: invalid or missing token"}
        assert "X-RateLimit-Remaining" in resp.headers


def test_api_key_sent_as_bearer_is_400_user_in_token_does_not_exist(make_sim):
    # Recorded live (api-notes §16): HTTP 400 with code 200058, not a 401.
    sim = make_sim(leads=3)
    for path in ("/v1.0/leads", "/v1.0/communication/call"):
        for scheme in ("Bearer", "bearer"):
            resp = get(
                sim, path, {"leadId": sim.lead_ids()[0]}, auth=f"{scheme} {sim.config.api_key}"
            )
            assert resp.status_code == 400
            assert resp.json() == {"code": 200058, "message": "User in token does not exist."}
            assert "X-RateLimit-Remaining" in resp.headers
    assert sim.counters["GET /v1.0/leads 400"] == 2


def test_token_without_calls_scope_gets_403_on_calls_only(make_sim):
    sim = make_sim(leads=3)
    header = f"Bearer {sim.config.no_calls_scope_token}"
    assert get(sim, "/v1.0/leads", auth=header).status_code == 200
    resp = get(sim, "/v1.0/communication/call", {"leadId": sim.lead_ids()[0]}, auth=header)
    assert resp.status_code == 403
    assert resp.json() == {
        "code": 200100,
        "message": "Sorry, the vendor does not have permission for this API.",
    }


def test_unknown_path_and_method(make_sim):
    sim = make_sim(leads=3)
    resp = get(sim, "/v1.0/nothing")
    assert (resp.status_code, resp.json()["code"]) == (404, 20007)
    headers = {"Authorization": f"token {sim.config.api_key}"}
    resp = requests.post(sim.url + "/v1.0/leads", json={}, headers=headers, timeout=TIMEOUT)
    assert resp.status_code == 405


# ----------------------------------------------------------------------------- rate limit


def test_rate_limit_headers_429_and_window_reset(make_sim):
    sim = make_sim(leads=3, rate_limit=5, rate_window_s=1.0)
    before = time.time()
    remaining = []
    for _ in range(5):
        resp = get(sim, "/v1.0/leads")
        assert resp.status_code == 200
        assert resp.headers["X-RateLimit-Limit"] == "5"
        remaining.append(int(resp.headers["X-RateLimit-Remaining"]))
        reset = int(resp.headers["X-RateLimit-Reset"])
        assert before < reset <= before + 2  # UTC epoch seconds
    assert remaining == [4, 3, 2, 1, 0]
    resp = get(sim, "/v1.0/leads")
    assert resp.status_code == 429
    assert resp.json() == {"message": "Too Many Requests"}
    assert "Retry-After" not in resp.headers
    assert resp.headers["X-RateLimit-Remaining"] == "0"
    # 429s do not consume budget: the next window starts fresh.
    time.sleep(max(0.0, int(resp.headers["X-RateLimit-Reset"]) - time.time()) + 0.05)
    resp = get(sim, "/v1.0/leads")
    assert resp.status_code == 200
    assert resp.headers["X-RateLimit-Remaining"] == "4"
    statuses = [status for _, _, status in sim.request_log]
    assert statuses == [200] * 5 + [429, 200]
    assert sim.counters["GET /v1.0/leads 429"] == 1


@pytest.mark.parametrize("fmt", ["epoch_ms", "seconds"])
def test_reset_header_formats(make_sim, fmt):
    sim = make_sim(leads=3, rate_limit=10, rate_window_s=60.0, reset_header=fmt)
    reset = int(get(sim, "/v1.0/leads").headers["X-RateLimit-Reset"])
    if fmt == "epoch_ms":
        assert abs(reset - (time.time() + 60) * 1000) < 3000
    else:
        assert 58 <= reset <= 60


def test_unlimited_rate_still_sends_headers(make_sim):
    sim = make_sim(leads=3, rate_limit=None)
    for _ in range(3):
        resp = get(sim, "/v1.0/leads")
        assert resp.status_code == 200
    assert int(resp.headers["X-RateLimit-Limit"]) >= 1_000_000
    assert "X-RateLimit-Reset" in resp.headers
    sim.configure(rate_limit=1)
    assert [get(sim, "/v1.0/leads").status_code for _ in range(2)] == [200, 429]


# ----------------------------------------------------------------------------- faults and latency


@pytest.mark.parametrize(
    ("kind", "status"), [("500_json", 500), ("503_json", 503), ("502_html", 502)]
)
def test_error_faults(make_sim, kind, status):
    sim = make_sim(leads=3, faults_at={2: kind})
    assert get(sim, "/v1.0/leads").status_code == 200
    resp = get(sim, "/v1.0/leads")
    assert resp.status_code == status
    assert "X-RateLimit-Limit" in resp.headers
    if kind == "502_html":
        assert resp.headers["Content-Type"].startswith("text/html")
        assert "<html>" in resp.text
    else:
        assert resp.json() == {"code": 20005, "message": "internal error"}
    assert get(sim, "/v1.0/leads").status_code == 200
    assert sim.counters[f"faults:{kind}"] == 1
    assert sim.counters[f"GET /v1.0/leads {status}"] == 1


def test_truncated_json_fault(make_sim):
    sim = make_sim(leads=3, faults_at={1: Fault.TRUNCATED_JSON})
    lead = sim.lead_ids()[0]
    resp = get(sim, "/v1.0/communication/call", {"leadId": lead})
    assert resp.status_code == 200
    assert int(resp.headers["Content-Length"]) == len(resp.content)
    with pytest.raises(ValueError):
        resp.json()
    assert sim.counters["faults:truncated_json"] == 1


def test_dropped_connection_fault(make_sim):
    sim = make_sim(leads=3, faults_at={1: "drop_connection"})
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.ConnectionError)):
        get(sim, "/v1.0/leads")
    assert get(sim, "/v1.0/leads").status_code == 200
    assert sim.counters["faults:drop_connection"] == 1


def test_slow_fault_outlasts_the_client_timeout(make_sim):
    sim = make_sim(leads=3, slow_s=1.0, faults_at={1: "slow", 2: "slow"})
    with pytest.raises(requests.exceptions.ReadTimeout):
        get(sim, "/v1.0/leads", timeout=0.3)
    started = time.monotonic()
    assert get(sim, "/v1.0/leads", timeout=3).status_code == 200  # slow, then normal
    assert time.monotonic() - started >= 1.0
    assert sim.counters["faults:slow"] == 2


def test_lead_deleted_fault_sticks(make_sim):
    sim = make_sim(leads=4, calls_per_lead_mean=3, faults_at={1: "lead_deleted"})
    lead = sim.lead_ids()[0]
    for _ in range(2):
        resp = get(sim, "/v1.0/communication/call", {"leadId": lead})
        assert (resp.status_code, resp.json()) == (
            404,
            {"code": 20006, "message": "LEAD_NOT_EXIST"},
        )
    assert lead in sim.lead_ids()
    assert sim.calls(lead) == []
    assert sim.counters["faults:lead_deleted"] == 1


def test_fault_rate_is_seeded_and_reproducible(make_sim):
    statuses = []
    for _ in range(2):
        sim = make_sim(leads=3, seed=5, fault_rate=0.3, fault_kinds=("500_json", "503_json"))
        statuses.append([get(sim, "/v1.0/leads").status_code for _ in range(40)])
    assert statuses[0] == statuses[1]
    assert 3 <= sum(s != 200 for s in statuses[0]) <= 25


def test_latency_and_jitter(make_sim):
    sim = make_sim(leads=3, latency_s=0.6, jitter_s=0.2)
    started = time.monotonic()
    assert get(sim, "/v1.0/leads").status_code == 200
    assert time.monotonic() - started >= 0.6
    sim.configure(latency_s=0.0, jitter_s=0.0)
    started = time.monotonic()
    get(sim, "/v1.0/leads")
    assert time.monotonic() - started < 0.6  # switched off: no longer the 0.6 s delay


# ----------------------------------------------------------------------------- data


def test_same_seed_gives_identical_bytes(make_sim):
    def transcript(sim: LoftySimulator) -> list[bytes]:
        out = []
        body = get(sim, "/v1.0/leads", {"limit": 40})
        out.append(body.content)
        out.append(
            get(sim, "/v1.0/leads", {"scrollId": body.json()["_metadata"]["scrollId"]}).content
        )
        for lead in sim.lead_ids()[:10]:
            out.append(
                get(sim, "/v1.0/communication/call", {"leadId": lead, "limit": 1000}).content
            )
        return out

    a = transcript(make_sim(leads=50, seed=42))
    b = transcript(make_sim(leads=50, seed=42))
    c = transcript(make_sim(leads=50, seed=43))
    assert a == b
    assert a[0] != c[0]


def test_append_calls_to_existing_and_new_leads(make_sim):
    sim = make_sim(leads=20, calls_per_lead_mean=4, big_leads=0)
    old_calls = sim.all_calls()
    old_leads = set(sim.lead_ids())
    new = sim.append_calls(existing_leads=3, new_leads=2, calls_per_lead=2)
    assert len(new) == 10
    assert min(c["id"] for c in new) > max(c["id"] for c in old_calls)
    assert min(c["createTime"] for c in new) >= max(c["createTime"] for c in old_calls)
    assert [c["id"] for c in new] == sorted(c["id"] for c in new)
    new_leads = set(sim.lead_ids()) - old_leads
    assert len(new_leads) == 2
    assert min(new_leads) > max(old_leads)
    assert {c["leadId"] for c in new} - old_leads == new_leads
    assert len({c["leadId"] for c in new} & old_leads) == 3
    assert sim.total_calls() == len(old_calls) + 10
    assert {c["id"] for c in sim.all_calls()} == {c["id"] for c in old_calls + new}
    # Served: new leads first in the default order, new calls first in offset mode.
    page = leads_page(sim, limit=2)
    assert {x["leadId"] for x in page["leads"]} == new_leads
    assert page["_metadata"]["total"] == 22
    existing = next(c["leadId"] for c in new if c["leadId"] in old_leads)
    served = calls_page(sim, leadId=existing, limit=2)
    assert served == sorted((c for c in new if c["leadId"] == existing), key=lambda c: -c["id"])
    lead = next(x for x in sim.leads() if x["leadId"] == existing)
    assert lead["lastTouch"].removesuffix("GMT").replace("T", " ") == served[0]["createTime"]


def test_delete_lead(make_sim):
    sim = make_sim(leads=10, calls_per_lead_mean=3)
    gone = sim.lead_ids()[4]
    sim.delete_lead(gone)
    assert gone not in sim.lead_ids()
    body = leads_page(sim, limit=100)
    assert gone not in [x["leadId"] for x in body["leads"]]
    assert body["_metadata"]["total"] == 9
    resp = get(sim, "/v1.0/communication/call", {"leadId": gone})
    assert (resp.status_code, resp.json()) == (404, {"code": 20006, "message": "LEAD_NOT_EXIST"})


def test_delete_after_listing(make_sim):
    sim = make_sim(leads=10, calls_per_lead_mean=5, big_leads=0)
    gone = lead_with_calls(sim, 1)
    total = sim.total_calls()
    lost = len(sim.calls(gone))
    sim.delete_after_listing({gone})
    assert gone in [x["leadId"] for x in leads_page(sim, limit=100)["leads"]]
    resp = get(sim, "/v1.0/communication/call", {"leadId": gone})
    assert (resp.status_code, resp.json()) == (404, {"code": 20006, "message": "LEAD_NOT_EXIST"})
    assert sim.calls(gone) == []
    assert sim.total_calls() == total - lost == len(sim.all_calls())
    assert gone not in {c["leadId"] for c in sim.all_calls()}


def test_large_data_set_serves():
    # How fast it starts is a figure of `python -m lofty_sim.bench`, not a timed assertion.
    sim = LoftySimulator(SimConfig(leads=100_000, seed=1, calls_per_lead_mean=10, big_leads=3))
    with sim:
        assert 900_000 < sim.total_calls() < 1_100_000
        assert get(sim, "/v1.0/leads", {"limit": 100}).status_code == 200


def test_concurrent_clients(make_sim):
    sim = make_sim(leads=30, calls_per_lead_mean=5, big_leads=0, rate_limit=None)
    errors: list[str] = []
    ids = sim.lead_ids()

    def worker(offset: int) -> None:
        with requests.Session() as session:
            session.headers["Authorization"] = f"token {sim.config.api_key}"
            for lead in ids[offset::4]:
                resp = session.get(
                    sim.url + "/v1.0/communication/call",
                    params={"leadId": lead, "limit": 1000},
                    timeout=TIMEOUT,
                )
                if [c["id"] for c in resp.json()["calls"]] != [
                    c["id"] for c in reversed(sim.calls(lead))
                ]:
                    errors.append(f"lead {lead}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sim.counters["GET /v1.0/communication/call 200"] == 30
    assert len(sim.request_log) == 30


# ----------------------------------------------------------------------------- control


def test_configure_validates():
    sim = LoftySimulator(SimConfig(leads=2))
    with pytest.raises(ValueError):
        sim.configure(leads=5)
    with pytest.raises(ValueError):
        sim.configure(cursor_mode="sideways")
    with pytest.raises(ValueError):
        sim.configure(no_such_switch=1)
    with pytest.raises(ValueError):
        SimConfig(fault_kinds=("gremlins",))
    assert sim.configure(fault_rate=0.5).fault_rate == 0.5


def test_sim_http_endpoints(make_sim):
    sim = make_sim(leads=6, calls_per_lead_mean=2, rate_limit=1)
    assert get(sim, "/v1.0/leads").status_code == 200
    appended = requests.post(
        sim.url + "/_sim/append",
        json={"existing_leads": 2, "new_leads": 1, "calls_per_lead": 2},
        timeout=TIMEOUT,
    )
    assert appended.status_code == 200
    assert len(appended.json()) == 6
    truth = requests.get(sim.url + "/_sim/truth", timeout=TIMEOUT).json()
    assert len(truth["leads"]) == 7
    assert [c["id"] for c in truth["calls"]] == [c["id"] for c in sim.all_calls()]
    config = requests.post(
        sim.url + "/_sim/configure", json={"cursor_mode": "inclusive"}, timeout=TIMEOUT
    )
    assert config.json()["cursor_mode"] == "inclusive" == sim.config.cursor_mode
    bad = requests.post(sim.url + "/_sim/configure", json={"seed": 3}, timeout=TIMEOUT)
    assert bad.status_code == 400
    stats = requests.get(sim.url + "/_sim/stats", timeout=TIMEOUT).json()
    # /_sim/ requests are neither counted nor rate limited (rate_limit=1).
    assert stats == {"GET /v1.0/leads 200": 1}
    requests.post(sim.url + "/_sim/reset_counters", timeout=TIMEOUT)
    assert sim.counters == {}
    assert sim.request_log == []


def test_cli_prints_url_and_credentials_and_stops_on_sigterm():
    proc = subprocess.Popen(
        [sys.executable, "-m", "lofty_sim", "--port", "0", "--leads", "12", "--seed", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().strip() for _ in range(3)]
        assert re.fullmatch(r"LOFTY_SIM_URL=http://127\.0\.0\.1:\d+", lines[0]), lines
        assert lines[1].startswith("LOFTY_SIM_API_KEY=")
        assert lines[2].startswith("LOFTY_SIM_ACCESS_TOKEN=")
        url = lines[0].split("=", 1)[1]
        for header in (f"token {lines[1].split('=', 1)[1]}", f"Bearer {lines[2].split('=', 1)[1]}"):
            resp = requests.get(
                url + "/v1.0/leads", headers={"Authorization": header}, timeout=TIMEOUT
            )
            assert resp.status_code == 200
            assert resp.json()["_metadata"]["total"] == 12
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
