"""The command line a data engineer can trust (issue 11): errors, --test, failing fast.

Everything here runs the real ``tap-lofty`` console script, as a user would.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.tap_support import ROOT, TapOutput, run_cli, sim_config

SECRET = "very-secret-key-4f1d"
ERROR = "tap-lofty: error: "
ABOUT = "`tap-lofty --about` describes every setting."
CREDENTIAL = (
    "Give exactly one way to authenticate: api_key (a Lofty API key, sent as 'token <key>'), "
    "access_token (an OAuth token, sent as 'Bearer <token>'), OAuth with a refresh token "
    "(client_id, client_secret and refresh_token, or a token cache from `tap-lofty --login`) "
    "or OAuth client credentials (client_id, client_secret and customer_key); "
)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(ERROR)]


def assert_one_clean_error(result: subprocess.CompletedProcess[str], first_line: str) -> None:
    """Exit 1, exactly one error paragraph (one line), the last line, no traceback."""
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "An unhandled error occurred" not in result.stderr
    assert error_lines(result.stderr) == [first_line], result.stderr[-3000:]
    assert result.stderr.rstrip("\n").splitlines()[-1] == first_line
    assert '"type":"RECORD"' not in result.stdout
    assert SECRET not in result.stdout + result.stderr


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) but never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


def base_config(**overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {"api_url": "http://127.0.0.1:9", "api_key": SECRET}
    config.update(overrides)
    return {k: v for k, v in config.items() if v is not None}


SETTING_ERRORS = [
    pytest.param(
        {"api_key": None},
        f"invalid settings (--config '{{config}}'): {CREDENTIAL}none is set. Fix them "
        f"and run again; {ABOUT}",
        id="no-credential",
    ),
    pytest.param(
        {"access_token": "also-a-token"},
        f"invalid settings (--config '{{config}}'): {CREDENTIAL}several are set (api_key, "
        f"access_token). Fix them and run again; {ABOUT}",
        id="both-credentials",
    ),
    pytest.param(
        {"leads_page_size": 500},
        "invalid settings (--config '{config}'): 500 is greater than the maximum of 100 in "
        f"config['leads_page_size']. Fix them and run again; {ABOUT}",
        id="leads_page_size-500",
    ),
    pytest.param(
        {"requests_per_minute": 0},
        "invalid settings (--config '{config}'): 0 is less than the minimum of 1 in "
        f"config['requests_per_minute']. Fix them and run again; {ABOUT}",
        id="requests_per_minute-0",
    ),
    pytest.param(
        {"api_url": "127.0.0.1:8765"},
        "invalid settings (--config '{config}'): api_url is '127.0.0.1:8765'; it must "
        "start with https:// (or http:// for a local test server) and name a host, e.g. "
        f"https://api.lofty.com. Fix them and run again; {ABOUT}",
        id="api_url-without-scheme",
    ),
]


@pytest.mark.parametrize("mode", [["--test"], []], ids=["test", "sync"])
@pytest.mark.parametrize(("bad", "message"), SETTING_ERRORS)
def test_invalid_setting_is_one_paragraph_naming_it(tmp_path, mode, bad, message):
    result = run_cli(mode, base_config(**bad), tmp_path)
    assert_one_clean_error(result, ERROR + message.replace("{config}", f"{tmp_path}/config.json"))


@pytest.mark.parametrize("mode", [["--test"], []], ids=["test", "sync"])
def test_no_config_at_all_says_so(tmp_path, mode):
    result = run_cli(mode, None, tmp_path)
    assert_one_clean_error(
        result,
        f"{ERROR}invalid settings (no --config given): {CREDENTIAL}none is set. Fix them "
        f"and run again; {ABOUT}",
    )


@pytest.mark.parametrize("mode", [["--test"], ["--discover"], []], ids=["test", "discover", "sync"])
def test_unreadable_config_file_is_named(tmp_path, mode):
    missing = run_cli([*mode, "--config", "nowhere.json"], None, tmp_path)
    assert_one_clean_error(
        missing,
        f"{ERROR}File at 'nowhere.json' was not found. Check the path given to --config. "
        f"Relative paths start from {tmp_path}.",
    )
    (tmp_path / "broken.json").write_text('{"api_key": ')
    broken = run_cli([*mode, "--config", "broken.json"], None, tmp_path)
    assert_one_clean_error(
        broken,
        f"{ERROR}a file given to --config, --state or --catalog is not valid JSON (--config "
        "'broken.json': Expecting value: line 1 column 13 (char 12)). Fix that file.",
    )
    (tmp_path / "list.json").write_text("[]")
    listed = run_cli([*mode, "--config", "list.json"], None, tmp_path)
    assert_one_clean_error(
        listed,
        f"{ERROR}the --config file 'list.json' holds a JSON list, not an object of settings "
        'like {"api_key": "..."}. Fix that file.',
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            '{"bookmarks": ',
            "a file given to --config, --state or --catalog is not valid JSON (--state "
            "'state.json': Expecting value: line 1 column 15 (char 14)). Fix that file. A "
            "broken --state can also be removed (with Meltano: `meltano state clear <state "
            "id>`) for a full sync.",
            id="not-json",
        ),
        pytest.param(
            "[]",
            "the --state file 'state.json' holds a JSON list, not a Singer state object like "
            '{"bookmarks": {...}}. Give it the value of the last STATE message of an earlier '
            "run, or leave --state out for a full sync.",
            id="a-list",
        ),
    ],
)
def test_unusable_state_file_is_named_and_nothing_is_synced(make_sim, tmp_path, text, message):
    sim = make_sim(leads=3, seed=1)
    (tmp_path / "state.json").write_text(text)
    result = run_cli(["--state", "state.json"], sim_config(sim, api_key=SECRET), tmp_path)
    assert_one_clean_error(result, ERROR + message)
    assert sum(sim.counters.values()) == 0, "a broken state must not start a (full) sync"


def test_missing_state_file_is_named_with_exit_1(make_sim, tmp_path):
    sim = make_sim(leads=3, seed=1)
    result = run_cli(["--state", "gone.json"], sim_config(sim, api_key=SECRET), tmp_path)
    assert_one_clean_error(
        result,
        f"{ERROR}File at 'gone.json' was not found. Check the path given to --state. Relative "
        f"paths start from {tmp_path}.",
    )


def test_state_ids_above_2_53_stay_exact(make_sim, tmp_path):
    sim = make_sim(leads=4, seed=2, calls_per_lead_mean=1, big_leads=0)
    big = 2**62 + 1  # no float holds it; above every call id of the simulator
    (tmp_path / "state.json").write_text(
        json.dumps(
            {"bookmarks": {"calls": {"replication_key": "id", "replication_key_value": big}}}
        )
    )
    result = run_cli(["--state", "state.json"], sim_config(sim), tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    out = TapOutput.parse(result.stdout)
    assert out.final_state["bookmarks"]["calls"]["replication_key_value"] == big
    assert f'"replication_key_value":{big}' in out.state_lines[-1]


def test_closed_port_in_sync_names_host_and_api_url(tmp_path, closed_port):
    url = f"http://127.0.0.1:{closed_port}"
    result = run_cli([], base_config(api_url=url, max_retries=1), tmp_path, timeout=60)
    assert_one_clean_error(
        result,
        f"{ERROR}GET /v1.0/leads failed 2 times in a row (last: 127.0.0.1:{closed_port} "
        "refused the connection). Lofty or the network is having trouble; the run stopped "
        f"rather than skip data. Check api_url ({url}) if this persists; otherwise run again "
        "later (the last STATE lets the next run resume), or raise max_retries.",
    )


def timed_test(
    config: dict[str, Any], tmp_path: Path
) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = run_cli(["--test"], config, tmp_path, timeout=60)
    return result, time.monotonic() - started


def test_connection_test_refused_answers_at_once(tmp_path, closed_port):
    url = f"http://127.0.0.1:{closed_port}"
    result, took = timed_test(base_config(api_url=url), tmp_path)
    print(f"--test against a closed port: {took:.2f} s")
    assert_one_clean_error(
        result,
        f"{ERROR}connection test failed: GET /v1.0/leads: 127.0.0.1:{closed_port} refused the "
        f"connection; api_url is '{url}'. Check api_url and that this machine can reach that "
        "host (firewall, proxy, VPN).",
    )
    assert "retry" not in result.stderr
    assert took < 15


def test_connection_test_unknown_host_names_it(tmp_path):
    url = "https://lofty-test.invalid"  # .invalid never resolves (RFC 2606)
    result, took = timed_test(base_config(api_url=url), tmp_path)
    print(f"--test against an unknown host: {took:.2f} s")
    assert_one_clean_error(
        result,
        f"{ERROR}connection test failed: GET /v1.0/leads: the host name lofty-test.invalid "
        f"could not be resolved (DNS); api_url is '{url}'. Check api_url for a typo, and this "
        "machine's DNS and proxy settings.",
    )
    assert took < 15


def test_connection_test_tls_failure_names_host(make_sim, tmp_path):
    sim = make_sim(leads=2, seed=1)
    url = sim.url.replace("http://", "https://")  # a plain-HTTP server
    result, took = timed_test(sim_config(sim, api_url=url, api_key=SECRET), tmp_path)
    print(f"--test with TLS against plain HTTP: {took:.2f} s")
    assert_one_clean_error(
        result,
        f"{ERROR}connection test failed: GET /v1.0/leads: the TLS handshake with 127.0.0.1 "
        f"failed (wrong version number); api_url is '{url}'. Check api_url: Lofty is "
        "https://api.lofty.com (http:// only for a local test server), and any proxy that "
        "intercepts TLS.",
    )
    assert took < 15


@pytest.mark.parametrize(
    ("request_timeout", "waited"),
    [
        (2, "2 s (request_timeout)"),
        (60, "10 s (--test waits at most 10 s; request_timeout is 60 s)"),
    ],
)
def test_connection_test_timeout_names_request_timeout(
    tmp_path, silent_server, request_timeout, waited
):
    url = f"http://127.0.0.1:{silent_server}"
    config = base_config(api_url=url, request_timeout=request_timeout)
    result, took = timed_test(config, tmp_path)
    print(f"--test against a silent server, request_timeout={request_timeout}: {took:.2f} s")
    assert_one_clean_error(
        result,
        f"{ERROR}connection test failed: GET /v1.0/leads: 127.0.0.1:{silent_server} did not "
        f"answer within {waited}; api_url is '{url}'. Lofty or the network "
        "is slow or a firewall drops the traffic; try again, or raise request_timeout.",
    )
    assert took < 15


def test_connection_test_passes_in_one_line(make_sim, tmp_path):
    sim = make_sim(leads=3, seed=1)
    result, took = timed_test(sim_config(sim, requests_per_minute=1), tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[-1].endswith(
        f"Connection test passed: {sim.url} accepted the credential; both the leads and the "
        "calls endpoints answered."
    )
    assert took < 15  # requests_per_minute=1 must not make the second request wait a window


def test_connection_test_401_is_one_paragraph(make_sim, tmp_path):
    sim = make_sim(leads=3, seed=1)
    result = run_cli(["--test"], sim_config(sim, api_key=SECRET), tmp_path)
    assert_one_clean_error(
        result,
        f"{ERROR}connection test failed: GET /v1.0/leads failed with HTTP 401, Lofty code "
        "401: 'BAD_CREDENTIALS: invalid or missing token'. The credential was refused. "
        "Check api_key (sent as 'Authorization: token <key>') or access_token (sent as "
        "'Authorization: Bearer <token>'): it may be mistyped, expired or revoked.",
    )


def test_help_describes_test_truthfully(tmp_path):
    result = run_cli(["--help"], None, tmp_path)
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "sync a single record" not in text
    assert "Check api_url and the credential with one small request to each endpoint" in text


def test_about_python_versions_match_requires_python(tmp_path):
    import tomllib
    from packaging.specifiers import SpecifierSet

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    allowed = SpecifierSet(project["requires-python"])
    result = run_cli(["--about", "--format=json"], None, tmp_path)
    shown = json.loads(result.stdout)["supported_python_versions"]
    assert shown and all(f"{v}.0" in allowed for v in shown), (shown, str(allowed))
    lowest = min(shown, key=lambda v: int(v.split(".")[1]))
    below = f"3.{int(lowest.split('.')[1]) - 1}.99"
    assert below not in allowed, f"requires-python allows {below}, --about starts at {lowest}"


def test_api_outage_stops_the_run_within_seconds_and_resumes(make_sim, tmp_path):
    data = {"leads": 1500, "seed": 31, "calls_per_lead_mean": 3, "big_leads": 0}
    sim = make_sim(**data, rate_limit=None, latency_s=0.05)
    config = sim_config(sim, max_retries=3)
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    command = [str(Path(sys.executable).parent / "tap-lofty"), "--config", str(config_path)]
    started = time.monotonic()
    stderr: list[tuple[float, str]] = []
    with (tmp_path / "out.jsonl").open("wb") as sink:
        tap = subprocess.Popen(command, stdout=sink, stderr=subprocess.PIPE, text=True)
        assert tap.stderr is not None
        stream = tap.stderr

        def read() -> None:
            for line in stream:
                stderr.append((time.monotonic() - started, line.rstrip("\n")))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        time.sleep(2.0)
        sim.stop()  # the API is gone, mid-sync
        stopped = time.monotonic() - started
        try:
            tap.wait(timeout=120)
        finally:
            tap.kill()
        exited = time.monotonic() - started
        reader.join(timeout=10)
    errors = [(t, line) for t, line in stderr if line.startswith(ERROR)]
    assert len(errors) == 1, stderr[-20:]
    error_at = errors[0][0]
    print(
        f"API stopped at {stopped:.1f} s, error at {error_at:.1f} s, exit at {exited:.1f} s: "
        f"exit {exited - error_at:.2f} s after the error"
    )
    assert tap.returncode == 1
    assert stderr[-1][1] == errors[0][1], "the error must be the last line on stderr"
    assert "refused the connection" in errors[0][1] or "broke before" in errors[0][1]
    assert not any("Traceback" in line for _, line in stderr)
    assert not any("An unhandled error occurred" in line for _, line in stderr)
    assert exited - error_at < 10

    # The last STATE is a safe resume point: a rerun from it loses no call.
    text = (tmp_path / "out.jsonl").read_text()
    first = TapOutput.parse(text)
    assert first.states, "no STATE before the outage"
    resume = first.final_state
    assert "leadsCreatedBefore" in resume["bookmarks"]["calls"]["resume"], resume
    (tmp_path / "state.json").write_text(json.dumps(resume))
    fresh = make_sim(**data, rate_limit=None)
    result = run_cli(["--state", "state.json"], sim_config(fresh), tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    second = TapOutput.parse(result.stdout)
    want = {call["id"] for call in fresh.all_calls()}
    got = set(first.ids("calls")) | set(second.ids("calls"))
    assert want <= got, f"lost {len(want - got)} calls"
    assert len(second.ids("calls")) < len(want), "the rerun should resume, not start over"


def test_a_mistyped_secret_is_not_quoted_in_the_error(tmp_path):
    result = run_cli(["--test"], base_config(api_key=4815162342), tmp_path)
    assert_one_clean_error(
        result,
        f"{ERROR}invalid settings (--config '{tmp_path}/config.json'): api_key must be a string "
        f"(its value is not shown: it is a secret). Fix them and run again; {ABOUT}",
    )
    assert "4815162342" not in result.stderr


def test_connection_test_rate_limited_answers_within_seconds(make_sim, tmp_path):
    import requests

    sim = make_sim(leads=3, seed=1, rate_limit=3, rate_window_s=60.0)
    headers = {"Authorization": f"token {sim.config.api_key}"}
    while requests.get(f"{sim.url}/v1.0/leads", headers=headers, timeout=5).status_code != 429:
        pass  # another client of the same app uses up the window
    result, took = timed_test(sim_config(sim, api_key=sim.config.api_key), tmp_path)
    print(f"--test while Lofty answers 429: {took:.2f} s")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = error_lines(result.stderr)
    assert line.startswith(
        f"{ERROR}connection test failed: GET /v1.0/leads: Lofty kept answering 429 Too Many "
        "Requests; the tap waited 0 s in total for its rate-limit window, and the next reset is "
    )
    assert "beyond the 10 s that --test waits at most." in line
    assert took < 15
