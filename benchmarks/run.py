"""tap-lofty benchmarks: prints one markdown table for the scenarios of issues 6 and 12.

Usage::

    .venv/bin/python benchmarks/run.py              # full run (several minutes), also writes
                                                    # benchmarks/results.md
    .venv/bin/python benchmarks/run.py --quick      # tiny sizes, well under a minute (smoke test)
    .venv/bin/python benchmarks/run.py --scenario 5 # one scenario (full sizes): its row, notes
                                                    # and detail replace those in results.md

Scenarios (the simulator ``python -m lofty_sim`` runs as its own process on 127.0.0.1; the tap
and the baseline run as child processes, stdout to a file). Scenarios 1-4 select the ``leads``
and ``calls`` streams only (a catalog), as when they were defined (issue 6):

1. Rate-bound: 250 ms latency (+ up to 50 ms jitter), the simulator limits 600 requests per 60 s
   window and the tap's ``requests_per_minute`` is 600. Requests per minute achieved in the
   first full 60 s window, as a fraction of the budget, for the default ``max_concurrency``, 8
   and 1.
2. CPU-bound: no latency, no limit, 20 leads with 2,600-3,200 calls each. Records per second of
   the tap next to ``benchmarks/baseline.py`` (``requests`` + standard-library ``json``).
3. Scale: 5,000 and 20,000 leads with about 2 calls each: wall time, STATE bytes (all lines and
   the final one) and peak RSS, and the 20k/5k ratios.
4. Incremental: a run on 2,000 leads, then a rerun from its final STATE with nothing new, both
   with ``change_detection=full`` (every lead read every run).
5. Incremental with change detection (issue 12): 20,000 leads with about 2 calls each; a first
   run per ``change_detection`` mode (full, auto) and selection (leads = all streams, calls
   only); then 200 existing leads get new calls and 20 new leads appear with calls; the second
   run's requests per endpoint and wall time for each mode and selection, every one from a copy
   of the same first-run STATE; calls lost checked against the simulator's truth. Plus, with
   nothing changed, an ``auto`` run with calls + texts + emails next to a calls-only one (one
   feed pass serves all three).

Progress goes to stderr; only the table (and its notes) goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness import (
    PYTHON,
    ROOT,
    Output,
    RunResult,
    Simulator,
    StatsPoller,
    baseline_cmd,
    child_env,
    machine_line,
    record_ids,
    record_set,
    run_measured,
    scan_output,
    sync_summary,
    tap_cmd,
    write_catalog,
)

RESULTS = Path(__file__).with_name("results.md")
#: The tap's and Lofty's rate-limit window.
WINDOW_S = 60.0
#: requests_per_minute for the runs that must not be rate-limited.
UNLIMITED_RPM = 1_000_000
#: The streams scenarios 1-4 select (the tap's streams before texts and emails existed).
LEADS_CALLS = ("leads", "calls")
#: Growth allowed for 4x the leads: linear, plus 10% for timing noise.
LINEAR_RATIO_MAX = 4.4


@dataclass(frozen=True)
class Sizes:
    """Sizes of one benchmark run (full or quick)."""

    rate_leads: int
    rate_latency_s: float
    rate_jitter_s: float
    rate_budget: int
    cpu_leads: int
    cpu_big_leads: int
    cpu_calls_per_lead: float
    cpu_repeats: int
    scale_leads: tuple[int, int]
    scale_calls_per_lead: float
    incremental_leads: int
    detect_leads: int  # scenario 5: leads of the account
    detect_changed: int  # existing leads that get new calls
    detect_new: int  # new leads (with calls)
    detect_calls_per_lead: int  # new calls per changed or new lead


FULL = Sizes(
    rate_leads=1_000,
    rate_latency_s=0.25,
    rate_jitter_s=0.05,
    rate_budget=600,
    cpu_leads=20,
    cpu_big_leads=20,
    cpu_calls_per_lead=8,
    cpu_repeats=3,
    scale_leads=(5_000, 20_000),
    scale_calls_per_lead=2,
    incremental_leads=2_000,
    detect_leads=20_000,
    detect_changed=200,
    detect_new=20,
    detect_calls_per_lead=2,
)
QUICK = Sizes(
    rate_leads=40,
    rate_latency_s=0.02,
    rate_jitter_s=0.005,
    rate_budget=600,
    cpu_leads=3,
    cpu_big_leads=1,
    cpu_calls_per_lead=8,
    cpu_repeats=1,
    scale_leads=(100, 400),
    scale_calls_per_lead=2,
    incremental_leads=100,
    detect_leads=300,
    detect_changed=3,
    detect_new=2,
    detect_calls_per_lead=2,
)


@dataclass
class Row:
    """One scenario's line of the table, plus notes printed under it."""

    number: int
    scenario: str
    setup: str
    tap: str
    compared: str
    target: str
    met: str
    notes: list[str] = field(default_factory=list)
    #: Markdown printed after the notes (a detail table), under a ``#### <number>.`` heading.
    detail: list[str] = field(default_factory=list)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def n(value: float) -> str:
    return f"{value:,.0f}"


def pct(value: float) -> str:
    return f"{value:.0%}"


def mib(kb: int) -> str:
    return f"{kb / 1024:,.0f} MiB"


def yes_no(ok: bool) -> str:
    return "yes" if ok else "**no**"


def leads_and_calls(config: Path, work: Path) -> Path:
    """A catalog selecting leads and calls only: scenarios 1-4 measure those (as in issue 6)."""
    return write_catalog(config, work / f"{config.stem}.leads-calls.catalog.json", LEADS_CALLS)


def default_concurrency() -> int:
    """The tap's default max_concurrency, from ``--about`` (so the label cannot drift)."""
    about = subprocess.run(
        [PYTHON, "-m", "tap_lofty", "--about", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env=child_env(),
    )
    return int(json.loads(about.stdout)["settings"]["properties"]["max_concurrency"]["default"])


# --------------------------------------------------------------------------- 1. rate-bound


@dataclass
class RateRun:
    concurrency: int
    per_min: float
    method: str  # "window" or "sync"
    requests: int
    limited: int
    wall_s: float
    in_window: int  # requests answered in the measured window (or the whole sync)
    window_filled_after_s: float | None  # when the last of them was answered
    stopped: bool


def measure_rate(
    sim: Simulator, work: Path, sizes: Sizes, concurrency: int, *, full: bool
) -> RateRun:
    """Run the tap under the budget; count requests in the first 60 s window (or the sync)."""
    budget = sizes.rate_budget
    sim.reset(rate_limit=budget)  # a fresh server window for every run
    config = sim.tap_config(
        work, f"rate-c{concurrency}", requests_per_minute=budget, max_concurrency=concurrency
    )
    catalog = leads_and_calls(config, work)
    with StatsPoller(sim) as poller:

        def past_window() -> bool:
            first = poller.first_request_at()
            return not full and first is not None and time.monotonic() > first + WINDOW_S + 1.0

        run = run_measured(
            tap_cmd(config, catalog=catalog),
            work / f"rate-c{concurrency}.jsonl",
            work / f"rate-c{concurrency}.err",
            stop_when=past_window,
        ).check()
        time.sleep(0.3)  # one more sample after the end
    first = poller.first_request_at()
    if first is None:
        msg = f"max_concurrency={concurrency}: the simulator saw no request"
        raise RuntimeError(msg)
    total, limited = poller.samples[-1][1], poller.samples[-1][2]
    if run.ended_at >= first + WINDOW_S:
        in_window, _ = poller.count_at(first + WINDOW_S)
        per_min, method = in_window * 60 / WINDOW_S, "window"
    else:  # the whole sync took less than one window (--quick)
        in_window = total
        per_min, method = total * 60 / max(run.ended_at - first, 1e-3), "sync"
    filled = poller.time_reaching(in_window)
    return RateRun(
        concurrency=concurrency,
        per_min=per_min,
        method=method,
        requests=total,
        limited=limited,
        wall_s=run.wall_s,
        in_window=in_window,
        window_filled_after_s=None if filled is None else filled - first,
        stopped=run.stopped,
    )


def rate_bound(work: Path, sizes: Sizes) -> Row:
    default = default_concurrency()
    budget = sizes.rate_budget
    setup = (
        f"{n(sizes.rate_leads)} leads (calls fit one page), latency "
        f"{sizes.rate_latency_s * 1000:.0f} ms + 0-{sizes.rate_jitter_s * 1000:.0f} ms jitter, "
        f"budget {budget} per 60 s window (simulator limit = tap `requests_per_minute`)"
    )
    runs: dict[int, RateRun] = {}
    with Simulator(
        work,
        leads=sizes.rate_leads,
        seed=7,
        calls_per_lead=8,
        big_leads=0,
        latency=sizes.rate_latency_s,
        jitter=sizes.rate_jitter_s,
        rate_limit=budget,
        rate_window=WINDOW_S,
    ) as sim:
        for concurrency in dict.fromkeys((default, 8, 1)):
            full = concurrency == default
            log(
                f"1 rate-bound: max_concurrency={concurrency} "
                + ("(whole sync)" if full else "(first 60 s window, then stopped)")
            )
            runs[concurrency] = run = measure_rate(sim, work, sizes, concurrency, full=full)
            log(f"  {run.per_min:,.0f} requests/min ({run.method}), {run.wall_s:.1f} s")

    def figure(run: RateRun) -> str:
        return f"{n(run.per_min)} requests/min = {run.per_min / budget:.1%} of budget"

    main = runs[default]
    parts = [f"`max_concurrency={default}` (default): {figure(main)}"]
    if main.method == "window" and main.window_filled_after_s is not None:
        parts.append(
            f"the window's {main.in_window} requests all answered "
            f"{main.window_filled_after_s:.0f} s into it"
        )
    parts.append(f"whole sync {n(main.requests)} requests in {main.wall_s:.0f} s")
    others = [c for c in runs if c not in (default, 1)]
    parts += [f"`max_concurrency={c}`: {figure(runs[c])}" for c in others]
    compared = f"`max_concurrency=1`: {figure(runs[1])}" if 1 in runs else "-"
    limited = sum(r.limited for r in runs.values())
    method = (
        "requests answered in the first full 60 s window after the tap's first request"
        if main.method == "window"
        else "requests / time from first request to exit (the sync is shorter than a window)"
    )
    notes = [
        f"1: requests/min = {method} (simulator counters polled every 0.1 s); "
        f"{limited} answers 429 in all runs. Runs other than the default are stopped after that "
        "window. The whole-sync figure includes the wait for the second window: a fixed window "
        f"lets {budget} requests through at once, then nothing until it resets."
    ]
    return Row(
        1,
        "Rate-bound",
        setup,
        "; ".join(parts),
        compared,
        "≥ 90% of budget",
        yes_no(main.per_min >= 0.9 * budget),
        notes,
    )


# --------------------------------------------------------------------------- 2. CPU-bound


@dataclass
class CpuRun:
    rate: float  # records per second of wall time, start to exit
    steady_rate: float  # records per second from the first API request to exit
    records: int
    run: RunResult


def measure_cpu(sim: Simulator, work: Path, name: str, cmd: list[str]) -> CpuRun:
    sim.reset()
    with StatsPoller(sim, interval_s=0.02) as poller:
        run = run_measured(cmd, work / f"cpu-{name}.jsonl", work / f"cpu-{name}.err").check()
    records = scan_output(run.stdout).total_records
    first = poller.first_request_at()
    steady_s = run.ended_at - first if first is not None else run.wall_s
    return CpuRun(records / run.wall_s, records / max(steady_s, 1e-3), records, run)


def cpu_bound(work: Path, sizes: Sizes) -> Row:
    setup = (
        f"{sizes.cpu_leads} leads, {sizes.cpu_big_leads} of them with 2,600-3,200 calls; "
        "no latency, no rate limit; stdout to a file"
    )
    with Simulator(
        work,
        leads=sizes.cpu_leads,
        seed=7,
        calls_per_lead=sizes.cpu_calls_per_lead,
        big_leads=sizes.cpu_big_leads,
        rate_limit=0,
    ) as sim:
        config = sim.tap_config(work, "cpu", requests_per_minute=UNLIMITED_RPM)
        catalog = leads_and_calls(config, work)
        log("2 CPU-bound: warming the simulator's caches (one baseline run)")
        run_measured(baseline_cmd(config), work / "cpu-warm.jsonl", work / "cpu-warm.err").check()
        runs: dict[str, list[CpuRun]] = {"tap": [], "baseline": []}
        for i in range(sizes.cpu_repeats):
            for name, cmd in (
                ("tap", tap_cmd(config, catalog=catalog)),
                ("baseline", baseline_cmd(config)),
            ):
                result = measure_cpu(sim, work, name, cmd)
                runs[name].append(result)
                log(
                    f"2 CPU-bound: {name} run {i + 1}: {result.records:,} records in "
                    f"{result.run.wall_s:.2f} s ({result.rate:,.0f}/s)"
                )
    tap = max(runs["tap"], key=lambda r: r.rate)
    base = max(runs["baseline"], key=lambda r: r.rate)
    same = record_set(work / "cpu-tap.jsonl") == record_set(work / "cpu-baseline.jsonl")
    ratio = tap.rate / base.rate
    notes = [
        "2: records/s = RECORD lines / wall time of the process, start to exit (imports "
        f"included), best of {sizes.cpu_repeats} run(s) each; the simulator's caches are warm. "
        f"From the first request to exit (without start-up): tap {n(tap.steady_rate)}/s, "
        f"baseline {n(base.steady_rate)}/s = {pct(tap.steady_rate / base.steady_rate)}. CPU time: "
        f"tap {tap.run.cpu_s:.2f} s, baseline {base.run.cpu_s:.2f} s. Tap and baseline RECORD "
        f"bodies are {'identical' if same else '**different**'} ({tap.records:,} and "
        f"{base.records:,} records). Tap: {sync_summary(tap.run.stderr)}."
    ]
    return Row(
        2,
        "CPU-bound",
        setup,
        f"{n(tap.rate)} records/s ({tap.records:,} records in {tap.run.wall_s:.2f} s, "
        f"peak RSS {mib(tap.run.max_rss_kb)}) = {pct(ratio)} of baseline",
        f"baseline (`requests` + `json`, one thread): {n(base.rate)} records/s "
        f"({base.run.wall_s:.2f} s, peak RSS {mib(base.run.max_rss_kb)})",
        "tap ≥ 50% of baseline",
        yes_no(ratio >= 0.5) if same else "**no** (records differ)",
        notes,
    )


# --------------------------------------------------------------------------- 3. scale


@dataclass
class ScaleRun:
    leads: int
    wall_s: float
    state_bytes: int
    state_lines: int
    final_state_bytes: int
    max_rss_kb: int
    records: int
    requests: int
    cpu_s: float


def scale(work: Path, sizes: Sizes) -> Row:
    runs: list[ScaleRun] = []
    for leads in sizes.scale_leads:
        log(f"3 scale: {leads:,} leads")
        with Simulator(
            work,
            leads=leads,
            seed=7,
            calls_per_lead=sizes.scale_calls_per_lead,
            big_leads=0,
            rate_limit=0,
        ) as sim:
            config = sim.tap_config(work, f"scale-{leads}", requests_per_minute=UNLIMITED_RPM)
            run = run_measured(
                tap_cmd(config, catalog=leads_and_calls(config, work)),
                work / f"scale-{leads}.jsonl",
                work / f"scale-{leads}.err",
            ).check()
            requests, _ = sim.api_requests()
        out = scan_output(run.stdout)
        runs.append(
            ScaleRun(
                leads,
                run.wall_s,
                out.state_bytes,
                out.state_lines,
                out.final_state_bytes,
                run.max_rss_kb,
                out.total_records,
                requests,
                run.cpu_s,
            )
        )
        log(f"  {run.wall_s:.1f} s, {out.state_lines} STATE lines, {mib(run.max_rss_kb)}")
    small, big = runs

    def describe(r: ScaleRun) -> str:
        return (
            f"{n(r.leads)} leads: {r.wall_s:.1f} s, STATE {n(r.state_bytes)} B in "
            f"{r.state_lines} lines (final {n(r.final_state_bytes)} B), peak RSS "
            f"{mib(r.max_rss_kb)}"
        )

    ratios = {
        "wall": big.wall_s / small.wall_s,
        "STATE total": big.state_bytes / small.state_bytes,
        "final STATE": big.final_state_bytes / small.final_state_bytes,
        "peak RSS": big.max_rss_kb / small.max_rss_kb,
        "tap CPU time": big.cpu_s / small.cpu_s,
    }
    factor = big.leads / small.leads
    worst = max(ratios.values())
    ratio_text = ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items())
    notes = [
        f"3: {n(small.records)} and {n(big.records)} records, {n(small.requests)} and "
        f"{n(big.requests)} requests; wall time includes the simulator building each lead's "
        f"calls on first request (no warm-up). Tap CPU time {small.cpu_s:.1f} s and "
        f"{big.cpu_s:.1f} s ({small.cpu_s / small.leads * 1000:.2f} and "
        f"{big.cpu_s / big.leads * 1000:.2f} ms per lead). Peak RSS is the tap process's own "
        "ru_maxrss."
    ]
    return Row(
        3,
        "Scale",
        f"{n(small.leads)} and {n(big.leads)} leads, about {sizes.scale_calls_per_lead:g} calls "
        "each; no latency, no rate limit",
        describe(big),
        f"{describe(small)}; ratio {n(big.leads)}/{n(small.leads)}: {ratio_text}",
        f"each ratio ≤ {factor:g}x (linear; {LINEAR_RATIO_MAX / 4 - 1:.0%} noise allowed)",
        yes_no(worst <= factor * LINEAR_RATIO_MAX / 4),
        notes,
    )


# --------------------------------------------------------------------------- 4. incremental


def incremental(work: Path, sizes: Sizes) -> Row:
    leads = sizes.incremental_leads
    with Simulator(work, leads=leads, seed=7, calls_per_lead=8, big_leads=0, rate_limit=0) as sim:
        # Full scans on purpose (the meaning of this row since issue 6); scenario 5 measures
        # change detection.
        config = sim.tap_config(
            work, "incremental", requests_per_minute=UNLIMITED_RPM, change_detection="full"
        )
        catalog = leads_and_calls(config, work)
        log(f"4 incremental: first run, {leads:,} leads")
        first = run_measured(
            tap_cmd(config, catalog=catalog), work / "incr-1.jsonl", work / "incr-1.err"
        ).check()
        first_requests, _ = sim.api_requests()
        first_out = scan_output(first.stdout)
        if first_out.final_state is None:
            msg = "the first incremental run wrote no STATE"
            raise RuntimeError(msg)
        state = work / "incr-state.json"
        state.write_text(json.dumps(first_out.final_state))
        sim.reset()
        log("4 incremental: second run from the first run's final STATE")
        second = run_measured(
            tap_cmd(config, state, catalog), work / "incr-2.jsonl", work / "incr-2.err"
        ).check()
        second_requests, _ = sim.api_requests()
        second_out = scan_output(second.stdout)

    def describe(label: str, run: RunResult, requests: int, out: Output) -> str:
        calls = out.records.get("calls", 0)
        return f"{label}: {n(requests)} requests, {n(calls)} calls emitted, {run.wall_s:.1f} s"

    at_lofty = second_requests / 500
    notes = [
        "4: both runs list every lead (one request per 100) and ask every lead for calls above "
        f"the bookmark (one request each), so at Lofty's production budget of 500 requests/min "
        f"the rerun needs at least {at_lofty:.1f} min, like the first run."
    ]
    return Row(
        4,
        "Incremental",
        f"{n(leads)} leads, about 8 calls each; leads and calls selected, "
        "`change_detection=full`; rerun from the first run's final STATE with nothing new; no "
        "latency, no rate limit",
        describe("second run", second, second_requests, second_out),
        describe("first run", first, first_requests, first_out),
        "no calls re-emitted",
        yes_no(second_out.records.get("calls", 0) == 0),
        notes,
    )


# --------------------------------------------------------------------------- 5. change detection

#: Scenario 5's catalogs: which streams each selection selects.
SELECTIONS: dict[str, tuple[str, ...]] = {
    "all": ("leads", "calls", "texts", "emails"),
    "calls": ("calls",),
    "messages": ("calls", "texts", "emails"),
}
SELECTION_LABELS = {
    "all": "leads (all streams)",
    "calls": "calls only",
    "messages": "calls + texts + emails",
}
#: The endpoints of the detail table, in column order.
ENDPOINTS = (
    ("leads", "/v1.0/leads"),
    ("feed", "/v2.0/communication/agent"),
    ("calls", "/v1.0/communication/call"),
    ("texts", "/v1.0/communication/text"),
    ("emails", "/v1.0/communication/email"),
)


@dataclass
class DetectRun:
    """One tap run of scenario 5."""

    label: str
    mode: str  # change_detection
    selection: str  # a key of SELECTIONS
    endpoints: dict[str, int]  # requests per path
    run: RunResult
    out: Output
    ids: dict[str, list[int]]  # emitted record ids per history stream
    lost: dict[str, int] = field(default_factory=dict)  # per selected history stream

    @property
    def requests(self) -> int:
        return sum(self.endpoints.values())

    def on(self, key: str) -> int:
        return self.endpoints.get(dict(ENDPOINTS)[key], 0)

    def emitted(self, stream: str) -> int:
        return self.out.records.get(stream, 0)


def change_detection(work: Path, sizes: Sizes) -> Row:
    leads = sizes.detect_leads
    work = work / "detect"
    work.mkdir(exist_ok=True)
    with Simulator(
        work,
        leads=leads,
        seed=7,
        calls_per_lead=sizes.scale_calls_per_lead,
        big_leads=0,
        rate_limit=0,
    ) as sim:
        configs = {
            mode: sim.tap_config(
                work, f"detect-{mode}", requests_per_minute=UNLIMITED_RPM, change_detection=mode
            )
            for mode in ("full", "auto")
        }
        catalogs = {
            name: write_catalog(configs["auto"], work / f"detect-{name}.catalog.json", streams)
            for name, streams in SELECTIONS.items()
        }

        def measure(label: str, mode: str, selection: str, state: dict | None) -> DetectRun:
            name = label.replace(" ", "-")
            state_path = None
            if state is not None:  # a copy per run: every run starts from the same STATE
                state_path = work / f"{name}.state.json"
                state_path.write_text(json.dumps(state))
            sim.reset()
            run = run_measured(
                tap_cmd(configs[mode], state_path, catalogs[selection]),
                work / f"{name}.jsonl",
                work / f"{name}.err",
            ).check()
            endpoints = sim.requests_by_endpoint()
            out = scan_output(run.stdout)
            histories = [s for s in SELECTIONS[selection] if s != "leads"]
            result = DetectRun(
                label, mode, selection, endpoints, run, out, record_ids(run.stdout, histories)
            )
            log(
                f"  {label}: {result.requests:,} requests {endpoints}, {run.wall_s:.1f} s, "
                f"records {out.records}"
            )
            return result

        firsts: dict[tuple[str, str], DetectRun] = {}
        for selection in ("all", "calls"):
            for mode in ("full", "auto"):
                log(f"5 change detection: first run, {mode}, {SELECTION_LABELS[selection]}")
                firsts[mode, selection] = measure(
                    f"first {mode} {selection}", mode, selection, None
                )
        states = {}
        for selection in ("all", "calls"):
            state = firsts["auto", selection].out.final_state
            if state is None:
                msg = f"the first run ({selection}) wrote no STATE"
                raise RuntimeError(msg)
            states[selection] = state

        # The simulator builds its feed index on the first feed request (seconds at this
        # size): built here, so that no measured run's wall time includes it.
        sim.api_get(
            ENDPOINTS[1][1],
            {"type": "ALL", "teamView": "true", "limit": 1, "startTime": 0, "endTime": 1},
        )
        log("5 change detection: nothing changed, auto: calls+texts+emails vs calls only")
        idle = {
            selection: measure(f"idle auto {selection}", "auto", selection, states["all"])
            for selection in ("messages", "calls")
        }

        log(
            f"5 change detection: {sizes.detect_changed} existing and {sizes.detect_new} new "
            f"leads get {sizes.detect_calls_per_lead} new calls each"
        )
        appended = sim.control(
            "POST",
            "/_sim/append",
            {
                "existing_leads": sizes.detect_changed,
                "new_leads": sizes.detect_new,
                "calls_per_lead": sizes.detect_calls_per_lead,
            },
        )
        changed = len({int(call["leadId"]) for call in appended})
        truth = sim.truth_ids()
        new_call_ids = {int(call["id"]) for call in appended}
        if not new_call_ids <= truth["calls"]:
            msg = "the simulator's truth lacks calls it just appended"
            raise RuntimeError(msg)
        before = {**truth, "calls": truth["calls"] - new_call_ids}

        seconds: dict[tuple[str, str], DetectRun] = {}
        for mode in ("full", "auto"):
            for selection in ("all", "calls"):
                log(f"5 change detection: second run, {mode}, {SELECTION_LABELS[selection]}")
                seconds[mode, selection] = measure(
                    f"second {mode} {selection}", mode, selection, states[selection]
                )
        # Right after the second run, nothing changed: what the overlap re-reads.
        thirds: dict[str, DetectRun] = {}
        for selection in ("all", "calls"):
            log(f"5 change detection: third run, auto, {SELECTION_LABELS[selection]}")
            previous = seconds["auto", selection].out.final_state
            thirds[selection] = measure(f"third auto {selection}", "auto", selection, previous)
    total_leads = leads + sizes.detect_new

    # Lost records: what the simulator holds minus what the runs emitted (first runs: before
    # the change; second runs: with the first run whose STATE they started from).
    for first in firsts.values():
        first.lost = {s: len(before[s] - set(ids)) for s, ids in first.ids.items()}
    for (_, selection), second in seconds.items():
        base = firsts["auto", selection].ids
        second.lost = {s: len(truth[s] - set(base[s]) - set(ids)) for s, ids in second.ids.items()}
    runs = [*firsts.values(), *idle.values(), *seconds.values()]
    # Calls a second run emitted that are not among the appended ones (read again).
    reemitted = {key: len(set(r.ids["calls"]) - new_call_ids) for key, r in seconds.items()}
    all_new = all(new_call_ids <= set(r.ids["calls"]) for r in seconds.values())
    calls_lost = sum(r.lost.get("calls", 0) for r in runs if r.label.split()[0] != "idle")
    other_lost = sum(
        n for r in runs if r.label.split()[0] != "idle" for s, n in r.lost.items() if s != "calls"
    )

    auto_all, auto_calls = seconds["auto", "all"], seconds["auto", "calls"]
    full_all, full_calls = seconds["full", "all"], seconds["full", "calls"]
    limit_all = -(-total_leads // 100) + auto_all.on("feed") + changed + 10
    limit_calls = auto_calls.on("feed") + changed + 10
    ok_all = auto_all.requests <= limit_all
    ok_calls = auto_calls.requests <= limit_calls
    ok_lost = calls_lost == 0
    shared = idle["messages"].requests == idle["calls"].requests

    def brief(r: DetectRun) -> str:
        parts = [f"{n(r.on(k))} {k}" for k, _ in ENDPOINTS if r.on(k)]
        return f"{n(r.requests)} requests ({' + '.join(parts) or 'none'}), {r.run.wall_s:.1f} s"

    tap = (
        f"`auto`, second run: {SELECTION_LABELS['all']}: {brief(auto_all)}; "
        f"{SELECTION_LABELS['calls']}: {brief(auto_calls)}; {calls_lost} calls lost in all runs"
    )
    compared = (
        f"`full`, second run: {SELECTION_LABELS['all']}: {brief(full_all)}; "
        f"{SELECTION_LABELS['calls']}: {brief(full_calls)}. First run (full scan), `full` / "
        f"`auto`: {SELECTION_LABELS['all']}: {n(firsts['full', 'all'].requests)} / "
        f"{n(firsts['auto', 'all'].requests)} requests; {SELECTION_LABELS['calls']}: "
        f"{n(firsts['full', 'calls'].requests)} / {n(firsts['auto', 'calls'].requests)}"
    )
    target = (
        "`auto` second run: ≤ ⌈leads/100⌉ + feed pages + changed leads + 10 requests with leads "
        "selected, ≤ feed pages + changed leads + 10 calls only; 0 calls lost in every run"
    )
    failed = [
        name
        for name, ok in (
            ("leads selected", ok_all),
            ("calls only", ok_calls),
            ("calls lost", ok_lost),
        )
        if not ok
    ]
    met = "yes" if not failed else f"**no** ({', '.join(failed)})"
    setup = (
        f"{n(leads)} leads, about {sizes.scale_calls_per_lead:g} calls each (and the "
        "simulator's default texts and emails); first run (no STATE, a full scan) per mode; then "
        f"{n(sizes.detect_changed)} existing leads ({sizes.detect_changed / leads:.0%}) get "
        f"{sizes.detect_calls_per_lead} new calls each and {n(sizes.detect_new)} new leads "
        f"appear with {sizes.detect_calls_per_lead} calls each ({n(changed)} changed leads); "
        "second run from the first run's final STATE; no latency, no rate limit"
    )
    notes = [
        f"5: targets: leads selected {n(auto_all.requests)} ≤ {n(limit_all)} "
        f"(⌈{n(total_leads)}/100⌉ + {auto_all.on('feed')} feed + {n(changed)} changed + 10): "
        f"{yes_no(ok_all)}; calls only {n(auto_calls.requests)} ≤ {n(limit_calls)} "
        f"({auto_calls.on('feed')} feed + {n(changed)} changed + 10): {yes_no(ok_calls)}; "
        f"calls lost (simulator truth minus the calls the first and second runs emitted, every "
        f"run): {calls_lost}: {yes_no(ok_lost)}; texts and emails lost where selected: "
        f"{other_lost}. The {n(len(new_call_ids))} appended calls are emitted by "
        f"{'every' if all_new else '**not every**'} second run; calls emitted again (not "
        "appended): "
        + ", ".join(f"`{m}` {SELECTION_LABELS[sel]} {n(v)}" for (m, sel), v in reemitted.items())
        + ". Every second run starts from a copy of the `auto` first run's final "
        "STATE for its selection (the `full` first runs are measured for their requests only), "
        "after the same change; counters reset before each run. Wall times are of the tap "
        "process on a shared 2-core machine: noisy; the first run measured also builds the "
        "simulator's data.",
        "5: shared feed pass: an `auto` run with nothing changed (from the leads-selected first "
        f"run's STATE) with calls + texts + emails selected made {n(idle['messages'].requests)} "
        f"request(s), with calls only {n(idle['calls'].requests)}: "
        f"{'the same' if shared else '**not the same**'} ({yes_no(shared)}).",
        "5: a third `auto` run right after the second, nothing changed, from its STATE: "
        + "; ".join(
            f"{SELECTION_LABELS[sel]} {brief(r)}, {n(r.emitted('calls'))} calls emitted again"
            for sel, r in thirds.items()
        )
        + ". A feed run's cut-off is `feed_overlap_minutes` (60) before it started, so runs "
        "within that time read the leads changed in it again (targets upsert on `id`); the idle "
        "runs' window (the hour before the first run) holds no activity, hence their single "
        "request.",
    ]

    def detail_row(r: DetectRun) -> str:
        run_name = r.label.split()[0]
        lost = ", ".join(f"{s} {v}" for s, v in r.lost.items()) if r.lost else "-"
        cells = [
            run_name,
            f"`{r.mode}`",
            SELECTION_LABELS[r.selection],
            n(r.requests),
            *(n(r.on(k)) for k, _ in ENDPOINTS),
            f"{r.run.wall_s:.1f}",
            n(r.emitted("calls")),
            lost,
        ]
        return "| " + " | ".join(cells) + " |"

    detail = [
        "| Run | `change_detection` | Selected | Requests | "
        + " | ".join(f"`{path}`" for _, path in ENDPOINTS)
        + " | Wall s | Calls emitted | Lost |",
        "|---|---|---|---:|" + "---:|" * len(ENDPOINTS) + "---:|---:|---|",
        *(
            detail_row(r)
            for r in (*firsts.values(), *seconds.values(), *thirds.values(), *idle.values())
        ),
    ]
    return Row(
        5,
        "Incremental with change detection",
        setup,
        tap,
        compared,
        target,
        met,
        notes,
        detail,
    )


# --------------------------------------------------------------------------- main

SCENARIOS: dict[int, Callable[[Path, Sizes], Row]] = {
    1: rate_bound,
    2: cpu_bound,
    3: scale,
    4: incremental,
    5: change_detection,
}


TABLE_HEAD = (
    "| # | Scenario | Setup | tap-lofty | Compared with | Target | Met |",
    "|---|---|---|---|---|---|---|",
)
RESULTS_TITLE = "# tap-lofty benchmark results"
ROW = re.compile(r"^\| (\d+) \|")
NOTE = re.compile(r"^- (\d+): ")
DETAIL = re.compile(r"^#### (\d+)\. ")
#: A results.md line naming the earlier run that measured the rows it lists.
KEPT = re.compile(
    r"^Rows? ([\d, ]+) (?:is|are) kept from (?:the|an) earlier results\.md \((.*)\)\.$"
)


@dataclass
class Parts:
    """A table's pieces by scenario number: its row, its notes and its detail block."""

    rows: dict[int, str] = field(default_factory=dict)
    notes: dict[int, list[str]] = field(default_factory=dict)
    details: dict[int, list[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, rows: list[Row]) -> Parts:
        parts = cls()
        for r in rows:
            cells = (str(r.number), r.scenario, r.setup, r.tap, r.compared, r.target, r.met)
            parts.rows[r.number] = "| " + " | ".join(c.replace("|", "/") for c in cells) + " |"
            parts.notes[r.number] = [f"- {note}" for note in r.notes]
            if r.detail:
                parts.details[r.number] = [
                    f"#### {r.number}. {r.scenario}: every run",
                    "",
                    *r.detail,
                ]
        return parts

    @classmethod
    def parse(cls, text: str) -> tuple[list[str], Parts]:
        """Read a results.md back: (its Machine/Benchmark lines, its parts)."""
        header: list[str] = []
        parts = cls()
        detail: list[str] | None = None
        for line in text.splitlines():
            if match := DETAIL.match(line):
                detail = parts.details.setdefault(int(match[1]), [])
            if detail is not None:
                detail.append(line)
            elif match := ROW.match(line):
                parts.rows[int(match[1])] = line
            elif match := NOTE.match(line):
                parts.notes.setdefault(int(match[1]), []).append(line)
            elif line.startswith(("Machine:", "Benchmark:")) or KEPT.match(line):
                header.append(line)
        for lines in parts.details.values():
            while lines and not lines[-1].strip():
                lines.pop()
        return header, parts

    def merge(self, newer: Parts) -> Parts:
        """These parts with every scenario of ``newer`` replaced (or added)."""
        merged = Parts(dict(self.rows), dict(self.notes), dict(self.details))
        for number in newer.rows:
            merged.rows[number] = newer.rows[number]
            merged.notes[number] = newer.notes.get(number, [])
            merged.details.pop(number, None)
            if number in newer.details:
                merged.details[number] = newer.details[number]
        return merged

    def render(self, header: list[str]) -> str:
        lines = [*header, "", *TABLE_HEAD]
        lines += [self.rows[k] for k in sorted(self.rows)]
        lines.append("")
        lines += [note for k in sorted(self.notes) for note in self.notes[k]]
        for k in sorted(self.details):
            lines += ["", *self.details[k]]
        return "\n".join(lines) + "\n"


def header_lines(*, quick: bool, elapsed_s: float, chosen: list[int] | None = None) -> list[str]:
    mode = "quick mode (tiny sizes: figures not meaningful)" if quick else "full run"
    if chosen is not None:
        mode = f"{mode} of scenario {', '.join(map(str, chosen))} alone"
    return [
        f"Machine: {machine_line()}.",
        f"Benchmark: {mode}, {elapsed_s:.0f} s in all; simulator, tap and baseline are separate "
        "processes on this machine.",
    ]


def render(rows: list[Row], *, quick: bool, elapsed_s: float) -> str:
    return Parts.of(rows).render(header_lines(quick=quick, elapsed_s=elapsed_s))


def write_results(rows: list[Row], chosen: list[int], elapsed_s: float) -> None:
    """Write results.md: whole on a run of every scenario, else merge these rows into it."""
    new = Parts.of(rows)
    if len(chosen) == len(SCENARIOS) or not RESULTS.exists():
        header = header_lines(quick=False, elapsed_s=elapsed_s)
        RESULTS.write_text(f"{RESULTS_TITLE}\n\n" + new.render(header))
        return
    header = header_lines(quick=False, elapsed_s=elapsed_s, chosen=chosen)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    header[-1] += f" Measured {stamp}."
    RESULTS.write_text(merge_results(RESULTS.read_text(), new, header))


def merge_results(old_text: str, new: Parts, header: list[str]) -> str:
    """``old_text`` (a results.md) with the scenarios of ``new`` replaced, under ``header``.

    Every row kept says which run measured it: the earlier file's own run line, or the
    provenance line it carried already.
    """
    old_header, old = Parts.parse(old_text)
    groups: list[tuple[set[int], str]] = []
    for line in old_header:
        if match := KEPT.match(line):
            groups.append(({int(k) for k in match[1].split(",")}, match[2]))
    own = set(old.rows) - set().union(*(rows for rows, _ in groups))
    earlier = next((line for line in old_header if line.startswith("Benchmark:")), "")
    machine = next((line for line in old_header if line.startswith("Machine:")), "")
    if own:
        text = earlier.removeprefix("Benchmark: ").rstrip(".") or "no run line"
        if machine and machine != header[0]:
            text += f"; {machine.rstrip('.')}"
        groups.append((own, text))
    for rows, text in sorted(groups, key=lambda g: min(g[0])):
        kept = sorted(rows - set(new.rows))
        if kept:
            header.append(
                f"{'Row' if len(kept) == 1 else 'Rows'} {', '.join(map(str, kept))} "
                f"{'is' if len(kept) == 1 else 'are'} kept from an earlier results.md ({text})."
            )
    return f"{RESULTS_TITLE}\n\n" + old.merge(new).render(header)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="tap-lofty benchmarks (issues 6 and 12).")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for the smoke test")
    parser.add_argument("--scenario", type=int, choices=sorted(SCENARIOS), action="append")
    parser.add_argument("--workdir", type=Path, help="keep outputs here (default: a temp dir)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    chosen = sorted(set(args.scenario or SCENARIOS))
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tap-lofty-bench-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        rows = [SCENARIOS[number](work, sizes) for number in chosen]
    elapsed = time.monotonic() - started
    table = render(rows, quick=args.quick, elapsed_s=elapsed)
    sys.stdout.write(table)
    sys.stdout.flush()
    if not args.quick:
        write_results(rows, chosen, elapsed)
        log(f"written to {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
