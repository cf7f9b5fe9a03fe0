"""Smoke run of the benchmark script, so that it cannot rot.

Runs ``benchmarks/run.py --quick`` (tiny sizes, about 20 s) and checks the shape of its table:
one row per scenario, each with figures, and scenario 5's table of every run. No timing is
asserted: the targets are for full runs. Also checks that a single-scenario run merges its row
into an existing results.md (on a copy, with the merge function alone).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = {
    1: "Rate-bound",
    2: "CPU-bound",
    3: "Scale",
    4: "Incremental",
    5: "Incremental with change detection",
}
NUMBER = re.compile(r"\d[\d,]*(\.\d+)?")


def table_rows(text: str) -> dict[int, list[str]]:
    rows: dict[int, list[str]] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0].isdigit():
            rows[int(cells[0])] = cells
    return rows


def test_benchmark_quick_prints_every_scenario(tmp_path: Path) -> None:
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
    assert sorted(rows) == sorted(SCENARIOS), out
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
    assert "`change_detection=full`" in rows[4][2]
    # 5: auto next to full, leads selected and calls only, and the targets each met or not.
    auto, full = rows[5][3], rows[5][4]
    for cell in (auto, full):
        assert re.search(r"leads \(all streams\): [\d,]+ requests", cell)
        assert re.search(r"calls only: [\d,]+ requests", cell), cell
    assert re.search(r"calls only: [\d,]+ requests \(1 feed \+ [\d,]+ calls\)", auto), auto
    assert re.search(r"First run \(full scan\).*[\d,]+ / [\d,]+ requests", full), full
    assert re.search(r"[\d,]+ calls lost in all runs", auto)
    assert re.search(
        r"targets: leads selected [\d,]+ ≤ [\d,]+ .*: (yes|\*\*no\*\*); calls only [\d,]+ ≤ "
        r"[\d,]+ .*: (yes|\*\*no\*\*); calls lost .*: \d+: (yes|\*\*no\*\*)",
        out,
    )
    assert re.search(
        r"calls \+ texts \+ emails selected made \d+ request\(s\), with calls only \d+", out
    )
    detail = out.split("#### 5. ", 1)[1].splitlines()
    runs = [line for line in detail if line.startswith("| first") or line.startswith("| second")]
    assert len(runs) == 8, detail  # first and second run x full/auto x leads/calls only
    assert sum(line.startswith("| idle") for line in detail) == 2, detail
    assert sum(line.startswith("| third") for line in detail) == 2, detail
    assert re.search(r"a third `auto` run .*[\d,]+ calls emitted again", out)
    # --quick never overwrites the full run's results.
    assert (results.read_bytes() if results.exists() else None) == before


def test_single_scenario_run_merges_its_row_into_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import run as bench
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    results = tmp_path / "results.md"
    results.write_text(
        "# tap-lofty benchmark results\n\nMachine: old box.\nBenchmark: full run, 300 s in all.\n\n"
        + "\n".join(bench.TABLE_HEAD)
        + "\n| 1 | Rate-bound | a | b | c | d | yes |\n| 5 | Old five | a | b | c | d | no |\n\n"
        "- 1: note one\n- 5: old note five\n\n#### 5. Old five: every run\n\n| old |\n"
    )
    monkeypatch.setattr(bench, "RESULTS", results)
    monkeypatch.setattr(bench, "machine_line", lambda: "new box")
    row = bench.Row(5, "New five", "s", "t 1", "c 2", "g", "yes", ["5: new note"], ["| new |"])
    bench.write_results([row], [5], 12.0)
    text = results.read_text()
    assert "| 1 | Rate-bound | a | b | c | d | yes |" in text
    assert "- 1: note one" in text
    assert "| 5 | New five | s | t 1 | c 2 | g | yes |" in text
    assert "Old five" not in text and "old note five" not in text and "| old |" not in text
    assert "- 5: new note" in text and "#### 5. New five: every run" in text and "| new |" in text
    kept = "Row 1 is kept from an earlier results.md (full run, 300 s in all; Machine: old box)."
    assert "scenario 5 alone" in text and kept in text, text
    # Merging again keeps everything else as it was, and row 1 still names the run that made it.
    bench.write_results([row], [5], 13.0)
    again = results.read_text()
    assert again.count("| 5 | New five") == 1 and "- 1: note one" in again
    assert kept in again and again.count("kept from") == 1, again
    assert "13 s in all" in again
