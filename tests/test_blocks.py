"""Headers, votes, commit certificates, validator sets and genesis.

A commit certificate counts only valid precommit signatures of known,
distinct validators for this block at this height, and needs strictly
more than 2/3 of the voting power (``3 * power > 2 * total``). The tests
hit that boundary exactly for several weightings, and check each way a
certificate can be wrong gives its own stable code.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from ledger.block import (
    VOTE_PRECOMMIT,
    VOTE_PREVOTE,
    Block,
    BlockHeader,
    CommitCertificate,
    CommitSignature,
    Vote,
    sign_commit,
)
from ledger.encoding import encode
from ledger.errors import GenesisError, InvalidBlock, LedgerError
from ledger.genesis import Currency, Genesis, Member, Param
from ledger.hashing import TAG_BLOCK_HEADER, tagged_hash
from ledger.keys import DOMAIN_VOTE, PrivateKey, signing_input
from ledger.transaction import Transaction
from ledger.validators import VOTING_POWER_MAX, Validator, ValidatorSet

CHAIN = "chain-a"


def key_of(name: str) -> PrivateKey:
    return PrivateKey(name.encode().ljust(32, b"\x00"))


def make_set(powers: list[int]) -> tuple[ValidatorSet, list[tuple[str, PrivateKey]]]:
    names = [f"v{index}" for index in range(len(powers))]
    assert names == sorted(names)
    validators = tuple(
        Validator(name, key_of(name).public_key, power)
        for name, power in zip(names, powers, strict=True)
    )
    return ValidatorSet(validators), [(name, key_of(name)) for name in names]


def make_header(validator_set: ValidatorSet, height: int = 5, **changes: Any) -> BlockHeader:
    header = BlockHeader(
        chain_id=CHAIN,
        height=height,
        parent_hash=b"\x01" * 32,
        timestamp_ms=1_700_000_000_000,
        proposer="v0",
        tx_count=0,
        tx_root=b"\x02" * 32,
        log_size=0,
        log_root=b"\x03" * 32,
        state_root=b"\x04" * 32,
        validator_set_hash=validator_set.compute_hash(),
    )
    return dataclasses.replace(header, **changes)


FOUR, FOUR_KEYS = make_set([1, 1, 1, 1])
HEADER = make_header(FOUR)
BLOCK_HASH = HEADER.compute_hash()


def verify_error(
    certificate: CommitCertificate,
    validator_set: ValidatorSet = FOUR,
    block_hash: bytes = BLOCK_HASH,
    height: int = HEADER.height,
) -> InvalidBlock:
    with pytest.raises(InvalidBlock) as caught:
        certificate.verify(CHAIN, validator_set, block_hash, height)
    assert caught.value.height == height
    return caught.value


def signature_of(name: str, key: PrivateKey, vote: Vote, chain_id: str = CHAIN) -> CommitSignature:
    return CommitSignature(name, key.sign_raw(vote.signing_bytes(chain_id)))


def precommit(
    name: str, height: int = HEADER.height, round_number: int = 0, block_hash: bytes = BLOCK_HASH
) -> Vote:
    return Vote(height, round_number, VOTE_PRECOMMIT, block_hash, name)


# --- Certificates -------------------------------------------------------------------------------


def test_three_of_four_equal_validators_certify() -> None:
    certificate = sign_commit(CHAIN, HEADER, 0, FOUR_KEYS[:3])
    certificate.verify(CHAIN, FOUR, BLOCK_HASH, HEADER.height)
    sign_commit(CHAIN, HEADER, 0, FOUR_KEYS).verify(CHAIN, FOUR, BLOCK_HASH, HEADER.height)
    sign_commit(CHAIN, HEADER, 0, FOUR_KEYS[1:]).verify(CHAIN, FOUR, BLOCK_HASH, HEADER.height)
    assert [item.validator for item in certificate.signatures] == ["v0", "v1", "v2"]
    assert CommitCertificate.decode(certificate.encode()) == certificate


def test_certificate_signatures_are_precommit_votes() -> None:
    certificate = sign_commit(CHAIN, HEADER, 3, FOUR_KEYS[:3])
    for item in certificate.signatures:
        vote = Vote(HEADER.height, 3, VOTE_PRECOMMIT, BLOCK_HASH, item.validator)
        assert certificate.vote_of(item.validator) == vote
        assert item.signature == key_of(item.validator).sign(DOMAIN_VOTE, CHAIN, vote.encode())


def test_invalid_two_of_four_is_insufficient_voting_power() -> None:
    assert (
        verify_error(sign_commit(CHAIN, HEADER, 0, FOUR_KEYS[:2])).code
        == "insufficient_voting_power"
    )
    assert (
        verify_error(sign_commit(CHAIN, HEADER, 0, FOUR_KEYS[2:])).code
        == "insufficient_voting_power"
    )


def test_invalid_empty_certificate() -> None:
    empty = CommitCertificate(HEADER.height, 0, BLOCK_HASH, ())
    assert verify_error(empty).code == "insufficient_voting_power"


def test_invalid_duplicate_signer() -> None:
    good = sign_commit(CHAIN, HEADER, 0, FOUR_KEYS[:3])
    duplicated = dataclasses.replace(good, signatures=(good.signatures[0], *good.signatures))
    assert verify_error(duplicated).code == "duplicate_signer"
    # Two copies of one validator's signature never make up for a missing third validator.
    two_plus_copy = dataclasses.replace(
        good, signatures=(good.signatures[0], good.signatures[0], good.signatures[1])
    )
    assert verify_error(two_plus_copy).code == "duplicate_signer"


def test_invalid_unknown_validator() -> None:
    outsider = ("v9", key_of("v9"))
    certificate = sign_commit(CHAIN, HEADER, 0, [*FOUR_KEYS[:3], outsider])
    assert verify_error(certificate).code == "unknown_validator"
    # A non-member with a valid signature of its own never adds power either.
    two_plus_outsider = sign_commit(CHAIN, HEADER, 0, [*FOUR_KEYS[:2], outsider])
    assert verify_error(two_plus_outsider).code == "unknown_validator"


@pytest.mark.parametrize("index", [0, 1, 2])
@pytest.mark.parametrize("bit", [0, 255, 256, 511])
def test_invalid_flipped_signature(index: int, bit: int) -> None:
    good = sign_commit(CHAIN, HEADER, 0, FOUR_KEYS[:3])
    signatures = list(good.signatures)
    changed = bytearray(signatures[index].signature)
    changed[bit // 8] ^= 1 << (bit % 8)
    signatures[index] = CommitSignature(signatures[index].validator, bytes(changed))
    assert (
        verify_error(dataclasses.replace(good, signatures=tuple(signatures))).code
        == "invalid_signature"
    )


def test_invalid_signature_even_with_quorum_from_the_others() -> None:
    good = sign_commit(CHAIN, HEADER, 0, FOUR_KEYS)
    signatures = list(good.signatures)
    signatures[3] = CommitSignature("v3", b"\x00" * 64)
    assert (
        verify_error(dataclasses.replace(good, signatures=tuple(signatures))).code
        == "invalid_signature"
    )


def test_invalid_signature_by_another_validators_key() -> None:
    impostor = sign_commit(CHAIN, HEADER, 0, [FOUR_KEYS[0], FOUR_KEYS[1], ("v2", key_of("v3"))])
    assert verify_error(impostor).code == "invalid_signature"


def test_invalid_signature_for_another_chain() -> None:
    other_chain = sign_commit("chain-b", HEADER, 0, FOUR_KEYS[:3])
    assert verify_error(other_chain).code == "invalid_signature"


def test_invalid_signature_for_another_round() -> None:
    signed_round_0 = sign_commit(CHAIN, HEADER, 0, FOUR_KEYS[:3])
    relabelled = dataclasses.replace(signed_round_0, round=1)
    assert verify_error(relabelled).code == "invalid_signature"


def test_invalid_prevote_signatures_do_not_count_as_precommits() -> None:
    prevotes = tuple(
        signature_of(name, key, Vote(HEADER.height, 0, VOTE_PREVOTE, BLOCK_HASH, name))
        for name, key in FOUR_KEYS
    )
    certificate = CommitCertificate(HEADER.height, 0, BLOCK_HASH, prevotes)
    assert verify_error(certificate).code == "invalid_signature"


def test_invalid_nil_precommits_do_not_certify_a_block() -> None:
    nil_votes = tuple(
        signature_of(name, key, Vote(HEADER.height, 0, VOTE_PRECOMMIT, b"", name))
        for name, key in FOUR_KEYS
    )
    certificate = CommitCertificate(HEADER.height, 0, BLOCK_HASH, nil_votes)
    assert verify_error(certificate).code == "invalid_signature"


def test_invalid_raw_signature_without_the_vote_domain() -> None:
    raw = tuple(
        CommitSignature(name, key.sign_raw(precommit(name).encode())) for name, key in FOUR_KEYS
    )
    assert (
        verify_error(CommitCertificate(HEADER.height, 0, BLOCK_HASH, raw)).code
        == "invalid_signature"
    )


def test_invalid_wrong_height_or_block_hash_is_bad_certificate() -> None:
    certificate = sign_commit(CHAIN, HEADER, 0, FOUR_KEYS)
    assert verify_error(certificate, height=HEADER.height + 1).code == "bad_certificate"
    assert verify_error(certificate, height=HEADER.height - 1).code == "bad_certificate"
    other_hash = make_header(FOUR, state_root=b"\x09" * 32).compute_hash()
    assert verify_error(certificate, block_hash=other_hash).code == "bad_certificate"
    # A certificate of another header cannot be relabelled: its signatures cover the old hash.
    relabelled = dataclasses.replace(certificate, block_hash=other_hash)
    assert verify_error(relabelled, block_hash=other_hash).code == "invalid_signature"
    relabelled_height = dataclasses.replace(certificate, height=HEADER.height + 1)
    assert verify_error(relabelled_height, height=HEADER.height + 1).code == "invalid_signature"


def test_invalid_unsorted_signatures_are_bad_certificate() -> None:
    good = sign_commit(CHAIN, HEADER, 0, FOUR_KEYS[:3])
    unsorted = dataclasses.replace(good, signatures=tuple(reversed(good.signatures)))
    assert verify_error(unsorted).code == "bad_certificate"


def test_certificate_verification_checks_in_a_fixed_order() -> None:
    """Wrong height is reported before anything else, duplicates before unknown names."""
    outsider = ("v9", key_of("v9"))
    bad = sign_commit(CHAIN, HEADER, 0, [FOUR_KEYS[0], outsider])
    bad = dataclasses.replace(bad, signatures=(bad.signatures[0], *bad.signatures))
    assert verify_error(bad, height=HEADER.height + 1).code == "bad_certificate"
    assert verify_error(bad).code == "duplicate_signer"


# (voting powers, indices of the signers, certifies?)
QUORUM_CASES = [
    ([1, 1, 1], [0, 1], False),  # total 3 needs 3
    ([1, 1, 1], [0, 1, 2], True),
    ([1, 1, 1, 1], [0, 1], False),  # total 4 needs 3
    ([1, 1, 1, 1], [1, 2, 3], True),
    ([1, 1, 1, 1, 1, 1], [0, 1, 2, 3], False),  # total 6 needs 5
    ([1, 1, 1, 1, 1, 1], [0, 1, 2, 3, 4], True),
    ([1, 2, 3], [0, 2], False),  # 4 of 6
    ([1, 2, 3], [1, 2], True),  # 5 of 6
    ([1, 1, 1, 10], [3], True),  # 10 of 13: 30 > 26
    ([1, 1, 1, 10], [0, 1, 2], False),  # 3 of 13
    ([1, 1, 1, 6], [3], False),  # 6 of 9: 18 > 18 fails, exactly 2/3
    ([1, 1, 1, 6], [0, 3], True),  # 7 of 9
    ([1, 1, 1, 7], [3], True),  # 7 of 10: 21 > 20
    ([2, 2, 2, 3], [0, 1, 3], True),  # 7 of 9: 21 > 18
    ([2, 2, 2, 3], [0, 1, 2], False),  # 6 of 9: exactly 2/3 is not enough
    ([2, 2, 2, 3], [2, 3], False),  # 5 of 9
    ([5], [0], True),  # a single validator certifies alone
    ([100, 50], [0], False),  # 100 of 150: exactly 2/3
    ([100, 49], [0], True),  # 100 of 149
    ([VOTING_POWER_MAX - 1, 1, 1], [0], True),
]


@pytest.mark.parametrize(("powers", "signer_indices", "certifies"), QUORUM_CASES)
def test_quorum_boundary(powers: list[int], signer_indices: list[int], certifies: bool) -> None:
    validator_set, all_keys = make_set(powers)
    header = make_header(validator_set)
    power = sum(powers[index] for index in signer_indices)
    assert certifies == (3 * power > 2 * sum(powers))  # the table itself is right
    certificate = sign_commit(CHAIN, header, 0, [all_keys[index] for index in signer_indices])
    block_hash = header.compute_hash()
    if certifies:
        certificate.verify(CHAIN, validator_set, block_hash, header.height)
    else:
        assert (
            verify_error(certificate, validator_set, block_hash, header.height).code
            == "insufficient_voting_power"
        )


@pytest.mark.parametrize("total", range(1, 40))
def test_has_quorum_is_strictly_more_than_two_thirds(total: int) -> None:
    validator_set, _ = make_set([total])
    needed = 2 * total // 3 + 1
    assert validator_set.has_quorum(needed)
    assert not validator_set.has_quorum(needed - 1)
    assert validator_set.has_quorum(total)


def test_quorum_needs_for_small_equal_sets() -> None:
    needs = {}
    for count in (1, 2, 3, 4, 5, 6, 7, 10):
        validator_set, _ = make_set([1] * count)
        needs[count] = min(p for p in range(count + 1) if validator_set.has_quorum(p))
    assert needs == {1: 1, 2: 2, 3: 3, 4: 3, 5: 4, 6: 5, 7: 5, 10: 7}


# --- Votes and headers --------------------------------------------------------------------------


def test_vote_kinds_sign_different_bytes() -> None:
    prevote = Vote(5, 0, VOTE_PREVOTE, BLOCK_HASH, "v0")
    assert prevote.signing_bytes(CHAIN) != dataclasses.replace(
        prevote, kind=VOTE_PRECOMMIT
    ).signing_bytes(CHAIN)
    assert prevote.signing_bytes(CHAIN) == signing_input(DOMAIN_VOTE, CHAIN, prevote.encode())
    assert prevote.signing_bytes(CHAIN) != prevote.signing_bytes("chain-b")


def test_header_hash_is_the_tagged_hash_of_its_encoding() -> None:
    assert HEADER.compute_hash() == tagged_hash(TAG_BLOCK_HEADER, HEADER.encode())
    assert BlockHeader.decode(HEADER.encode()).compute_hash() == BLOCK_HASH
    assert Block(HEADER, ()).compute_hash() == BLOCK_HASH


HEADER_CHANGES = [
    ("chain_id", "chain-b"),
    ("height", 6),
    ("parent_hash", b"\x11" * 32),
    ("timestamp_ms", 1_700_000_000_001),
    ("proposer", "v1"),
    ("tx_count", 1),
    ("tx_root", b"\x12" * 32),
    ("log_size", 1),
    ("log_root", b"\x13" * 32),
    ("state_root", b"\x14" * 32),
    ("validator_set_hash", b"\x15" * 32),
]


def test_header_changes_cover_every_field() -> None:
    assert sorted(name for name, _ in HEADER_CHANGES) == sorted(
        field.name for field in dataclasses.fields(BlockHeader) if not field.name.startswith("_")
    )


@pytest.mark.parametrize(("field", "value"), HEADER_CHANGES)
def test_header_hash_changes_when_any_field_changes(field: str, value: Any) -> None:
    assert getattr(HEADER, field) != value
    changed = dataclasses.replace(HEADER, **{field: value})
    assert changed.compute_hash() != BLOCK_HASH
    # ... so a certificate of the original never certifies the changed header.
    certificate = sign_commit(CHAIN, HEADER, 0, FOUR_KEYS)
    with pytest.raises(InvalidBlock):
        certificate.verify(CHAIN, FOUR, changed.compute_hash(), changed.height)


def test_header_hashes_are_distinct_across_single_field_changes() -> None:
    hashes = {
        dataclasses.replace(HEADER, **{field: value}).compute_hash()
        for field, value in HEADER_CHANGES
    }
    assert len(hashes) == len(HEADER_CHANGES) and BLOCK_HASH not in hashes


def test_block_round_trip_with_transactions() -> None:
    member = PrivateKey(b"\x42" * 32)
    tx = Transaction("alice", 0, "accounts", "transfer", {"to": "bob", "amount_minor": 1}, 0).sign(
        member, CHAIN
    )
    block = Block(dataclasses.replace(HEADER, tx_count=1), (tx,))
    decoded = Block.decode(block.encode())
    assert decoded == block
    assert decoded.transactions[0].tx_id == tx.tx_id


# --- Validator sets -----------------------------------------------------------------------------


def validator(name: str, power: int = 1) -> Validator:
    return Validator(name, key_of(name).public_key, power)


@pytest.mark.parametrize(
    "validators",
    [
        (),
        (validator("b"), validator("a")),  # unsorted
        (validator("a"), validator("a")),  # duplicate
        (validator("a"), validator("b"), validator("a")),  # duplicate, unsorted
        (validator("a", 0),),  # zero power
        (validator("a", -1),),
        (validator("a", VOTING_POWER_MAX + 1),),
        (validator("A"),),  # bad name
        (validator(""),),
    ],
)
def test_invalid_validator_set(validators: tuple[Validator, ...]) -> None:
    with pytest.raises(GenesisError) as caught:
        ValidatorSet(validators)
    assert caught.value.code == "invalid_genesis"


def test_validator_set_round_trip_and_hash() -> None:
    validator_set, _ = make_set([1, 2, 3, 2**32 - 1])
    assert ValidatorSet.decode(validator_set.encode()) == validator_set
    assert validator_set.total_power == 6 + 2**32 - 1
    assert validator_set.get("v2") == validator_set.validators[2]
    assert validator_set.get("v9") is None
    other, _ = make_set([1, 2, 3, 2**32 - 2])
    assert other.compute_hash() != validator_set.compute_hash()


def test_validator_set_with_the_maximum_power_round_trips() -> None:
    validator_set = ValidatorSet((validator("a", VOTING_POWER_MAX),))
    assert ValidatorSet.decode(validator_set.encode()) == validator_set


def test_get_proposer_rotates_through_equal_validators() -> None:
    names = [FOUR.get_proposer(height, 0).name for height in range(1, 9)]
    assert sorted(names[:4]) == ["v0", "v1", "v2", "v3"]
    assert names[4:] == names[:4]
    assert all(first != second for first, second in itertools.pairwise(names))
    # A new round at the same height moves to the next proposer.
    assert FOUR.get_proposer(1, 1).name != FOUR.get_proposer(1, 0).name
    assert len({FOUR.get_proposer(1, round_number).name for round_number in range(4)}) == 4


def test_get_proposer_is_weighted_by_voting_power() -> None:
    validator_set, _ = make_set([1, 3, 2])
    counts: dict[str, int] = {}
    for height in range(100, 100 + 6 * 5):
        name = validator_set.get_proposer(height, 0).name
        counts[name] = counts.get(name, 0) + 1
    assert counts == {"v0": 5, "v1": 15, "v2": 10}


def test_get_proposer_is_deterministic() -> None:
    validator_set, _ = make_set([1, 3, 2])
    assert [validator_set.get_proposer(h, r) for h in range(10) for r in range(3)] == [
        validator_set.get_proposer(h, r) for h in range(10) for r in range(3)
    ]


# --- Genesis ------------------------------------------------------------------------------------


def make_genesis() -> Genesis:
    return Genesis(
        chain_id=CHAIN,
        genesis_time_ms=1_700_000_000_000,
        validator_set=FOUR,
        members=(
            Member("alice", key_of("alice").public_key, ("issuer:CNY", "participant")),
            Member("bank-1", key_of("bank-1").public_key, ("fx_provider", "participant")),
            Member("bob", key_of("bob").public_key, ("participant",)),
            Member("regulator", key_of("regulator").public_key, ("auditor", "regulator")),
        ),
        currencies=(Currency("CNY", 2), Currency("JPY", 0), Currency("USD", 2)),
        params=(Param("block_txs_max", 1000), Param("fee_bps", -1)),
    )


GENESIS = make_genesis()
GENESIS_JSON = GENESIS.to_json()


def test_genesis_json_round_trip_preserves_the_hash() -> None:
    text = json.dumps(GENESIS_JSON)
    loaded = Genesis.from_json(json.loads(text))
    assert loaded == GENESIS
    assert loaded.compute_hash() == GENESIS.compute_hash()
    assert loaded.to_json() == GENESIS_JSON
    assert Genesis.decode(GENESIS.encode()) == GENESIS


def test_genesis_save_load_preserves_the_hash(tmp_path: Path) -> None:
    path = tmp_path / "genesis.json"
    GENESIS.save(path)
    assert Genesis.load(path).compute_hash() == GENESIS.compute_hash()


def test_genesis_from_json_sorts_what_operators_may_write_in_any_order() -> None:
    shuffled = copy.deepcopy(GENESIS_JSON)
    shuffled["validators"].reverse()
    shuffled["members"].reverse()
    shuffled["currencies"].reverse()
    for member in shuffled["members"]:
        member["roles"].reverse()
    shuffled["params"] = dict(reversed(list(shuffled["params"].items())))
    assert Genesis.from_json(shuffled).compute_hash() == GENESIS.compute_hash()


def test_genesis_hash_changes_with_its_content() -> None:
    hashes = {GENESIS.compute_hash()}
    for change in (
        {"chain_id": "chain-b"},
        {"genesis_time_ms": 1},
        {"params": ()},
        {"currencies": GENESIS.currencies + (Currency("ZZZ", 0),)},
        {"members": GENESIS.members[1:]},
        {"validator_set": make_set([1, 1, 1, 2])[0]},
    ):
        hashes.add(dataclasses.replace(GENESIS, **change).compute_hash())
    assert len(hashes) == 7


def genesis_json_with(**edits: Any) -> dict[str, Any]:
    data = copy.deepcopy(GENESIS_JSON)
    data.update(edits)
    return data


def member_json(name: str, roles: list[str]) -> dict[str, Any]:
    return {"name": name, "public_key": key_of(name).public_key.hex(), "roles": roles}


INVALID_GENESIS = {
    "chain_id_uppercase": genesis_json_with(chain_id="Chain-A"),
    "chain_id_empty": genesis_json_with(chain_id=""),
    "chain_id_leading_dash": genesis_json_with(chain_id="-chain"),
    "chain_id_underscore": genesis_json_with(chain_id="chain_a"),
    "chain_id_too_long": genesis_json_with(chain_id="a" * 65),
    "issuer_of_unknown_currency": genesis_json_with(
        members=[*GENESIS_JSON["members"], member_json("zed", ["issuer:EUR"])]
    ),
    "unknown_role": genesis_json_with(
        members=[*GENESIS_JSON["members"], member_json("zed", ["admin"])]
    ),
    "issuer_without_currency": genesis_json_with(
        members=[*GENESIS_JSON["members"], member_json("zed", ["issuer"])]
    ),
    "plain_role_with_currency": genesis_json_with(
        members=[*GENESIS_JSON["members"], member_json("zed", ["participant:CNY"])]
    ),
    "duplicate_role": genesis_json_with(
        members=[*GENESIS_JSON["members"], member_json("zed", ["participant", "participant"])]
    ),
    "duplicate_member": genesis_json_with(
        members=[*GENESIS_JSON["members"], member_json("bob", ["auditor"])]
    ),
    "bad_member_name": genesis_json_with(members=[member_json("Bob", ["participant"])]),
    "duplicate_validator": genesis_json_with(
        validators=[*GENESIS_JSON["validators"], GENESIS_JSON["validators"][0]]
    ),
    "no_validators": genesis_json_with(validators=[]),
    "zero_power_validator": genesis_json_with(
        validators=[
            {**GENESIS_JSON["validators"][0], "voting_power": 0},
            *GENESIS_JSON["validators"][1:],
        ]
    ),
    "duplicate_currency": genesis_json_with(
        currencies=[*GENESIS_JSON["currencies"], {"code": "CNY", "exponent": 3}]
    ),
    "bad_currency_code": genesis_json_with(currencies=[{"code": "cny", "exponent": 2}]),
    "currency_exponent_too_big": genesis_json_with(currencies=[{"code": "CNY", "exponent": 19}]),
    "bad_param_name": genesis_json_with(params={"Block-Max": 1}),
    "missing_members": {key: value for key, value in GENESIS_JSON.items() if key != "members"},
    "missing_chain_id": {key: value for key, value in GENESIS_JSON.items() if key != "chain_id"},
    "public_key_not_hex": genesis_json_with(
        members=[{**member_json("zed", []), "public_key": "zz"}]
    ),
    "voting_power_not_a_number": genesis_json_with(
        validators=[{**GENESIS_JSON["validators"][0], "voting_power": "lots"}]
    ),
    "members_not_a_list": genesis_json_with(members=7),
}


@pytest.mark.parametrize("data", INVALID_GENESIS.values(), ids=INVALID_GENESIS.keys())
def test_invalid_genesis(data: dict[str, Any]) -> None:
    with pytest.raises(GenesisError) as caught:
        Genesis.from_json(data)
    assert caught.value.code == "invalid_genesis"


def test_invalid_genesis_constructed_directly() -> None:
    with pytest.raises(GenesisError) as caught:
        dataclasses.replace(GENESIS, chain_id="Bad Chain")
    assert caught.value.code == "invalid_genesis"
    with pytest.raises(GenesisError) as caught:
        dataclasses.replace(
            GENESIS, members=tuple(reversed(GENESIS.members))
        )  # only from_json sorts
    assert caught.value.code == "invalid_genesis"


def test_invalid_genesis_bytes_with_duplicate_members() -> None:
    wire = GENESIS.to_wire()
    wire[3] = [wire[3][0], wire[3][0], *wire[3][1:]]
    with pytest.raises(GenesisError) as caught:
        Genesis.decode(encode(wire))
    assert caught.value.code == "invalid_genesis"


WRONG_TYPED_GENESIS = {
    "public_key_31_bytes": genesis_json_with(
        members=[{**member_json("zed", []), "public_key": "00" * 31}]
    ),
    "validator_key_33_bytes": genesis_json_with(
        validators=[
            {**GENESIS_JSON["validators"][0], "public_key": "00" * 33},
            *GENESIS_JSON["validators"][1:],
        ]
    ),
    "negative_genesis_time": genesis_json_with(genesis_time_ms=-1),
    "negative_exponent": genesis_json_with(currencies=[{"code": "CNY", "exponent": -1}]),
    "param_above_sint64": genesis_json_with(params={"x": 2**63}),
}


@pytest.mark.parametrize("data", WRONG_TYPED_GENESIS.values(), ids=WRONG_TYPED_GENESIS.keys())
def test_invalid_genesis_out_of_range_is_refused(data: dict[str, Any]) -> None:
    with pytest.raises(LedgerError):
        Genesis.from_json(data)


@pytest.mark.parametrize("data", WRONG_TYPED_GENESIS.values(), ids=WRONG_TYPED_GENESIS.keys())
def test_invalid_genesis_out_of_range_is_a_genesis_error(data: dict[str, Any]) -> None:
    with pytest.raises(GenesisError) as caught:
        Genesis.from_json(data)
    assert caught.value.code == "invalid_genesis"


NON_INTEGER_GENESIS = {
    "voting_power_float": genesis_json_with(
        validators=[
            {**GENESIS_JSON["validators"][0], "voting_power": 1.9},
            *GENESIS_JSON["validators"][1:],
        ]
    ),
    "exponent_float": genesis_json_with(currencies=[{"code": "CNY", "exponent": 2.5}]),
    "exponent_bool": genesis_json_with(currencies=[{"code": "CNY", "exponent": True}]),
    "param_float": genesis_json_with(params={"fee_bps": 0.5}),
    "genesis_time_float": genesis_json_with(genesis_time_ms=1.5),
}


@pytest.mark.parametrize("data", NON_INTEGER_GENESIS.values(), ids=NON_INTEGER_GENESIS.keys())
def test_invalid_genesis_non_integer_number(data: dict[str, Any]) -> None:
    with pytest.raises(GenesisError) as caught:
        Genesis.from_json(data)
    assert caught.value.code == "invalid_genesis"
