"""The team-level streams (members, lead_stages, ponds, transactions) and ACTIVATE_VERSION.

Simulator data that joins, the endpoints' paging contracts, the tap's paging rules (learnt
page sizes, silent caps, repeated pages, partial listings), scopes, and when the tap sends
ACTIVATE_VERSION (only after a complete listing).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tap_lofty.client import LoftyAPIError
from tap_lofty.pagination import LeadsPage, PaginationError, TeamListing
from tap_lofty.timefmt import to_rfc3339
from tests.tap_support import TapOutput, run_cli, run_tap, sim_config

TEAM = ("members", "lead_stages", "ponds", "transactions")
KEYS = {"members": "id", "lead_stages": "id", "ponds": "id", "transactions": "transactionId"}
PATHS = {
    "members": "/v1.0/members",
    "lead_stages": "/v1.0/teamFeatures/lead-pipelines",
    "ponds": "/v1.0/team-features/lead-ponds",
    "transactions": "/v2.0/transactions",
}
TX_TIMES = (
    "created",
    "updated",
    "expectedCloseDate",
    "closeDate",
    "appointmentDate",
    "agreementSignedDate",
    "offerDate",
    "contractDate",
    "appraisalDate",
    "homeInspectionDate",
    "escrowDate",
    "expiration",
)


def get(sim: Any, path: str, params: dict[str, Any] | None = None, **headers: str) -> Any:
    sent = {"Authorization": f"token {sim.config.api_key}", "Content-Type": "application/json"}
    sent.update(headers)
    return requests.get(sim.url + path, params=params or {}, headers=sent, timeout=10)


def activations(out: TapOutput) -> dict[str, int]:
    found = {}
    for line in out.lines:
        message = json.loads(line)
        if message["type"] == "ACTIVATE_VERSION":
            assert message["stream"] not in found, "one ACTIVATE_VERSION per stream and run"
            found[message["stream"]] = message["version"]
    return found


def record_versions(out: TapOutput, stream: str) -> set[Any]:
    return {
        json.loads(line).get("version")
        for line in out.lines
        if f'"stream":"{stream}"' in line and '"type":"RECORD"' in line
    }


# ----------------------------------------------------------------------------- simulator data


def test_simulator_team_data_joins_the_rest(make_sim):
    sim = make_sim(leads=300, seed=4, calls_per_lead_mean=3, big_leads=0, rate_limit=None)
    users = {m["memberUserId"] for m in sim.members()}
    assert len(users) == len(sim.members()) == 40
    for rows, fields in (
        (sim.all_calls(), ("userId", "agentId")),
        (sim.all_texts(), ("agentId",)),
        (sim.all_emails(), ("agentId",)),
    ):
        assert rows
        for field in fields:
            assert {r[field] for r in rows} <= users, field
    leads = sim.leads()
    stage_ids = {s["id"] for s in sim.lead_stages()}
    assert {lead["stageId"] for lead in leads} <= stage_ids
    assert len({lead["stageId"] for lead in leads}) == len(stage_ids)  # every stage is used
    assert {lead["assignedUserId"] for lead in leads} <= users
    assert {lead["lenderUserId"] for lead in leads} - {-1} <= users
    pond_ids = {p["id"] for p in sim.ponds()}
    assert {lead["pondId"] for lead in leads} <= pond_ids | {0, -1}
    assert {lead["pondId"] for lead in leads} & pond_ids, "no lead in a pond: the join is untested"
    for pond in sim.ponds():
        assert pond["pondOwnerId"] in users
        assert set(pond["agentIds"]) <= users
    lead_ids = {lead["leadId"] for lead in leads}
    transactions = sim.transactions()
    assert len(transactions) > 50
    assert {t["leadId"] for t in transactions} <= lead_ids
    assert {t["assignedAgent"] for t in transactions} <= users
    assert len({t["transactionId"] for t in transactions}) == len(transactions)
    assert {t["transactionType"] for t in transactions} == {"Purchase", "Listing", "Lease", "Other"}


def test_simulator_team_data_is_deterministic(make_sim):
    one = make_sim(leads=50, seed=9)
    two = make_sim(leads=50, seed=9)
    for name in TEAM:
        assert getattr(one, name)() == getattr(two, name)()
    assert make_sim(leads=50, seed=10).transactions() != one.transactions()


def test_simulator_members_endpoint(make_sim):
    sim = make_sim(leads=5, seed=1, team_members=60, members_max_limit=40)
    body = get(sim, "/v1.0/members").json()
    assert body["_metadata"] == {"collection": "members", "limit": 25, "offset": 0, "total": 60}
    assert [m["id"] for m in body["members"]] == [m["id"] for m in sim.members()[:25]]
    page = get(sim, "/v1.0/members", {"limit": 40, "offset": -3}).json()
    assert page["_metadata"]["offset"] == 0  # a negative offset is reset to 0 (documented)
    assert len(page["members"]) == 40
    refused = get(sim, "/v1.0/members", {"limit": 41})
    assert refused.status_code == 400
    assert refused.json() == {"code": 20042, "message": "LIMIT_PARAM_OVERSIZE"}
    sim.configure(members_limit_in_message=True)
    assert "must not exceed 40" in get(sim, "/v1.0/members", {"limit": 41}).json()["message"]
    none = get(sim, "/v1.0/members", {"groupIds": "5"})
    assert (none.status_code, none.json()["code"]) == (404, 20003)


def test_simulator_stages_ponds_and_transactions_endpoints(make_sim):
    sim = make_sim(leads=200, seed=2)
    first = get(sim, "/v1.0/teamFeatures/lead-pipelines").json()
    assert first["_metadata"]["total"] == 11
    assert len(first["pipelines"]) == 10  # the documented default pageSize
    second = get(sim, "/v1.0/teamFeatures/lead-pipelines", {"currPage": 1}).json()
    assert first["pipelines"] + second["pipelines"] == sim.lead_stages()
    ponds = get(sim, "/v1.0/team-features/lead-ponds")
    assert ponds.json() == sim.ponds()
    bare = requests.get(
        sim.url + "/v1.0/team-features/lead-ponds",
        headers={"Authorization": f"token {sim.config.api_key}"},
        timeout=10,
    )
    assert (bare.status_code, bare.json()["code"]) == (415, 20001)
    everything = sim.transactions()
    default = get(sim, "/v2.0/transactions", {"pageSize": 100}).json()
    purchases = [t for t in everything if t["transactionType"] == "Purchase"]
    assert default["totalCount"] == len(purchases) < len(everything)  # Purchase by default
    rows: list[dict[str, Any]] = []
    for page in range(3):
        body = get(
            sim, "/v2.0/transactions", {"transactionType": "all", "pageNum": page, "pageSize": 25}
        ).json()
        assert body["totalCount"] == len(everything)
        rows += body["pageData"]
    assert rows == everything[:75]
    assert get(sim, "/v2.0/transactions", {"pageSize": 101}).json()["code"] == 20042


@pytest.mark.parametrize("stream", TEAM)
def test_simulator_withholds_each_team_scope(make_sim, stream):
    sim = make_sim(leads=3, seed=1, missing_scopes=[stream])
    resp = get(sim, PATHS[stream])
    assert (resp.status_code, resp.json()["code"]) == (403, 200100)
    other = next(s for s in TEAM if s != stream)
    assert get(sim, PATHS[other]).status_code == 200


# ----------------------------------------------------------------------------- the tap


def expected(stream: str, row: dict[str, Any]) -> dict[str, Any]:
    """What the tap must emit for a source row: times RFC 3339 UTC, the catch-all null."""
    out = dict(row)
    if stream == "transactions":
        for field in TX_TIMES:
            if field in out:
                out[field] = to_rfc3339(out[field], field)
    return out


def test_tap_emits_every_team_row_as_served(make_sim):
    sim = make_sim(leads=400, seed=3, calls_per_lead_mean=1, big_leads=0, rate_limit=None)
    out = run_tap(sim_config(sim))
    for stream in TEAM:
        key = KEYS[stream]
        got = {r[key]: r for r in out.records[stream]}
        truth = getattr(sim, stream)()
        assert len(got) == len(out.records[stream]) == len(truth), stream
        for row in truth:
            record = got[row[key]]
            assert {k: v for k, v in record.items() if v is not None} == expected(stream, row)
    tx = out.records["transactions"][0]
    assert tx["created"].endswith("Z")
    assert type(tx["transactionId"]) is int
    # transactionType=All is sent: every type arrives, not only Purchase.
    types = {r["transactionType"] for r in out.records["transactions"]}
    assert types == {"Purchase", "Listing", "Lease", "Other"}
    counts = {
        stream: sum(n for k, n in sim.counters.items() if k.startswith(f"GET {PATHS[stream]} "))
        for stream in TEAM
    }
    assert counts == {"members": 2, "lead_stages": 1, "ponds": 1, "transactions": 2}


@pytest.mark.parametrize(
    ("in_message", "requests_made"),
    [
        (False, 5),  # 100 and 50 refused, then pages of 25: 25 + 25 + 20
        (True, 4),  # 100 refused, the message names 30: 30 + 30 + 10
    ],
)
def test_members_page_size_is_learnt_at_run_time(make_sim, caplog, in_message, requests_made):
    sim = make_sim(
        leads=5,
        seed=2,
        team_members=70,
        members_max_limit=30,
        members_limit_in_message=in_message,
        rate_limit=None,
    )
    with caplog.at_level(logging.INFO, logger="tap_lofty"):
        out = run_tap(sim_config(sim))
    assert sorted(out.ids("members")) == sorted(m["id"] for m in sim.members())
    assert len(out.ids("members")) == 70
    made = {k: n for k, n in sim.counters.items() if k.startswith("GET /v1.0/members")}
    assert sum(made.values()) == requests_made
    assert made["GET /v1.0/members 400"] == (1 if in_message else 2)
    learnt = 30 if in_message else 25
    assert f"refused limit=100 as too large and accepted {learnt}" in caplog.text


@pytest.mark.parametrize("stream", TEAM)
def test_a_missing_team_scope_skips_that_stream_with_one_warning(make_sim, caplog, stream):
    sim = make_sim(leads=20, seed=5, calls_per_lead_mean=2, big_leads=0, rate_limit=None)
    sim.configure(missing_scopes=[stream])
    with caplog.at_level(logging.WARNING, logger="tap_lofty"):
        out = run_tap(sim_config(sim))
    assert stream not in out.records
    assert stream not in activations(out)
    for other in TEAM:
        if other != stream:
            assert len(out.records[other]) == len(getattr(sim, other)()), other
    assert len(out.records["calls"]) == sim.total_calls()
    warnings = [r.getMessage() for r in caplog.records if "lacks the scope" in r.getMessage()]
    assert len(warnings) == 1
    assert f"'{stream}' stream is skipped" in warnings[0]
    assert PATHS[stream] in warnings[0]


def test_activate_version_after_each_complete_listing(make_sim):
    sim = make_sim(leads=30, seed=6, calls_per_lead_mean=2, big_leads=0, rate_limit=None)
    out = run_tap(sim_config(sim))
    found = activations(out)
    assert set(found) == {"leads", *TEAM}  # full-table streams only, not calls/texts/emails
    (version,) = set(found.values())
    for stream in ("leads", *TEAM):
        assert record_versions(out, stream) == {version}, stream
    assert record_versions(out, "calls") == {None}
    # Each ACTIVATE_VERSION comes after the last record of its stream.
    for stream in found:
        last_record = max(
            i
            for i, line in enumerate(out.lines)
            if f'"stream":"{stream}"' in line and "RECORD" in line
        )
        activate = next(
            i
            for i, line in enumerate(out.lines)
            if "ACTIVATE_VERSION" in line and f'"stream":"{stream}"' in line
        )
        assert activate > last_record, stream
    off = run_tap(sim_config(sim, emit_activate_version_messages=False))
    assert activations(off) == {}
    assert record_versions(off, "leads") == {None}


def test_a_failed_listing_sends_no_activate_version(make_sim, tmp_path):
    sim = make_sim(leads=60, seed=7, calls_per_lead_mean=1, big_leads=0, rate_limit=None)
    sim.configure(scroll_ttl_s=0.0)  # the second leads page is refused: the run fails
    result = run_cli([], sim_config(sim, leads_page_size=20), tmp_path)
    assert result.returncode == 1
    out = TapOutput.parse(result.stdout)
    assert 0 < len(out.records["leads"]) < 60
    assert "leads" not in activations(out)


def test_a_listing_short_of_its_total_sends_no_activate_version(make_sim, monkeypatch, caplog):
    sim = make_sim(leads=10, seed=8, calls_per_lead_mean=1, big_leads=0, rate_limit=None)
    leads = sim.leads()

    def short_scroll(client: Any, page_size: int) -> Iterator[LeadsPage]:
        yield LeadsPage(leads[:5], 11)  # Lofty counts 11, the scroll ends after 10
        yield LeadsPage(leads[5:], 11)

    monkeypatch.setattr("tap_lofty.streams.scroll_leads", short_scroll)
    with caplog.at_level(logging.WARNING, logger="tap_lofty"):
        out = run_tap(sim_config(sim))
    assert len(out.records["leads"]) == 10
    assert "leads" not in activations(out)
    assert "members" in activations(out)
    assert "'leads' listing was not complete (10 leads listed, 11 counted by Lofty)" in caplog.text


# ----------------------------------------------------------------------------- paging rules


class FakeClient:
    """Answers GETs from a function of the params; records them."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.sent: list[dict[str, Any]] = []

    def get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        self.sent.append(dict(params))
        return self.answer(params)  # type: ignore[no-any-return]


def page_listing(**overrides: Any) -> TeamListing:
    settings: dict[str, Any] = {
        "path": "/x",
        "key": "rows",
        "id_field": "id",
        "size_param": "pageSize",
        "position_param": "pageNum",
        "by_page": True,
        "size": 10,
        "documented_size": 5,
        "params": {},
        "total_key": "total",
    }
    settings.update(overrides)
    return TeamListing(**settings)


def test_a_silently_capped_page_number_listing_loses_nothing():
    rows = [{"id": i} for i in range(1, 13)]

    def answer(params: dict[str, Any]) -> dict[str, Any]:
        size = min(params["pageSize"], 4)  # the server caps pages at 4, silently
        start = params["pageNum"] * size
        return {"rows": rows[start : start + size], "total": 12}

    client = FakeClient(answer)
    pages = page_listing().pages(client)  # type: ignore[arg-type]
    got = [r["id"] for page in pages for r in page]
    assert got == list(range(1, 13))
    assert pages.complete
    assert [p["pageNum"] for p in client.sent] == [0, 1, 2]
    assert [p["pageSize"] for p in client.sent] == [10, 4, 4]


def test_a_repeated_page_is_an_error():
    client = FakeClient(lambda params: {"rows": [{"id": 1}, {"id": 2}], "total": 10})
    with pytest.raises(PaginationError, match="repeated only rows already listed"):
        list(page_listing(size=2, documented_size=2).pages(client))  # type: ignore[arg-type]


def test_a_listing_ending_before_its_total_is_not_complete(caplog):
    def answer(params: dict[str, Any]) -> dict[str, Any]:
        start = params["offset"]
        return {"rows": [{"id": i} for i in range(start, min(start + 5, 8))], "total": 20}

    client = FakeClient(answer)
    listing = page_listing(position_param="offset", by_page=False, size=5)
    pages = listing.pages(client)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="tap_lofty"):
        got = [r["id"] for page in pages for r in page]
    assert got == list(range(8))
    assert not pages.complete
    assert "ended after 8 of the 20 rows it reported" in caplog.text


def test_without_a_total_a_short_page_ends_the_listing():
    rows = [{"id": str(i)} for i in range(7)]  # digit strings: exact ints out

    def answer(params: dict[str, Any]) -> dict[str, Any]:
        start = params["pageNum"] * params["pageSize"]
        return {"rows": rows[start : start + params["pageSize"]]}

    client = FakeClient(answer)
    pages = page_listing(size=5, total_key="missing").pages(client)  # type: ignore[arg-type]
    got = [r["id"] for page in pages for r in page]
    assert got == list(range(7))
    assert pages.complete
    assert len(client.sent) == 2


def test_a_refusal_at_the_documented_size_is_raised():
    def answer(params: dict[str, Any]) -> dict[str, Any]:
        raise LoftyAPIError(
            "GET /x failed", status=400, endpoint="GET /x", code=20042, detail="LIMIT_NOT_VALID"
        )

    client = FakeClient(answer)
    with pytest.raises(LoftyAPIError):
        list(page_listing(size=20, documented_size=5).pages(client))  # type: ignore[arg-type]
    assert [p["pageSize"] for p in client.sent] == [20, 10, 5]
