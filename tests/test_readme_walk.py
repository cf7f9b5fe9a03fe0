"""The README's PostgreSQL section, command by command as written, in a fresh clone."""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from lofty_sim import LoftySimulator, SimConfig
from tests.e2e_support import PgServer, postgres_server

ROOT = Path(__file__).resolve().parent.parent


def walk_commands() -> str:
    """The shell blocks between the README's walk markers, in order."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("<!-- walk:start -->", 1)[1].split("<!-- walk:end -->", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) >= 5, "the README's PostgreSQL walk lost its commands"
    return "\n".join(re.sub(r"^ {3}", "", line) for b in blocks for line in b.splitlines())


@pytest.fixture(scope="module")
def pg() -> Iterator[PgServer]:
    with postgres_server() as server:
        if server.port != 5432 and os.environ.get("CI") != "true":
            pytest.skip("the README's commands use PostgreSQL on 127.0.0.1:5432")
        yield server


@pytest.mark.e2e
def test_readme_postgres_section_runs_as_written(tmp_path, pg):
    clone = tmp_path / "tap-lofty"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    database = f"readme_{uuid.uuid4().hex[:8]}"
    script = tmp_path / "walk.sh"
    # The harness adds only: stop on the first failing command, and stop the simulator
    # that the README starts in the background.
    script.write_text(
        "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n" + walk_commands()
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TAP_LOFTY_", "TARGET_POSTGRES_", "MELTANO_", "VIRTUAL_ENV"))
    }
    env["TARGET_POSTGRES_DATABASE"] = database
    try:
        done = subprocess.run(
            ["bash", str(script)],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=1200,
            check=False,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
        want = LoftySimulator(SimConfig(leads=200)).total_calls()
        counts = re.findall(r"^\s*(\d+)\s*$", done.stdout, flags=re.MULTILINE)
        assert counts and int(counts[0]) == want, done.stdout[-2000:]
        assert "Talked" in done.stdout  # the outcome query printed its groups
        assert '"replication_key_value"' in done.stdout  # meltano state get: the bookmark
    finally:
        pg.drop_database(database)
