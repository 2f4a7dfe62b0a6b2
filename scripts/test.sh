#!/usr/bin/env bash
# Sets up and runs the test suite (everything except multi-hour soak runs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -m "not soak" -q "$@"
