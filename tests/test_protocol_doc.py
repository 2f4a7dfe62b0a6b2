"""docs/PROTOCOL.md's worked example must be exactly what the code produces."""

from __future__ import annotations

import hashlib
import importlib.util
import re
from pathlib import Path

from ledger.keys import verify_raw
from ledger.transaction import SignedTransaction

ROOT = Path(__file__).resolve().parent.parent


def _load_example() -> dict[str, str]:
    spec = importlib.util.spec_from_file_location("protocol_example", ROOT / "scripts" / "protocol_example.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_example()  # type: ignore[no-any-return]


def _quoted_in_doc() -> dict[str, str]:
    text = (ROOT / "docs" / "PROTOCOL.md").read_text()
    return dict(re.findall(r"^([a-z_]+)\s+([0-9a-f]{64,})$", text, flags=re.MULTILINE))


def test_doc_quotes_exactly_what_the_code_produces() -> None:
    example = _load_example()
    quoted = _quoted_in_doc()
    assert set(quoted) == set(example)
    assert quoted == example


def test_example_is_self_consistent_for_an_independent_verifier() -> None:
    example = {name: bytes.fromhex(value) for name, value in _quoted_in_doc().items()}
    signed_bytes = example["signed_transaction"]
    assert hashlib.sha256(signed_bytes).digest() == example["tx_id"]
    assert signed_bytes == b"\x92" + example["body"] + b"\xc4\x40" + example["signature"]
    assert example["signing_input"].endswith(example["body"])
    assert verify_raw(example["public_key"], example["signing_input"], example["signature"])
    decoded = SignedTransaction.decode(signed_bytes)
    assert decoded.body.args == {"amount_minor": 1234, "currency": "CNY", "to": "merchant-001"}
    assert decoded.tx_id == example["tx_id"]


def test_read_request_vector_in_the_doc_is_what_the_code_signs() -> None:
    from ledger.keys import PrivateKey
    from ledger.read_request import read_request_message, sign_read_request

    key = PrivateKey(b"\x07" * 32)
    target = b"/v1/accounts/bank-cn"
    message = read_request_message("GET", target, 1_800_000_000_000, b"\x01" * 16, b"")
    headers = sign_read_request(key, "bank-cn", "test-chain", "GET", target, b"", 1_800_000_000_000, b"\x01" * 16)
    doc = (Path(__file__).resolve().parent.parent / "docs" / "PROTOCOL.md").read_text()
    section = doc[doc.index("## 11. Signed read requests"):]
    assert key.public_key.hex() in section
    assert f"| message | `{message.hex()}` |" in section
    assert f"| x-ledger-signature | `{headers['x-ledger-signature']}` |" in section
