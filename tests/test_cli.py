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
    assert report["ok"] and report["sources"][0]["head_height"] == 5


def test_audit_of_a_missing_store_cannot_run(tmp_path: Path) -> None:
    result = ledger("audit", "--data-dir", str(tmp_path / "nothing"))
    assert result.returncode == 2
    assert "could not run: no store at" in result.stdout and "FAILED" not in result.stdout
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


def test_api_errors_are_problem_json_with_codes(tmp_path: Path) -> None:
    import asyncio

    import httpx

    from node.api import create_app

    class _Store:
        head_height = 0

        def get_block(self, height: int) -> None:
            from ledger.errors import StoreError
            raise StoreError("not_found", f"no block at height {height}")

    from node.read_auth import Reader

    class _AnyReader:
        def authenticate(self, *_args: object) -> Reader:
            return Reader("auditor", ("auditor",))

    class _Node:
        store = _Store()
        read_auth = _AnyReader()

        def get_block_json(self, height: int) -> dict:
            return self.store.get_block(height)  # type: ignore[return-value]

        async def get_transaction_status(self, tx_id: bytes, wait_ms: int) -> dict:
            raise AssertionError("a malformed id never reaches the node")

        async def submit_transactions(self, items: list[bytes]) -> list:
            raise AssertionError("a malformed body never reaches the node")

    async def exercise() -> None:
        transport = httpx.ASGITransport(app=create_app(_Node()))  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            for path, status, code in [("/v1/blocks/abc", 400, "invalid_argument"),
                                       ("/v1/blocks?from=1&limit=0", 400, "invalid_argument"),
                                       ("/v1/blocks/7", 404, "not_found"),
                                       ("/v1/transactions/nothex", 400, "invalid_argument")]:
                response = await client.get(path)
                assert response.status_code == status, (path, response.text)
                assert response.headers["content-type"].startswith("application/problem+json")
                assert response.json()["code"] == code
            response = await client.post("/v1/transactions", content=b"{}",
                                         headers={"content-type": "application/json"})
            assert response.status_code == 400 and response.json()["code"] == "malformed_encoding"

    asyncio.run(exercise())
