"""Regenerate what is generated from the code: catalog.json and the README settings table.

    .venv/bin/python scripts/update_docs.py          # rewrite both
    .venv/bin/python scripts/update_docs.py --check  # exit 1 if either has drifted

Tests run the same comparison, so a change to the streams or settings that forgets this
fails the suite.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TAP = str(Path(sys.executable).parent / "tap-lofty")
START, END = "<!-- settings:start -->", "<!-- settings:end -->"


def discover() -> str:
    """Return what ``tap-lofty --discover`` prints."""
    return subprocess.run(
        [TAP, "--discover"], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout


def settings_table() -> str:
    """Return the settings table of ``tap-lofty --about --format=markdown``."""
    about = subprocess.run(
        [TAP, "--about", "--format=markdown"], capture_output=True, text=True, check=True
    ).stdout
    return "\n".join(line for line in about.splitlines() if line.startswith("|"))


def readme_with(table: str) -> str:
    """Return README.md with the table between the settings markers replaced."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table}\n{END}{tail}"


def main() -> int:
    """Rewrite (or with --check, compare) catalog.json and the README table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report drift")
    args = parser.parse_args()
    catalog, readme = discover(), readme_with(settings_table())
    drifted = [
        name
        for name, fresh in (("catalog.json", catalog), ("README.md", readme))
        if (ROOT / name).read_text(encoding="utf-8") != fresh
    ]
    if args.check:
        for name in drifted:
            print(f"{name} is out of date: run scripts/update_docs.py", file=sys.stderr)
        return 1 if drifted else 0
    (ROOT / "catalog.json").write_text(catalog, encoding="utf-8")
    (ROOT / "README.md").write_text(readme, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
