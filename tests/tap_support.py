"""Helpers to run tap-lofty in tests and read what it printed."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tap_lofty.tap import TapLofty

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class TapOutput:
    """The Singer messages one tap run printed, split by kind."""

    lines: list[str]
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    states: list[dict[str, Any]] = field(default_factory=list)
    state_lines: list[str] = field(default_factory=list)
    schemas: dict[str, int] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> TapOutput:
        out = cls(lines=[line for line in text.splitlines() if line.strip()])
        for line in out.lines:
            message = json.loads(line)
            kind = message["type"]
            if kind == "RECORD":
                out.records.setdefault(message["stream"], []).append(message["record"])
            elif kind == "STATE":
                out.states.append(message["value"])
                out.state_lines.append(line)
            elif kind == "SCHEMA":
                out.schemas[message["stream"]] = out.schemas.get(message["stream"], 0) + 1
        return out

    @property
    def final_state(self) -> dict[str, Any]:
        return self.states[-1]

    def ids(self, stream: str, key: str = "id") -> list[int]:
        return [record[key] for record in self.records.get(stream, [])]


def sim_config(sim: Any, **overrides: Any) -> dict[str, Any]:
    """A tap config pointing at a running simulator, fast settings for tests."""
    config: dict[str, Any] = {
        "api_url": sim.url,
        "api_key": sim.config.api_key,
        "requests_per_minute": 100_000,
        "max_concurrency": 4,
        "request_timeout": 10,
    }
    config.update(overrides)
    return {k: v for k, v in config.items() if v is not None}


def run_tap(
    config: dict[str, Any],
    state: dict[str, Any] | None = None,
    catalog: dict[str, Any] | None = None,
) -> TapOutput:
    """Run a sync in this process and return its parsed output (exceptions propagate)."""
    buffer = io.BytesIO()
    stdout = io.TextIOWrapper(buffer, encoding="utf-8")
    saved = sys.stdout
    sys.stdout = stdout
    try:
        tap = TapLofty(config=config, state=state, catalog=catalog, validate_config=True)
        tap.sync_all()
    finally:
        stdout.flush()
        sys.stdout = saved
    return TapOutput.parse(buffer.getvalue().decode("utf-8"))


def run_cli(
    args: list[str], config: dict[str, Any] | None, tmp_path: Path, *, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the ``tap-lofty`` console script as a user would."""
    command = [str(Path(sys.executable).parent / "tap-lofty"), *args]
    if config is not None:
        config_path = tmp_path / "config.json"
        config_path.write_text(json.dumps(config))
        command += ["--config", str(config_path)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAP_LOFTY_")}
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, cwd=tmp_path, env=env, check=False
    )
