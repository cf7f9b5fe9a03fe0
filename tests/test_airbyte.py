"""source-lofty: the Airbyte protocol over the tap's streams, checked with Airbyte's models."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from airbyte_protocol_dataclasses.models import airbyte_protocol as proto

from tap_lofty.tap import TapLofty
from tests.airbyte_support import configured_catalog, parse_message, run_source, source_exe
from tests.tap_support import sim_config

SMALL = {"leads": 30, "big_leads": 0, "big_text_leads": 0, "team_members": 13}
CALLS_ONLY = {"leads": "full_refresh", "calls": "incremental"}


def _catalog(sim, tmp_path: Path) -> proto.AirbyteCatalog:
    run = run_source(["discover"], tmp_path, {"--config": sim_config(sim)})
    assert run.returncode == 0, run.stderr
    (message,) = run.of(proto.Type.CATALOG)
    return message.catalog


def test_spec_is_a_connector_specification(tmp_path):
    run = run_source(["spec"], tmp_path)
    assert run.returncode == 0
    assert [m.type for m in run.messages] == [proto.Type.SPEC]
    spec = run.messages[0].spec
    props = spec.connectionSpecification["properties"]
    # The SDK adds its own settings (stream maps, flattening) to the class once a tap has
    # been built in this process: compare the tap's own settings, whatever ran before.
    builtin = ("stream_map", "faker_config", "flattening_", "batch_config")
    own = {
        name for name in TapLofty.config_jsonschema["properties"] if not name.startswith(builtin)
    }
    assert {name for name in props if not name.startswith(builtin)} == own
    secrets = {name for name, prop in props.items() if prop.get("airbyte_secret")}
    assert secrets == {
        "api_key",
        "access_token",
        "client_secret",
        "refresh_token",
        "customer_key",
    }
    assert spec.supportsIncremental is True


def test_check_good_and_bad_credentials(make_sim, tmp_path):
    sim = make_sim(**SMALL)
    good = run_source(["check"], tmp_path, {"--config": sim_config(sim)})
    assert good.returncode == 0, good.stderr
    (status,) = good.of(proto.Type.CONNECTION_STATUS)
    assert status.connectionStatus.status == proto.Status.SUCCEEDED

    bad = run_source(["check"], tmp_path, {"--config": sim_config(sim, api_key="wrong-key-123")})
    # Airbyte reads a failed check from the message; the process itself succeeds.
    assert bad.returncode == 0
    (status,) = bad.of(proto.Type.CONNECTION_STATUS)
    assert status.connectionStatus.status == proto.Status.FAILED
    reason = status.connectionStatus.message
    assert "401" in reason and "\n" not in reason
    assert "wrong-key-123" not in json.dumps([json.dumps(str(m)) for m in bad.messages])


def test_check_invalid_config_fails(tmp_path):
    run = run_source(["check"], tmp_path, {"--config": {"api_key": "k", "leads_page_size": 0}})
    assert run.returncode == 0
    (status,) = run.of(proto.Type.CONNECTION_STATUS)
    assert status.connectionStatus.status == proto.Status.FAILED
    assert "leads_page_size" in status.connectionStatus.message


def test_discover_sync_modes_keys_cursors(make_sim, tmp_path):
    catalog = _catalog(make_sim(**SMALL), tmp_path)
    streams = {s.name: s for s in catalog.streams}
    assert set(streams) == set(TapLofty(config={"api_key": "k"}).streams)
    for name in ("calls", "texts", "emails"):
        stream = streams[name]
        assert stream.supported_sync_modes == [
            proto.SyncMode.full_refresh,
            proto.SyncMode.incremental,
        ]
        assert stream.source_defined_cursor is True
        assert stream.default_cursor_field == ["id"]
        assert stream.source_defined_primary_key == [["id"]]
    assert streams["leads"].supported_sync_modes == [proto.SyncMode.full_refresh]
    assert streams["leads"].source_defined_primary_key == [["leadId"]]
    assert streams["transactions"].source_defined_primary_key == [["transactionId"]]


def test_read_then_incremental_read(make_sim, tmp_path):
    sim = make_sim(**SMALL)
    config = sim_config(sim)
    catalog = configured_catalog(_catalog(sim, tmp_path), CALLS_ONLY)
    started = time.monotonic()
    first = run_source(["read"], tmp_path, {"--config": config, "--catalog": catalog})
    elapsed = time.monotonic() - started
    assert first.returncode == 0, first.stderr
    truth = [c["id"] for c in sim.all_calls()]
    assert truth
    assert sorted(c["id"] for c in first.records("calls")) == truth
    assert sorted(lead["leadId"] for lead in first.records("leads")) == sim.lead_ids()
    assert {m.record.stream for m in first.of(proto.Type.RECORD)} == {"leads", "calls"}
    for message in first.of(proto.Type.RECORD):
        assert abs(message.record.emitted_at - time.time() * 1000) < 600_000  # ms, not s
    assert first.statuses("calls") == ["STARTED", "COMPLETE"]
    assert first.statuses("leads") == ["STARTED", "COMPLETE"]
    logs = [m.log.message for m in first.of(proto.Type.LOG)]
    # The tap's own lines (the progress summary among them) arrive as LOG messages.
    assert any(f"Sync finished: leads {len(sim.lead_ids())}/" in line for line in logs), logs
    assert any("METRIC" in line for line in logs)
    assert first.stderr == "", "everything goes to stdout as Airbyte messages"
    assert config["api_key"] not in "".join(str(m) for m in first.messages)
    states = first.latest_states()
    assert {s["stream"]["stream_descriptor"]["name"] for s in states} <= {"calls", "leads"}
    assert "calls" in {s["stream"]["stream_descriptor"]["name"] for s in states}
    assert config["api_key"] not in json.dumps(first.states())
    print(f"first read: {len(truth)} calls in {elapsed:.2f} s")

    appended = sim.append_calls(existing_leads=5, new_leads=2, calls_per_lead=3)
    second = run_source(
        ["read"], tmp_path, {"--config": config, "--catalog": catalog, "--state": states}
    )
    assert second.returncode == 0, second.stderr
    assert sorted(c["id"] for c in second.records("calls")) == [c["id"] for c in appended]
    assert second.statuses("calls") == ["STARTED", "COMPLETE"]


def test_read_state_matches_singer_state(make_sim, tmp_path):
    """Each Airbyte stream_state is the Singer bookmark of that stream, for the same selection."""
    from tests.tap_support import run_tap

    sim = make_sim(**SMALL)
    config = sim_config(sim, change_detection="full")
    catalog = configured_catalog(_catalog(sim, tmp_path), CALLS_ONLY)
    run = run_source(["read"], tmp_path, {"--config": config, "--catalog": catalog})
    assert run.returncode == 0, run.stderr
    singer_catalog = TapLofty(config=config).catalog_dict
    for entry in singer_catalog["streams"]:
        for meta in entry["metadata"]:
            if not meta["breadcrumb"]:
                meta["metadata"]["selected"] = entry["tap_stream_id"] in CALLS_ONLY
    singer = run_tap(config, catalog=singer_catalog).final_state["bookmarks"]
    airbyte = {
        s["stream"]["stream_descriptor"]["name"]: s["stream"]["stream_state"]
        for s in run.latest_states()
    }
    assert set(airbyte) == set(singer) & set(CALLS_ONLY)
    assert set(airbyte["calls"]) == set(singer["calls"])
    for key in ("replication_key", "replication_key_value"):
        assert airbyte["calls"][key] == singer["calls"][key]


def test_full_refresh_ignores_old_state(make_sim, tmp_path):
    sim = make_sim(**SMALL)
    config = sim_config(sim)
    discovered = _catalog(sim, tmp_path)
    incremental = configured_catalog(discovered, CALLS_ONLY)
    first = run_source(["read"], tmp_path, {"--config": config, "--catalog": incremental})
    full = configured_catalog(discovered, {"calls": "full_refresh"})
    again = run_source(
        ["read"],
        tmp_path,
        {"--config": config, "--catalog": full, "--state": first.latest_states()},
    )
    assert again.returncode == 0, again.stderr
    assert sorted(c["id"] for c in again.records("calls")) == [c["id"] for c in sim.all_calls()]


def test_unauthorized_read_is_config_error(make_sim, tmp_path):
    sim = make_sim(**SMALL)
    catalog = configured_catalog(_catalog(sim, tmp_path), CALLS_ONLY)
    run = run_source(
        ["read"],
        tmp_path,
        {"--config": sim_config(sim, api_key="wrong-key-123"), "--catalog": catalog},
    )
    assert run.returncode == 1
    (error,) = run.traces(proto.TraceType.ERROR)
    assert error.error.failure_type == proto.FailureType.config_error
    assert "401" in error.error.message and "\n" not in error.error.message
    assert "INCOMPLETE" in run.statuses("calls")
    assert not run.of(proto.Type.RECORD)
    assert "wrong-key-123" not in "".join(str(m) for m in run.messages)


def test_bad_config_read_is_config_error(tmp_path):
    catalog = {"streams": [{"stream": {"name": "calls"}, "sync_mode": "incremental"}]}
    run = run_source(
        ["read"],
        tmp_path,
        {"--config": {"api_key": "k", "max_retries": -1}, "--catalog": catalog},
    )
    assert run.returncode == 1
    (error,) = run.traces(proto.TraceType.ERROR)
    assert error.error.failure_type == proto.FailureType.config_error
    assert "max_retries" in error.error.message


def test_broken_state_is_config_error(make_sim, tmp_path):
    sim = make_sim(**SMALL)
    catalog = configured_catalog(_catalog(sim, tmp_path), CALLS_ONLY)
    run = run_source(
        ["read"],
        tmp_path,
        {"--config": sim_config(sim), "--catalog": catalog, "--state": [{"type": "GLOBAL"}]},
    )
    assert run.returncode == 1
    (error,) = run.traces(proto.TraceType.ERROR)
    assert error.error.failure_type == proto.FailureType.config_error


def test_unexpected_failure_is_system_error(tmp_path, monkeypatch):
    from tap_lofty import airbyte

    def boom(config):
        raise RuntimeError("kaput")

    monkeypatch.setattr(airbyte, "discover", boom)
    (tmp_path / "c.json").write_text("{}")
    lines: list[str] = []
    monkeypatch.setattr(airbyte.AirbyteOutput, "emit", lambda self, m: lines.append(m))
    assert airbyte.run(["discover", "--config", str(tmp_path / "c.json")]) == 1
    (message,) = [m for m in lines if m.type == proto.Type.TRACE]
    assert message.trace.error.failure_type == proto.FailureType.system_error
    assert "kaput" in message.trace.error.message
    assert message.trace.error.stack_trace


@pytest.mark.parametrize("command", ["check", "discover"])
def test_missing_config_file(command, tmp_path):
    run = run_source([command, "--config", str(tmp_path / "nope.json")], tmp_path)
    if command == "check":
        assert run.returncode == 0
        (status,) = run.of(proto.Type.CONNECTION_STATUS)
        assert status.connectionStatus.status == proto.Status.FAILED
    else:
        assert run.returncode == 1
        (error,) = run.traces(proto.TraceType.ERROR)
        assert error.error.failure_type == proto.FailureType.config_error
        assert "nope.json" in error.error.message


ROOT = Path(__file__).resolve().parent.parent
PYAIRBYTE_SETUP = ROOT / "scripts" / "setup_pyairbyte.sh"
PYAIRBYTE_PYTHON = ROOT / ".venv-pyairbyte" / "bin" / "python"
#: PyAirbyte's switches that keep it off the network: no telemetry (DO_NOT_TRACK, and
#: AIRBYTE_OFFLINE_MODE, which also tolerates a missing registry) and no registry download
#: at all (AIRBYTE_LOCAL_REGISTRY=0 disables it; see airbyte/registry.py).
OFFLINE_ENV = {"DO_NOT_TRACK": "1", "AIRBYTE_OFFLINE_MODE": "1", "AIRBYTE_LOCAL_REGISTRY": "0"}


def _ensure_pyairbyte() -> Path:
    """Run scripts/setup_pyairbyte.sh; skip only without a suitable Python, never under CI."""
    proc = subprocess.run(
        ["bash", str(PYAIRBYTE_SETUP)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    if proc.returncode == 3:
        reason = " ".join(proc.stderr.strip().splitlines()[-1:]) or "no suitable Python"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"scripts/setup_pyairbyte.sh: {reason} (CI=true: must not skip)")
        pytest.skip(f"PyAirbyte not installable here: {reason}")
    if proc.returncode != 0 or not PYAIRBYTE_PYTHON.exists():
        pytest.fail(f"scripts/setup_pyairbyte.sh failed (exit {proc.returncode}):\n{proc.stderr}")
    return PYAIRBYTE_PYTHON


def _pyairbyte_read(python: Path, config_path: Path, tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TAP_LOFTY_", "AIRBYTE_"))}
    env |= OFFLINE_ENV | {"AIRBYTE_LOGGING_ROOT": str(tmp_path / "logs")}
    # Anything that still tried the internet (registry, telemetry) would meet a dead proxy;
    # only the simulator on 127.0.0.1 is reachable.
    env |= {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    env |= {"NO_PROXY": "127.0.0.1,localhost", "http_proxy": "", "https_proxy": ""}
    proc = subprocess.run(
        [
            str(python),
            str(ROOT / "scripts" / "pyairbyte_read.py"),
            str(config_path),
            source_exe(),
            str(tmp_path / "cache"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_pyairbyte_reads_through_source_lofty(make_sim, tmp_path):
    python = _ensure_pyairbyte()
    sim = make_sim(**SMALL)
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(sim_config(sim)))

    first = _pyairbyte_read(python, config_path, tmp_path)
    truth = [c["id"] for c in sim.all_calls()]
    assert first["ids"]["calls"] == truth
    assert first["ids"]["leads"] == sim.lead_ids()
    assert first["processed"] == len(truth) + len(sim.lead_ids())
    print(f"PyAirbyte first read: {len(truth)} calls, {first['seconds']} s")

    appended = [c["id"] for c in sim.append_calls(existing_leads=5, new_leads=2, calls_per_lead=3)]
    second = _pyairbyte_read(python, config_path, tmp_path)
    # The cache's saved state made it an incremental read: only the new calls came.
    assert second["new_ids"]["calls"] == appended
    assert second["processed"] == len(appended) + len(sim.lead_ids())
    assert second["ids"]["calls"] == [c["id"] for c in sim.all_calls()]
    assert second["ids"]["leads"] == sim.lead_ids()
    print(f"PyAirbyte second read: {len(appended)} new calls, {second['seconds']} s")


def test_sigterm_mid_read_leaves_only_airbyte_messages(make_sim, tmp_path):
    """PyAirbyte and Airbyte stop a connector with SIGTERM: stdout stays protocol, state saved."""
    sim = make_sim(**SMALL, latency_s=0.05)
    config = sim_config(sim, max_concurrency=1)
    catalog = configured_catalog(_catalog(sim, tmp_path), CALLS_ONLY)
    for name, content in (("config", config), ("catalog", catalog)):
        (tmp_path / f"{name}.json").write_text(json.dumps(content))
    proc = subprocess.Popen(
        [source_exe(), "read", "--config", "config.json", "--catalog", "catalog.json"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if '"type":"RECORD"' in line and '"stream":"calls"' in line:
            break
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=30)
    lines += rest.splitlines()
    messages = [parse_message(line) for line in lines if line.strip()]
    calls_status = [
        m.trace.stream_status.status.value
        for m in messages
        if m.type == proto.Type.TRACE
        and m.trace.stream_status
        and m.trace.stream_status.stream_descriptor.name == "calls"
    ]
    assert calls_status == ["STARTED", "INCOMPLETE"]
    assert any(m.type == proto.Type.STATE for m in messages)
    assert proc.returncode in (0, -signal.SIGTERM)


@pytest.mark.parametrize(
    "line",
    [
        '{"type": "RECORD", "record": {"stream": "calls", "data": {}}}',  # no emitted_at
        '{"type": "RECORD", "record": {"stream": "calls", "data": {}, "emitted_at": "now"}}',
        '{"type": "RECORD", "rec": {"stream": "calls", "data": {}, "emitted_at": 1}}',
        '{"type": "STATE", "state": {"type": "PER_STREAM"}}',
        '{"type": "LOG", "log": {"level": "NOTICE", "message": "x"}}',
        '{"type": "TRACE"}',
    ],
)
def test_parser_refuses_what_the_protocol_refuses(line):
    """The checks above are only as good as this parser: it must reject malformed messages."""
    with pytest.raises((TypeError, ValueError, AssertionError)):
        parse_message(line)


def test_dockerfile_and_metadata_agree():
    """The image Airbyte runs: entrypoint, labels and metadata.yaml name the same connector."""
    import re
    from importlib.metadata import version

    import yaml

    dockerfile = (ROOT / "Dockerfile").read_text()
    labels = dict(re.findall(r"^LABEL (io\.airbyte\.\w+)=(\S+)$", dockerfile, flags=re.M))
    assert 'ENTRYPOINT ["source-lofty"]' in dockerfile
    assert 'ENV AIRBYTE_ENTRYPOINT="source-lofty"' in dockerfile
    # The package build follows tap_lofty/schemas (a symlink): the image must hold its target.
    assert "COPY schemas ./schemas" in dockerfile
    data = yaml.safe_load((ROOT / "metadata.yaml").read_text())["data"]
    assert labels == {
        "io.airbyte.name": data["dockerRepository"],
        "io.airbyte.version": data["dockerImageTag"],
    }
    assert data["dockerImageTag"] == version("tap-lofty")
    assert data["connectorType"] == "source"
