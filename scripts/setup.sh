#!/usr/bin/env bash
# Creates .venv (Python >= 3.11) and installs the project with its test tools.
# Idempotent and quick when nothing changed: it reinstalls only when pyproject.toml changes.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "error: Python 3.11 or newer is needed (found: $("$python" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 2
fi
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv" >&2
  "$python" -m venv .venv
fi
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "setup: installing dependencies into .venv (first run takes a minute)" >&2
  if ! { .venv/bin/python -m pip install --upgrade pip && .venv/bin/python -m pip install -e '.[test]'; } \
       > .venv/install.log 2>&1 \
     || ! .venv/bin/python -c 'import nacl, msgpack, hypothesis, pytest, fastapi, uvicorn, httpx, ledger' 2>>.venv/install.log; then
    tail -n 30 .venv/install.log >&2
    echo "error: installing the dependencies failed (full log: .venv/install.log)" >&2
    exit 2
  fi
  rm -f .venv/.installed-*
  touch "$stamp"
fi
