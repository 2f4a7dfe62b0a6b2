#!/usr/bin/env bash
# The main job, from a fresh clone: set up, start a local network of 4 validators,
# settle payments through the HTTP API (merchant settlement, a cross-border FX payment,
# escrow, netting), and audit every node's chain.
# The network keeps running afterwards: `.venv/bin/ledger net status` / `.venv/bin/ledger net down`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
dir=${DEVNET_DIR:-.devnet}
echo "== starting 4 validators in $dir"
.venv/bin/ledger net up --dir "$dir"
echo "== a first burst of payments"
.venv/bin/python scripts/demo_payments.py --dir "$dir"
echo "== cross-border settlement"
.venv/bin/python scripts/demo_crossborder.py --dir "$dir"
echo "== auditing every node's data dir (hash links, certificates, signatures, roots, replay, state rows, supply, forks)"
data_dirs=()
for home in "$dir"/validator-*; do
  data_dirs+=(--data-dir "$home/data")
done
.venv/bin/ledger audit --genesis "$dir/genesis.json" "${data_dirs[@]}"
echo "== one transaction's proof, as a participant checks it (no chain download)"
.venv/bin/ledger audit --dir "$dir" --tx "$(cat "$dir/demo_fx_tx")"
echo "== the network is still running: .venv/bin/ledger net status --dir $dir ; .venv/bin/ledger net down --dir $dir"
