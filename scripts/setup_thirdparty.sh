#!/usr/bin/env bash
# Install the third-party Singer programs that tests/test_thirdparty.py pipes tap-lofty into,
# each in its own virtual environment because each pins old dependencies:
#
#   .venv-pipelinewise/    pipelinewise-target-postgres 2.1.2 (transferwise's target-postgres)
#   .venv-singer-tools/    singer-tools 0.4.1 (singer-check-tap, the Singer spec checker)
#
# Idempotent and fast when nothing changed: each venv holds a stamp with a hash of this script
# (so of the pins below) and of the interpreter's version; when it matches and the executable
# runs, nothing is reinstalled. Needs only Python 3.11 and the package index.
#
# Why the pins (found by installing into fresh Python 3.11 venvs, 2026-12):
#   * pipelinewise-target-postgres 2.1.2 (the newest) pins psycopg2-binary==2.9.5, whose newest
#     wheels are for CPython 3.11: on 3.12+ pip would build it from source (needs pg_config and
#     a compiler) -> this script insists on Python 3.8-3.11 for that venv (exit 3 if none).
#   * its pipelinewise-singer-python 1.x pins jsonschema==3.2.0, which declares a dependency on
#     setuptools (never imported at run time here); setuptools is capped below 81 so that a
#     future release dropping pkg_resources cannot break it.
#   * python-dateutil is left open (>=2.6) by pipelinewise-singer-python and pip picks 4.x;
#     it is held to the 2.x line the target was written and tested against.
#   * singer-tools 0.4.1 (the newest, sdist only) pins attrs==16.3.0 and jsonschema==2.6.0 and
#     leaves singer-python open (>=0.2.1); singer-python is held to 6.x, the newest line whose
#     own pins (jsonschema 2.*, python-dateutil 2.*, backoff 2.*) agree with singer-tools'.
#     strict-rfc3339 (pinned by singer-tools) makes jsonschema check format: date-time.
#
# Usage: scripts/setup_thirdparty.sh [--force]
# Env:   PYTHON (interpreter for both venvs; default: the first of python3.11, python3.10,
#        python3 that is 3.8-3.11).
# Exit:  0 installed or up to date; 3 no suitable Python; other: an install failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SCRIPT="$ROOT/scripts/setup_thirdparty.sh"

FORCE=0
if [[ "${1:-}" == "--force" ]]; then FORCE=1; fi

log() { printf '[setup_thirdparty] %s\n' "$*" >&2; }

pick_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3.11 python3.10 python3; do
    if [[ -n "$candidate" ]] && command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(0 if (3, 8) <= sys.version_info[:2] <= (3, 11) else 1)' \
        2>/dev/null
    then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

PW_DIR="$ROOT/.venv-pipelinewise"
PW_REQ="pipelinewise-target-postgres==2.1.2"
PW_CONSTRAINTS="pipelinewise-singer-python>=1.3,<2
psycopg2-binary==2.9.5
jsonschema==3.2.0
python-dateutil>=2.8.2,<3
setuptools>=65,<81
attrs>=17.4
pytz<2021
simplejson==3.17.2
backoff==1.10.0
inflection==0.3.1
joblib==1.2.0"

ST_DIR="$ROOT/.venv-singer-tools"
ST_REQ="singer-tools==0.4.1"
ST_CONSTRAINTS="singer-python>=6.0,<7
attrs==16.3.0
jsonschema==2.6.0
strict-rfc3339==0.7
terminaltables==3.1.0
python-dateutil>=2.7.3,<3
backoff>=2.2.1,<3
simplejson>=3.13.2,<4
ciso8601>=2.3.1,<3
setuptools>=65,<81"

# One installer at a time (parallel test sessions; run.sh and the test fixture).
mkdir -p "$ROOT/.venv-locks"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$ROOT/.venv-locks/setup_thirdparty.lock"
  flock 9
fi

SCRIPT_HASH="$({ sha256sum "$SCRIPT" 2>/dev/null || shasum -a 256 "$SCRIPT"; } | cut -d' ' -f1)"

up_to_date() { # venv, executable
  local venv=$1 exe=$2 want
  [[ -x "$venv/bin/python" && -x "$venv/bin/$exe" && -f "$venv/.setup_thirdparty.stamp" ]] ||
    return 1
  want="$SCRIPT_HASH $("$venv/bin/python" -c 'import sys; print(sys.version.split()[0])')"
  [[ "$(cat "$venv/.setup_thirdparty.stamp")" == "$want" ]] || return 1
  "$venv/bin/$exe" --help >/dev/null 2>&1
}

PYTHON_BIN=""
install_one() { # label, venv, executable, requirement, constraints
  local label=$1 venv=$2 exe=$3 req=$4 constraints=$5
  if [[ $FORCE -eq 0 ]] && up_to_date "$venv" "$exe"; then
    log "$label: up to date ($req)"
    return 0
  fi
  if [[ -z "$PYTHON_BIN" ]] && ! PYTHON_BIN="$(pick_python)"; then
    log "error: $label needs Python 3.8-3.11 (psycopg2-binary 2.9.5 has no wheel for newer);" \
      "none found (set PYTHON=/path/to/python3.11)"
    exit 3
  fi
  log "$label: installing $req into ${venv#"$ROOT"/}/ with $PYTHON_BIN"
  rm -rf "$venv"
  "$PYTHON_BIN" -m venv "$venv"
  local cfile="$venv/constraints.txt"
  printf '%s\n' "$constraints" >"$cfile"
  # PIP_CONSTRAINT (not -c) so the constraints also hold in pip's isolated build environments
  # (singer-tools is an sdist). Keep the machine's own constraint file if it has one.
  local all="$cfile"
  local machine
  while IFS= read -r machine; do
    if [[ -f "$machine" ]]; then all="$all $machine"; fi
  done < <("$venv/bin/python" -m pip config list 2>/dev/null |
    sed -n "s/^[^=]*constraint='\(.*\)'\$/\1/p" | tr ' ' '\n')
  PIP_CONSTRAINT="$all" "$venv/bin/python" -m pip install --quiet "$req"
  if ! "$venv/bin/$exe" --help >/dev/null 2>&1; then
    log "error: $label installed but \`$exe --help\` fails:"
    "$venv/bin/$exe" --help >&2 || true
    exit 1
  fi
  "$venv/bin/python" -m pip freeze >"$venv/installed.txt"
  printf '%s %s\n' "$SCRIPT_HASH" \
    "$("$venv/bin/python" -c 'import sys; print(sys.version.split()[0])')" \
    >"$venv/.setup_thirdparty.stamp"
  log "$label: done ($(grep -ci . "$venv/installed.txt") packages; see ${venv#"$ROOT"/}/installed.txt)"
}

install_one pipelinewise "$PW_DIR" target-postgres "$PW_REQ" "$PW_CONSTRAINTS"
install_one singer-tools "$ST_DIR" singer-check-tap "$ST_REQ" "$ST_CONSTRAINTS"
