"""Every receipt error code a contract can produce is documented in docs/PROTOCOL.md."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _contract_codes() -> set[str]:
    codes: set[str] = set()
    for path in (ROOT / "contracts").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "ContractError"
                    and node.args and isinstance(node.args[0], ast.Constant)):
                codes.add(node.args[0].value)
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Receipt" and len(node.args) >= 2 \
                    and isinstance(node.args[1], ast.Constant) and node.args[1].value:
                codes.add(node.args[1].value)
    return codes


def test_contract_codes_are_documented_and_snake_case() -> None:
    codes = _contract_codes()
    assert {"amount_exceeds_balance", "unknown_method", "invalid_evidence"} <= codes
    docs = (ROOT / "docs" / "PROTOCOL.md").read_text() + (ROOT / "docs" / "CONTRACTS.md").read_text()
    undocumented = sorted(code for code in codes if f"`{code}`" not in docs)
    assert not undocumented, f"document these receipt codes in docs/CONTRACTS.md: {undocumented}"
    assert all(code.replace("_", "").isalpha() and code == code.lower() for code in codes)
