"""One error tree for everything a user (or a tampered input) can cause.

    LedgerError                  any failure a user can cause; has a stable ``code``
    ├── EncodingError            bytes that are not the one canonical encoding
    ├── SignatureError           a signature that does not verify
    ├── InvalidTransaction       a transaction that is malformed or not allowed
    ├── InvalidBlock             a block, header or certificate that breaks a rule
    ├── GenesisError             a genesis document that is malformed
    ├── MerkleError              ledger.merkle / ledger.tlog: bad proof or argument (also a ValueError)
    ├── StoreError               the durable store cannot do what was asked
    │   └── StoreCorruption      the store's bytes disagree with their hashes
    └── VerificationFailure      the auditor's engine found a broken chain

A state that should be impossible is our bug, not the user's: that is an
``assert``, never one of these. Each code below is stable (clients and
auditors match on it) and documented here, once; ``LedgerError`` refuses a
code that is not in ``ERROR_CODES`` so no undocumented code can escape.
"""

from __future__ import annotations

ERROR_CODES: dict[str, str] = {
    # encoding
    "malformed_encoding": "The bytes are not valid msgpack of the expected shape.",
    "non_canonical_encoding": "The bytes decode but are not the canonical encoding of their value.",
    "too_large": "The input exceeds a size or count limit.",
    "wrong_type": "A field has the wrong type or is out of its range.",
    # signatures
    "invalid_signature": "A signature does not verify under the signer's key.",
    "invalid_public_key": "A public key is not 32 bytes.",
    # transactions
    "invalid_name": "A member, contract, method or currency name breaks the naming rule.",
    "unknown_sender": "The transaction's sender is not a registered member.",
    "bad_nonce": "The transaction's nonce is not the sender's next nonce.",
    "expired": "The transaction's expiry height has passed.",
    "nonce_already_used": "The sender's nonce has already been consumed by a committed transaction.",
    "nonce_already_pending": "Another pending transaction of the sender holds this nonce.",
    "nonce_too_far_ahead": "The nonce is too far beyond the sender's next nonce to queue.",
    "mempool_full": "The node's mempool is full; retry later.",
    # blocks and certificates
    "wrong_chain": "The object belongs to another chain id.",
    "wrong_height": "Heights are not consecutive from genesis.",
    "wrong_parent": "A block does not link to its parent's hash.",
    "wrong_tx_root": "A header's transaction root does not match its transactions.",
    "wrong_log_root": "A header's transparency-log size or root does not match the log.",
    "wrong_state_root": "A header's state root does not match the state.",
    "wrong_validator_set": "A header's validator-set hash does not match the set in force.",
    "wrong_timestamp": "A block's timestamp goes backwards.",
    "bad_certificate": "A commit certificate is malformed or does not certify the block.",
    "insufficient_voting_power": "A certificate's valid signatures hold no more than 2/3 of the power.",
    "duplicate_signer": "A certificate names one validator twice.",
    "unknown_validator": "A certificate names a validator outside the set in force.",
    # Merkle proofs and the transparency log
    "invalid_inclusion_proof": "An RFC 9162 inclusion proof does not lead to the claimed root.",
    "invalid_consistency_proof": "An RFC 9162 consistency proof does not link the two claimed roots.",
    "invalid_leaf_hash": "A Merkle leaf hash is not 32 bytes.",
    "index_out_of_range": "A leaf index is not below the tree size.",
    "size_out_of_range": "A tree size is negative, too large, or beyond the log's current size.",
    "batch_too_large": "One append carries more leaves than the log accepts at once.",
    "log_full": "The log cannot grow past its largest size.",
    "log_node_missing": "The log's node store lacks a node it must hold.",
    "invalid_table_name": "A store table name is not a plain identifier.",
    # state tree
    "invalid_state_proof": "A state proof does not lead to the claimed state root.",
    "state_root_not_found": "The state tree has no root with the given hash.",
    # genesis
    "invalid_genesis": "The genesis document breaks a rule.",
    "genesis_mismatch": "The store belongs to a different genesis.",
    # requests
    "invalid_argument": "A request parameter (path or query) is malformed or out of range.",
    "unauthenticated": "The read needs a member's signature headers, and they are missing, malformed or wrong.",
    "stale_request": "A signed read's timestamp is too far from the node's clock.",
    "replayed_request": "A signed read's nonce was already used.",
    "method_not_allowed": "The path exists, but not for this HTTP method (the Allow header lists those it has).",
    "forbidden": "The signer may not read this (owner, auditor or regulator only).",
    "too_many_requests": "The node is shedding load; retry after the indicated time.",
    # calls refused at admission (the same rule the contract applies when it runs)
    "unknown_method": "The transaction names a contract method that does not exist.",
    "invalid_amount": "An amount is not a positive integer of minor units.",
    "amount_too_large": "An amount exceeds the largest balance a ledger account can hold.",
    "unknown_currency": "The currency is not registered on the chain.",
    "unknown_account": "A named account is not a member.",
    # node configuration
    "invalid_config": "A node's home directory or config file is missing or malformed.",
    "output_exists": "An output directory is not empty, so nothing was written to it.",
    # store
    "store_not_found": "No store exists at the given path.",
    "store_corrupt": "Stored bytes disagree with their hashes or with each other.",
    "store_conflict": "A write would change or skip an already stored height.",
    "not_found": "The requested height, transaction or key does not exist.",
    # verification
    "chain_invalid": "The chain failed verification.",
    "block_unreadable": "Stored or received block bytes are not the canonical encoding of a block.",
    "wrong_block_hash": "A stored block hash does not match the hash of its header.",
    "wrong_tx_index": "The transaction index disagrees with the blocks.",
    "state_row_mismatch": "A state row disagrees with the state tree under the head's root.",
    "wrong_receipt": "A stored receipt is not the one the contracts produce when the block is replayed.",
    "supply_mismatch": "A currency's balances do not sum to issued minus redeemed.",
    "history_changed": "A source no longer holds the block the auditor verified at a height, or holds fewer blocks.",
    "balance_mismatch": "A node reports an account value that is not the replayed one at that height.",
    "checkpoint_unusable": "The auditor's state file is unreadable, inconsistent, or belongs to another chain.",
    "cannot_run": "The audit could not run against a source (no store there, node unreachable).",
}


class LedgerError(Exception):
    """Any failure a user or an outside input can cause; carries a stable code."""

    code: str
    detail: str
    height: int | None

    def __init__(self, code: str, detail: str = "", *, height: int | None = None) -> None:
        assert code in ERROR_CODES, f"undocumented error code {code!r}"
        self.code = code
        self.detail = detail or ERROR_CODES[code]
        self.height = height
        where = f" at height {height}" if height is not None else ""
        super().__init__(f"{code}{where}: {self.detail}")


class EncodingError(LedgerError):
    """Bytes that are not the one canonical encoding of an accepted value."""


class SignatureError(LedgerError):
    """A signature or public key that does not verify."""


class InvalidTransaction(LedgerError):
    """A transaction that is malformed or not allowed."""


class InvalidBlock(LedgerError):
    """A block, header or commit certificate that breaks a rule."""


class GenesisError(LedgerError):
    """A genesis document that is malformed or does not match the store."""


class StoreError(LedgerError):
    """The durable store cannot do what was asked."""


class StoreCorruption(StoreError):
    """Stored bytes disagree with their hashes: tampering or disk damage."""


class VerificationFailure(LedgerError):
    """The verification engine found a broken chain; ``height`` says where."""


__all__ = [
    "ERROR_CODES",
    "EncodingError",
    "GenesisError",
    "InvalidBlock",
    "InvalidTransaction",
    "LedgerError",
    "SignatureError",
    "StoreCorruption",
    "StoreError",
    "VerificationFailure",
]
