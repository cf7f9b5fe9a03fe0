"""The team-level streams and deleted leads, end to end: `meltano run tap-lofty target-postgres`.

Against the simulator and a real PostgreSQL (MeltanoLabs target-postgres with
``activate_version: true``, as meltano.yml configures it):

- members, lead_stages, ponds and transactions land equal to the simulator's truth, and join
  (calls, texts, emails and leads to members; leads to stages and ponds; transactions to leads);
- leads deleted in Lofty get ``_sdc_deleted_at`` after the next complete run, exactly those;
- a run killed mid-listing, after the target loaded part of the new listing, marks none;
- with ``hard_delete`` the rows of deleted leads are removed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.e2e_support import (
    INT53,
    REPO,
    TARGET_SCHEMA,
    MeltanoRunner,
    PgServer,
    RunResult,
    column_types,
    compare,
    ensure_meltano,
    fetch_rows,
    integer_fields,
    postgres_server,
    primary_key,
    scalar,
    sim_env,
    time_fields,
)

pytestmark = pytest.mark.e2e

#: stream -> (primary key, the simulator's truth method, its endpoint)
TEAM = {
    "members": ("id", "members", "/v1.0/members"),
    "lead_stages": ("id", "lead_stages", "/v1.0/teamFeatures/lead-pipelines"),
    "ponds": ("id", "ponds", "/v1.0/team-features/lead-ponds"),
    "transactions": ("transactionId", "transactions", "/v2.0/transactions"),
}


@pytest.fixture(scope="module")
def pg() -> Iterator[PgServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="module")
def meltano_bin(pg: PgServer) -> Path:
    return ensure_meltano()


@pytest.fixture
def warehouse(pg: PgServer) -> Iterator[str]:
    name = pg.create_database()
    yield name
    pg.drop_database(name)


@pytest.fixture
def runner(meltano_bin: Path, tmp_path: Path) -> MeltanoRunner:
    return MeltanoRunner(meltano_bin, tmp_path)


def team_requests(sim: Any) -> dict[str, int]:
    """Requests (any status) the team streams made, by endpoint, since the last reset."""
    out = {}
    for stream, (_, _, path) in TEAM.items():
        out[stream] = sum(n for k, n in sim.counters.items() if k.startswith(f"GET {path} "))
    return out


def assert_team_tables_match(conn: psycopg.Connection[Any], sim: Any) -> None:
    for stream, (key, truth, _) in TEAM.items():
        source = getattr(sim, truth)()
        assert source, f"the simulator serves no {stream}"
        assert primary_key(conn, stream) == [key], stream
        types = column_types(conn, stream)
        for name in integer_fields(stream):
            assert types[name] == "bigint", (stream, name, types[name])
        for name in time_fields(stream):
            assert types[name].startswith("timestamp"), (stream, name, types[name])
        rows = fetch_rows(conn, stream, key)
        assert len(rows) == len(source), stream
        problems = compare(stream, key, source, rows)
        assert not problems, "\n".join(problems)
        live = scalar(
            conn, f"SELECT count(*) FROM {TARGET_SCHEMA}.{stream} WHERE _sdc_deleted_at IS NULL"
        )
        assert live == len(source), stream
    # Transaction ids are above 2^53: exact, not through a float.
    big = {t["transactionId"] for t in sim.transactions() if t["transactionId"] > INT53}
    assert big
    got = conn.execute(
        f'SELECT "transactionId" FROM {TARGET_SCHEMA}.transactions WHERE "transactionId" > %s',
        (INT53,),
    ).fetchall()
    assert {r[0] for r in got} == big


def orphans(conn: psycopg.Connection[Any], child: str, column: str, parent: str, key: str) -> int:
    """Rows of ``child`` whose ``column`` (not NULL) has no row in ``parent``."""
    return int(
        scalar(
            conn,
            f'SELECT count(*) FROM {TARGET_SCHEMA}.{child} c WHERE c."{column}" IS NOT NULL '
            f"AND NOT EXISTS (SELECT 1 FROM {TARGET_SCHEMA}.{parent} p "
            f'WHERE p."{key}" = c."{column}")',
        )
    )


def assert_joins(conn: psycopg.Connection[Any]) -> None:
    for child, column in (
        ("calls", "userId"),
        ("calls", "agentId"),
        ("texts", "agentId"),
        ("emails", "agentId"),
        ("leads", "assignedUserId"),
        ("transactions", "assignedAgent"),
    ):
        assert orphans(conn, child, column, "members", "memberUserId") == 0, (child, column)
    assert orphans(conn, "leads", "stageId", "lead_stages", "id") == 0
    assert orphans(conn, "transactions", "leadId", "leads", "leadId") == 0
    in_no_pond = scalar(
        conn,
        f'SELECT count(*) FROM {TARGET_SCHEMA}.leads l WHERE l."pondId" NOT IN (0, -1) AND NOT '
        f'EXISTS (SELECT 1 FROM {TARGET_SCHEMA}.ponds p WHERE p.id = l."pondId")',
    )
    assert in_no_pond == 0
    # The joins are not vacuous: many calls and leads do match.
    matched = scalar(
        conn,
        f"SELECT count(*) FROM {TARGET_SCHEMA}.calls c JOIN {TARGET_SCHEMA}.members m "
        f'ON m."memberUserId" = c."agentId"',
    )
    assert matched == scalar(conn, f"SELECT count(*) FROM {TARGET_SCHEMA}.calls") > 0
    in_pond = scalar(
        conn,
        f"SELECT count(*) FROM {TARGET_SCHEMA}.leads l JOIN {TARGET_SCHEMA}.ponds p "
        f'ON p.id = l."pondId"',
    )
    assert in_pond > 0


def deleted_leads(conn: psycopg.Connection[Any]) -> set[int]:
    rows = conn.execute(
        f'SELECT "leadId" FROM {TARGET_SCHEMA}.leads WHERE _sdc_deleted_at IS NOT NULL'
    ).fetchall()
    return {r[0] for r in rows}


def lead_rows(conn: psycopg.Connection[Any]) -> set[int]:
    return {r[0] for r in conn.execute(f'SELECT "leadId" FROM {TARGET_SCHEMA}.leads').fetchall()}


def run_and_kill_mid_listing(
    runner: MeltanoRunner, env: dict[str, str], pg: PgServer, database: str, version: int
) -> int:
    """Start a run and SIGKILL it (Meltano, tap and target) once the target has loaded
    leads of the new listing; return how many rows of the new version it had loaded."""
    process = subprocess.Popen(
        [
            str(runner.meltano),
            "run",
            "--state-id-suffix",
            runner.suffix,
            "tap-lofty",
            "target-postgres",
        ],
        cwd=REPO,
        env=runner.env(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kill reaches every process
    )
    loaded = 0
    try:
        deadline = time.monotonic() + 240
        with pg.connect(database, autocommit=True) as conn:
            while time.monotonic() < deadline and process.poll() is None:
                loaded = int(
                    scalar(
                        conn,
                        f"SELECT count(*) FROM {TARGET_SCHEMA}.leads "
                        f"WHERE _sdc_table_version > {version}",
                    )
                )
                if loaded >= 40:
                    break
                time.sleep(0.05)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    return loaded


def test_team_streams_and_deleted_leads(
    make_sim: Any, runner: MeltanoRunner, warehouse: str, pg: PgServer
) -> None:
    sim = make_sim(leads=400, seed=31, calls_per_lead_mean=3, big_leads=0, rate_limit=None)
    assert len(sim.transactions()) > 100, "transactions should span two pages of 100"
    env = sim_env(sim, warehouse, pg)

    # Run 1: everything, complete.
    started = time.monotonic()
    runner.run(env).check()
    seconds = time.monotonic() - started
    cost = team_requests(sim)
    print(f"[e2e] run 1: {seconds:.1f}s; team-stream requests {cost} = {sum(cost.values())}")
    # members: limit=100 refused (LIMIT_PARAM_OVERSIZE), then 50 (all 40 members); one
    # request each for the stages and the ponds; two pages of 100 transactions.
    assert cost == {"members": 2, "lead_stages": 1, "ponds": 1, "transactions": 2}
    with pg.connect(warehouse) as conn:
        assert_team_tables_match(conn, sim)
        assert_joins(conn)
        assert lead_rows(conn) == set(sim.lead_ids())
        assert deleted_leads(conn) == set()
        version1 = int(scalar(conn, f"SELECT max(_sdc_table_version) FROM {TARGET_SCHEMA}.leads"))
        assert (
            scalar(conn, f"SELECT min(_sdc_table_version) FROM {TARGET_SCHEMA}.leads") == version1
        )

    # Delete three leads in Lofty.
    ids = sim.lead_ids()
    gone = {ids[3], ids[len(ids) // 2], ids[-1]}
    for lead_id in gone:
        sim.delete_lead(lead_id)
    assert not gone & set(sim.lead_ids())

    # Run 2, killed mid-listing after the target loaded part of it: nothing marked deleted.
    sim.reset_counters()
    sim.configure(latency_s=0.03)
    slow = {
        **env,
        "TAP_LOFTY_LEADS_PAGE_SIZE": "10",
        "TAP_LOFTY_MAX_CONCURRENCY": "1",
        "TARGET_POSTGRES_BATCH_SIZE_ROWS": "20",  # the target writes every 20 rows
    }
    loaded = run_and_kill_mid_listing(runner, slow, pg, warehouse, version1)
    pages = sim.counters.get("GET /v1.0/leads 200", 0)
    print(f"[e2e] killed run: {loaded} leads of the new listing loaded, {pages} listing pages")
    assert loaded >= 40
    assert pages < len(sim.lead_ids()) / 10, "the kill came after the listing had ended"
    sim.configure(latency_s=0.0)
    with pg.connect(warehouse) as conn:
        assert deleted_leads(conn) == set()
        assert lead_rows(conn) == set(ids)  # the deleted leads' rows are still there
        for stream in TEAM:
            marked = (
                f"SELECT count(*) FROM {TARGET_SCHEMA}.{stream} WHERE _sdc_deleted_at IS NOT NULL"
            )
            assert scalar(conn, marked) == 0, stream

    # Run 3, complete: exactly the deleted leads get _sdc_deleted_at. (--force: Meltano
    # still sees the killed run as running.)
    run_forced(runner, env).check()
    with pg.connect(warehouse) as conn:
        assert deleted_leads(conn) == gone
        assert lead_rows(conn) == set(ids)
        live = {
            k
            for k, row in fetch_rows(conn, "leads", "leadId").items()
            if not row["_sdc_deleted_at"]
        }
        assert live == set(sim.lead_ids())
        assert_team_tables_match(conn, sim)
        assert_joins(conn)

    # Run 4 with hard_delete: one more lead deleted; the rows of all deleted leads go.
    one_more = sim.lead_ids()[10]
    sim.delete_lead(one_more)
    run_forced(runner, {**env, "TARGET_POSTGRES_HARD_DELETE": "true"}).check()
    with pg.connect(warehouse) as conn:
        assert lead_rows(conn) == set(sim.lead_ids())
        assert deleted_leads(conn) == set()
        assert_team_tables_match(conn, sim)
    print(f"[e2e] four runs and a killed one: {runner.runs[0].seconds:.1f}s for the first")


def run_forced(runner: MeltanoRunner, env: dict[str, str]) -> RunResult:
    args = ["run", "--force", "--state-id-suffix", runner.suffix, "tap-lofty", runner.loader]
    result = runner.meltano_cmd(args, env)
    runner.runs.append(result)
    return result
