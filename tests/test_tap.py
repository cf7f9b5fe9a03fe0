"""tap-lofty against the simulator: completeness, types, incremental state, errors."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re

import jsonschema
import pytest

from tap_lofty.state import CLOCK_SKEW_MARGIN
from tests.tap_support import ROOT, run_cli, run_tap, sim_config

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
CALL_TIME_FIELDS = ("startTime", "endTime", "createTime", "updateTime")


def expected_time(value: str | None) -> str | None:
    """The documented conversion: 'yyyy-MM-dd HH:mm:ss' (UTC) -> RFC 3339 with Z."""
    if value is None:
        return None
    return dt.datetime.strptime(value, "%Y-%m-%d %H:%M:%S").strftime("%Y-%m-%dT%H:%M:%SZ")


def load_schema(name: str) -> dict:
    return json.loads((ROOT / "schemas" / f"{name}.json").read_text())


def test_full_sync_matches_ground_truth_exactly(make_sim):
    sim = make_sim(leads=60, seed=3, calls_per_lead_mean=6, big_leads=0)
    out = run_tap(sim_config(sim))

    assert sorted(out.ids("leads", "leadId")) == sorted(sim.lead_ids())
    truth = {call["id"]: call for call in sim.all_calls()}
    got = {record["id"]: record for record in out.records["calls"]}
    assert len(got) == len(out.records["calls"]), "a call was emitted twice"
    assert got.keys() == truth.keys()
    for call_id, source in truth.items():
        record = got[call_id]
        for key, value in source.items():
            want = expected_time(value) if key in CALL_TIME_FIELDS else value
            assert record[key] == want, (call_id, key)
        # fields Lofty omitted stay absent (loaded as NULL), never invented
        assert set(record) - set(source) <= {"leadId"}


def test_records_validate_against_schema_files_and_types(make_sim):
    sim = make_sim(leads=40, seed=5, calls_per_lead_mean=5, big_leads=0)
    out = run_tap(sim_config(sim))
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    for stream in ("leads", "calls"):
        validator = jsonschema.Draft202012Validator(load_schema(stream), format_checker=checker)
        assert out.records[stream], stream
        for record in out.records[stream]:
            errors = [e.message for e in validator.iter_errors(record)]
            assert not errors, (stream, errors)
    for record in out.records["calls"]:
        for key in CALL_TIME_FIELDS:
            if record.get(key) is not None:
                assert RFC3339_UTC.match(record[key]), record[key]
    for record in out.records["leads"]:
        if record.get("createTime") is not None:
            assert RFC3339_UTC.match(record["createTime"]), record["createTime"]


def test_catalog_selection_deselects_a_stream_and_a_field(make_sim):
    sim = make_sim(leads=20, seed=8, calls_per_lead_mean=4, big_leads=0)
    catalog = json.loads((ROOT / "catalog.json").read_text())
    for entry in catalog["streams"]:
        for item in entry["metadata"]:
            if entry["tap_stream_id"] == "leads" and item["breadcrumb"] == []:
                item["metadata"]["selected"] = False
            if entry["tap_stream_id"] == "calls" and item["breadcrumb"] == ["properties", "note"]:
                item["metadata"]["selected"] = False
    out = run_tap(sim_config(sim), catalog=catalog)
    assert "leads" not in out.records  # the parent is read for its ids only
    assert sorted(out.ids("calls")) == sorted(c["id"] for c in sim.all_calls())
    assert not any("note" in record for record in out.records["calls"])
    assert all("callingOutcome" in record for record in out.records["calls"])


def test_primary_keys_are_unique_and_present(make_sim):
    sim = make_sim(leads=50, seed=11, calls_per_lead_mean=8, big_leads=0)
    out = run_tap(sim_config(sim))
    lead_ids = out.ids("leads", "leadId")
    call_ids = out.ids("calls")
    assert None not in lead_ids and None not in call_ids
    assert len(set(lead_ids)) == len(lead_ids) == 50
    assert len(set(call_ids)) == len(call_ids) == sim.total_calls()


@pytest.mark.parametrize("cursor_mode", ["exclusive", "inclusive"])
def test_big_lead_complete_without_duplicates(make_sim, cursor_mode):
    sim = make_sim(leads=4, seed=2, calls_per_lead_mean=3, big_leads=1, cursor_mode=cursor_mode)
    big = max(sim.lead_ids(), key=lambda lead_id: len(sim.calls(lead_id)))
    want = [call["id"] for call in sim.calls(big)]
    assert len(want) > 2500
    out = run_tap(sim_config(sim))
    got = [record["id"] for record in out.records["calls"] if record["leadId"] == big]
    assert got == sorted(want)  # each exactly once, ascending
    # pages of 1000 plus the closing short page: no re-reads beyond the cursor's own row;
    # a small lead may cost one more request to check that its short page is the last
    requests = sim.counters.get("GET /v1.0/communication/call 200", 0)
    small_leads = len(sim.lead_ids()) - 1
    assert (
        len(want) // 1000 + 1 + small_leads <= requests <= len(want) // 1000 + 1 + 2 * small_leads
    )


@pytest.mark.parametrize("cursor_mode", ["exclusive", "inclusive"])
def test_silently_capped_call_pages_lose_nothing(make_sim, caplog, cursor_mode):
    # Lofty documents limit up to 1000; if it served fewer without saying so, a page
    # shorter than calls_page_size would look like the last one.
    sim = make_sim(
        leads=30,
        seed=4,
        calls_per_lead_mean=40,
        big_leads=1,
        calls_page_cap=100,
        cursor_mode=cursor_mode,
    )
    with caplog.at_level(logging.WARNING, logger="tap_lofty"):
        out = run_tap(sim_config(sim))
    ids = out.ids("calls")
    assert len(ids) == len(set(ids))
    assert sorted(ids) == sorted(c["id"] for c in sim.all_calls())
    assert "Lofty serves at most 100 per page, not calls_page_size=1000" in caplog.text


def test_ids_above_2_53_are_exact_in_the_output_text(make_sim):
    sim = make_sim(leads=20, seed=9, calls_per_lead_mean=5, big_leads=0)
    out = run_tap(sim_config(sim))
    big_ids = [call["id"] for call in sim.all_calls() if call["id"] > 2**53]
    assert big_ids, "the simulator must serve ids above 2^53"
    assert any(float(i) != i for i in big_ids), "need ids a float cannot hold"
    text = "\n".join(out.lines)
    for call_id in big_ids:
        assert f'"id":{call_id}' in text
    assert set(out.ids("calls")) == {call["id"] for call in sim.all_calls()}


@pytest.mark.parametrize("change_detection", ["full", "auto"])
def test_incremental_second_run_reads_only_new_calls(make_sim, change_detection):
    sim = make_sim(leads=40, seed=4, calls_per_lead_mean=5, big_leads=0)
    config = sim_config(sim, change_detection=change_detection)
    first = run_tap(config)
    state = first.final_state
    assert "resume" not in state["bookmarks"]["calls"]

    new_calls = sim.append_calls(existing_leads=7, new_leads=3, calls_per_lead=4)
    new_ids = {call["id"] for call in new_calls}
    assert len(new_ids) == 40
    sim.reset_counters()
    second = run_tap(config, state=state)

    got = set(second.ids("calls"))
    assert new_ids <= got, "a new call was lost"
    # Re-reads are bounded: only calls created within the clock-skew margin of the run.
    assert_only_recent(second.records["calls"], new_ids)
    # full: one call request per lead (all new calls fit a page); auto: one per lead the
    # feed names (the 10 with new calls); and at most one more for each of those 10, to
    # check that their short page was the last
    asked = 43 if change_detection == "full" else 10
    assert asked <= sim.counters["GET /v1.0/communication/call 200"] <= asked + 10
    feed_requests = sim.counters.get("GET /v2.0/communication/agent 200", 0)
    assert feed_requests == (0 if change_detection == "full" else 1)

    third = run_tap(config, state=second.final_state)
    assert_only_recent(third.records["calls"], set())
    assert (
        third.final_state["bookmarks"]["calls"]["replication_key_value"]
        >= (second.final_state["bookmarks"]["calls"]["replication_key_value"])
    )


def assert_only_recent(records, allowed_ids):
    """Every record not in allowed_ids was created within the documented overlap window."""
    cutoff = dt.datetime.now(dt.timezone.utc) - CLOCK_SKEW_MARGIN - dt.timedelta(minutes=5)
    for record in records:
        if record["id"] in allowed_ids:
            continue
        created = dt.datetime.fromisoformat(record["createTime"].replace("Z", "+00:00"))
        assert created >= cutoff, record["id"]


def test_final_state_stays_small_at_5000_leads(make_sim):
    sim = make_sim(leads=5000, seed=1, calls_per_lead_mean=1, big_leads=0, rate_limit=None)
    out = run_tap(sim_config(sim, max_concurrency=8))
    final = out.state_lines[-1]
    total = sum(len(line) for line in out.state_lines)
    print(f"5000 leads: final STATE {len(final)} B, {len(out.state_lines)} STATE lines, {total} B")
    assert len(final) < 1024
    assert max(len(line) for line in out.state_lines) < 1024
    assert len(out.ids("leads", "leadId")) == 5000
    assert len(out.ids("calls")) == sim.total_calls()
    assert len(out.ids("texts")) == sim.total_texts()
    assert len(out.ids("emails")) == len(sim.all_emails())
    assert out.schemas == {
        "leads": 1,
        "calls": 1,
        "texts": 1,
        "emails": 1,
        "members": 1,
        "lead_stages": 1,
        "ponds": 1,
        "transactions": 1,
    }


@pytest.mark.parametrize("credential", ["api_key", "access_token"])
def test_both_auth_header_forms(make_sim, credential):
    sim = make_sim(leads=5, seed=6, calls_per_lead_mean=2, big_leads=0)
    config = sim_config(sim, api_key=None)
    config[credential] = getattr(sim.config, credential)
    out = run_tap(config)
    assert len(out.ids("leads", "leadId")) == 5
    assert sim.counters.get("GET /v1.0/leads 401", 0) == 0


def test_deleted_lead_is_skipped_with_a_warning(make_sim, caplog):
    caplog.set_level(logging.INFO, logger="tap_lofty")
    sim = make_sim(leads=12, seed=8, calls_per_lead_mean=4, big_leads=0)
    gone = sim.lead_ids()[3]
    sim.delete_after_listing({gone})
    out = run_tap(sim_config(sim))
    assert gone in out.ids("leads", "leadId")
    assert {r["leadId"] for r in out.records["calls"]} == {
        c["leadId"] for c in sim.all_calls() if c["leadId"] != gone
    }
    assert f"Lead {gone} was listed but Lofty answered 404" in caplog.text
    assert "1 lead(s) gone before their records were read" in caplog.text


def test_401_gives_one_clear_error_and_nonzero_exit(make_sim, tmp_path):
    sim = make_sim(leads=3, seed=1)
    result = run_cli([], sim_config(sim, api_key="wrong-key-123"), tmp_path)
    assert result.returncode == 1
    assert "GET /v1.0/leads failed with HTTP 401" in result.stderr
    assert "Check api_key" in result.stderr
    assert "Traceback" not in result.stderr
    assert "wrong-key-123" not in result.stderr + result.stdout
    assert '"type":"RECORD"' not in result.stdout


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            {"leads_page_size": 500},
            "500 is greater than the maximum of 100 in config['leads_page_size']",
        ),
        ({"calls_page_size": 0}, "0 is less than the minimum of 2 in config['calls_page_size']"),
        ({"api_key": None}, "Give exactly one way to authenticate: api_key"),
        ({"access_token": "also-a-token"}, "several are set (api_key, access_token)."),
    ],
)
def test_invalid_config_is_rejected_naming_the_setting(make_sim, tmp_path, bad, message):
    sim = make_sim(leads=2, seed=1)
    config = sim_config(sim)
    config.update(bad)
    config = {k: v for k, v in config.items() if v is not None}
    result = run_cli([], config, tmp_path)
    assert result.returncode == 1
    assert message in result.stderr
    assert sim.counters == {} or sum(sim.counters.values()) == 0


def test_unreadable_input_files_give_one_clear_error(make_sim, tmp_path):
    sim = make_sim(leads=2)
    (tmp_path / "state.json").write_text('{"bookmarks": ')
    broken = run_cli(["--state", "state.json"], sim_config(sim), tmp_path)
    assert broken.returncode == 1
    assert (
        "\ntap-lofty: error: a file given to --config, --state or --catalog is not valid JSON ("
        in (broken.stderr)
    )
    assert "Traceback" not in broken.stderr
    missing = run_cli(["--config", "nowhere.json"], None, tmp_path)
    assert missing.returncode == 1
    assert "File at 'nowhere.json' was not found. Check the path given to --config." in (
        missing.stderr
    )
    assert "Traceback" not in missing.stderr
    assert broken.stdout == missing.stdout == ""


def test_connection_test_reports_in_one_line(make_sim, tmp_path):
    sim = make_sim(leads=3, seed=1)
    ok = run_cli(["--test"], sim_config(sim), tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "Connection test passed" in ok.stderr
    bad = run_cli(["--test"], sim_config(sim, api_key="nope"), tmp_path)
    assert bad.returncode == 1
    assert "HTTP 401" in bad.stderr


def test_catalog_json_matches_discover(tmp_path):
    result = run_cli(["--discover"], None, tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == json.loads((ROOT / "catalog.json").read_text()), (
        "catalog.json drifted: regenerate it with `tap-lofty --discover > catalog.json`"
    )


def test_readme_settings_table_matches_about(tmp_path):
    result = run_cli(["--about", "--format=markdown"], None, tmp_path)
    assert result.returncode == 0, result.stderr
    table = [line for line in result.stdout.splitlines() if line.startswith("|")]
    readme = (ROOT / "README.md").read_text()
    assert table and "\n".join(table) in readme, (
        "README settings table drifted: paste the table from `tap-lofty --about --format=markdown`"
    )


def test_meltano_yml_declares_exactly_the_tap_settings():
    import yaml

    from tap_lofty.tap import TapLofty

    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    (extractor,) = [p for p in project["plugins"]["extractors"] if p["name"] == "tap-lofty"]
    declared = {s["name"]: s for s in extractor["settings"]}
    builtin = ("stream_map", "faker_config", "flattening_", "batch_config")
    own = {
        name: spec
        for name, spec in TapLofty.config_jsonschema["properties"].items()
        if not name.startswith(builtin)
    }
    assert set(own) <= set(declared), "meltano.yml lacks a tap setting"
    for name, spec in own.items():
        assert declared[name].get("sensitive", False) == spec.get("secret", False), name
    assert {
        "catalog",
        "discover",
        "state",
        "about",
        "stream-maps",
        "schema-flattening",
        "test",
    } <= set(extractor["capabilities"])


def test_wheel_ships_the_schema_files(tmp_path):
    import subprocess
    import sys
    import zipfile

    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("tap_lofty-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for stream in ("leads", "calls"):
        shipped = json.loads(zipfile.ZipFile(wheel).read(f"tap_lofty/schemas/{stream}.json"))
        assert shipped == load_schema(stream)
    assert not [n for n in names if n.startswith(("lofty_sim/", "tests/"))]
