#!/usr/bin/env bash
# Install PyAirbyte (`airbyte` on PyPI) into .venv-pyairbyte/ for tests/test_airbyte.py, which
# reads the simulator through `source-lofty` with it (get_source(local_executable=...)) into
# PyAirbyte's default DuckDB cache. Its own venv: PyAirbyte pins pydantic, sqlalchemy, duckdb
# and the Airbyte CDK, none of which tap-lofty should carry.
#
# Idempotent and fast when nothing changed: the venv holds a stamp with a hash of this script
# (so of the pin below) and the interpreter's version. Needs only Python 3.11 and the index.
# PyAirbyte 0.71 installed and ran here on CPython 3.11.7 (2026-12).
#
# Usage: scripts/setup_pyairbyte.sh [--force]
# Env:   PYTHON (interpreter; default python3.11, then python3 if it is 3.10-3.12).
# Exit:  0 installed or up to date; 3 no suitable Python; other: the install failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SCRIPT="$ROOT/scripts/setup_pyairbyte.sh"
VENV="$ROOT/.venv-pyairbyte"
REQ="airbyte>=0.71,<0.72"

FORCE=0
if [[ "${1:-}" == "--force" ]]; then FORCE=1; fi

log() { printf '[setup_pyairbyte] %s\n' "$*" >&2; }

pick_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3.11 python3; do
    if [[ -n "$candidate" ]] && command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 12) else 1)' \
        2>/dev/null
    then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

# One installer at a time (parallel test sessions).
mkdir -p "$ROOT/.venv-locks"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$ROOT/.venv-locks/setup_pyairbyte.lock"
  flock 9
fi

HASH="$({ sha256sum "$SCRIPT" 2>/dev/null || shasum -a 256 "$SCRIPT"; } | cut -d' ' -f1)"
# Importing airbyte must never phone home, not even while checking the install.
export DO_NOT_TRACK=1 AIRBYTE_OFFLINE_MODE=1 AIRBYTE_LOCAL_REGISTRY=0

stamp_value() { echo "$HASH $("$VENV/bin/python" -c 'import sys; print(sys.version.split()[0])')"; }

if [[ $FORCE -eq 0 && -x "$VENV/bin/python" && -f "$VENV/.setup_pyairbyte.stamp" ]] &&
  [[ "$(cat "$VENV/.setup_pyairbyte.stamp")" == "$(stamp_value)" ]] &&
  "$VENV/bin/python" -c 'import airbyte' >/dev/null 2>&1
then
  log "up to date ($REQ)"
  exit 0
fi

if ! PYTHON_BIN="$(pick_python)"; then
  log "error: PyAirbyte needs Python 3.10-3.12; none found (set PYTHON=/path/to/python3.11)"
  exit 3
fi
log "installing $REQ into .venv-pyairbyte/ with $PYTHON_BIN"
rm -rf "$VENV"
"$PYTHON_BIN" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet "$REQ"
if ! "$VENV/bin/python" -c 'import airbyte' >/dev/null 2>&1; then
  log "error: PyAirbyte installed but does not import:"
  "$VENV/bin/python" -c 'import airbyte' >&2 || true
  exit 1
fi
"$VENV/bin/python" -m pip freeze >"$VENV/installed.txt"
stamp_value >"$VENV/.setup_pyairbyte.stamp"
log "done ($(grep -ci . "$VENV/installed.txt") packages; see .venv-pyairbyte/installed.txt)"
