"""The ``ledger`` command as a user meets it: demo, audit, keygen, and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def ledger(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "node.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def test_demo_builds_verifies_and_proves(tmp_path: Path) -> None:
    result = ledger("demo", "--dir", str(tmp_path / "demo"), "--blocks", "4", "--txs-per-block", "15")
    assert result.returncode == 0, result.stderr
    assert "built 5 certified blocks, 63 transactions" in result.stdout
    assert "verification: OK: 5 blocks, 63 transactions verified" in result.stdout
    assert "state proof: merchant-001 holds" in result.stdout
    assert "log proof: tx" in result.stdout
    assert "Traceback" not in result.stderr

    again = ledger("demo", "--dir", str(tmp_path / "demo"), "--blocks", "1")
    assert again.returncode == 2 and "already holds a demo chain" in again.stderr

    audit = ledger("audit", "--data-dir", str(tmp_path / "demo" / "data"), "--json")
    assert audit.returncode == 0, audit.stderr
    report = json.loads(audit.stdout)
    assert report["ok"] and report["stores"][0]["head_height"] == 5


def test_audit_of_a_missing_store_cannot_run(tmp_path: Path) -> None:
    result = ledger("audit", "--data-dir", str(tmp_path / "nothing"))
    assert result.returncode == 2
    assert "FAILED" in result.stdout or "store_not_found" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_keygen_writes_a_private_file_and_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "k.json"
    result = ledger("keygen", "--name", "bank-cn", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["public_key"]) == 64
    assert out.stat().st_mode & 0o077 == 0
    again = ledger("keygen", "--name", "bank-cn", "--out", str(out))
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr


def test_bad_arguments_give_usage_not_a_trace(tmp_path: Path) -> None:
    result = ledger("demo", "--blocks", "zero")
    assert result.returncode == 2 and "invalid int value" in result.stderr
    result = ledger("keygen", "--name", "Bad Name!", "--out", str(tmp_path / "x.json"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
