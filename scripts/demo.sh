#!/usr/bin/env bash
# The main job, from a fresh clone: set up, build a demo chain of certified blocks, verify it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/ledger demo --fresh "$@"
