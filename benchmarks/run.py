"""tap-lofty benchmarks: prints one markdown table for the four scenarios of issue 6.

Usage::

    .venv/bin/python benchmarks/run.py              # full run (several minutes), also writes
                                                    # benchmarks/results.md
    .venv/bin/python benchmarks/run.py --quick      # tiny sizes, well under a minute (smoke test)
    .venv/bin/python benchmarks/run.py --scenario 2 # one scenario (results.md untouched)

Scenarios (the simulator ``python -m lofty_sim`` runs as its own process on 127.0.0.1; the tap
and the baseline run as child processes, stdout to a file):

1. Rate-bound: 250 ms latency (+ up to 50 ms jitter), the simulator limits 600 requests per 60 s
   window and the tap's ``requests_per_minute`` is 600. Requests per minute achieved in the
   first full 60 s window, as a fraction of the budget, for the default ``max_concurrency``, 8
   and 1.
2. CPU-bound: no latency, no limit, 20 leads with 2,600-3,200 calls each. Records per second of
   the tap next to ``benchmarks/baseline.py`` (``requests`` + standard-library ``json``).
3. Scale: 5,000 and 20,000 leads with about 2 calls each: wall time, STATE bytes (all lines and
   the final one) and peak RSS, and the 20k/5k ratios.
4. Incremental: a run on 2,000 leads, then a rerun from its final STATE with nothing new.

Progress goes to stderr; only the table (and its notes) goes to stdout.
"""

from __future__ import annotations

import argparse
import json
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
    record_set,
    run_measured,
    scan_output,
    sync_summary,
    tap_cmd,
)

RESULTS = Path(__file__).with_name("results.md")
#: The tap's and Lofty's rate-limit window.
WINDOW_S = 60.0
#: requests_per_minute for the runs that must not be rate-limited.
UNLIMITED_RPM = 1_000_000
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
    with StatsPoller(sim) as poller:

        def past_window() -> bool:
            first = poller.first_request_at()
            return not full and first is not None and time.monotonic() > first + WINDOW_S + 1.0

        run = run_measured(
            tap_cmd(config),
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
        log("2 CPU-bound: warming the simulator's caches (one baseline run)")
        run_measured(baseline_cmd(config), work / "cpu-warm.jsonl", work / "cpu-warm.err").check()
        runs: dict[str, list[CpuRun]] = {"tap": [], "baseline": []}
        for i in range(sizes.cpu_repeats):
            for name, cmd in (("tap", tap_cmd(config)), ("baseline", baseline_cmd(config))):
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
                tap_cmd(config), work / f"scale-{leads}.jsonl", work / f"scale-{leads}.err"
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
        config = sim.tap_config(work, "incremental", requests_per_minute=UNLIMITED_RPM)
        log(f"4 incremental: first run, {leads:,} leads")
        first = run_measured(tap_cmd(config), work / "incr-1.jsonl", work / "incr-1.err").check()
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
            tap_cmd(config, state), work / "incr-2.jsonl", work / "incr-2.err"
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
        f"{n(leads)} leads, about 8 calls each; rerun from the first run's final STATE with "
        "nothing new; no latency, no rate limit",
        describe("second run", second, second_requests, second_out),
        describe("first run", first, first_requests, first_out),
        "no calls re-emitted",
        yes_no(second_out.records.get("calls", 0) == 0),
        notes,
    )


# --------------------------------------------------------------------------- main

SCENARIOS: dict[int, Callable[[Path, Sizes], Row]] = {
    1: rate_bound,
    2: cpu_bound,
    3: scale,
    4: incremental,
}


def render(rows: list[Row], *, quick: bool, elapsed_s: float) -> str:
    mode = "quick mode (tiny sizes: figures not meaningful)" if quick else "full run"
    lines = [
        f"Machine: {machine_line()}.",
        f"Benchmark: {mode}, {elapsed_s:.0f} s in all; simulator, tap and baseline are separate "
        "processes on this machine.",
        "",
        "| # | Scenario | Setup | tap-lofty | Compared with | Target | Met |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = (str(r.number), r.scenario, r.setup, r.tap, r.compared, r.target, r.met)
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    lines.append("")
    lines += [f"- {note}" for r in rows for note in r.notes]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="tap-lofty benchmarks (issue 6).")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for the smoke test")
    parser.add_argument("--scenario", type=int, choices=sorted(SCENARIOS), action="append")
    parser.add_argument("--workdir", type=Path, help="keep outputs here (default: a temp dir)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    chosen = args.scenario or sorted(SCENARIOS)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tap-lofty-bench-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        rows = [SCENARIOS[number](work, sizes) for number in chosen]
    table = render(rows, quick=args.quick, elapsed_s=time.monotonic() - started)
    sys.stdout.write(table)
    sys.stdout.flush()
    if not args.quick and len(chosen) == len(SCENARIOS):
        RESULTS.write_text("# tap-lofty benchmark results\n\n" + table)
        log(f"written to {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
