#!/usr/bin/env bash
# Install Meltano into its own virtual environment (.venv-meltano/) and, with `meltano install`,
# the plugins that meltano.yml declares (tap-lofty editable from this repo, target-postgres,
# target-duckdb) into .meltano/.
#
# Idempotent and fast when nothing changed: a stamp records a hash of meltano.yml,
# pyproject.toml, this script and the Meltano version; when it matches and every plugin
# executable is there, nothing is reinstalled. Needs only Python >= 3.10 and the package index.
#
# Usage: scripts/setup_meltano.sh [--force]
# Env:   PYTHON (interpreter for .venv-meltano; default: the first of python3.11 ... python3
#        that is >= 3.10),
#        MELTANO_SPEC (default 'meltano>=4.0,<5').
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

FORCE=0
if [[ "${1:-}" == "--force" ]]; then FORCE=1; fi

pick_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3.11 python3.12 python3.13 python3.10 python3; do
    if [[ -n "$candidate" ]] && command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null
    then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}
MELTANO_SPEC="${MELTANO_SPEC:-meltano>=4.0,<5}"
MVENV="$ROOT/.venv-meltano"
MELTANO="$MVENV/bin/meltano"
STAMP="$ROOT/.meltano/.setup_meltano.stamp"

# No usage tracking, and no Meltano Hub: every plugin is declared in full in meltano.yml.
export MELTANO_SEND_ANONYMOUS_USAGE_STATS=false
export MELTANO_DISABLE_TRACKING=true
export MELTANO_SNOWPLOW_COLLECTOR_ENDPOINTS='[]'
export MELTANO_HUB_URL="${MELTANO_HUB_URL:-http://127.0.0.1:9/no-hub}"

log() { printf '[setup_meltano] %s\n' "$*" >&2; }

# One installer at a time (parallel test sessions, demo + tests).
mkdir -p "$ROOT/.meltano"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$ROOT/.meltano/.setup_meltano.lock"
  flock 9
fi

meltano_ok() {
  [[ -x "$MELTANO" ]] || return 1
  "$MVENV/bin/python" - "$MELTANO_SPEC" <<'EOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
from packaging.requirements import Requirement
req = Requirement(sys.argv[1])
sys.exit(0 if req.specifier.contains(version(req.name), prereleases=True) else 1)
EOF
}

if ! meltano_ok; then
  if ! PYTHON="$(pick_python)"; then
    log "error: Meltano needs Python >= 3.10 and none was found (set PYTHON=/path/to/python3.11)"
    exit 1
  fi
  log "installing $MELTANO_SPEC into .venv-meltano/"
  if [[ ! -x "$MVENV/bin/python" ]]; then
    "$PYTHON" -m venv "$MVENV"
  fi
  "$MVENV/bin/python" -m pip install --quiet --upgrade pip
  "$MVENV/bin/python" -m pip install --quiet "$MELTANO_SPEC"
fi

MELTANO_VERSION="meltano $("$MVENV/bin/python" -c 'from importlib.metadata import version; print(version("meltano"))')"
HASH="$(cat meltano.yml pyproject.toml "$ROOT/scripts/setup_meltano.sh" \
  | { sha256sum 2>/dev/null || shasum -a 256; } | cut -d' ' -f1)"
WANT="$HASH $MELTANO_VERSION"

plugins_ok() {
  [[ -x .meltano/extractors/tap-lofty/venv/bin/tap-lofty ]] &&
  [[ -x .meltano/loaders/target-postgres/venv/bin/target-postgres ]] &&
  [[ -x .meltano/loaders/target-duckdb/venv/bin/target-duckdb ]]
}

if [[ $FORCE -eq 0 && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]] && plugins_ok; then
  log "up to date ($MELTANO_VERSION; plugins installed)"
  exit 0
fi

log "meltano install (tap-lofty editable, target-postgres, target-duckdb)"
rm -f "$STAMP"
"$MELTANO" install
if ! plugins_ok; then
  log "error: meltano install finished but a plugin executable is missing under .meltano/"
  exit 1
fi
printf '%s\n' "$WANT" >"$STAMP"
log "done ($MELTANO_VERSION)"
