"""Contract code can reach no clock, randomness, environment, I/O or floats: checked on its source.

Every node must compute the same state from the same blocks. The runtime
gives a call only the state and the block context; this test makes sure no
contract module reaches around it. It walks the syntax tree of every file
in contracts/ (so a new contract is covered without being listed).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CONTRACTS = Path(__file__).resolve().parent.parent / "contracts"
ALLOWED_IMPORTS = {"__future__", "collections", "collections.abc", "dataclasses", "typing", "contracts", "ledger"}
"""Standard modules that are pure (no clock, randomness, environment or I/O), and our own packages."""
FORBIDDEN_LEDGER_MODULES = {"ledger.store", "ledger.files", "ledger.keyfile"}
"""Parts of our own packages that do I/O."""
FORBIDDEN_NAMES = {"open", "input", "print", "eval", "exec", "compile", "__import__", "globals", "hash", "id",
                   "float", "complex", "breakpoint", "setattr", "delattr", "vars"}
"""Builtins that do I/O, depend on the process (hash randomisation, addresses), or make floats."""


NOT_CONTRACT_CODE = {"block_builder.py"}
"""Assembles blocks: reads the store to compute the header's roots around the runtime; runs no rules."""


def _sources() -> list[Path]:
    return sorted(path for path in CONTRACTS.glob("*.py") if path.name not in NOT_CONTRACT_CODE)


def _top(module: str) -> str:
    return module if module in ALLOWED_IMPORTS else module.split(".")[0]


def _violations(path: Path) -> list[str]:
    found = []
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        where = f"{path.name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
        else:
            modules = []
        for module in modules:
            if module in FORBIDDEN_LEDGER_MODULES or (module not in ALLOWED_IMPORTS and _top(module) not in ALLOWED_IMPORTS):
                found.append(f"{where}: imports {module}")
        if isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
            found.append(f"{where}: uses {node.id}")
        if isinstance(node, ast.Constant) and isinstance(node.value, float | complex):
            found.append(f"{where}: float literal {node.value!r}")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            found.append(f"{where}: true division '/' makes a float (use // with a stated rounding rule)")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow) and isinstance(node.right, ast.UnaryOp):
            found.append(f"{where}: a negative power makes a float")
    return found


@pytest.mark.parametrize("path", _sources(), ids=lambda path: path.name)
def test_contract_source_is_deterministic_and_float_free(path: Path) -> None:
    assert not _violations(path)


def test_the_guard_catches_what_it_forbids(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import time\nfrom os import environ\nimport random\nfrom ledger.store import Store\n"
                   "x = 0.5\ny = 3 / 2\nopen('f')\nz = hash('a')\n")
    found = "\n".join(_violations(bad))
    for expected in ("imports time", "imports os", "imports random", "imports ledger.store", "float literal",
                     "true division", "uses open", "uses hash"):
        assert expected in found, expected


def test_contracts_dont_import_the_node() -> None:
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("node"), f"{path.name} imports {node.module}"
