"""Helpers for the benchmarks: the simulator process, measured child runs and output scans.

Everything runs as separate processes (simulator, tap, baseline), so none of them competes with
another for a GIL, and every child's peak memory comes from the kernel (``wait4`` rusage).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
#: The counters of /_sim/stats that are API requests ("GET /v1.0/leads 200", and the
#: communications feed "GET /v2.0/communication/agent 200").
API_PREFIXES = ("GET /v1.0/", "GET /v2.0/")
#: The tap's streams, and the key of each one's records.
STREAM_KEYS = {"leads": "leadId", "calls": "id", "texts": "id", "emails": "id"}


def child_env() -> dict[str, str]:
    """Environment of every child: this one, minus PYTHONUNBUFFERED (a plain shell pipeline)."""
    env = dict(os.environ)
    env.pop("PYTHONUNBUFFERED", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def machine_line() -> str:
    """Cores, CPU model, memory, OS, Python and package versions, in one line."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f", {int(line.split()[1]) / 2**20:.1f} GiB RAM"
                break
    versions = []
    for package, label in (("singer-sdk", "Singer SDK"), ("tap-lofty", "tap-lofty")):
        with contextlib.suppress(PackageNotFoundError):
            versions.append(f"{label} {version(package)}")
    return (
        f"{os.cpu_count()} cores, CPU {cpu}{mem}, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}" + "".join(f", {v}" for v in versions)
    )


# --------------------------------------------------------------------------- the simulator


class Simulator:
    """``python -m lofty_sim`` in its own process; stopped with SIGTERM on ``close()``."""

    def __init__(self, workdir: Path, **options: Any) -> None:
        """Start it with CLI ``options`` (``rate_limit=0`` becomes ``--rate-limit 0``)."""
        cmd = [PYTHON, "-m", "lofty_sim", "--port", "0"]
        for name, value in options.items():
            cmd += [f"--{name.replace('_', '-')}", str(value)]
        self._stderr_path = workdir / f"sim-{os.getpid()}-{time.monotonic_ns()}.err"
        self._stderr = self._stderr_path.open("w")
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=self._stderr, cwd=ROOT, env=child_env()
        )
        self.session = requests.Session()
        self.session.trust_env = False  # the simulator is on 127.0.0.1: never via a proxy
        try:
            values = self._read_banner()
        except Exception:
            self.close()
            raise
        self.url = values["LOFTY_SIM_URL"]
        self.api_key = values["LOFTY_SIM_API_KEY"]

    def _read_banner(self, timeout_s: float = 60.0) -> dict[str, str]:
        """Read the three ``NAME=value`` lines (raw reads: no buffer hides a line from select)."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        data = b""
        deadline = time.monotonic() + timeout_s
        while data.count(b"\n") < 3:
            ready, _, _ = select.select([fd], [], [], 0.5)
            chunk = os.read(fd, 4096) if ready else b""
            data += chunk
            if (ready and not chunk) or time.monotonic() > deadline:
                self._stderr.flush()
                err = self._stderr_path.read_text(errors="replace")[-2000:]
                msg = f"the simulator did not start (exit {self.proc.poll()}): {err}"
                raise RuntimeError(msg)
        lines = data.decode().splitlines()
        return dict(line.strip().split("=", 1) for line in lines if "=" in line)

    def control(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Call a ``/_sim/...`` endpoint (no auth, not counted, not rate-limited)."""
        response = self.session.request(method, self.url + path, json=body, timeout=60)
        response.raise_for_status()
        return response.json()

    def api_get(self, path: str, params: dict[str, Any]) -> Any:
        """Call the API as the tap does (counted: reset the counters afterwards)."""
        response = self.session.get(
            self.url + path,
            params=params,
            headers={"Authorization": f"token {self.api_key}"},
            timeout=120,
        )
        response.raise_for_status()
        return response.json()

    def api_counters(self) -> dict[str, int]:
        """Return the API request counters since the last reset ("GET <path> <status>": n)."""
        counters: dict[str, int] = self.control("GET", "/_sim/stats")
        return {k: n for k, n in counters.items() if k.startswith(API_PREFIXES)}

    def api_requests(self) -> tuple[int, int]:
        """Return (API requests answered, of which 429) since the last reset."""
        counters = self.api_counters()
        total = sum(counters.values())
        limited = sum(n for k, n in counters.items() if k.endswith(" 429"))
        return total, limited

    def requests_by_endpoint(self) -> dict[str, int]:
        """Return the API requests since the last reset per path (all statuses)."""
        out: dict[str, int] = {}
        for key, count in self.api_counters().items():
            path = key.split(" ")[1]
            out[path] = out.get(path, 0) + count
        return out

    def truth_ids(self) -> dict[str, set[int]]:
        """Return the ids of every call, text and email the simulator holds now."""
        truth = self.control("GET", "/_sim/truth")
        return {
            stream: {int(row[STREAM_KEYS[stream]]) for row in truth[stream]}
            for stream in ("calls", "texts", "emails")
        }

    def reset(self, **config: Any) -> None:
        """Clear the counters; with ``config``, reconfigure (a new rate_limit: a new window)."""
        if config:
            self.control("POST", "/_sim/configure", config)
        self.control("POST", "/_sim/reset_counters")

    def tap_config(self, workdir: Path, name: str, **settings: Any) -> Path:
        """Write a tap config for this simulator; return its path."""
        config = {"api_url": self.url, "api_key": self.api_key, **settings}
        path = workdir / f"{name}.config.json"
        path.write_text(json.dumps(config))
        return path

    def close(self) -> None:
        """Stop the simulator (SIGTERM, then SIGKILL after 10 s)."""
        self.session.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()

    def __enter__(self) -> Simulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StatsPoller:
    """Samples the simulator's API request count every ``interval_s`` on a thread."""

    def __init__(self, sim: Simulator, interval_s: float = 0.1) -> None:
        self.sim = sim
        self.interval_s = interval_s
        #: (time.monotonic(), requests answered so far, 429s so far)
        self.samples: list[tuple[float, int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            total, limited = self.sim.api_requests()
            self.samples.append((time.monotonic(), total, limited))
            self._stop.wait(self.interval_s)

    def first_request_at(self) -> float | None:
        """Time of the first sample that saw a request."""
        return next((t for t, n, _ in self.samples if n > 0), None)

    def count_at(self, when: float) -> tuple[int, int]:
        """(requests, 429s) answered by ``when`` (last sample at or before it)."""
        best = (0, 0)
        for t, n, limited in self.samples:
            if t > when:
                break
            best = (n, limited)
        return best

    def time_reaching(self, count: int) -> float | None:
        """Time of the first sample with at least ``count`` requests."""
        return next((t for t, n, _ in self.samples if n >= count), None)

    def __enter__(self) -> StatsPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


# --------------------------------------------------------------------------- measured runs


#: Runs one command and reports its exit code, wall time, CPU time and peak RSS as JSON. It is a
#: small, fresh process: a child's ru_maxrss also counts the memory of the process that spawned
#: it (the kernel carries the parent's high-water mark over the exec of a vfork-style spawn), so
#: measuring from this harness, which holds whole outputs in memory, would inflate it.
LAUNCHER = """
import json, os, signal, sys, time
report, argv = sys.argv[1], sys.argv[2:]
start = time.monotonic()
pid = os.posix_spawn(argv[0], argv, os.environ)
signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGTERM))
_, status, usage = os.wait4(pid, 0)
wall = time.monotonic() - start
signal.signal(signal.SIGTERM, signal.SIG_IGN)
with open(report, "w") as handle:
    json.dump({"exit": os.waitstatus_to_exitcode(status), "wall_s": wall,
               "max_rss_kb": usage.ru_maxrss, "cpu_s": usage.ru_utime + usage.ru_stime}, handle)
"""


@dataclass
class RunResult:
    """One child process run: exit code, wall time, CPU time and peak resident memory."""

    cmd: list[str]
    exit_code: int
    wall_s: float
    cpu_s: float
    max_rss_kb: int
    stdout: Path
    stderr: Path
    stopped: bool = False  # stopped on purpose by ``stop_when``
    started_at: float = 0.0  # time.monotonic() at spawn (of the launcher)
    ended_at: float = 0.0

    def check(self) -> RunResult:
        """Raise with the tail of stderr if the run failed (and was not stopped on purpose)."""
        if self.exit_code != 0 and not self.stopped:
            tail = self.stderr.read_text(errors="replace")[-3000:]
            msg = f"{' '.join(self.cmd)} exited with {self.exit_code}:\n{tail}"
            raise RuntimeError(msg)
        return self


def run_measured(
    cmd: list[str],
    stdout: Path,
    stderr: Path,
    *,
    stop_when: Callable[[], bool] | None = None,
    timeout_s: float = 1800.0,
) -> RunResult:
    """Run ``cmd`` (an absolute executable first) with stdout and stderr to files.

    Wall time, CPU time and peak RSS (``ru_maxrss``) are those of ``cmd`` alone, taken by
    :data:`LAUNCHER`. ``stop_when`` is checked about every 0.1 s; when it returns True the
    command gets SIGTERM (``stopped=True``).
    """
    report = stdout.with_suffix(".rusage.json")
    report.unlink(missing_ok=True)
    launcher = [PYTHON, "-I", "-S", "-c", LAUNCHER, str(report), *cmd]
    with stdout.open("wb") as out, stderr.open("wb") as err:
        started = time.monotonic()
        proc = subprocess.Popen(launcher, stdout=out, stderr=err, cwd=ROOT, env=child_env())
        stopped = False
        while True:
            try:
                proc.wait(timeout=0.1)
                break
            except subprocess.TimeoutExpired:
                pass
            overdue = time.monotonic() - started - timeout_s
            if not stopped and (overdue > 0 or (stop_when is not None and stop_when())):
                proc.send_signal(signal.SIGTERM)  # the launcher forwards it to the command
                stopped = True
            elif overdue > 30:
                proc.kill()
        ended = time.monotonic()
    if not report.exists():
        tail = stderr.read_text(errors="replace")[-3000:]
        msg = f"the launcher for {' '.join(cmd)} exited with {proc.returncode}:\n{tail}"
        raise RuntimeError(msg)
    usage = json.loads(report.read_text())
    return RunResult(
        cmd=cmd,
        exit_code=usage["exit"],
        wall_s=usage["wall_s"],
        cpu_s=usage["cpu_s"],
        max_rss_kb=usage["max_rss_kb"],
        stdout=stdout,
        stderr=stderr,
        stopped=stopped,
        started_at=started,
        ended_at=ended,
    )


def tap_cmd(config: Path, state: Path | None = None, catalog: Path | None = None) -> list[str]:
    """Command line of the tap (the installed package, run by this Python)."""
    cmd = [PYTHON, "-m", "tap_lofty", "--config", str(config)]
    if state is not None:
        cmd += ["--state", str(state)]
    if catalog is not None:
        cmd += ["--catalog", str(catalog)]
    return cmd


def write_catalog(config: Path, path: Path, selected: Iterable[str]) -> Path:
    """Write the tap's discovered catalog with only the ``selected`` streams selected."""
    discovered = subprocess.run(
        [PYTHON, "-m", "tap_lofty", "--config", str(config), "--discover"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env=child_env(),
    )
    catalog = json.loads(discovered.stdout)
    wanted = set(selected)
    found = set()
    for stream in catalog["streams"]:
        found.add(stream["tap_stream_id"])
        for entry in stream["metadata"]:
            if entry["breadcrumb"] == []:
                entry["metadata"]["selected"] = stream["tap_stream_id"] in wanted
    if not wanted <= found:
        msg = f"the tap's catalog has no stream(s) {sorted(wanted - found)}"
        raise RuntimeError(msg)
    path.write_text(json.dumps(catalog))
    return path


def baseline_cmd(config: Path) -> list[str]:
    """Command line of ``benchmarks/baseline.py``."""
    return [PYTHON, str(Path(__file__).with_name("baseline.py")), "--config", str(config)]


# --------------------------------------------------------------------------- output scans


@dataclass
class Output:
    """What a Singer output file holds."""

    records: dict[str, int] = field(default_factory=dict)
    state_lines: int = 0
    state_bytes: int = 0  # all STATE lines, without their newlines
    final_state_bytes: int = 0
    final_state: dict[str, Any] | None = None

    @property
    def total_records(self) -> int:
        return sum(self.records.values())


def _lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        yield from handle


def scan_output(path: Path) -> Output:
    """Count RECORD lines per stream and measure the STATE lines of a Singer output file."""
    out = Output()
    last_state = b""
    for raw in _lines(path):
        line = raw.rstrip(b"\n")
        head = line[:60]
        if b'"type":"RECORD"' in head:
            start = head.index(b'"stream":"') + 10
            stream = head[start : head.index(b'"', start)].decode()
            out.records[stream] = out.records.get(stream, 0) + 1
        elif b'"type":"STATE"' in head:
            out.state_lines += 1
            out.state_bytes += len(line)
            last_state = line
    if last_state:
        out.final_state_bytes = len(last_state)
        out.final_state = json.loads(last_state)["value"]
    return out


def record_set(path: Path) -> dict[tuple[str, Any], dict[str, Any]]:
    """RECORD bodies keyed by (stream, primary key), for comparing two outputs."""
    found: dict[tuple[str, Any], dict[str, Any]] = {}
    for raw in _lines(path):
        if b'"type":"RECORD"' not in raw[:60]:
            continue
        message = json.loads(raw)
        stream = message["stream"]
        record = message["record"]
        found[(stream, record[STREAM_KEYS[stream]])] = record
    return found


def record_ids(
    path: Path, streams: Iterable[str] = ("calls", "texts", "emails")
) -> dict[str, list[int]]:
    """Primary keys of the RECORD lines of ``streams`` in a Singer output file (repeats kept)."""
    wanted = {s.encode(): s for s in streams}
    found: dict[str, list[int]] = {s: [] for s in wanted.values()}
    for raw in _lines(path):
        head = raw[:60]
        if b'"type":"RECORD"' not in head:
            continue
        start = head.index(b'"stream":"') + 10
        stream = wanted.get(head[start : head.index(b'"', start)])
        if stream is not None:
            found[stream].append(int(json.loads(raw)["record"][STREAM_KEYS[stream]]))
    return found


def sync_summary(stderr: Path) -> str:
    """The tap's ``Sync finished: ...`` line (empty if absent)."""
    text = stderr.read_text(errors="replace")
    for line in reversed(text.splitlines()):
        if "Sync finished:" in line:
            return line.split("Sync finished:", 1)[1].strip()
    return ""
