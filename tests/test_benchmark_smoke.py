"""Smoke run of the benchmark script, so that it cannot rot.

Runs ``benchmarks/run.py --quick`` (tiny sizes, about 20 s) and checks the shape of its table:
one row per scenario, each with figures. No timing is asserted: the targets are for full runs.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = {1: "Rate-bound", 2: "CPU-bound", 3: "Scale", 4: "Incremental"}
NUMBER = re.compile(r"\d[\d,]*(\.\d+)?")


def table_rows(text: str) -> dict[int, list[str]]:
    rows: dict[int, list[str]] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0].isdigit():
            rows[int(cells[0])] = cells
    return rows


def test_benchmark_quick_prints_the_four_scenarios(tmp_path: Path) -> None:
    results = ROOT / "benchmarks" / "results.md"
    before = results.read_bytes() if results.exists() else None
    script = ROOT / "benchmarks" / "run.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--quick", "--workdir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert re.search(r"^Machine: \d+ cores, CPU .+, Python 3\.", out, re.MULTILINE), out
    assert "| # | Scenario | Setup | tap-lofty | Compared with | Target | Met |" in out
    rows = table_rows(out)
    assert sorted(rows) == [1, 2, 3, 4], out
    for number, name in SCENARIOS.items():
        cells = rows[number]
        assert len(cells) == 7, cells
        assert cells[1] == name
        # The measured and the compared-with cells both carry figures.
        assert NUMBER.search(cells[3]) and NUMBER.search(cells[4]), cells
        assert cells[6] in ("yes", "**no**") or cells[6].startswith("**no**"), cells
    assert re.search(r"[\d,]+ requests/min = [\d.]+% of budget", rows[1][3])
    assert re.search(r"`max_concurrency=1`: [\d,]+ requests/min", rows[1][4])
    assert re.search(r"[\d,]+ records/s", rows[2][3]) and "records/s" in rows[2][4]
    assert "identical" in out  # the baseline wrote the same records as the tap
    assert re.search(r"ratio .*wall [\d.]+x, STATE total [\d.]+x", rows[3][4])
    assert re.search(r"peak RSS [\d,]+ MiB", rows[3][3])
    assert re.search(r"second run: [\d,]+ requests, [\d,]+ calls emitted, [\d.]+ s", rows[4][3])
    assert re.search(r"first run: [\d,]+ requests", rows[4][4])
    # --quick never overwrites the full run's results.
    assert (results.read_bytes() if results.exists() else None) == before
