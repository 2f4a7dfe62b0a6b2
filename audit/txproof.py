"""``ledger audit --tx ID``: a participant's check of one transaction, without downloading the chain.

The node (or data dir) gives the transaction's leaf index, an RFC 9162
inclusion path, and the header of the block that first contains it with that
block's commit certificate. The check: the certificate holds precommits of
more than 2/3 of the voting power of the validator set the trusted genesis
names, each valid; the header is the one they signed; the path leads from
the transaction's leaf to the header's log root. Nothing the node says is
trusted. A header certified by a later validator set (after a governance
change) cannot be checked from the genesis alone: a full audit follows the
sets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ledger.block import CommitCertificate, decode_header
from ledger.errors import LedgerError
from ledger.genesis import Genesis
from ledger.keys import PrivateKey
from ledger.proofs import CertifiedHeader, TxInclusion
from ledger.store import Store
from node.client import ApiError, Client


def check_transaction(tx_hex: str, genesis: Genesis, *, store_dir: Path | None = None, url: str | None = None,
                      member: str | None = None, key: PrivateKey | None = None) -> dict[str, Any]:
    """The outcome as a JSON-ready dict: ``ok``, and either the proof's facts or ``code``/``detail``."""
    outcome: dict[str, Any] = {"tx_id": tx_hex, "ok": False}
    try:
        tx_id = bytes.fromhex(tx_hex)
        if len(tx_id) != 32:
            raise ValueError
    except ValueError:
        return outcome | {"could_run": False, "code": "invalid_argument", "detail": "a transaction id is 64 hex digits"}
    try:
        inclusion = _from_store(tx_id, store_dir) if store_dir is not None else _from_node(tx_id, url, member, key)
        if inclusion.tx_id != tx_id:
            return outcome | {"code": "invalid_inclusion_proof",
                              "detail": f"the proof served is for another transaction ({inclusion.tx_id.hex()})"}
        header = inclusion.verify(genesis.chain_id, genesis.validator_set)
    except ApiError as error:
        if error.status == 404:
            return outcome | {"code": "not_found", "detail": f"the node does not know transaction {tx_hex}"}
        return outcome | {"could_run": False, "code": "cannot_run", "detail": f"{url}: {error.detail}"}
    except LedgerError as error:
        if error.code == "store_not_found":
            return outcome | {"could_run": False, "code": "cannot_run", "detail": error.detail}
        return outcome | {"code": error.code, "detail": error.detail}
    certificate = CommitCertificate.decode(inclusion.anchor.certificate_bytes)
    signers = [item.validator for item in certificate.signatures]
    power = sum(genesis.validator_set.get(name).voting_power for name in signers)  # type: ignore[union-attr]
    return outcome | {"ok": True, "height": header.height, "log_index": inclusion.log_index,
                      "log_size": header.log_size, "log_root": header.log_root.hex(),
                      "path_hashes": len(inclusion.path), "signers": signers, "power": power,
                      "total_power": genesis.validator_set.total_power}


def _from_node(tx_id: bytes, url: str | None, member: str | None, key: PrivateKey | None) -> TxInclusion:
    assert url is not None
    with Client(url, member=member, key=key) as client:
        try:
            return client.get_tx_proof(tx_id)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise LedgerError("invalid_inclusion_proof", f"{url} answered a malformed proof") from error


def _from_store(tx_id: bytes, directory: Path) -> TxInclusion:
    store = Store.open(directory)
    try:
        location = store.get_tx_location(tx_id)
        if location is None:
            raise LedgerError("not_found", f"{directory} holds no transaction {tx_id.hex()}")
        row = store.get_raw_block_row(location.height)
        if row is None:
            raise LedgerError("not_found", f"{directory} indexes the transaction at height {location.height}, "
                              "which it does not hold")
        _hash, header_bytes, _transactions, certificate_bytes = row
        log_size = decode_header(header_bytes).log_size
        path = store.log.inclusion_proof(location.log_index, log_size) if location.log_index < log_size else []
        return TxInclusion(tx_id, location.log_index, tuple(path), CertifiedHeader(header_bytes, certificate_bytes))
    finally:
        store.close()


__all__ = ["check_transaction"]
