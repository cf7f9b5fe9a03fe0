"""Rate limits, retries, clear errors, secrets and resumable syncs (issue 5)."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

import tap_lofty.client
import tap_lofty.tap
from tap_lofty.client import LoftyAPIError, LoftyError
from tests.tap_support import run_cli, run_tap, sim_config


@pytest.fixture
def fast_backoff(monkeypatch):
    """Retries still back off exponentially, from 20 ms instead of 1 s."""
    monkeypatch.setattr(tap_lofty.client, "BACKOFF_BASE_S", 0.02)


def max_per_window(log: list[tuple[float, str, int]], window_s: float) -> int:
    """Most requests the server received in any of its fixed windows."""
    start = log[0][0]
    counts = Counter(int((t - start) // window_s) for t, _, _ in log)
    return max(counts.values())


def test_2000_leads_tight_rate_limit_and_5_percent_faults_lose_nothing(
    make_sim, fast_backoff, caplog
):
    caplog.set_level(logging.INFO, logger="tap_lofty")
    sim = make_sim(
        leads=2000,
        seed=21,
        calls_per_lead_mean=2,
        big_leads=0,
        rate_limit=150,
        rate_window_s=1.0,
        fault_rate=0.05,
        slow_s=1.5,
    )
    started = time.monotonic()
    out = run_tap(sim_config(sim, request_timeout=0.5, max_concurrency=4))
    elapsed = time.monotonic() - started

    counters = sim.counters
    faults = {k: v for k, v in counters.items() if k.startswith("faults:")}
    summary = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Sync finished")]
    print(f"faults injected: {faults}; elapsed {elapsed:.1f}s; {summary}; counters {counters}")
    assert sum(faults.values()) >= 50, "the run must actually meet faults"
    want = {call["id"] for call in sim.all_calls()}
    got = out.ids("calls")
    assert set(got) == want, f"lost {len(want - set(got))} calls"
    assert len(got) == len(set(got))
    assert len(out.ids("leads", "leadId")) == 2000
    assert not [k for k in counters if k.endswith(" 429")], "the tap overran the server's window"
    assert max_per_window(sim.request_log, 1.0) <= 150


def test_tap_budget_paces_requests_per_window(make_sim, monkeypatch):
    # A 1 s window stands in for Lofty's 60 s one, so the test takes seconds.
    monkeypatch.setattr(tap_lofty.tap, "WINDOW_S", 1.0)
    sim = make_sim(leads=60, seed=2, calls_per_lead_mean=1, big_leads=0, rate_limit=None)
    run_tap(sim_config(sim, requests_per_minute=40, max_concurrency=4))
    log = sim.request_log
    # one per lead and stream, plus a few checks that a short page was the last
    assert 60 <= sim.counters["GET /v1.0/communication/call 200"] <= 60 + 10
    # A fixed window lets 40 through at its end and 40 more at the next one's start, so
    # any 1 s span of arrivals holds at most 80 (the server's clock is not the tap's) ...
    assert max_per_window(log, 1.0) <= 80
    # ... and N requests need at least N/40 - 1 windows after the first.
    assert log[-1][0] - log[0][0] >= len(log) / 40 - 1


def exhaust_window(sim: Any) -> None:
    """Another client of the same Lofty app uses up the current window."""
    headers = {"Authorization": f"token {sim.config.api_key}"}
    while requests.get(f"{sim.url}/v1.0/leads", headers=headers, timeout=5).status_code != 429:
        pass


def test_429_waits_for_the_reset_then_completes(make_sim, caplog):
    caplog.set_level(logging.INFO, logger="tap_lofty")
    sim = make_sim(
        leads=30, seed=3, calls_per_lead_mean=2, big_leads=0, rate_limit=20, rate_window_s=2.0
    )
    exhaust_window(sim)
    sim.reset_counters()
    out = run_tap(sim_config(sim))
    assert sim.counters.get("GET /v1.0/leads 429", 0) >= 1
    assert set(out.ids("calls")) == {c["id"] for c in sim.all_calls()}
    assert "429 Too Many Requests; waiting" in caplog.text


@pytest.mark.parametrize("reset_header", ["epoch", "epoch_ms", "seconds"])
def test_429_gives_up_after_max_rate_limit_wait_with_advice(make_sim, reset_header):
    sim = make_sim(leads=5, seed=3, rate_limit=3, rate_window_s=60.0, reset_header=reset_header)
    exhaust_window(sim)
    with pytest.raises(LoftyError) as caught:
        run_tap(sim_config(sim, max_rate_limit_wait=5))
    message = str(caught.value)
    assert "kept answering 429 Too Many Requests" in message
    assert "lower requests_per_minute" in message
    assert "max_rate_limit_wait" in message


def test_retries_exhausted_fail_clearly(make_sim, fast_backoff):
    sim = make_sim(leads=5, seed=3, fault_rate=1.0, fault_kinds=("503_json",))
    with pytest.raises(LoftyError) as caught:
        run_tap(sim_config(sim, max_retries=3))
    assert str(caught.value).startswith("GET /v1.0/leads failed 4 times in a row (last: HTTP 503)")
    assert sim.counters["GET /v1.0/leads 503"] == 4


@pytest.mark.parametrize(
    "kind", ["500_json", "502_html", "truncated_json", "drop_connection", "slow"]
)
def test_each_fault_kind_is_retried(make_sim, fast_backoff, kind):
    sim = make_sim(leads=8, seed=4, calls_per_lead_mean=3, big_leads=0, slow_s=1.0)
    sim.configure(faults_at={1: kind, 3: kind, 4: kind})
    out = run_tap(sim_config(sim, request_timeout=0.5))
    assert set(out.ids("calls")) == {c["id"] for c in sim.all_calls()}
    assert sim.counters[f"faults:{kind}"] >= 1


def test_403_missing_scope_is_not_retried_and_explained(make_sim):
    sim = make_sim(leads=3, seed=3)
    config = sim_config(sim, api_key=None, access_token=sim.config.no_calls_scope_token)
    with pytest.raises(LoftyAPIError) as caught:
        run_tap(config)
    message = str(caught.value)
    assert "GET /v1.0/communication/call failed with HTTP 403, Lofty code 200100" in message
    assert "lacks the scope for this endpoint" in message
    # one per lead in flight, never a retry
    assert 1 <= sim.counters["GET /v1.0/communication/call 403"] <= 4


def test_expired_scroll_is_a_clear_400(make_sim):
    sim = make_sim(leads=250, seed=3, calls_per_lead_mean=0, big_leads=0, scroll_ttl_s=0.0)
    with pytest.raises(LoftyAPIError) as caught:
        run_tap(sim_config(sim))
    assert "HTTP 400" in str(caught.value)
    assert "scroll token" in str(caught.value)


def test_no_credential_in_any_output(make_sim, tmp_path, fast_backoff):
    # Faults put retry lines in the output too; quick kinds only, since each CLI run is a
    # process of its own with the real backoff.
    sim = make_sim(
        leads=40,
        seed=5,
        calls_per_lead_mean=3,
        big_leads=0,
        fault_rate=0.1,
        fault_kinds=("500_json", "truncated_json", "drop_connection"),
    )
    secrets = [sim.config.api_key, sim.config.access_token]
    runs = [
        run_cli(["--test"], sim_config(sim), tmp_path),
        run_cli([], sim_config(sim), tmp_path),
        run_cli([], sim_config(sim, api_key=None, access_token=sim.config.access_token), tmp_path),
        run_cli([], sim_config(sim, api_key=sim.config.api_key + "x"), tmp_path),  # 401 path
        run_cli(["--about"], sim_config(sim), tmp_path),
    ]
    # DEBUG logging too (urllib3 logs every request line at that level).
    debug = subprocess.run(
        [str(Path(sys.executable).parent / "tap-lofty"), "--config", str(tmp_path / "config.json")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"LOGLEVEL": "DEBUG", "PATH": "/usr/bin:/bin"},
        timeout=120,
        check=False,
    )
    runs.append(debug)
    assert runs[1].returncode == 0 and runs[2].returncode == 0, runs[1].stderr[-2000:]
    assert runs[3].returncode == 1
    for result in runs:
        text = result.stdout + result.stderr
        for secret in secrets:
            assert secret not in text
            assert secret + "x" not in text


#: The team-level endpoints, answering as for a team with nothing in them.
EMPTY_TEAM: dict[str, Any] = {
    "/v1.0/members": {"_metadata": {"total": 0}, "members": []},
    "/v1.0/teamFeatures/lead-pipelines": {"_metadata": {"total": 0}, "pipelines": []},
    "/v1.0/team-features/lead-ponds": [],
    "/v2.0/transactions": {"totalCount": 0, "pageData": []},
}


class CannedLofty(BaseHTTPRequestHandler):
    """Serves fixed leads and calls bodies, to feed the tap unexpected data."""

    leads: list[dict[str, Any]] = []
    calls: dict[int, list[dict[str, Any]]] = {}

    def do_GET(self) -> None:
        from urllib.parse import parse_qs, urlparse

        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        body: Any
        if url.path == "/v1.0/leads":
            body = {"_metadata": {"total": len(self.leads)}, "leads": self.leads}
        elif url.path in EMPTY_TEAM:
            body = EMPTY_TEAM[url.path]
        else:
            lead_calls = self.calls.get(int(query["leadId"]), [])
            body = {"calls": lead_calls if query["currentId"] == "1" else []}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def canned():
    server = ThreadingHTTPServer(("127.0.0.1", 0), CannedLofty)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def canned_config(server: ThreadingHTTPServer) -> dict[str, Any]:
    return {"api_url": f"http://127.0.0.1:{server.server_address[1]}", "api_key": "k"}


def test_unexpected_data_passes_through(canned, caplog):
    CannedLofty.leads = [
        {
            "leadId": "9007199254740993",
            "brandNewField": {"x": 1},
            "opportunity": {"id": 12, "type": "Buyer"},  # live: an object; spec: a string
            "leadType": 2,
            "privateFlag": True,
            "score": "12",  # a digit string in an integer field
            "emails": ["a@example.com", 5],  # a number in a list of strings
        }
    ]
    CannedLofty.calls = {
        9007199254740993: [
            {
                "id": "9007199254740995",  # an id sent as a string
                "leadId": 9007199254740993,
                "direction": "Sideways",  # unknown enum value
                "callingOutcome": None,
                "note": None,
                "createTime": "2026-04-22 10:15:00",
                "surpriseField": 1,  # extra field
                "isMachineAnswered": 1,  # a boolean sent as 0/1
                "recordingSwitch": 0,
                # everything else missing
            }
        ]
    }
    with caplog.at_level(logging.WARNING):
        out = run_tap(canned_config(canned))
    (call,) = out.records["calls"]
    assert call == {
        "id": 9007199254740995,
        "leadId": 9007199254740993,
        "direction": "Sideways",
        "callingOutcome": None,
        "note": None,
        "createTime": "2026-04-22T10:15:00Z",
        "isMachineAnswered": True,
        "recordingSwitch": False,
        "lofty_unknown_fields": {"surpriseField": 1},
    }
    assert out.records["leads"] == [
        {
            "leadId": 9007199254740993,
            "lofty_unknown_fields": {"brandNewField": {"x": 1}},
            "opportunity": '{"id":12,"type":"Buyer"}',
            "leadType": 2,
            "privateFlag": True,
            "score": 12,
            "emails": ["a@example.com", "5"],
        }
    ]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("('surpriseField',)" in w and "'calls'" in w for w in warnings), warnings
    assert any("('brandNewField',)" in w and "'leads'" in w for w in warnings), warnings
    assert any("a JSON object in the 'opportunity' field" in w for w in warnings), warnings
    assert any("a digit string in the 'score' field" in w for w in warnings), warnings
    assert any("a JSON integer in the 'emails[]' field" in w for w in warnings), warnings


@pytest.mark.parametrize(
    ("lead", "message"),
    [
        ({"score": {"a": 1}}, "leads record leadId=5: field 'score' holds a JSON object"),
        ({"score": 1.5}, "field 'score' holds a JSON number"),
        ({"hiddenFlag": "yes"}, "field 'hiddenFlag' holds a JSON string"),
        ({"tags": "vip"}, "field 'tags' holds a JSON string"),
        ({"phoneStatuses": [2, "x"]}, "field 'phoneStatuses[]' holds a JSON string"),
    ],
)
def test_a_value_of_the_wrong_type_stops_the_run_naming_it(canned, lead, message):
    CannedLofty.leads = [{"leadId": 5, **lead}]
    CannedLofty.calls = {5: []}
    with pytest.raises(LoftyError, match=re.escape(message)):
        run_tap(canned_config(canned))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ({"id": 1.5e16}, "expects a 64-bit integer id"),
        ({"id": "abc"}, "expects a 64-bit integer id"),
        ({"id": 7, "startTime": "yesterday"}, "field 'startTime' holds 'yesterday'"),
    ],
)
def test_unexpected_data_fails_clearly(canned, call, message):
    CannedLofty.leads = [{"leadId": 5}]
    CannedLofty.calls = {5: [call]}
    with pytest.raises(LoftyError, match=message):
        run_tap(canned_config(canned))


def tap_command(config_path: Path, state_path: Path | None = None) -> list[str]:
    command = [str(Path(sys.executable).parent / "tap-lofty"), "--config", str(config_path)]
    if state_path is not None:
        command += ["--state", str(state_path)]
    return command
