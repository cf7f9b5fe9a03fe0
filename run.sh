#!/usr/bin/env bash
# One entry point for people and CI. Sets up everything it needs on first use:
#   ./run.sh setup   .venv/ (the tap), .venv-meltano/ (Meltano) and .meltano/ (the plugins)
#   ./run.sh demo    simulator -> tap-lofty -> Meltano -> embedded database, then a summary
#   ./run.sh test    the whole test suite (unit, tap, simulator, Meltano + PostgreSQL end to end,
#                    PyAirbyte through source-lofty)
#   ./run.sh bench   the benchmark table (benchmarks/run.py)
#   ./run.sh lint    ruff and mypy
set -euo pipefail
cd "$(dirname "$0")"

python_bin() {
  for candidate in "${PYTHON:-}" python3.11 python3; do
    if [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1; then
      echo "$candidate"
      return
    fi
  done
  echo "run.sh: Python 3.11 is needed (set PYTHON=/path/to/python3.11)" >&2
  exit 1
}

setup() {
  if [ ! -x .venv/bin/python ]; then
    "$(python_bin)" -m venv .venv
  fi
  # Reinstall only when the project's dependencies change.
  local stamp=.venv/.tap-lofty-installed
  local want
  want=$(sha256sum pyproject.toml | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e '.[test,dev]'
    echo "$want" > "$stamp"
  fi
}

command=${1:-}
shift || true
case "$command" in
  setup)
    setup
    bash scripts/setup_meltano.sh
    ;;
  demo)
    setup
    bash scripts/setup_meltano.sh
    exec .venv/bin/python scripts/demo.py "$@"
    ;;
  test)
    setup
    bash scripts/setup_meltano.sh
    bash scripts/setup_thirdparty.sh
    bash scripts/setup_pyairbyte.sh
    exec .venv/bin/python -m pytest "$@"
    ;;
  bench)
    setup
    exec .venv/bin/python benchmarks/run.py "$@"
    ;;
  lint)
    setup
    .venv/bin/ruff check tap_lofty lofty_sim tests benchmarks scripts
    .venv/bin/ruff format --check tap_lofty lofty_sim tests benchmarks scripts
    exec .venv/bin/mypy tap_lofty lofty_sim
    ;;
  *)
    echo "usage: ./run.sh setup|demo|test|bench|lint [args]" >&2
    exit 2
    ;;
esac
