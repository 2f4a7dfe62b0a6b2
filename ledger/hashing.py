"""SHA-256 with a distinct domain tag for every kind of hashed object.

A tag is ASCII text ending in a NUL byte, so no tag is a prefix of another
and no tagged hash can equal the hash of another kind of object. The
Merkle trees use their own one-byte prefixes (RFC 9162's 0x00 and 0x01 for
the transparency log and the transaction root, 0x10 and 0x11 for the state
tree); no tag starts with those bytes. Transaction ids are plain SHA-256 of
the signed transaction's bytes, as docs/PROTOCOL.md states.
"""

from __future__ import annotations

import hashlib

HASH_BYTES = 32

TAG_BLOCK_HEADER = b"ledger/block-header/v1\x00"
TAG_GENESIS = b"ledger/genesis/v1\x00"
TAG_VALIDATOR_SET = b"ledger/validator-set/v1\x00"

ALL_TAGS = (TAG_BLOCK_HEADER, TAG_GENESIS, TAG_VALIDATOR_SET)
assert len(set(ALL_TAGS)) == len(ALL_TAGS)
assert all(tag.endswith(b"\x00") and tag[0] not in (0x00, 0x01, 0x10, 0x11) for tag in ALL_TAGS)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def tagged_hash(tag: bytes, data: bytes) -> bytes:
    """SHA-256(tag || data) for one kind of object."""
    assert tag in ALL_TAGS, tag
    return hashlib.sha256(tag + data).digest()


__all__ = ["HASH_BYTES", "TAG_BLOCK_HEADER", "TAG_GENESIS", "TAG_VALIDATOR_SET", "sha256", "tagged_hash"]
