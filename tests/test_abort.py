"""A failed run stops every thread at once and prints nothing after its error (issue 11)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from concurrent.futures import CancelledError

import pytest

import tap_lofty.client
from tap_lofty.client import LoftyClient, LoftyError
from tap_lofty.prefetch import OrderedPrefetcher
from tap_lofty.ratelimit import RequestBudget, RunAborted
from tap_lofty.tap import TapLofty
from tests.tap_support import sim_config


def closed_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def in_thread(target) -> tuple[threading.Thread, list[BaseException]]:
    raised: list[BaseException] = []

    def run() -> None:
        try:
            target()
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, raised


def test_abort_wakes_a_thread_waiting_for_the_window():
    budget = RequestBudget(1, 30.0)
    budget.acquire()
    thread, raised = in_thread(budget.acquire)  # waits ~30 s for the next window
    time.sleep(0.2)
    assert thread.is_alive()
    started = time.monotonic()
    budget.abort()
    thread.join(timeout=2)
    assert not thread.is_alive()
    assert time.monotonic() - started < 1
    assert [type(e) for e in raised] == [RunAborted]
    assert budget.held_s() < 5  # the wait ended at the abort


def test_abort_ends_a_backoff_at_once_and_silently(caplog):
    client = LoftyClient(
        api_url=closed_url(),
        authorization="token k",
        budget=RequestBudget(1000),
        max_retries=8,
        backoff_base_s=30.0,  # the first retry waits 15-30 s
    )
    with caplog.at_level(logging.INFO, logger="tap_lofty"):
        thread, raised = in_thread(lambda: client.get("/v1.0/leads", {}))
        deadline = time.monotonic() + 5
        while client.stats.retries == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert client.stats.retries == 1
        logged = len(caplog.records)
        started = time.monotonic()
        client.abort()
        thread.join(timeout=2)
        took = time.monotonic() - started
    assert not thread.is_alive()
    assert took < 1
    assert [type(e) for e in raised] == [RunAborted]
    assert len(caplog.records) == logged, "a line after abort()"
    assert "retry 1 of 8" in caplog.records[-1].getMessage()


def test_get_after_abort_sends_nothing(make_sim):
    sim = make_sim(leads=3, seed=1)
    client = LoftyClient(
        api_url=sim.url, authorization=f"token {sim.config.api_key}", budget=RequestBudget(100)
    )
    client.get("/v1.0/leads", {"limit": 1})
    client.abort()
    with pytest.raises(RunAborted):
        client.get("/v1.0/leads", {"limit": 1})
    assert sum(v for k, v in sim.counters.items() if k.startswith("GET")) == 1


def test_prefetch_workers_are_daemons_and_close_cancels_queued():
    release = threading.Event()
    started: list[int] = []

    def fetch(key: int) -> int:
        started.append(key)
        release.wait(5)
        return key * 10

    prefetcher: OrderedPrefetcher[int] = OrderedPrefetcher(fetch, 2)
    for key in range(6):
        prefetcher.submit(key)
    time.sleep(0.1)
    workers = [t for t in threading.enumerate() if t.name.startswith("prefetch_")]
    assert len(workers) >= 2 and all(t.daemon for t in workers)
    assert sorted(started) == [0, 1]  # two workers, the rest queued
    pending = [future for _, future in prefetcher._pending]
    prefetcher.close(wait=False)
    release.set()
    assert all(f.cancelled() for f in pending[2:])
    with pytest.raises(CancelledError):
        pending[3].result()
    time.sleep(0.2)
    assert sorted(started) == [0, 1], "a cancelled fetch started"


def test_prefetch_hands_back_results_and_errors_in_order():
    def fetch(key: int) -> int:
        if key == 2:
            raise LoftyError("lead 2 failed")
        time.sleep(0.01 * (5 - key))  # later keys finish first
        return key

    prefetcher: OrderedPrefetcher[int] = OrderedPrefetcher(fetch, 3)
    for key in range(5):
        prefetcher.submit(key)
    assert prefetcher.take(0) == 0
    assert prefetcher.take(1) == 1
    with pytest.raises(LoftyError, match="lead 2 failed"):
        prefetcher.take(2)
    assert prefetcher.take(3) == 3
    prefetcher.close()


def test_failed_sync_aborts_the_client_and_leaves_no_worker(make_sim, monkeypatch, caplog):
    monkeypatch.setattr(tap_lofty.client, "BACKOFF_BASE_S", 0.05)
    sim = make_sim(leads=40, seed=3, calls_per_lead_mean=2, big_leads=0)
    sim.configure(faults_at={n: "503_json" for n in range(3, 400)})  # calls fail from early on
    tap = TapLofty(config=sim_config(sim, max_retries=2, max_concurrency=4), validate_config=True)
    with caplog.at_level(logging.INFO), pytest.raises(LoftyError, match="failed 3 times in a row"):
        tap.sync_all()
    assert tap.client.aborted
    assert "An unhandled error occurred" not in caplog.text
    deadline = time.monotonic() + 2
    busy = [t for t in threading.enumerate() if t.name == "progress"]
    while busy and time.monotonic() < deadline:
        time.sleep(0.05)
        busy = [t for t in threading.enumerate() if t.name == "progress"]
    assert not busy, "the progress ticker outlived the run"


def test_tls_failure_in_a_sync_is_not_retried(make_sim, caplog):
    sim = make_sim(leads=3, seed=1)
    url = sim.url.replace("http://", "https://")
    tap = TapLofty(config=sim_config(sim, api_url=url), validate_config=True)
    with caplog.at_level(logging.INFO), pytest.raises(LoftyError) as caught:
        tap.sync_all()
    assert str(caught.value).startswith(
        "GET /v1.0/leads: the TLS handshake with 127.0.0.1 failed (wrong version number); "
        f"api_url is '{url}'."
    )
    assert tap.client.stats.retries == 0
    assert "retry" not in caplog.text


def test_urls_in_messages_drop_credentials_and_queries():
    from tap_lofty.client import safe_url

    assert safe_url("https://user:pa55@api.example.com:8443/base?token=abc") == (
        "https://api.example.com:8443/base"
    )
    assert safe_url("http://127.0.0.1:8765") == "http://127.0.0.1:8765"


def test_a_secret_in_api_url_stays_out_of_the_error(tmp_path):
    from tests.tap_support import run_cli

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://me:hunter2-secret@127.0.0.1:{port}"
    result = run_cli(["--test"], {"api_url": url, "api_key": "k"}, tmp_path, timeout=60)
    assert result.returncode == 1
    assert f"api_url is 'http://127.0.0.1:{port}'" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
