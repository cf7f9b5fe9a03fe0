"""tap-lofty's output through Singer programs other people wrote (issue 10).

* pipelinewise-target-postgres (transferwise's target, ``.venv-pipelinewise/``) with
  ``validate_records: true`` into the real PostgreSQL: id columns ``bigint``, row counts equal
  to the simulator's truth, every id exact (they exceed 2**53), for a full run and for an
  incremental run started from the first run's final STATE.
* singer-tools' ``singer-check-tap`` (``.venv-singer-tools/``), the Singer spec checker: it
  accepts a full run, and rejects broken streams, so that its "valid" means something.

Both run as separate programs fed by a real OS pipe from the ``tap-lofty`` console script
(``tap-lofty --config c.json [--state s.json] | tee tap.jsonl | <program>``), as people run them.
``scripts/setup_thirdparty.sh`` installs them (``./run.sh test`` runs it first; the fixture runs
it again, a no-op when up to date).
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lofty_sim import LoftySimulator, SimConfig
from tests.e2e_support import (
    INT53,
    PgServer,
    column_types,
    ensure_thirdparty,
    id_fields,
    postgres_server,
    scalar,
    schema_streams,
    table_exists,
)
from tests.tap_support import TapOutput, sim_config

pytestmark = pytest.mark.e2e

TAP = Path(sys.executable).parent / "tap-lofty"
PW_SCHEMA = "tap_lofty"  # default_target_schema given to pipelinewise
#: The simulator's ground truth for each stream the repo has a schema for.
TRUTH: dict[str, Callable[[LoftySimulator], list[dict[str, Any]]]] = {
    "leads": lambda sim: sim.leads(),
    "calls": lambda sim: sim.all_calls(),
    "texts": lambda sim: sim.all_texts(),
    "emails": lambda sim: sim.all_emails(),
    "members": lambda sim: sim.members(),
    "lead_stages": lambda sim: sim.lead_stages(),
    "ponds": lambda sim: sim.ponds(),
    "transactions": lambda sim: sim.transactions(),
}
#: Streams whose keys the simulator keeps below 2**53, as Lofty's own examples of them are
#: (member records, stage and pond ids); their other checks still apply.
SMALL_KEYS = {"members", "lead_stages", "ponds"}
#: Hang guard for one pipeline (not an assertion on speed).
PIPELINE_TIMEOUT_S = 900


# --------------------------------------------------------------------------------------------
# Running tap-lofty | program
# --------------------------------------------------------------------------------------------


@dataclass
class Pipeline:
    """One ``tap-lofty | tee | program`` run."""

    tap_rc: int
    program_rc: int
    tap: TapOutput
    tap_lines: list[str]
    program_stdout: str
    tap_stderr: str
    program_stderr: str
    seconds: float

    def describe(self) -> str:
        return (
            f"tap exit {self.tap_rc}, program exit {self.program_rc} after {self.seconds:.1f}s\n"
            f"--- tap stderr (tail) ---\n{self.tap_stderr[-3000:]}\n"
            f"--- program stdout (tail) ---\n{self.program_stdout[-3000:]}\n"
            f"--- program stderr (tail) ---\n{self.program_stderr[-6000:]}"
        )

    def check(self) -> Pipeline:
        assert self.tap_rc == 0 and self.program_rc == 0, self.describe()
        return self

    def key_properties(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for line in self.tap_lines:
            message = json.loads(line)
            if message["type"] == "SCHEMA":
                out[message["stream"]] = message["key_properties"]
        return out


def _env() -> dict[str, str]:
    drop = ("TAP_LOFTY_", "TARGET_POSTGRES_", "MELTANO_")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def run_pipeline(
    program: list[str],
    workdir: Path,
    tap_config: dict[str, Any] | None = None,
    state: dict[str, Any] | None = None,
    *,
    replay: list[str] | None = None,
    name: str = "run",
) -> Pipeline:
    """``tap-lofty --config ... [--state ...] | tee <name>.tap.jsonl | program`` in ``workdir``.

    With ``replay``, those lines (e.g. a deliberately broken stream) stand in for the tap.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    files = {k: workdir / f"{name}.{k}" for k in ("tap.jsonl", "tap.err", "out", "err")}
    if replay is None:
        assert tap_config is not None
        config_path = workdir / f"{name}.config.json"
        config_path.write_text(json.dumps(tap_config))
        tap_cmd = [str(TAP), "--config", str(config_path)]
        if state is not None:
            state_path = workdir / f"{name}.state.json"
            state_path.write_text(json.dumps(state))
            tap_cmd += ["--state", str(state_path)]
    else:
        source = workdir / f"{name}.replay.jsonl"
        source.write_text("".join(f"{line}\n" for line in replay))
        tap_cmd = ["cat", str(source)]
    env = _env()
    started = time.monotonic()
    with (
        files["tap.err"].open("w") as tap_err,
        files["out"].open("w") as out,
        files["err"].open("w") as err,
    ):
        tap = subprocess.Popen(
            tap_cmd, stdout=subprocess.PIPE, stderr=tap_err, cwd=workdir, env=env
        )
        tee = subprocess.Popen(
            ["tee", str(files["tap.jsonl"])], stdin=tap.stdout, stdout=subprocess.PIPE, cwd=workdir
        )
        assert tap.stdout is not None and tee.stdout is not None
        tap.stdout.close()  # tee holds it now: the tap gets SIGPIPE if tee dies
        target = subprocess.Popen(
            program, stdin=tee.stdout, stdout=out, stderr=err, cwd=workdir, env=env
        )
        tee.stdout.close()
        try:
            program_rc = target.wait(timeout=PIPELINE_TIMEOUT_S)
            tap_rc = tap.wait(timeout=PIPELINE_TIMEOUT_S)
            tee.wait(timeout=60)
        finally:
            for proc in (tap, tee, target):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    seconds = time.monotonic() - started
    text = files["tap.jsonl"].read_text(encoding="utf-8")
    if "\n" in text and not text.endswith("\n"):
        # The program stopped reading (it failed), so tee's copy may end mid-line.
        text = text[: text.rindex("\n") + 1]
    return Pipeline(
        tap_rc=tap_rc,
        program_rc=program_rc,
        tap=TapOutput.parse(text),
        tap_lines=[line for line in text.splitlines() if line.strip()],
        program_stdout=files["out"].read_text(encoding="utf-8"),
        tap_stderr=files["tap.err"].read_text(encoding="utf-8", errors="replace"),
        program_stderr=files["err"].read_text(encoding="utf-8", errors="replace"),
        seconds=seconds,
    )


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg() -> Iterator[PgServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="module")
def programs() -> tuple[Path, Path]:
    return ensure_thirdparty()


@pytest.fixture
def warehouse(pg: PgServer) -> Iterator[str]:
    name = pg.create_database()
    yield name
    pg.drop_database(name)


def pipelinewise_config(pg: PgServer, database: str, tmp: Path) -> dict[str, Any]:
    """The target's config: validation on, primary keys required, no deletes, no extra columns."""
    tmp.mkdir(parents=True, exist_ok=True)
    return {
        "host": pg.host,
        "port": pg.port,
        "user": pg.user,
        "password": pg.password,
        "dbname": database,
        "default_target_schema": PW_SCHEMA,
        "validate_records": True,
        "primary_key_required": True,
        "hard_delete": False,
        "add_metadata_columns": False,
        "temp_dir": str(tmp),
    }


def pipelinewise_cmd(programs: tuple[Path, Path], config: dict[str, Any], tmp: Path) -> list[str]:
    path = tmp / "pipelinewise.json"
    path.write_text(json.dumps(config))
    return [str(programs[0]), "--config", str(path)]


@dataclass
class FullRun:
    """One full run's output and the truth it was read from (shared by the checker tests)."""

    lines: list[str]
    truth: dict[str, list[dict[str, Any]]]
    workdir: Path


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FullRun]:
    """A full run of the ``tap-lofty`` console script against its own simulator."""
    workdir = tmp_path_factory.mktemp("full_run")
    with LoftySimulator(SimConfig(leads=120, rate_limit=None)) as sim:
        run = run_pipeline(["cat"], workdir, sim_config(sim), name="full").check()
        truth = {stream: TRUTH[stream](sim) for stream in TRUTH}
    assert {s: len(r) for s, r in run.tap.records.items()} == {s: len(r) for s, r in truth.items()}
    yield FullRun(run.tap_lines, truth, workdir)


# --------------------------------------------------------------------------------------------
# Warehouse vs truth
# --------------------------------------------------------------------------------------------


def text_ids(value: Any) -> str | None:
    return None if value is None else str(value)


def check_warehouse(
    pg: PgServer, database: str, sim: LoftySimulator, keys: dict[str, list[str]]
) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """Counts and ids against the truth (asserted); returns the truth and the id-type problems.

    Ids are read as ``::text`` so that neither the driver nor Python can round them: each one
    must be the simulator's, digit for digit. The column-type problems (id columns that are
    not ``bigint``) are returned, not asserted, so that the caller can go on with the other
    checks and report them all at the end.
    """
    streams = schema_streams()
    missing_truth = [s for s in streams if s not in TRUTH]
    assert not missing_truth, (
        f"schemas/ has streams with no ground truth in tests/test_thirdparty.py: {missing_truth}"
    )
    truth = {stream: TRUTH[stream](sim) for stream in streams}
    type_problems: list[str] = []
    with pg.connect(database) as conn:
        for stream in streams:
            table = stream.lower()
            assert table_exists(conn, table), f"pipelinewise created no table for {stream}"
            assert keys.get(stream), f"the tap sent no key_properties for {stream}: {keys}"
            (key,) = keys[stream]
            source = truth[stream]
            assert len(source) > 0, f"the simulator has no {stream}: the test would prove nothing"

            # Exact row counts, and every key once.
            count = scalar(conn, f'SELECT count(*) FROM {PW_SCHEMA}."{table}"')
            distinct = scalar(
                conn, f'SELECT count(DISTINCT "{key.lower()}") FROM {PW_SCHEMA}."{table}"'
            )
            assert (count, distinct) == (len(source), len(source)), (
                f"{stream}: {count} rows ({distinct} distinct {key}), "
                f"the simulator has {len(source)}"
            )

            # Every id of every row, exact.
            fields = id_fields(stream)
            assert key in fields, f"{stream}: key {key} is not among the id fields {fields}"
            cols = ", ".join(f'"{f.lower()}"::text' for f in fields)
            rows = conn.execute(f'SELECT {cols} FROM {PW_SCHEMA}."{table}"').fetchall()
            got = {row[fields.index(key)]: dict(zip(fields, row, strict=True)) for row in rows}
            want = {str(rec[key]): {f: text_ids(rec.get(f)) for f in fields} for rec in source}
            assert set(got) == set(want), (
                f"{stream}: {key}s differ: missing {sorted(set(want) - set(got))[:5]}, "
                f"extra {sorted(set(got) - set(want))[:5]}"
            )
            wrong = [(k, want[k], got[k]) for k in want if got[k] != want[k]]
            assert not wrong, f"{stream}: {len(wrong)} rows with wrong ids, e.g. {wrong[:3]}"
            # The check above is only worth something if the ids are beyond float precision.
            if stream not in SMALL_KEYS:
                assert max(rec[key] for rec in source) > INT53, f"{stream}: no {key} above 2**53"

            # Id columns must be bigint (numeric would be exact too, but it is not what an
            # integer id is in PostgreSQL, and it joins and indexes worse).
            types = column_types(conn, table)
            for field in fields:
                got_type = types.get(field.lower())
                if got_type != "bigint":
                    type_problems.append(f"{table}.{field.lower()} is {got_type}")
    return truth, type_problems


# --------------------------------------------------------------------------------------------
# pipelinewise-target-postgres
# --------------------------------------------------------------------------------------------


def test_pipelinewise_full_then_incremental(
    make_sim: Callable[..., LoftySimulator],
    programs: tuple[Path, Path],
    pg: PgServer,
    warehouse: str,
    tmp_path: Path,
) -> None:
    sim = make_sim(leads=150, rate_limit=None)
    target = pipelinewise_cmd(
        programs, pipelinewise_config(pg, warehouse, tmp_path / "pw"), tmp_path
    )

    # Run 1: full.
    first = run_pipeline(target, tmp_path, sim_config(sim), name="full").check()
    truth1, type_problems = check_warehouse(pg, warehouse, sim, first.key_properties())
    n_leads, n_calls = len(truth1["leads"]), len(truth1["calls"])
    print(
        f"[thirdparty] pipelinewise full run: {n_leads} leads / {n_calls} calls "
        f"in {first.seconds:.1f}s (tap | target, wall time)"
    )
    # What pipelinewise reports as loaded is the tap's final state, unchanged.
    target_states = [json.loads(line) for line in first.program_stdout.splitlines() if line.strip()]
    assert target_states, f"pipelinewise emitted no STATE:\n{first.describe()}"
    state = target_states[-1]
    assert state == first.tap.final_state
    assert state["bookmarks"]["calls"]["replication_key_value"]

    # Run 2: new calls on old and on new leads, then the tap from run 1's final STATE.
    appended = sim.append_calls(existing_leads=10, new_leads=2, calls_per_lead=3)
    assert len(appended) == 36
    with pg.connect(warehouse) as conn:
        ids_before = {r[0] for r in conn.execute(f"SELECT id::text FROM {PW_SCHEMA}.calls")}
    second = run_pipeline(target, tmp_path, sim_config(sim), state, name="incremental").check()
    truth2, type_problems2 = check_warehouse(pg, warehouse, sim, second.key_properties())
    type_problems += [p for p in type_problems2 if p not in type_problems]
    assert len(truth2["calls"]) == n_calls + 36
    assert len(truth2["leads"]) == n_leads + 2
    with pg.connect(warehouse) as conn:
        ids_after = {r[0] for r in conn.execute(f"SELECT id::text FROM {PW_SCHEMA}.calls")}
    assert ids_after - ids_before == {str(c["id"]) for c in appended}
    # It was an incremental run: every new call sent, the history not sent again.
    sent = set(second.tap.ids("calls"))
    assert {c["id"] for c in appended} <= sent
    assert len(sent) < n_calls, f"the run from STATE sent {len(sent)} calls of {n_calls}"
    bookmark = second.tap.final_state["bookmarks"]["calls"]["replication_key_value"]
    assert bookmark >= state["bookmarks"]["calls"]["replication_key_value"]
    print(
        f"[thirdparty] pipelinewise incremental run: {len(sent)} calls sent, "
        f"{len(truth2['leads'])} leads in {second.seconds:.1f}s"
    )

    # Both runs' exact output (tee's copy) passes the Singer spec checker too.
    for run in (first, second):
        checked = run_pipeline([str(programs[1])], tmp_path, replay=run.tap_lines, name="check")
        assert checked.program_rc == 0, checked.describe()
        counts = check_tap_counts(checked.program_stdout)
        assert {stream: n for stream, n in counts.items() if n} == {
            stream: len(records) for stream, records in run.tap.records.items()
        }

    assert not type_problems, (
        "pipelinewise-target-postgres made id columns that are not bigint (it maps an integer "
        "property to bigint only when its schema has a maximum <= 2**63-1): "
        + "; ".join(type_problems)
    )


def break_record(lines: list[str], stream: str, field: str, value: Any) -> list[str]:
    """The lines with ``field`` of the first ``stream`` RECORD set to ``value``."""
    out, done = [], False
    for line in lines:
        message = json.loads(line)
        if not done and message["type"] == "RECORD" and message["stream"] == stream:
            message = copy.deepcopy(message)
            message["record"][field] = value
            out.append(json.dumps(message))
            done = True
        else:
            out.append(line)
    assert done, f"no {stream} RECORD to break"
    return out


def test_pipelinewise_rejects_a_record_that_breaks_its_schema(
    programs: tuple[Path, Path], pg: PgServer, warehouse: str, full_run: FullRun, tmp_path: Path
) -> None:
    """validate_records is really on: so the accepted runs above were validated."""
    broken = break_record(full_run.lines, "calls", "id", "not-an-id")
    target = pipelinewise_cmd(
        programs, pipelinewise_config(pg, warehouse, tmp_path / "pw"), tmp_path
    )
    run = run_pipeline(target, tmp_path, replay=broken, name="broken")
    assert run.program_rc != 0, run.describe()
    assert "RecordValidationException" in run.program_stderr, run.describe()
    assert "not-an-id" in run.program_stderr, run.describe()


# --------------------------------------------------------------------------------------------
# singer-tools: singer-check-tap
# --------------------------------------------------------------------------------------------


def check_tap_counts(stdout: str) -> dict[str, int]:
    """singer-check-tap's per-stream table (``| stream | records | schemas |``) as {stream: n}."""
    counts = {}
    for match in re.finditer(r"^\|\s*(\S+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|$", stdout, re.MULTILINE):
        counts[match.group(1)] = int(match.group(2))
    return counts


def test_singer_check_tap_accepts_a_full_run(
    programs: tuple[Path, Path], make_sim: Callable[..., LoftySimulator], tmp_path: Path
) -> None:
    # Live-shaped leads (an opportunity object, leadType, privateFlag) and a field no
    # schema knows: the output still validates against the tap's own SCHEMA messages.
    sim = make_sim(leads=120, rate_limit=None, extra_lead_fields={"brandNewField": {"a": [1]}})
    run = run_pipeline([str(programs[1])], tmp_path, sim_config(sim), name="check").check()
    assert "The output is valid." in run.program_stdout, run.describe()
    leads = {lead["leadId"]: lead for lead in run.tap.records["leads"]}
    live = [lead for lead in sim.leads() if isinstance(lead.get("opportunity"), dict)]
    assert live, "no live-shaped lead in the data: the test tests nothing"
    for source in live:
        emitted = leads[source["leadId"]]
        assert json.loads(emitted["opportunity"]) == source["opportunity"]  # as JSON text
        assert emitted["leadType"] == source["leadType"]
        assert emitted["privateFlag"] == source["privateFlag"]
    assert all(
        lead["lofty_unknown_fields"] == {"brandNewField": {"a": [1]}} for lead in leads.values()
    )
    truth = {stream: len(TRUTH[stream](sim)) for stream in schema_streams()}
    # The checker saw every record the simulator holds: it did not pass on an empty stream.
    assert check_tap_counts(run.program_stdout) == truth, run.program_stdout
    records = re.search(r"^\s*(\d+) record messages$", run.program_stdout, re.MULTILINE)
    assert records is not None and int(records.group(1)) == sum(truth.values())


def test_singer_check_tap_accepts_the_replayed_full_run(
    programs: tuple[Path, Path], full_run: FullRun, tmp_path: Path
) -> None:
    """The unbroken lines that the broken cases below start from pass, in the same setup."""
    run = run_pipeline([str(programs[1])], tmp_path, replay=full_run.lines, name="good")
    assert run.program_rc == 0, run.describe()
    assert check_tap_counts(run.program_stdout) == {s: len(r) for s, r in full_run.truth.items()}


def drop_schema(lines: list[str], stream: str) -> list[str]:
    out = [
        line
        for line in lines
        if not (json.loads(line)["type"] == "SCHEMA" and json.loads(line)["stream"] == stream)
    ]
    assert len(out) < len(lines), f"no SCHEMA for {stream}"
    return out


BROKEN: dict[str, tuple[Callable[[list[str]], list[str]], str]] = {
    "id-not-an-integer": (
        lambda lines: break_record(lines, "calls", "id", "not-an-id"),
        "'not-an-id' is not of type 'integer'",
    ),
    "leadId-missing": (
        lambda lines: [
            json.dumps({**m, "record": {k: v for k, v in m["record"].items() if k != "leadId"}})
            if (m := json.loads(line))["type"] == "RECORD" and m["stream"] == "leads"
            else line
            for line in lines
        ],
        "'leadId' is a required property",
    ),
    "bad-date-time": (
        lambda lines: break_record(lines, "calls", "startTime", "2026-13-45 99:00:00"),
        "is not a 'date-time'",
    ),
    "record-before-schema": (
        lambda lines: drop_schema(lines, "calls"),
        "I saw a record for stream calls before the schema",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_singer_check_tap_rejects_a_broken_stream(
    case: str, programs: tuple[Path, Path], full_run: FullRun, tmp_path: Path
) -> None:
    """The checker fails on broken output, so its pass on the tap's output is not vacuous."""
    breaker, expected = BROKEN[case]
    run = run_pipeline([str(programs[1])], tmp_path, replay=breaker(full_run.lines), name=case)
    assert run.program_rc != 0, run.describe()
    assert expected in run.program_stdout + run.program_stderr, run.describe()
