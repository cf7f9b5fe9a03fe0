"""`meltano run tap-lofty target-postgres` end to end, against the simulator and a real PostgreSQL.

Each test starts its own simulator, creates its own throwaway database, and gives Meltano its own
system database and state id, so the tests do not depend on each other or on their order.
Meltano comes from ``.venv-meltano/`` (``scripts/setup_meltano.sh``, run once per session).
"""

from __future__ import annotations

import collections
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e_support import (
    INT53,
    TARGET_SCHEMA,
    MeltanoRunner,
    PgServer,
    column_types,
    compare,
    ensure_meltano,
    fetch_rows,
    free_port,
    integer_fields,
    postgres_server,
    primary_key,
    scalar,
    sim_env,
    table_exists,
    time_fields,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def pg() -> Iterator[PgServer]:
    with postgres_server() as server:
        print(f"[e2e] PostgreSQL {server.host}:{server.port} ({server.origin})")
        yield server


@pytest.fixture(scope="session")
def meltano_bin(pg: PgServer) -> Path:
    # Depends on `pg` so that a machine without PostgreSQL skips before installing anything.
    return ensure_meltano()


@pytest.fixture
def warehouse(pg: PgServer) -> Iterator[str]:
    name = pg.create_database()
    yield name
    pg.drop_database(name)


@pytest.fixture
def runner(meltano_bin: Path, tmp_path: Path) -> MeltanoRunner:
    return MeltanoRunner(meltano_bin, tmp_path)


def calls_bookmark(state: dict[str, Any] | None) -> Any:
    assert state is not None, "Meltano saved no state"
    return state["singer_state"]["bookmarks"]["calls"]


def assert_warehouse_matches(pg: PgServer, database: str, sim: Any, *, leads: bool = True) -> None:
    """Every check of issue 4 on what is in the warehouse now vs. the simulator's ground truth."""
    source_calls = sim.all_calls()
    source_leads = sim.leads()
    with pg.connect(database) as conn:
        # Primary keys, and every id exactly once.
        assert primary_key(conn, "calls") == ["id"]
        assert scalar(conn, f"SELECT count(*) FROM {TARGET_SCHEMA}.calls") == len(source_calls)
        assert scalar(conn, f"SELECT count(DISTINCT id) FROM {TARGET_SCHEMA}.calls") == len(
            source_calls
        )
        # Ids are BIGINT and exact above 2^53; times are timestamps.
        types = column_types(conn, "calls")
        for name in integer_fields("calls"):
            assert types[name] == "bigint", (name, types[name])
        for name in time_fields("calls"):
            assert types[name].startswith("timestamp"), (name, types[name])
        big = [c["id"] for c in source_calls if c["id"] > INT53]
        assert big, "the simulator should produce call ids above 2^53"
        db_big = {
            r[0]
            for r in conn.execute(
                f"SELECT id FROM {TARGET_SCHEMA}.calls WHERE id > %s", (INT53,)
            ).fetchall()
        }
        assert db_big == set(big)
        # Every field equal to the source after the documented conversions.
        problems = compare("calls", "id", source_calls, fetch_rows(conn, "calls", "id"))
        assert not problems, "\n".join(problems)
        assert (
            scalar(
                conn,
                f"SELECT count(*) FROM {TARGET_SCHEMA}.calls WHERE _sdc_deleted_at IS NOT NULL",
            )
            == 0
        )
        if not leads:
            return
        assert primary_key(conn, "leads") == ["leadId"]
        assert scalar(conn, f"SELECT count(*) FROM {TARGET_SCHEMA}.leads") == len(source_leads)
        types = column_types(conn, "leads")
        for name in integer_fields("leads"):
            assert types[name] == "bigint", (name, types[name])
        for name in time_fields("leads"):
            assert types[name].startswith("timestamp"), (name, types[name])
        problems = compare("leads", "leadId", source_leads, fetch_rows(conn, "leads", "leadId"))
        assert not problems, "\n".join(problems)
        # Every call's leadId exists in leads.
        orphans = scalar(
            conn,
            f"SELECT count(*) FROM {TARGET_SCHEMA}.calls c LEFT JOIN {TARGET_SCHEMA}.leads l "
            f'ON l."leadId" = c."leadId" WHERE l."leadId" IS NULL',
        )
        assert orphans == 0


def call_ids(pg: PgServer, database: str) -> set[int]:
    with pg.connect(database) as conn:
        return {r[0] for r in conn.execute(f"SELECT id FROM {TARGET_SCHEMA}.calls").fetchall()}


def report(label: str, runner: MeltanoRunner, rows: int) -> None:
    run = runner.runs[-1]
    print(f"[e2e] {label}: meltano run {run.seconds:.1f}s, {rows} rows in the warehouse")


def test_full_load_then_incremental_runs(
    make_sim: Any, runner: MeltanoRunner, warehouse: str, pg: PgServer
) -> None:
    sim = make_sim(leads=300, seed=11, calls_per_lead_mean=8, big_leads=1, rate_limit=None)
    per_lead = collections.Counter(c["leadId"] for c in sim.all_calls())
    assert max(per_lead.values()) > 2000, "one lead should span several 1000-call pages"
    env = sim_env(sim, warehouse, pg)
    assert runner.state() is None

    # Run 1: everything.
    runner.run(env).check()
    assert_warehouse_matches(pg, warehouse, sim)
    first_ids = call_ids(pg, warehouse)
    state1 = runner.state()
    assert calls_bookmark(state1)
    report("full load", runner, len(first_ids) + len(sim.leads()))

    # Run 2: new calls on old leads and on new leads; exactly those rows are added.
    appended = sim.append_calls(existing_leads=10, new_leads=2, calls_per_lead=3)
    assert len(appended) == 12 * 3
    runner.run(env).check()
    assert_warehouse_matches(pg, warehouse, sim)
    second_ids = call_ids(pg, warehouse)
    assert second_ids - first_ids == {c["id"] for c in appended}
    assert first_ids <= second_ids
    state2 = runner.state()
    # The bookmark never goes back. (It need not move: calls created in the last minutes
    # stay above it and are read again next run, the tap's documented bounded overlap.)
    assert (
        calls_bookmark(state2)["replication_key_value"]
        >= calls_bookmark(state1)["replication_key_value"]
    )
    report("incremental", runner, len(second_ids) + len(sim.leads()))

    # Run 3: nothing new; nothing added.
    runner.run(env).check()
    assert_warehouse_matches(pg, warehouse, sim)
    assert call_ids(pg, warehouse) == second_ids
    report("no changes", runner, len(second_ids) + len(sim.leads()))
    with pg.connect(warehouse) as conn:
        per_run = conn.execute(
            f"SELECT _sdc_sync_started_at, count(*) FROM {TARGET_SCHEMA}.calls "
            "GROUP BY 1 ORDER BY 1"
        ).fetchall()
    print(f"[e2e] calls rows by the run that last wrote them: {[n for _, n in per_run]}")


def test_only_calls_selected(
    make_sim: Any, runner: MeltanoRunner, warehouse: str, pg: PgServer
) -> None:
    sim = make_sim(leads=150, seed=12, calls_per_lead_mean=8, big_leads=1, rate_limit=None)
    env = sim_env(sim, warehouse, pg, TAP_LOFTY__SELECT=json.dumps(["calls.*"]))
    result = runner.run(env).check()
    assert_warehouse_matches(pg, warehouse, sim, leads=False)
    with pg.connect(warehouse) as conn:
        # The parent was read for its ids, but its records were not loaded.
        assert (
            not table_exists(conn, "leads")
            or scalar(conn, f"SELECT count(*) FROM {TARGET_SCHEMA}.leads") == 0
        )
    assert any(k.startswith("GET /v1.0/leads") for k in sim.counters), sim.counters
    assert calls_bookmark(runner.state())
    report("calls only", runner, len(sim.all_calls()))
    assert result.returncode == 0


@pytest.mark.parametrize("failure", ["missing-database", "closed-port"])
def test_target_failure_fails_the_run_and_keeps_state(
    make_sim: Any, runner: MeltanoRunner, warehouse: str, pg: PgServer, failure: str
) -> None:
    sim = make_sim(leads=100, seed=13, calls_per_lead_mean=8, big_leads=0, rate_limit=None)
    env = sim_env(sim, warehouse, pg)
    if failure == "missing-database":
        missing = f"{warehouse}_missing"
        bad_env = {**env, "TARGET_POSTGRES_DATABASE": missing}
        expected_error = f'database "{missing}" does not exist'
    else:
        bad_env = {**env, "TARGET_POSTGRES_PORT": str(free_port())}
        expected_error = "refused"

    def failing_run() -> None:
        failed = runner.run(bad_env)
        assert failed.returncode != 0, failed.output[-3000:]
        # The target's own error reaches the user, attributed to the target.
        assert any(
            "target-postgres" in line and expected_error in line
            for line in failed.output.splitlines()
        ), failed.output[-5000:]

    # From scratch: a good run would save a state; the failed one saves none.
    failing_run()
    assert runner.state() is None

    runner.run(env).check()
    state1 = runner.state()
    assert calls_bookmark(state1)
    first_ids = call_ids(pg, warehouse)
    appended = sim.append_calls(existing_leads=5, new_leads=2, calls_per_lead=4)

    # After a good run: the failed one leaves state and rows as they were.
    failing_run()
    assert runner.state() == state1
    assert call_ids(pg, warehouse) == first_ids

    # The next good run loses nothing.
    runner.run(env).check()
    assert_warehouse_matches(pg, warehouse, sim)
    assert call_ids(pg, warehouse) - first_ids == {c["id"] for c in appended}
