"""Throughput of the simulator: ``python -m lofty_sim.bench [--seconds 5] [--threads 4]``.

Starts the command-line simulator in a subprocess (as the benchmarks do) with a few leads holding
2,600+ calls each, then has client threads (``requests`` sessions, keep-alive) fetch full
1000-call pages, alternating the offset mode (newest first) and the ``currentId`` cursor mode, for
a fixed time. Clients read the bytes but do not parse JSON, so the figure is what the server can
serve; client and server share the machine's cores. First it times how long a 100,000-lead
(about 1,000,000-call) data set takes to start serving.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time

import requests

from lofty_sim import LoftySimulator, SimConfig

PAGE = 1000


def start_simulator(
    leads: int, big_leads: int, seed: int
) -> tuple[subprocess.Popen[str], str, str]:
    """Start ``python -m lofty_sim`` on a free port; return (process, url, api key)."""
    cmd = [sys.executable, "-m", "lofty_sim", "--port", "0", "--leads", str(leads)]
    cmd += ["--big-leads", str(big_leads), "--seed", str(seed), "--rate-limit", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    values = dict(proc.stdout.readline().strip().split("=", 1) for _ in range(3))
    return proc, values["LOFTY_SIM_URL"], values["LOFTY_SIM_API_KEY"]


def cpu_seconds(pid: int) -> float | None:
    """User+system CPU time of a process (Linux /proc; None elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def page_requests(session: requests.Session, url: str) -> list[dict[str, int]]:
    """Find the big leads and list the query strings that return exactly 1000 calls."""
    body = session.get(f"{url}/v1.0/leads", params={"limit": 100}, timeout=30).json()
    ids = [lead["leadId"] for lead in body["leads"]]
    out: list[dict[str, int]] = []
    for lead_id in ids:
        # Offset 0 and 1000 (newest first) are full pages on a lead with >= 2000 calls.
        resp = session.get(
            f"{url}/v1.0/communication/call",
            params={"leadId": lead_id, "limit": PAGE, "offset": PAGE},
            timeout=30,
        )
        calls = resp.json()["calls"]
        if len(calls) < PAGE:
            continue
        out.append({"leadId": lead_id, "limit": PAGE, "offset": 0})
        out.append({"leadId": lead_id, "limit": PAGE, "offset": PAGE})
        # Cursor mode (ascending): from just below the oldest call of the offset-1000 page.
        out.append({"leadId": lead_id, "limit": PAGE, "currentId": calls[-1]["id"] - 1})
    return out


def run(seconds: float, threads: int, leads: int, big_leads: int) -> str:
    """Run the benchmark and return the one-line result."""
    proc, url, key = start_simulator(leads, big_leads, seed=7)
    try:
        headers = {"Authorization": f"token {key}"}
        with requests.Session() as session:
            session.headers.update(headers)
            queries = page_requests(session, url)  # also warms the server's caches
        if not queries:
            raise SystemExit("no lead with 2000+ calls: raise --big-leads")
        pages = [0] * threads
        nbytes = [0] * threads
        errors: list[str] = []
        stop_at = time.monotonic() + seconds

        def client(n: int) -> None:
            with requests.Session() as session:
                session.headers.update(headers)
                i = n
                while time.monotonic() < stop_at:
                    resp = session.get(
                        f"{url}/v1.0/communication/call",
                        params=queries[i % len(queries)],
                        timeout=30,
                    )
                    if resp.status_code != 200:
                        errors.append(f"HTTP {resp.status_code}")
                        return
                    nbytes[n] += len(resp.content)
                    pages[n] += 1
                    i += threads

        cpu_before = cpu_seconds(proc.pid)
        started = time.monotonic()
        workers = [threading.Thread(target=client, args=(n,)) for n in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        elapsed = time.monotonic() - started
        cpu_after = cpu_seconds(proc.pid)
        if errors:
            raise SystemExit(f"errors: {errors[:3]}")
        total_pages = sum(pages)
        rate = total_pages / elapsed
        mbps = sum(nbytes) / elapsed / 1e6
        cores = os.cpu_count() or 1
        server_cpu = ""
        if cpu_before is not None and cpu_after is not None and total_pages > 0:
            per_page_ms = (cpu_after - cpu_before) / total_pages * 1000
            server_cpu = f"; server CPU {per_page_ms:.2f} ms/page"
        return (
            f"simulator: {rate:.0f} pages/s of {PAGE} calls ({mbps:.0f} MB/s) on {cores} cores "
            f"({threads} client threads, {elapsed:.1f} s, {total_pages} pages{server_cpu})"
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def startup(leads: int) -> str:
    """Time building a simulator of ``leads`` leads (10 calls each on average) in-process."""
    started = time.monotonic()
    sim = LoftySimulator(SimConfig(leads=leads, seed=1, calls_per_lead_mean=10, big_leads=3))
    with sim:
        ready = time.monotonic() - started
        calls = sim.total_calls()
    return f"start-up: {leads:,} leads ({calls:,} calls) serving after {ready:.2f} s"


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run, print the result lines."""
    parser = argparse.ArgumentParser(prog="python -m lofty_sim.bench", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--leads", type=int, default=20)
    parser.add_argument("--big-leads", type=int, default=4)
    parser.add_argument("--startup-leads", type=int, default=100_000)
    args = parser.parse_args(argv)
    print(startup(args.startup_leads), flush=True)
    print(run(args.seconds, args.threads, args.leads, args.big_leads), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
