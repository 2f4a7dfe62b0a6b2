"""Key files: one JSON file per identity, readable only by its owner.

    {"name": "bank-cn", "public_key": "<hex>", "seed": "<hex>"}

The file is written with mode 0600 and fsynced; a key that cannot be read
back is an error that names the file, never a stack trace.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ledger.errors import SignatureError
from ledger.keys import PrivateKey
from ledger.names import check_member_name


def save_key(path: Path, name: str, key: PrivateKey) -> None:
    check_member_name(name)
    data = json.dumps({"name": name, "public_key": key.public_key.hex(), "seed": key.seed.hex()}, indent=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(data + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def load_key(path: Path) -> tuple[str, PrivateKey]:
    try:
        data = json.loads(Path(path).read_text())
        name = check_member_name(data["name"])
        key = PrivateKey(bytes.fromhex(data["seed"]))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SignatureError("invalid_public_key", f"cannot read key file {path}: {error}") from error
    if key.public_key.hex() != data.get("public_key"):
        raise SignatureError("invalid_public_key", f"key file {path}: public key does not match the seed")
    return name, key


__all__ = ["load_key", "save_key"]
