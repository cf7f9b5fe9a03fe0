"""Helpers for the end-to-end tests: Meltano, a PostgreSQL server, and source-vs-warehouse checks.

Everything here runs real programs: ``scripts/setup_meltano.sh`` (once per session),
``.venv-meltano/bin/meltano run tap-lofty target-postgres`` as a subprocess, and SQL through
psycopg against a throwaway database.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

REPO = Path(__file__).resolve().parent.parent
MELTANO = REPO / ".venv-meltano" / "bin" / "meltano"
SETUP_SCRIPT = REPO / "scripts" / "setup_meltano.sh"
SCHEMAS = REPO / "schemas"
TARGET_SCHEMA = "tap_lofty"  # meltano.yml: target-postgres default_target_schema
INT53 = 2**53

# Environment variables a developer's shell may hold that must not leak into the runs.
_ISOLATED_PREFIXES = ("TAP_LOFTY_", "TARGET_POSTGRES_", "TARGET_DUCKDB_", "MELTANO_")


# --------------------------------------------------------------------------------------------
# Meltano
# --------------------------------------------------------------------------------------------


def ensure_meltano() -> Path:
    """Run ``scripts/setup_meltano.sh`` (a no-op when up to date) and return the meltano path."""
    proc = subprocess.run(
        ["bash", str(SETUP_SCRIPT)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    if proc.returncode != 0 or not MELTANO.exists():
        pytest.fail(
            f"scripts/setup_meltano.sh failed (exit {proc.returncode}):\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        )
    return MELTANO


def base_env(system_db: Path) -> dict[str, str]:
    """The environment for a Meltano subprocess: no tracking, no hub, its own system database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_ISOLATED_PREFIXES)}
    env.update(
        {
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "MELTANO_DISABLE_TRACKING": "true",
            "MELTANO_SNOWPLOW_COLLECTOR_ENDPOINTS": "[]",
            # Every plugin is declared in full; a hub look-up would be a bug, so make it
            # fail at once on the loopback instead of reaching out.
            "MELTANO_HUB_URL": "http://127.0.0.1:9/no-hub",
            "MELTANO_AUTO_INSTALL": "false",
            "MELTANO_DATABASE_URI": f"sqlite:///{system_db}",
            "NO_COLOR": "1",
            "TERM": "dumb",
            "COLUMNS": "200",
        }
    )
    return env


@dataclass
class RunResult:
    """One ``meltano run``."""

    args: list[str]
    returncode: int
    output: str
    seconds: float

    def check(self) -> RunResult:
        """Fail the test, showing the log tail, unless the run succeeded."""
        if self.returncode != 0:
            pytest.fail(
                f"`meltano {' '.join(self.args)}` exited {self.returncode} after "
                f"{self.seconds:.1f}s:\n{self.output[-8000:]}"
            )
        return self


@dataclass
class MeltanoRunner:
    """Runs Meltano in the repo with an isolated system DB and its own state id suffix."""

    meltano: Path
    workdir: Path
    suffix: str = field(default_factory=lambda: f"e2e{uuid.uuid4().hex[:12]}")
    loader: str = "target-postgres"
    runs: list[RunResult] = field(default_factory=list)

    @property
    def state_id(self) -> str:
        """The id Meltano saves state under: ``dev:tap-lofty-to-<loader>:<suffix>``."""
        return f"dev:tap-lofty-to-{self.loader}:{self.suffix}"

    @property
    def system_db(self) -> Path:
        return self.workdir / "meltano.db"

    def env(self, extra: dict[str, str]) -> dict[str, str]:
        env = base_env(self.system_db)
        env.update(extra)
        return env

    def meltano_cmd(
        self, args: list[str], extra_env: dict[str, str], timeout: float = 300
    ) -> RunResult:
        started = time.monotonic()
        proc = subprocess.run(
            [str(self.meltano), *args],
            cwd=REPO,
            env=self.env(extra_env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
        )
        return RunResult(args, proc.returncode, proc.stdout, time.monotonic() - started)

    def run(self, extra_env: dict[str, str]) -> RunResult:
        """``meltano run --state-id-suffix <suffix> tap-lofty <loader>`` (environment dev)."""
        result = self.meltano_cmd(
            ["run", "--state-id-suffix", self.suffix, "tap-lofty", self.loader], extra_env
        )
        self.runs.append(result)
        return result

    def state(self) -> dict[str, Any] | None:
        """The state Meltano saved for this state id (``meltano state get``), or None if none."""
        result = self.meltano_cmd(
            ["--environment", "dev", "state", "get", self.state_id], {}, timeout=120
        )
        if result.returncode != 0:
            if "No state found" in result.output or "does not exist" in result.output:
                return None
            pytest.fail(f"meltano state get failed:\n{result.output[-4000:]}")
        for raw in reversed(result.output.splitlines()):
            line = raw.strip()
            if line.startswith("{"):
                return json.loads(line) or None  # `{}` when nothing was saved
        return None


def sim_env(sim: Any, database: str, pg: PgServer, **overrides: str) -> dict[str, str]:
    """Env for one run: the tap at the simulator, the target at ``database``."""
    env = {
        "TAP_LOFTY_API_URL": sim.url,
        "TAP_LOFTY_API_KEY": sim.config.api_key,
        # The simulator runs without a quota here; the tap's default budget (100/min)
        # would make a few hundred leads take minutes.
        "TAP_LOFTY_REQUESTS_PER_MINUTE": "100000",
        "TARGET_POSTGRES_HOST": pg.host,
        "TARGET_POSTGRES_PORT": str(pg.port),
        "TARGET_POSTGRES_USER": pg.user,
        "TARGET_POSTGRES_PASSWORD": pg.password,
        "TARGET_POSTGRES_DATABASE": database,
    }
    env.update(overrides)
    return env


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------


@dataclass
class PgServer:
    """Where a PostgreSQL server listens (trust auth: any password is accepted)."""

    host: str
    port: int
    user: str = "postgres"
    password: str = "postgres"
    origin: str = "existing"

    def connect(self, dbname: str = "postgres", **kwargs: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=dbname,
            connect_timeout=5,
            **kwargs,
        )

    def create_database(self) -> str:
        name = f"tap_lofty_e2e_{uuid.uuid4().hex[:10]}"
        with self.connect(autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        with self.connect(autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _reachable(pg: PgServer) -> str | None:
    try:
        with pg.connect() as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 where nothing listens (at the time of asking)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _postgres_bindir() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    which = shutil.which("initdb")
    if which:
        candidates.append(which)
    for initdb in candidates:
        bindir = Path(initdb).resolve().parent
        if (bindir / "pg_ctl").exists():
            return bindir
    return None


@contextlib.contextmanager
def throwaway_postgres(bindir: Path) -> Iterator[PgServer]:
    """initdb + pg_ctl start in a temp dir on a free port; stopped and removed at exit."""
    run_as: dict[str, Any] = {}
    base = Path(tempfile.mkdtemp(prefix="tap_lofty_pg_"))
    if os.geteuid() == 0:  # postgres refuses to run as root
        for name in ("postgres", "nobody"):
            try:
                account = pwd.getpwnam(name)
            except KeyError:
                continue
            run_as = {"user": account.pw_uid, "group": account.pw_gid}
            os.chown(base, account.pw_uid, account.pw_gid)
            break
        else:
            raise RuntimeError("running as root and no 'postgres' or 'nobody' user to run as")
    data, log = base / "data", base / "server.log"
    port = free_port()
    common: dict[str, Any] = {"capture_output": True, "text": True, "timeout": 120, **run_as}
    try:
        subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            **common,
        )
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c fsync=off"
        subprocess.run(
            [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "start"],
            check=True,
            **common,
        )
        yield PgServer("127.0.0.1", port, origin=f"throwaway server from {bindir}")
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                [str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                check=False,
                **common,
            )
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def postgres_server() -> Iterator[PgServer]:
    """127.0.0.1:5432 if it answers, else a throwaway server, else skip (fail under CI=true).

    ``TAP_LOFTY_E2E_PG=throwaway`` forces the throwaway server (to test that path).
    """
    under_ci = os.environ.get("CI", "").lower() == "true"
    force_local = os.environ.get("TAP_LOFTY_E2E_PG", "") == "throwaway"
    existing = PgServer("127.0.0.1", 5432)
    problem = "not tried" if force_local else _reachable(existing)
    if problem is None:
        yield existing
        return
    bindir = _postgres_bindir()
    if bindir is not None:
        with contextlib.ExitStack() as stack:
            try:
                server = stack.enter_context(throwaway_postgres(bindir))
            except (subprocess.SubprocessError, OSError, RuntimeError) as exc:
                detail = getattr(exc, "stderr", "") or str(exc)
                reason = (
                    f"no PostgreSQL: 127.0.0.1:5432 ({problem}); throwaway server failed: {detail}"
                )
            else:
                yield server
                return
    else:
        reason = f"no PostgreSQL: 127.0.0.1:5432 ({problem}) and no initdb/pg_ctl binaries"
    reason = " ".join(reason.split())
    if under_ci:
        pytest.fail(f"{reason} (CI=true: end-to-end tests must not skip)")
    pytest.skip(reason)


# --------------------------------------------------------------------------------------------
# Source vs warehouse
# --------------------------------------------------------------------------------------------


def load_schema(stream: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / f"{stream}.json").read_text(encoding="utf-8"))


def _types(prop: dict[str, Any]) -> set[str]:
    kind = prop.get("type", [])
    return {kind} if isinstance(kind, str) else set(kind)


def integer_fields(stream: str) -> list[str]:
    return [
        k
        for k, p in load_schema(stream)["properties"].items()
        if _types(p) == {"integer"} or _types(p) == {"integer", "null"}
    ]


def time_fields(stream: str) -> list[str]:
    return [
        k for k, p in load_schema(stream)["properties"].items() if p.get("format") == "date-time"
    ]


def parse_source_time(value: Any) -> dt.datetime | None:
    """A Lofty time as the naive UTC wall time PostgreSQL's ``timestamp`` holds (None if empty).

    Written independently of the tap: ``yyyy-MM-dd HH:mm:ss`` (UTC), ``...GMT``/``...Z``,
    ISO 8601 with an offset, or epoch milliseconds (a JSON integer or a digit string, as
    texts' and emails' times come), converted exactly with integer arithmetic.
    """
    if value is None or value == "":
        return None
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        return _EPOCH + dt.timedelta(milliseconds=int(value))
    text = str(value).strip()
    for suffix in ("GMT", "UTC", "Z"):
        if text.endswith(suffix):
            text = text[: -len(suffix)]
    parsed = dt.datetime.fromisoformat(text.replace(" ", "T"))
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return parsed


_EPOCH = dt.datetime(1970, 1, 1)
UNKNOWN_FIELDS = "lofty_unknown_fields"


@dataclass(frozen=True)
class JsonText:
    """Expected: a text column holding the JSON text of ``value`` (compared parsed)."""

    value: Any


def _as_declared(prop: dict[str, Any], value: Any) -> Any:
    """A source value converted to its field's declared type, as the tap documents it.

    0/1 in a boolean field -> false/true; a digit string in an integer field -> the integer;
    an object, array, number or boolean in a string field -> its JSON text.
    """
    kinds = _types(prop)
    if value is None:
        return None
    if "boolean" in kinds and type(value) is int and value in (0, 1):
        return value == 1
    if "integer" in kinds and isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if "string" in kinds and not isinstance(value, str):
        return JsonText(value)
    return value


def expected_row(stream: str, source: dict[str, Any]) -> dict[str, Any]:
    """What the warehouse row must hold for a source record, after the documented conversions.

    Ids and integers exact; times -> timestamp (UTC wall time); fields Lofty omits -> NULL;
    numbers -> numeric equal to the JSON number; arrays and objects unchanged; a JSON value of
    another type in a string field (the live ``opportunity`` object) -> its JSON text; every
    field the schema lacks -> ``lofty_unknown_fields`` as sent (NULL when there is none).
    """
    props = load_schema(stream)["properties"]
    times = set(time_fields(stream))
    out: dict[str, Any] = {}
    for name, prop in props.items():
        if name == UNKNOWN_FIELDS:
            continue
        value = source.get(name)
        out[name] = parse_source_time(value) if name in times else _as_declared(prop, value)
    if UNKNOWN_FIELDS in props:
        unknown = {k: v for k, v in source.items() if k not in props}
        out[UNKNOWN_FIELDS] = unknown or None
    return out


def _same(expected: Any, actual: Any) -> bool:
    if isinstance(expected, JsonText):
        return isinstance(actual, str) and _same(expected.value, json.loads(actual))
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and expected.keys() == actual.keys()
            and all(_same(v, actual[k]) for k, v in expected.items())
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(_same(e, a) for e, a in zip(expected, actual, strict=True))
        )
    if isinstance(expected, float) and not isinstance(actual, bool):
        return actual is not None and Decimal(str(expected)) == Decimal(str(actual))
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected is actual
    return bool(expected == actual)


def fetch_rows(conn: psycopg.Connection[Any], table: str, key: str) -> dict[int, dict[str, Any]]:
    """Every row of ``tap_lofty.<table>`` keyed by ``key`` (psycopg: dict rows)."""
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(f'SELECT * FROM {TARGET_SCHEMA}."{table}"')
        rows = cur.fetchall()
    return {row[key]: row for row in rows}


def compare(
    stream: str,
    key: str,
    source: list[dict[str, Any]],
    rows: dict[int, dict[str, Any]],
    limit: int = 15,
) -> list[str]:
    """Differences between source records and warehouse rows (empty list = identical)."""
    problems: list[str] = []
    source_ids = [s[key] for s in source]
    if len(source_ids) != len(set(source_ids)):
        problems.append(f"{stream}: the source itself repeats ids")
    missing = set(source_ids) - set(rows)
    extra = set(rows) - set(source_ids)
    if missing:
        problems.append(f"{stream}: {len(missing)} source ids missing, e.g. {sorted(missing)[:5]}")
    if extra:
        problems.append(f"{stream}: {len(extra)} ids not in the source, e.g. {sorted(extra)[:5]}")
    for record in source:
        row = rows.get(record[key])
        if row is None:
            continue
        for name, want in expected_row(stream, record).items():
            got = row.get(name)
            if not _same(want, got):
                problems.append(
                    f"{stream} {key}={record[key]} {name}: source {want!r} != db {got!r}"
                )
                if len(problems) >= limit:
                    return problems
    return problems


#: Every stream the tap loads: its key, and the simulator's ground truth for it.
STREAM_KEYS: dict[str, str] = {"leads": "leadId", "calls": "id", "texts": "id", "emails": "id"}
CHILD_STREAMS = ("calls", "texts", "emails")


def source_rows(sim: Any, stream: str) -> list[dict[str, Any]]:
    """What the simulator serves for ``stream`` right now (its ground truth)."""
    getter = {
        "leads": sim.leads,
        "calls": sim.all_calls,
        "texts": sim.all_texts,
        "emails": sim.all_emails,
    }[stream]
    rows: list[dict[str, Any]] = getter()
    return rows


def string_fields(stream: str) -> list[str]:
    """Fields declared as strings that are not times (loaded as text columns)."""
    times = set(time_fields(stream))
    return [
        k
        for k, p in load_schema(stream)["properties"].items()
        if _types(p) - {"null"} == {"string"} and k not in times
    ]


def keys(conn: psycopg.Connection[Any], table: str, key: str) -> set[int]:
    """Every value of ``key`` in ``tap_lofty.<table>`` (empty when there is no such table)."""
    if not table_exists(conn, table):
        return set()
    return {r[0] for r in conn.execute(f'SELECT "{key}" FROM {TARGET_SCHEMA}."{table}"')}


def column_types(conn: psycopg.Connection[Any], table: str) -> dict[str, str]:
    cur = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s",
        (TARGET_SCHEMA, table),
    )
    return {name: dtype for name, dtype in cur.fetchall()}


def table_exists(conn: psycopg.Connection[Any], table: str) -> bool:
    cur = conn.execute("SELECT to_regclass(%s)", (f'{TARGET_SCHEMA}."{table}"',))
    row = cur.fetchone()
    return row is not None and row[0] is not None


def primary_key(conn: psycopg.Connection[Any], table: str) -> list[str]:
    cur = conn.execute(
        "SELECT a.attname FROM pg_index i "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
        "WHERE i.indrelid = to_regclass(%s) AND i.indisprimary",
        (f'{TARGET_SCHEMA}."{table}"',),
    )
    return [r[0] for r in cur.fetchall()]


def scalar(conn: psycopg.Connection[Any], sql: str) -> Any:
    row = conn.execute(sql).fetchone()
    return None if row is None else row[0]


# --------------------------------------------------------------------------------------------
# Third-party Singer programs (scripts/setup_thirdparty.sh): pipelinewise-target-postgres and
# singer-tools' singer-check-tap, each in its own venv.
# --------------------------------------------------------------------------------------------

THIRDPARTY_SETUP = REPO / "scripts" / "setup_thirdparty.sh"
PIPELINEWISE_TARGET = REPO / ".venv-pipelinewise" / "bin" / "target-postgres"
SINGER_CHECK_TAP = REPO / ".venv-singer-tools" / "bin" / "singer-check-tap"
#: setup_thirdparty.sh's exit code when no Python 3.8-3.11 is on the machine.
THIRDPARTY_NO_PYTHON = 3


def ensure_thirdparty() -> tuple[Path, Path]:
    """Run ``scripts/setup_thirdparty.sh`` (a no-op when up to date).

    Returns the paths of pipelinewise's ``target-postgres`` and of ``singer-check-tap``. A failed
    install fails the test; only a machine without a suitable Python skips, and not under CI=true.
    """
    proc = subprocess.run(
        ["bash", str(THIRDPARTY_SETUP)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    detail = f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    if proc.returncode == THIRDPARTY_NO_PYTHON:
        reason = " ".join(proc.stderr.strip().splitlines()[-1:]) or "no suitable Python"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"scripts/setup_thirdparty.sh: {reason} (CI=true: must not skip)")
        pytest.skip(f"third-party Singer programs not installable here: {reason}")
    missing = [p for p in (PIPELINEWISE_TARGET, SINGER_CHECK_TAP) if not p.exists()]
    if proc.returncode != 0 or missing:
        pytest.fail(
            f"scripts/setup_thirdparty.sh failed (exit {proc.returncode}; missing: "
            f"{[str(p) for p in missing]}):\n{detail}"
        )
    return PIPELINEWISE_TARGET, SINGER_CHECK_TAP


def schema_streams() -> list[str]:
    """Every stream the repo has a schema for (``schemas/<stream>.json``), sorted."""
    return sorted(p.stem for p in SCHEMAS.glob("*.json"))


def id_fields(stream: str) -> list[str]:
    """Top-level integer id fields of a stream: ``id``, ``leadId``, or named ``...Id``.

    ``...UserId`` ends in ``Id`` too. Read from ``schemas/<stream>.json`` at call time, so new
    fields and streams are covered without editing the tests.
    """
    out = []
    for name, prop in load_schema(stream)["properties"].items():
        kinds = _types(prop)
        if "integer" in kinds and "string" not in kinds and (name == "id" or name.endswith("Id")):
            out.append(name)
    return out
