"""OAuth 2.0 (issue 14): token grants, renewal, rotation, the token cache and ``--login``.

Everything runs against the simulator's token endpoint and consent page
(``lofty_sim/oauth.py``), reached through the ``oauth_token_url`` and
``oauth_authorize_url`` settings.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tap_lofty.auth import OAuthApp, OAuthSession, TokenCache
from tap_lofty.client import LoftyClient
from tap_lofty.ratelimit import RequestBudget
from tests.tap_support import TapOutput, run_cli, run_tap, sim_config

ERROR = "tap-lofty: error: "
TOKEN_PATH = "/api/user-web/oauth/token"


def oauth_config(sim: Any, tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """A tap config for the refresh-token way, with its cache in ``tmp_path``."""
    cfg = sim.oauth.config
    config = sim_config(
        sim,
        api_key=None,
        client_id=cfg.client_id,
        client_secret=cfg.client_secret,
        oauth_token_url=sim.url + TOKEN_PATH,
        oauth_authorize_url=sim.url + "/page/vendor-auth.html",
        token_cache_path=str(tmp_path / "cache" / "tokens.json"),
    )
    config.update(overrides)
    return {k: v for k, v in config.items() if v is not None}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def token_post(sim: Any, form: dict[str, str], *, basic: bool = True) -> requests.Response:
    cfg = sim.oauth.config
    auth = (cfg.client_id, cfg.client_secret) if basic else None
    if not basic:
        form = {**form, "client_id": cfg.client_id, "client_secret": cfg.client_secret}
    return requests.post(sim.url + TOKEN_PATH, data=form, auth=auth, timeout=5)


def api_status(sim: Any, access_token: str) -> int:
    headers = {"Authorization": f"Bearer {access_token}"}
    return requests.get(sim.url + "/v1.0/leads", headers=headers, timeout=5).status_code


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The one error paragraph, checked to be the last line, exit 1, no traceback."""
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith(ERROR)]
    assert len(errors) == 1, result.stderr[-3000:]
    assert result.stderr.rstrip("\n").splitlines()[-1] == errors[0]
    return errors[0]


# ---------------------------------------------------------------------- the simulator


def test_sim_token_endpoint_grants_rotation_and_expiry(make_sim):
    sim = make_sim(leads=2, seed=1, rate_limit=2)  # two API requests a minute
    sim.oauth.configure(access_ttl_s=1)
    first = sim.oauth.issue_refresh_token()
    answer = token_post(sim, {"grant_type": "refresh_token", "refresh_token": first})
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert body["expires_in"] == 1 and body["refresh_token"] != first
    # Rotation: the used refresh token is dead at once; the new one works, by body auth too.
    again = token_post(sim, {"grant_type": "refresh_token", "refresh_token": first})
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    form = {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}
    assert token_post(sim, form, basic=False).status_code == 200
    # Client credentials: customer_key must be the user's API key; no refresh token.
    cc = token_post(sim, {"grant_type": "client_credentials", "customer_key": sim.config.api_key})
    assert cc.status_code == 200 and "refresh_token" not in cc.json()
    bad_cc = token_post(sim, {"grant_type": "client_credentials", "customer_key": "nope"})
    assert bad_cc.json()["error"] == "invalid_grant"
    wrong = requests.post(
        sim.url + TOKEN_PATH,
        data={"grant_type": "client_credentials", "customer_key": sim.config.api_key},
        auth=(sim.oauth.config.client_id, "wrong-secret"),
        timeout=5,
    )
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    # Not rate-limited: more token requests than the API limit, none counted as API.
    client_credentials = {"grant_type": "client_credentials", "customer_key": sim.config.api_key}
    assert all(token_post(sim, client_credentials).status_code == 200 for _ in range(5))
    assert sim.request_count == 0
    # The access token works on the API until its lifetime is over, then 401.
    token = token_post(
        sim, {"grant_type": "client_credentials", "customer_key": sim.config.api_key}
    ).json()["access_token"]
    assert api_status(sim, token) == 200
    time.sleep(1.1)
    assert api_status(sim, token) == 401
    assert sim.oauth.counters["refresh_token 200"] == 2
    assert sim.oauth.counters["invalid_grant"] == 2


def test_sim_authorize_redirects_with_a_single_use_code(make_sim):
    sim = make_sim(leads=1, seed=1)
    cfg = sim.oauth.config
    redirect = "http://127.0.0.1:1/callback"
    consent = requests.get(
        sim.url + "/page/vendor-auth.html",
        params={"clientId": cfg.client_id, "redirect_uri": redirect, "state": "s1"},
        allow_redirects=False,
        timeout=5,
    )
    assert consent.status_code == 302
    location = consent.headers["Location"]
    assert location.startswith(redirect + "?code=") and location.endswith("&state=s1")
    code = location.split("code=")[1].split("&")[0]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect}
    exchanged = token_post(sim, form)
    assert exchanged.status_code == 200 and exchanged.json()["refresh_token"]
    assert token_post(sim, form).json()["error"] == "invalid_grant"  # used once already
    sim.oauth.configure(consent="deny")
    denied = requests.get(
        sim.url + "/page/vendor-auth.html",
        params={"clientId": cfg.client_id, "redirect_uri": redirect},
        allow_redirects=False,
        timeout=5,
    )
    assert denied.headers["Location"] == redirect + "?error=access_denied"


# ---------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("settings", "names"),
    [
        pytest.param(
            {"api_key": "k", "client_id": "c"},
            "several are set (api_key, OAuth: client_id)",
            id="key-and-oauth",
        ),
        pytest.param(
            {"client_id": "c", "refresh_token": "r"},
            "OAuth needs client_id and client_secret (your Lofty app's, from the Developer "
            "Portal); client_secret is not set",
            id="no-secret",
        ),
        pytest.param(
            {"client_id": "c", "client_secret": "s", "refresh_token": "r", "customer_key": "k"},
            "Give refresh_token (a user's sign-in) or customer_key (client credentials for the "
            "user with that API key), not both",
            id="two-grants",
        ),
        pytest.param(
            {"client_id": "c", "client_secret": "s"},
            "OAuth with client_id and client_secret needs a refresh token: run `tap-lofty "
            "--config <your config> --login` once",
            id="nothing-to-renew-with",
        ),
    ],
)
def test_anything_but_one_way_is_refused_before_any_request(make_sim, tmp_path, settings, names):
    sim = make_sim(leads=2, seed=1)
    config = oauth_config(sim, tmp_path, client_id=None, client_secret=None) | settings
    result = run_cli([], config, tmp_path)
    line = one_line_error(result)
    assert line.startswith(ERROR + "invalid settings")
    assert names in line
    assert sim.request_count == 0 and sim.oauth.counters == {}
    for secret in ("s", "r", "k"):
        assert f"'{secret}'" not in line


# ---------------------------------------------------------------------- runs


def truth_ids(sim: Any) -> dict[str, list[int]]:
    return {
        "leads": sorted(sim.lead_ids()),
        "calls": sorted(c["id"] for c in sim.all_calls()),
        "texts": sorted(t["id"] for t in sim.all_texts()),
    }


def assert_everything_once(out: TapOutput, sim: Any) -> None:
    truth = truth_ids(sim)
    assert sorted(out.ids("leads", "leadId")) == truth["leads"]
    assert sorted(out.ids("calls")) == truth["calls"]  # each exactly once
    assert sorted(out.ids("texts")) == truth["texts"]


def test_sync_outliving_five_token_lifetimes(make_sim, tmp_path):
    sim = make_sim(
        leads=320,
        seed=3,
        calls_per_lead_mean=3,
        big_leads=0,
        big_text_leads=0,
        latency_s=0.03,
        rate_limit=None,
    )
    sim.oauth.configure(access_ttl_s=1)
    config = oauth_config(
        sim, tmp_path, refresh_token=sim.oauth.issue_refresh_token(), max_concurrency=2
    )
    started = time.monotonic()
    out = run_tap(config)
    took = time.monotonic() - started
    assert took > 5 * 1.0, f"the sync took {took:.1f} s, not five token lifetimes"
    assert_everything_once(out, sim)
    refused = {k: v for k, v in sim.counters.items() if k.endswith(" 401")}
    assert refused == {}, refused  # renewed in time, every time
    refreshes = sim.oauth.counters["refresh_token 200"]
    assert refreshes >= 5
    # About one renewal per 0.5 s (renewed half a lifetime early), not one per request.
    assert refreshes <= took / 0.5 + 2
    print(
        f"five-lifetime sync: {took:.1f} s, {sim.request_count} API requests, {refreshes} refreshes"
    )


def test_second_run_works_from_the_cache_after_rotation(make_sim, tmp_path):
    sim = make_sim(leads=6, seed=4, calls_per_lead_mean=2, big_leads=0, big_text_leads=0)
    config = oauth_config(sim, tmp_path, refresh_token=sim.oauth.issue_refresh_token())
    first = run_cli([], config, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert sim.oauth.counters["refresh_token 200"] == 1
    cache = Path(config["token_cache_path"])
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    # No temporary file left behind (the lock file serialises renewals of runs that overlap).
    assert sorted(p.name for p in cache.parent.iterdir()) == ["tokens.json", "tokens.json.lock"]
    # The configured refresh_token is dead now (rotated); the cached one carries on.
    rotated = token_post(
        sim, {"grant_type": "refresh_token", "refresh_token": config["refresh_token"]}
    )
    assert rotated.json()["error"] == "invalid_grant"
    sim.oauth.expire_access_tokens()  # so the second run must refresh with the cached token
    second = run_cli([], config, tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert TapOutput.parse(second.stdout).ids("leads", "leadId")
    assert sim.oauth.counters["refresh_token 200"] == 2
    # Without the cache, the same config fails: the cache is what makes the second run work.
    elsewhere = run_cli([], config | {"token_cache_path": str(tmp_path / "other.json")}, tmp_path)
    line = one_line_error(elsewhere)
    assert "the refresh token was used already, expired or was revoked" in line
    assert "sign in again with `tap-lofty --config <your config> --login`" in line
    assert '"type":"RECORD"' not in elsewhere.stdout


def test_cached_access_token_is_reused_and_a_new_config_token_wins(make_sim, tmp_path):
    sim = make_sim(leads=3, seed=4, calls_per_lead_mean=1, big_leads=0, big_text_leads=0)
    config = oauth_config(sim, tmp_path, refresh_token=sim.oauth.issue_refresh_token())
    run_tap(config)
    run_tap(config)  # the cached access token is still valid: no token request at all
    assert sim.oauth.counters["refresh_token 200"] == 1
    # The user signs in elsewhere and puts the new refresh token in the config; the cache
    # (descending from the old one) must not shadow it, even though its token still works.
    fresh = sim.oauth.issue_refresh_token()
    sim.oauth.expire_access_tokens()
    run_tap(config | {"refresh_token": fresh})
    assert sim.oauth.counters["refresh_token 200"] == 2
    assert sim.oauth.counters.get("invalid_grant", 0) == 0
    cached = json.loads(Path(config["token_cache_path"]).read_text())
    assert cached["refresh_token"] not in (fresh, config["refresh_token"])


def test_client_credentials_run_gets_one_token(make_sim, tmp_path):
    sim = make_sim(leads=4, seed=2, calls_per_lead_mean=2, big_leads=0, big_text_leads=0)
    config = oauth_config(sim, tmp_path, customer_key=sim.config.api_key)
    out = run_tap(config)
    assert_everything_once(out, sim)
    assert sim.oauth.counters == {"client_credentials 200": 1}
    assert not Path(config["token_cache_path"]).exists()  # nothing to keep: no refresh token


def test_body_client_authentication(make_sim, tmp_path):
    sim = make_sim(leads=2, seed=2, calls_per_lead_mean=1, big_leads=0, big_text_leads=0)
    config = oauth_config(sim, tmp_path, customer_key=sim.config.api_key, oauth_client_auth="body")
    run_tap(config)
    assert sim.oauth.counters == {"client_credentials 200": 1}


def test_unexpected_401_renews_once_then_fails(make_sim, tmp_path):
    sim = make_sim(leads=3, seed=2, calls_per_lead_mean=1, big_leads=0, big_text_leads=0)
    app = OAuthApp(sim.oauth.config.client_id, sim.oauth.config.client_secret, sim.url + TOKEN_PATH)
    session = OAuthSession(app, customer_key=sim.config.api_key)
    client = LoftyClient(api_url=sim.url, authorization=session, budget=RequestBudget(1000))
    client.get("/v1.0/leads", {"limit": 1})
    sim.oauth.expire_access_tokens()  # revoked early: the tap's clock says still valid
    client.get("/v1.0/leads", {"limit": 1})
    assert session.renewals == 2
    assert sim.counters["GET /v1.0/leads 401"] == 1
    # A token refused even right after renewal is the error (not a loop).
    real_accepts = sim.oauth.accepts
    sim.oauth.accepts = lambda token: False  # type: ignore[method-assign]
    try:
        with pytest.raises(Exception, match="even right after renewing it"):
            client.get("/v1.0/leads", {"limit": 1})
    finally:
        sim.oauth.accepts = real_accepts  # type: ignore[method-assign]
    assert session.renewals == 3


def test_two_threads_on_an_expired_token_cause_one_refresh(make_sim, tmp_path):
    # Latency keeps both requests in flight with the old token, so both get a 401.
    sim = make_sim(leads=3, seed=2, calls_per_lead_mean=1, big_leads=0, latency_s=0.3)
    app = OAuthApp(sim.oauth.config.client_id, sim.oauth.config.client_secret, sim.url + TOKEN_PATH)
    cache = TokenCache(tmp_path / "tokens.json", app.client_id)
    session = OAuthSession(app, refresh_token=sim.oauth.issue_refresh_token(), cache=cache)
    client = LoftyClient(api_url=sim.url, authorization=session, budget=RequestBudget(1000))
    client.get("/v1.0/leads", {"limit": 1})
    assert sim.oauth.counters == {"refresh_token 200": 1}
    sim.oauth.expire_access_tokens()
    barrier = threading.Barrier(2)
    results: list[Any] = []

    def fetch() -> None:
        barrier.wait()
        try:
            results.append(client.get("/v1.0/leads", {"limit": 1}))
        except Exception as exc:  # reported by the assertion below
            results.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert all(isinstance(r, dict) for r in results) and len(results) == 2, results
    assert sim.counters["GET /v1.0/leads 401"] == 2
    # One refresh for both threads; a second would have used the rotated (dead) token.
    assert sim.oauth.counters == {"refresh_token 200": 2}
    assert session.renewals == 2


def test_two_threads_on_a_due_token_cause_one_refresh(make_sim, tmp_path):
    sim = make_sim(leads=3, seed=2, calls_per_lead_mean=1, big_leads=0)
    app = OAuthApp(sim.oauth.config.client_id, sim.oauth.config.client_secret, sim.url + TOKEN_PATH)
    now = [time.time()]
    session = OAuthSession(app, refresh_token=sim.oauth.issue_refresh_token(), clock=lambda: now[0])
    session.header()
    now[0] += 3600  # the token is due for every thread at once
    barrier = threading.Barrier(8)
    headers: list[str] = []

    def ask() -> None:
        barrier.wait()
        headers.append(session.header())

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(set(headers)) == 1 and len(headers) == 8
    assert sim.oauth.counters == {"refresh_token 200": 2}


def test_revoked_refresh_token_stops_the_run_with_sign_in_advice(make_sim, tmp_path):
    sim = make_sim(leads=30, seed=2, calls_per_lead_mean=2, big_leads=0, latency_s=0.1)
    sim.oauth.configure(access_ttl_s=1)
    config = oauth_config(sim, tmp_path, refresh_token=sim.oauth.issue_refresh_token())

    def revoke_after_first_token() -> None:  # the user revokes the app mid-run
        deadline = time.monotonic() + 60
        while not sim.oauth.counters and time.monotonic() < deadline:
            time.sleep(0.01)
        sim.oauth.revoke_refresh_tokens()

    revoker = threading.Thread(target=revoke_after_first_token, daemon=True)
    revoker.start()
    result = run_cli([], config, tmp_path)
    revoker.join(5)
    line = one_line_error(result)
    assert line == (
        f"{ERROR}The OAuth token request (refresh_token) to {sim.url}{TOKEN_PATH} was refused "
        "(HTTP 400, invalid_grant: 'The refresh token is invalid or expired.'): the refresh "
        "token was used already, expired or was revoked, so this run cannot continue. To fix "
        "it, sign in again with `tap-lofty --config <your config> --login` (it stores new "
        "tokens in the token cache), or put a new refresh_token in the config."
    )
    assert sim.oauth.counters["invalid_grant"] == 1
    assert '"type":"RECORD"' in result.stdout  # it failed mid-run, after the first tokens


def test_wrong_client_secret_names_the_settings(make_sim, tmp_path):
    sim = make_sim(leads=2, seed=2)
    config = oauth_config(sim, tmp_path, client_secret="wrong-secret-123", customer_key="x")
    line = one_line_error(run_cli([], config, tmp_path))
    assert "check client_id and client_secret" in line
    assert "wrong-secret-123" not in line
    assert sim.request_count == 0


# ---------------------------------------------------------------------- secrets


def test_refresh_heavy_debug_sync_shows_no_secret(make_sim, tmp_path):
    sim = make_sim(leads=40, seed=5, calls_per_lead_mean=3, big_leads=0, latency_s=0.02)
    sim.oauth.configure(access_ttl_s=1)
    config = oauth_config(sim, tmp_path, refresh_token=sim.oauth.issue_refresh_token())
    (tmp_path / "config.json").write_text(json.dumps(config))
    result = subprocess.run(
        [str(Path(sys.executable).parent / "tap-lofty"), "--config", "config.json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"LOGLEVEL": "DEBUG", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sim.oauth.counters["refresh_token 200"] >= 2
    assert "Getting an OAuth access token (refresh_token" in result.stderr  # DEBUG was on
    # DEBUG on: urllib3 logged each token request's line, not its form or headers.
    assert f'"POST {TOKEN_PATH} HTTP/1.1" 200' in result.stderr
    secrets = [
        sim.oauth.config.client_secret,
        sim.config.api_key,
        *sim.oauth.issued(),  # every access token, refresh token and code
    ]
    states = json.dumps(TapOutput.parse(result.stdout).states)
    for secret in secrets:
        assert secret not in result.stdout, "a secret in the output"
        assert secret not in result.stderr, "a secret in the log"
        assert secret not in states
    assert (
        base64.b64encode(
            f"{sim.oauth.config.client_id}:{sim.oauth.config.client_secret}".encode()
        ).decode()
        not in result.stderr
    )


# ---------------------------------------------------------------------- --login


def start_login(config: dict[str, Any], tmp_path: Path) -> subprocess.Popen[str]:
    (tmp_path / "config.json").write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAP_LOFTY_")}
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "tap-lofty"), "--config", "config.json", "--login"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=env,
    )


def consent_address(process: subprocess.Popen[str]) -> tuple[str, str]:
    """The consent address --login prints, and its prompt up to what it waits for."""
    assert process.stderr is not None
    seen, address = "", ""
    while line := process.stderr.readline():
        seen += line
        if line.startswith("  http"):
            address = line.strip()
        elif address:  # the line after the address says what --login waits for
            return address, seen
    raise AssertionError(f"--login printed no consent address: {seen}")


def test_login_receives_the_redirect_and_later_runs_use_the_cache(make_sim, tmp_path):
    sim = make_sim(leads=4, seed=6, calls_per_lead_mean=1, big_leads=0, big_text_leads=0)
    redirect = f"http://127.0.0.1:{free_port()}/callback"
    config = oauth_config(sim, tmp_path, oauth_redirect_uri=redirect)
    process = start_login(config, tmp_path)
    try:
        address, prompt = consent_address(process)
        assert "Waiting up to 300 s for Lofty to redirect to" in prompt
        assert address.startswith(sim.url + "/page/vendor-auth.html?clientId=")
        # The browser's part: Lofty's consent page redirects to the tap's listener.
        consent = requests.get(address, allow_redirects=False, timeout=5)
        assert consent.headers["Location"].startswith(redirect + "?code=")
        landed = None
        for _ in range(50):  # the listener may take a moment to be up
            try:
                landed = requests.get(consent.headers["Location"], timeout=5)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        assert landed is not None and landed.status_code == 200 and "signed in" in landed.text
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert "Signed in: the OAuth tokens are in" in stderr
    cache = Path(config["token_cache_path"])
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert sim.oauth.counters == {"authorize": 1, "authorization_code 200": 1}
    for secret in sim.oauth.issued():
        assert secret not in stderr
    # No refresh_token in the config: the run takes the cached tokens.
    out = run_tap(config)
    assert_everything_once(out, sim)
    sim.oauth.expire_access_tokens()
    assert run_cli(["--test"], config, tmp_path).returncode == 0
    assert sim.oauth.counters["refresh_token 200"] == 1


def test_login_with_a_pasted_address(make_sim, tmp_path):
    sim = make_sim(leads=2, seed=6)
    redirect = "https://example.invalid/lofty/callback"  # not ours: the user pastes
    config = oauth_config(sim, tmp_path, oauth_redirect_uri=redirect)
    process = start_login(config, tmp_path)
    try:
        address, prompt = consent_address(process)
        location = requests.get(address, allow_redirects=False, timeout=5).headers["Location"]
        _, stderr = process.communicate(location + "\n", timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert "paste the address the browser shows then (or just its code= value)" in prompt
    assert json.loads(Path(config["token_cache_path"]).read_text())["refresh_token"]


def test_login_denied_is_one_clear_error(make_sim, tmp_path):
    sim = make_sim(leads=2, seed=6)
    sim.oauth.configure(consent="deny")
    redirect = "https://example.invalid/cb"
    config = oauth_config(sim, tmp_path, oauth_redirect_uri=redirect)
    process = start_login(config, tmp_path)
    try:
        address, _ = consent_address(process)
        location = requests.get(address, allow_redirects=False, timeout=5).headers["Location"]
        stdout, rest = process.communicate(location + "\n", timeout=30)
    finally:
        process.kill()
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, rest)
    line = one_line_error(result)
    assert "error='access_denied'" in line
    assert not Path(config["token_cache_path"]).exists()


def test_token_outlived_by_a_rate_limit_wait_is_renewed_before_sending(make_sim, tmp_path):
    # Each 429 makes a request wait for the next window, longer than a token lives: the
    # token must be taken after that wait, or the request goes out with an expired one.
    sim = make_sim(
        leads=8,
        seed=3,
        calls_per_lead_mean=2,
        big_leads=0,
        big_text_leads=0,
        rate_limit=12,
        rate_window_s=1.5,
    )
    sim.oauth.configure(access_ttl_s=1)
    config = oauth_config(sim, tmp_path, refresh_token=sim.oauth.issue_refresh_token())
    started = time.monotonic()
    out = run_tap(config)
    assert_everything_once(out, sim)
    assert time.monotonic() - started > 3  # the budget waited for windows, each > a lifetime
    assert {k: v for k, v in sim.counters.items() if k.endswith(" 401")} == {}


def test_overlapping_runs_sharing_the_cache_do_not_burn_the_rotated_token(make_sim, tmp_path):
    sim = make_sim(leads=2, seed=2, calls_per_lead_mean=1, big_leads=0)
    config = oauth_config(sim, tmp_path, refresh_token=sim.oauth.issue_refresh_token())
    run_tap(config)  # fills the cache
    app = OAuthApp(sim.oauth.config.client_id, sim.oauth.config.client_secret, sim.url + TOKEN_PATH)
    path = Path(config["token_cache_path"])
    # Two runs started from the same cache (say a scheduled run and a --test).
    first = OAuthSession(
        app, refresh_token=config["refresh_token"], cache=TokenCache(path, app.client_id)
    )
    second = OAuthSession(
        app, refresh_token=config["refresh_token"], cache=TokenCache(path, app.client_id)
    )
    old = first.header()
    assert second.header() == old
    sim.oauth.expire_access_tokens()
    renewed = first.after_401(old)  # rotates: the refresh token both loaded is dead now
    assert second.after_401(old) == renewed  # takes what the first stored, asks nothing
    assert sim.oauth.counters == {"refresh_token 200": 2}
    assert (first.renewals, second.renewals) == (1, 0)
