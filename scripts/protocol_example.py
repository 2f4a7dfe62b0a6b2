"""Print the worked example of docs/PROTOCOL.md: one transaction's bytes, id and signature input.

The key is derived from a fixed seed so the output is the same everywhere;
tests/test_protocol_doc.py checks that docs/PROTOCOL.md quotes exactly this.
"""

from __future__ import annotations

import json

from ledger.keys import DOMAIN_TRANSACTION, PrivateKey, signing_input
from ledger.transaction import Transaction

EXAMPLE_SEED = bytes(range(32))
EXAMPLE_CHAIN_ID = "demo-settlement"


def build_example() -> dict[str, str]:
    key = PrivateKey(EXAMPLE_SEED)
    tx = Transaction(
        sender="alipay-agg",
        nonce=7,
        contract="accounts",
        method="transfer",
        args={"amount_minor": 1234, "currency": "CNY", "to": "merchant-001"},
        expiry_height=0,
    )
    body = tx.encode()
    message = signing_input(DOMAIN_TRANSACTION, EXAMPLE_CHAIN_ID, body)
    signed = tx.sign(key, EXAMPLE_CHAIN_ID)
    return {
        "seed": EXAMPLE_SEED.hex(),
        "public_key": key.public_key.hex(),
        "body": body.hex(),
        "signing_input": message.hex(),
        "signature": signed.signature.hex(),
        "signed_transaction": signed.encode().hex(),
        "tx_id": signed.tx_id.hex(),
    }


if __name__ == "__main__":
    print(json.dumps(build_example(), indent=2))
