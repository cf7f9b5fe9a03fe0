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
    CHILD_STREAMS,
    INT53,
    STREAM_KEYS,
    TARGET_SCHEMA,
    UNKNOWN_FIELDS,
    MeltanoRunner,
    PgServer,
    column_types,
    compare,
    ensure_meltano,
    fetch_rows,
    free_port,
    integer_fields,
    keys,
    postgres_server,
    primary_key,
    scalar,
    sim_env,
    source_rows,
    string_fields,
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


def bookmark(state: dict[str, Any] | None, stream: str = "calls") -> Any:
    assert state is not None, "Meltano saved no state"
    return state["singer_state"]["bookmarks"][stream]


def calls_bookmark(state: dict[str, Any] | None) -> Any:
    return bookmark(state, "calls")


def check_stream(conn: Any, stream: str, source: list[dict[str, Any]]) -> None:
    """Issue 4's and 13's checks of one table against the simulator's rows for it."""
    key = STREAM_KEYS[stream]
    # Primary keys, and every key exactly once.
    assert primary_key(conn, stream) == [key], stream
    table = f'{TARGET_SCHEMA}."{stream}"'
    assert scalar(conn, f"SELECT count(*) FROM {table}") == len(source), stream
    assert scalar(conn, f'SELECT count(DISTINCT "{key}") FROM {table}') == len(source), stream
    # Ids are BIGINT and exact above 2^53; times are timestamps; strings are text; the
    # catch-all column is JSON.
    types = column_types(conn, stream)
    for name in integer_fields(stream):
        assert types[name] == "bigint", (stream, name, types[name])
    for name in time_fields(stream):
        assert types[name].startswith("timestamp"), (stream, name, types[name])
    for name in string_fields(stream):
        assert types[name] in {"text", "character varying"}, (stream, name, types[name])
    assert types[UNKNOWN_FIELDS] in {"jsonb", "json"}, (stream, types[UNKNOWN_FIELDS])
    big = {r[key] for r in source if r[key] > INT53}
    assert big, f"the simulator should produce {stream} keys above 2^53"
    db_big = {
        r[0] for r in conn.execute(f'SELECT "{key}" FROM {table} WHERE "{key}" > %s', (INT53,))
    }
    assert db_big == big, stream
    # Every field of every row equal to the source after the documented conversions.
    problems = compare(stream, key, source, fetch_rows(conn, stream, key))
    assert not problems, "\n".join(problems)
    deleted = scalar(conn, f"SELECT count(*) FROM {table} WHERE _sdc_deleted_at IS NOT NULL")
    assert deleted == 0, stream


def assert_warehouse_matches(
    pg: PgServer, database: str, sim: Any, *, streams: tuple[str, ...] = tuple(STREAM_KEYS)
) -> dict[str, int]:
    """Every row of every loaded stream vs. the simulator's ground truth; returns the counts."""
    counts: dict[str, int] = {}
    with pg.connect(database) as conn:
        for stream in streams:
            source = source_rows(sim, stream)
            check_stream(conn, stream, source)
            counts[stream] = len(source)
        if "leads" not in streams:
            return counts
        # Every call's, text's and email's leadId exists in leads.
        for child in streams:
            if child == "leads":
                continue
            orphans = scalar(
                conn,
                f"SELECT count(*) FROM {TARGET_SCHEMA}.{child} c LEFT JOIN "
                f'{TARGET_SCHEMA}.leads l ON l."leadId" = c."leadId" WHERE l."leadId" IS NULL',
            )
            assert orphans == 0, child
    return counts


def all_keys(pg: PgServer, database: str) -> dict[str, set[int]]:
    with pg.connect(database) as conn:
        return {stream: keys(conn, stream, key) for stream, key in STREAM_KEYS.items()}


def report(label: str, runner: MeltanoRunner, counts: dict[str, int]) -> None:
    run = runner.runs[-1]
    rows = ", ".join(f"{n} {stream}" for stream, n in counts.items())
    print(f"[e2e] {label}: meltano run {run.seconds:.1f}s; warehouse rows: {rows}")


#: Fields no schema knows, added to every lead: they must land in lofty_unknown_fields as sent.
NEW_LEAD_FIELDS = {
    "brandNewField": {"tier": "gold", "since": 2**60 + 7, "scores": [1, 2.5], "note": "café"},
    "anotherNewField": "x",
}


def history_requests(sim: Any) -> dict[str, int]:
    """Per-lead history requests since the last reset, by stream."""
    paths = {"calls": "call", "texts": "text", "emails": "email"}
    return {
        stream: sum(
            n for k, n in sim.counters.items() if k.startswith(f"GET /v1.0/communication/{path} ")
        )
        for stream, path in paths.items()
    }


def test_full_load_then_incremental_runs(
    make_sim: Any, runner: MeltanoRunner, warehouse: str, pg: PgServer
) -> None:
    sim = make_sim(
        leads=300,
        seed=11,
        calls_per_lead_mean=8,
        big_leads=1,
        big_text_leads=1,
        rate_limit=None,
        extra_lead_fields=NEW_LEAD_FIELDS,
    )
    per_lead = collections.Counter(c["leadId"] for c in sim.all_calls())
    assert max(per_lead.values()) > 2000, "one lead should span several 1000-call pages"
    texts_per_lead = collections.Counter(t["leadId"] for t in sim.all_texts())
    assert max(texts_per_lead.values()) > 2000, "one lead should span several 1000-text pages"
    # The sources hold what the conversions are about: live opportunity objects, and text and
    # email times as epoch-millisecond strings besides 'yyyy-MM-dd HH:mm:ss'.
    assert any(isinstance(lead.get("opportunity"), dict) for lead in sim.leads())
    assert any(t["textTime"].isdigit() for t in sim.all_texts())
    assert any(e["emailEventTime"].isdigit() for e in sim.all_emails())
    env = sim_env(sim, warehouse, pg)
    assert runner.state() is None

    # Run 1: everything.
    runner.run(env).check()
    counts1 = assert_warehouse_matches(pg, warehouse, sim)
    first = all_keys(pg, warehouse)
    state1 = runner.state()
    for stream in CHILD_STREAMS:
        assert bookmark(state1, stream), stream
    with pg.connect(warehouse) as conn:
        # The unknown lead fields are in the catch-all column, and nowhere else.
        unknown = conn.execute(
            f"SELECT DISTINCT {UNKNOWN_FIELDS} FROM {TARGET_SCHEMA}.leads"
        ).fetchall()
        assert unknown == [(NEW_LEAD_FIELDS,)], unknown
        assert not set(column_types(conn, "leads")) & set(NEW_LEAD_FIELDS)
        # The opportunity object is JSON text a query can take apart (spec-shaped leads
        # hold a plain string there).
        opportunities = scalar(
            conn,
            f"SELECT count(*) FROM {TARGET_SCHEMA}.leads "
            "WHERE CASE WHEN opportunity LIKE '{%' "
            "THEN (opportunity::jsonb ->> 'id')::bigint > 0 END",
        )
        assert opportunities == sum(
            isinstance(lead.get("opportunity"), dict) for lead in sim.leads()
        )
    report("full load", runner, counts1)

    # Run 2: new calls on old leads and on new leads, new texts and emails on old leads;
    # exactly those rows are added, and only the leads that changed are read again.
    appended = sim.append_calls(existing_leads=10, new_leads=2, calls_per_lead=3)
    assert len(appended) == 12 * 3
    messages = sim.append_messages(existing_leads=8, texts_per_lead=2, emails_per_lead=1)
    assert len(messages["texts"]) == 8 * 2 and len(messages["emails"]) == 8
    sim.reset_counters()
    runner.run(env).check()
    counts2 = assert_warehouse_matches(pg, warehouse, sim)
    second = all_keys(pg, warehouse)
    new_rows = {
        "leads": set(sim.lead_ids()) - first["leads"],
        "calls": {c["id"] for c in appended},
        "texts": {t["id"] for t in messages["texts"]},
        "emails": {e["id"] for e in messages["emails"]},
    }
    assert len(new_rows["leads"]) == 2
    for stream, added in new_rows.items():
        assert first[stream] <= second[stream], stream
        assert second[stream] - first[stream] == added, stream
        assert counts2[stream] == counts1[stream] + len(added), stream
    assert any(k.startswith("GET /v2.0/communication/agent ") for k in sim.counters), (
        "change_detection=auto should have asked the team communications feed",
        sim.counters,
    )
    requests = history_requests(sim)
    changed_leads = len({r["leadId"] for r in [*appended, *messages["texts"], *messages["emails"]]})
    assert 0 < requests["calls"] < len(sim.lead_ids()) // 2, requests
    print(f"[e2e] incremental: {changed_leads} changed leads; history requests {requests}")
    state2 = runner.state()
    # The bookmarks never go back. (They need not move: rows created in the last minutes
    # stay above them and are read again next run, the tap's documented bounded overlap.)
    for stream in CHILD_STREAMS:
        assert (
            bookmark(state2, stream)["replication_key_value"]
            >= bookmark(state1, stream)["replication_key_value"]
        ), stream
    report("incremental", runner, counts2)

    # Run 3: nothing new; nothing added.
    runner.run(env).check()
    counts3 = assert_warehouse_matches(pg, warehouse, sim)
    assert all_keys(pg, warehouse) == second
    assert counts3 == counts2
    report("no changes", runner, counts3)
    with pg.connect(warehouse) as conn:
        for stream in STREAM_KEYS:
            per_run = conn.execute(
                f"SELECT _sdc_sync_started_at, count(*) FROM {TARGET_SCHEMA}.{stream} "
                "GROUP BY 1 ORDER BY 1"
            ).fetchall()
            print(f"[e2e] {stream} rows by the run that last wrote them: {[n for _, n in per_run]}")


def test_only_calls_selected(
    make_sim: Any, runner: MeltanoRunner, warehouse: str, pg: PgServer
) -> None:
    sim = make_sim(leads=150, seed=12, calls_per_lead_mean=8, big_leads=1, rate_limit=None)
    env = sim_env(sim, warehouse, pg, TAP_LOFTY__SELECT=json.dumps(["calls.*"]))
    result = runner.run(env).check()
    counts = assert_warehouse_matches(pg, warehouse, sim, streams=("calls",))
    with pg.connect(warehouse) as conn:
        # The parent was read for its ids, but its records were not loaded; the other
        # children were neither read nor loaded.
        for stream in ("leads", "texts", "emails"):
            assert (
                not table_exists(conn, stream)
                or scalar(conn, f"SELECT count(*) FROM {TARGET_SCHEMA}.{stream}") == 0
            ), stream
    assert any(k.startswith("GET /v1.0/leads") for k in sim.counters), sim.counters
    requests = history_requests(sim)
    assert requests["texts"] == requests["emails"] == 0, requests
    assert calls_bookmark(runner.state())
    report("calls only", runner, counts)
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
    first = all_keys(pg, warehouse)
    appended = sim.append_calls(existing_leads=5, new_leads=2, calls_per_lead=4)
    messages = sim.append_messages(existing_leads=5, texts_per_lead=2, emails_per_lead=1)

    # After a good run: the failed one leaves state and rows as they were.
    failing_run()
    assert runner.state() == state1
    assert all_keys(pg, warehouse) == first

    # The next good run loses nothing.
    runner.run(env).check()
    assert_warehouse_matches(pg, warehouse, sim)
    second = all_keys(pg, warehouse)
    assert second["calls"] - first["calls"] == {c["id"] for c in appended}
    assert second["texts"] - first["texts"] == {t["id"] for t in messages["texts"]}
    assert second["emails"] - first["emails"] == {e["id"] for e in messages["emails"]}
