#!/usr/bin/env bash
# The test command: lint, format check, type check, then the whole pytest suite against a
# real Kafka broker and a real PostgreSQL.
#
#   ops/test.sh [pytest arguments...]      e.g. ops/test.sh -x tests/integration
#
# Creates .venv when missing and installs -e ".[dev]" into it at the versions pinned in
# ops/constraints.txt (again whenever pyproject.toml or that file changes). Uses
# KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL when set; otherwise starts the broker and the
# database with ops/kafka.sh and ops/postgres.sh (left running: the next run is quick).
# Every step runs; the exit status is non-zero when any of them failed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PYTHON=${PYTHON:-python3}
VENV=$ROOT/.venv

say() { printf '\n== [%4ss] %s\n' "$SECONDS" "$*" >&2; }

ensure_venv() {
  if [[ ! -x $VENV/bin/python ]]; then
    say "creating .venv with $("$PYTHON" --version 2>&1)"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
      {
        echo "ops/test.sh: dripstream needs Python 3.11 or later (PYTHON=$PYTHON)" >&2
        exit 1
      }
    "$PYTHON" -m venv "$VENV"
  fi
  # Reinstall only when the declared dependencies changed since the last install.
  local stamp=$VENV/.dripstream-deps wanted
  wanted=$(cat pyproject.toml ops/constraints.txt | sha256sum | cut -d' ' -f1)
  if [[ ! -f $stamp || $(<"$stamp") != "$wanted" ]]; then
    say "installing -e .[dev] into .venv"
    local log=$VENV/pip-install.log
    if ! { "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip &&
      "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
        -c ops/constraints.txt -e ".[dev]"; } >"$log" 2>&1; then
      tail -n 40 "$log" >&2
      echo "ops/test.sh: pip install failed (full log: $log)" >&2
      exit 1
    fi
    printf '%s\n' "$wanted" >"$stamp"
  fi
}

ensure_services() {
  if [[ -z ${KAFKA_BOOTSTRAP_SERVERS:-} ]]; then
    say "Kafka"
    KAFKA_BOOTSTRAP_SERVERS=$(bash ops/kafka.sh start | tail -n 1)
  fi
  if [[ -z ${DATABASE_URL:-} ]]; then
    say "PostgreSQL"
    DATABASE_URL=$(bash ops/postgres.sh start | tail -n 1)
  fi
  export KAFKA_BOOTSTRAP_SERVERS DATABASE_URL
  printf 'KAFKA_BOOTSTRAP_SERVERS=%s\nDATABASE_URL=%s\n' "$KAFKA_BOOTSTRAP_SERVERS" "$DATABASE_URL" >&2
}

failed=()
step() {
  local name=$1
  shift
  say "$name"
  local started=$SECONDS
  if "$@"; then
    printf -- '-- %s passed (%ss)\n' "$name" "$((SECONDS - started))" >&2
  else
    printf -- '-- %s FAILED (%ss)\n' "$name" "$((SECONDS - started))" >&2
    failed+=("$name")
  fi
}

ensure_venv
ensure_services
export PATH=$VENV/bin:$PATH

step "ruff check" ruff check .
step "ruff format --check" ruff format --check .
step "mypy" mypy
step "pytest" pytest "$@"

if ((${#failed[@]})); then
  say "failed: ${failed[*]}"
  exit 1
fi
say "all passed in ${SECONDS}s"
