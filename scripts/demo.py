"""The tap-lofty demo: a local Lofty simulator -> `meltano run` -> an embedded DuckDB database.

``./run.sh demo`` sets everything up and then runs this script with the project's ``.venv``:

1. starts the Lofty API simulator (``python -m lofty_sim``) on a free local port;
2. runs ``meltano run --full-refresh --state-id-suffix demo tap-lofty target-duckdb``
   (Meltano from ``.venv-meltano/``, plugins from ``.meltano/``) with the tap pointed at the
   simulator;
3. stops the simulator, checks that the database holds every lead, call, text and email event
   the simulator has (each once), and prints the counts, where the database file is, how to
   query it, calls per outcome, texts per direction and outcome, and email events per type.

Also: ``scripts/demo.py --sql "SELECT ..."`` runs a query against the demo database.
Exits non-zero with a message on any failure.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
MELTANO = ROOT / ".venv-meltano" / "bin" / "meltano"
SETUP = ROOT / "scripts" / "setup_meltano.sh"
DUCKDB_PYTHON = ROOT / ".meltano" / "loaders" / "target-duckdb" / "venv" / "bin" / "python"
OUTPUT = ROOT / "output"
DATABASE = OUTPUT / "lofty.duckdb"  # meltano.yml: target-duckdb filepath
LOG = OUTPUT / "demo-meltano.log"
SCHEMA = "tap_lofty"
LOADER = "target-duckdb"

# Runs inside the target-duckdb plugin's virtualenv, which has the duckdb module.
_QUERY_SCRIPT = r"""
import json, sys
import duckdb
path, queries = sys.argv[1], json.loads(sys.argv[2])
conn = duckdb.connect(path, read_only=True)
out = []
for sql in queries:
    rel = conn.execute(sql)
    cols = [d[0] for d in rel.description] if rel.description else []
    out.append({"columns": cols, "rows": [[str(v) if isinstance(v, int) and abs(v) > 2**53
                                             else v for v in row] for row in rel.fetchall()]})
print(json.dumps(out, default=str))
"""


class DemoError(Exception):
    """A step of the demo failed; the message says which and what to do."""


def say(text: str = "") -> None:
    """Print a line at once (the output is interleaved with subprocesses')."""
    print(text, flush=True)


def quiet_env() -> dict[str, str]:
    """Return this environment minus tap/target settings, with Meltano's tracking off."""
    drop = ("TAP_LOFTY_", "TARGET_DUCKDB_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(
        {
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "MELTANO_DISABLE_TRACKING": "true",
            "MELTANO_SNOWPLOW_COLLECTOR_ENDPOINTS": "[]",
            "NO_COLOR": "1",
        }
    )
    env.setdefault("MELTANO_HUB_URL", "http://127.0.0.1:9/no-hub")
    return env


def ensure_meltano() -> None:
    """Run scripts/setup_meltano.sh (quick when everything is installed already)."""
    proc = subprocess.run(["bash", str(SETUP)], cwd=ROOT, check=False)
    if proc.returncode != 0 or not MELTANO.exists():
        raise DemoError(
            f"scripts/setup_meltano.sh failed (exit {proc.returncode}); see its output above."
        )


class Simulator:
    """``python -m lofty_sim`` as a subprocess; reads the URL and credentials it prints."""

    def __init__(self, leads: int, seed: int) -> None:
        self.leads, self.seed = leads, seed
        self.proc: subprocess.Popen[str] | None = None
        self.values: dict[str, str] = {}
        self._stderr: list[str] = []

    def start(self, timeout: float = 60.0) -> None:
        """Start the simulator and wait until it printed its URL and API key."""
        cmd = [
            sys.executable,
            "-m",
            "lofty_sim",
            "--port",
            "0",
            "--leads",
            str(self.leads),
            "--seed",
            str(self.seed),
        ]
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        threading.Thread(target=self._drain, args=(self.proc.stderr,), daemon=True).start()
        wanted = {"LOFTY_SIM_URL", "LOFTY_SIM_API_KEY"}
        deadline = time.monotonic() + timeout
        lines: list[str] = []

        def read() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                lines.append(line)
                key, sep, value = line.strip().partition("=")
                if sep and key.startswith("LOFTY_SIM_"):
                    self.values[key] = value
                if wanted <= self.values.keys():
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(max(0.0, deadline - time.monotonic()))
        if not wanted <= self.values.keys():
            self.stop()
            raise DemoError(
                "the Lofty simulator did not start (`"
                + " ".join(cmd[1:])
                + "`):\n"
                + "".join(lines[-10:])
                + "".join(self._stderr[-20:])
            )

    def _drain(self, stream: IO[str]) -> None:
        for line in stream:
            self._stderr.append(line)

    @property
    def url(self) -> str:
        """The simulator's base URL."""
        return self.values["LOFTY_SIM_URL"]

    @property
    def api_key(self) -> str:
        """The API key the simulator accepts."""
        return self.values["LOFTY_SIM_API_KEY"]

    def stop(self) -> None:
        """Stop the simulator (SIGTERM, then SIGKILL after 15 s). Idempotent."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


def run_meltano(sim: Simulator, verbose: bool) -> float:
    """``meltano run --full-refresh tap-lofty target-duckdb``; the whole log goes to LOG."""
    env = quiet_env()
    env.update(
        {
            "TAP_LOFTY_API_URL": sim.url,
            "TAP_LOFTY_API_KEY": sim.api_key,
            # The simulator enforces Lofty's production quota, 500 requests a minute.
            "TAP_LOFTY_REQUESTS_PER_MINUTE": "500",
        }
    )
    # A fresh database each time, so a full run; its state is kept apart (suffix "demo") from
    # that of a `meltano run tap-lofty target-duckdb` of your own.
    args = ["run", "--full-refresh", "--state-id-suffix", "demo", "tap-lofty", LOADER]
    cmd = [str(MELTANO), *args]
    say(f"$ meltano {' '.join(args)}   (full log: {rel(LOG)})")
    started = time.monotonic()
    with LOG.open("w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert proc.stdout is not None
        tail: list[str] = []
        for line in proc.stdout:
            log.write(line)
            tail = [*tail[-39:], line]
            if verbose or re.search(r"Sync finished|\[error|Run completed|Block run", line):
                say("  " + line.rstrip()[:200])
        returncode = proc.wait()
    seconds = time.monotonic() - started
    if returncode != 0:
        raise DemoError(
            f"`meltano run tap-lofty {LOADER}` failed (exit {returncode}). Last lines of "
            f"{rel(LOG)}:\n" + "".join(tail)
        )
    return seconds


def query(queries: list[str]) -> list[dict[str, Any]]:
    """Run SQL against the demo database with the target-duckdb plugin's duckdb module."""
    if not DUCKDB_PYTHON.exists():
        raise DemoError(f"{rel(DUCKDB_PYTHON)} is missing: run scripts/setup_meltano.sh first.")
    if not DATABASE.exists():
        raise DemoError(f"{rel(DATABASE)} does not exist yet: run the demo first.")
    proc = subprocess.run(
        [str(DUCKDB_PYTHON), "-c", _QUERY_SCRIPT, str(DATABASE), json.dumps(queries)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise DemoError(f"query failed:\n{proc.stderr.strip()[-2000:]}")
    result: list[dict[str, Any]] = json.loads(proc.stdout)
    return result


def table(columns: list[str], rows: list[list[Any]], indent: str = "  ") -> str:
    """Format a query result as an aligned text table."""
    cells = [[str(c) for c in columns]] + [
        [f"{v:,}" if isinstance(v, int) else "NULL" if v is None else str(v) for v in row]
        for row in rows
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = []
    for n, r in enumerate(cells):
        lines.append(
            indent
            + "  ".join(
                c.rjust(w) if n and c.replace(",", "").lstrip("-").isdigit() else c.ljust(w)
                for c, w in zip(r, widths, strict=True)
            ).rstrip()
        )
        if n == 0:
            lines.append(indent + "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def rel(path: Path) -> str:
    """Show ``path`` relative to the working directory when it is below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


STREAMS = ("leads", "calls", "texts", "emails")


def ground_truth(leads: int, seed: int) -> dict[str, int]:
    """How many leads, calls, texts and email events the simulator holds (same seed: same data)."""
    sys.path.insert(0, str(ROOT))
    from lofty_sim import LoftySimulator, SimConfig  # noqa: PLC0415

    sim = LoftySimulator(SimConfig(leads=leads, seed=seed))
    return {
        "leads": len(sim.lead_ids()),
        "calls": sim.total_calls(),
        "texts": len(sim.all_texts()),
        "emails": len(sim.all_emails()),
    }


def demo(leads: int, seed: int, verbose: bool) -> None:
    """Run the whole demo and print the summary; raise DemoError on failure."""
    started = time.monotonic()
    say("== tap-lofty demo ==")
    ensure_meltano()
    OUTPUT.mkdir(exist_ok=True)

    sim = Simulator(leads, seed)
    sim.start()
    say(f"Lofty simulator: {sim.url} ({leads} leads, seed {seed})")
    try:
        DATABASE.unlink(missing_ok=True)  # a fresh database each time
        seconds = run_meltano(sim, verbose)
    finally:
        sim.stop()

    outcome_sql = (
        f"SELECT callingoutcome, count(*) AS calls FROM {SCHEMA}.calls "
        "GROUP BY 1 ORDER BY 2 DESC, 1"
    )
    texts_sql = (
        f"SELECT direction, textoutcome, count(*) AS texts, count(DISTINCT leadid) AS leads "
        f"FROM {SCHEMA}.texts GROUP BY 1, 2 ORDER BY 1, 3 DESC, 2"
    )
    key = {"leads": "leadid", "calls": "id", "texts": "id", "emails": "id"}
    counts, outcomes, busiest, texts, events = query(
        [
            "SELECT "
            + ", ".join(
                f"(SELECT count(*) FROM {SCHEMA}.{t}), "
                f"(SELECT count(DISTINCT {key[t]}) FROM {SCHEMA}.{t})"
                for t in STREAMS
            ),
            outcome_sql,
            f"SELECT leadid, count(*) AS calls FROM {SCHEMA}.calls GROUP BY 1 ORDER BY 2 DESC "
            "LIMIT 1",
            texts_sql,
            f"SELECT eventtype, count(*) AS events FROM {SCHEMA}.emails GROUP BY 1 "
            "ORDER BY 2 DESC, 1",
        ]
    )
    row = counts["rows"][0]
    loaded = {t: row[2 * i] for i, t in enumerate(STREAMS)}
    distinct = {t: row[2 * i + 1] for i, t in enumerate(STREAMS)}
    want = ground_truth(leads, seed)
    if loaded != want or distinct != want:
        raise DemoError(
            "the database does not hold what the simulator has: "
            + "; ".join(
                f"{t}: {loaded[t]} rows ({distinct[t]} distinct), simulator {want[t]}"
                for t in STREAMS
            )
        )
    top_lead, top_calls = busiest["rows"][0]

    say()
    say(f"Done in {time.monotonic() - started:.1f} s (meltano run: {seconds:.1f} s).")
    say(
        f"Loaded {loaded['leads']:,} leads, {loaded['calls']:,} calls, {loaded['texts']:,} texts "
        f"and {loaded['emails']:,} email events: every one the simulator holds, each once."
    )
    say(f"The busiest lead ({top_lead}) has {top_calls:,} calls, read in pages of 1,000.")
    say()
    say(f"Database: {DATABASE} (DuckDB), schema {SCHEMA}, tables {', '.join(STREAMS)}")
    say(
        "(column names are lower-cased by target-duckdb: leadid, callingoutcome, starttime, "
        "textoutcome ...)."
    )
    say()
    say("Calls per outcome:")
    say(table(outcomes["columns"], outcomes["rows"]))
    say()
    say("Texts per direction and outcome:")
    say(table(texts["columns"], texts["rows"]))
    say()
    say("Email events per type:")
    say(table(events["columns"], events["rows"]))
    say()
    say("Query it yourself:")
    say(f'  .venv/bin/python scripts/demo.py --sql "{outcome_sql}"')
    say(f'  .venv/bin/python scripts/demo.py --sql "{texts_sql}"')
    say(f"  or, with the DuckDB CLI (pip install duckdb-cli):  duckdb {rel(DATABASE)}")
    say("Load into PostgreSQL instead: see 'Loading into PostgreSQL' in the README.")


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--leads", type=int, default=200, help="leads in the simulator")
    parser.add_argument("--seed", type=int, default=7, help="simulator seed")
    parser.add_argument("--verbose", action="store_true", help="show Meltano's whole log")
    parser.add_argument("--sql", help="run this query against the demo database and exit")
    args = parser.parse_args(argv)
    try:
        if args.sql:
            (result,) = query([args.sql])
            say(table(result["columns"], result["rows"], indent=""))
        else:
            demo(args.leads, args.seed, args.verbose)
    except DemoError as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndemo interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
