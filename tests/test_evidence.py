"""The evidence contract records a double vote once, and only a real one."""

from __future__ import annotations

import pytest

from contracts.evidence import evidence_key, make_report
from contracts.runtime import BlockContext, execute_transaction
from ledger.block import VOTE_PRECOMMIT, VOTE_PREVOTE, Vote
from ledger.state import StateView, compute_genesis_state
from node.devchain import DemoNetwork


class _State:
    def __init__(self, network: DemoNetwork) -> None:
        self.data = compute_genesis_state(network.genesis)

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)


def _signed(network: DemoNetwork, validator: str, block_hash: bytes, kind: int = VOTE_PREVOTE,
            height: int = 3) -> tuple[bytes, bytes]:
    vote = Vote(height, 0, kind, block_hash, validator)
    signature = network.validator_keys[validator].sign_raw(vote.signing_bytes(network.genesis.chain_id))
    return vote.encode(), signature


def _report(network: DemoNetwork, view: StateView, nonce: int, a: tuple[bytes, bytes], b: tuple[bytes, bytes],
            height: int = 10) -> object:
    signed = make_report("validator-0", network.validator_keys["validator-0"], nonce, network.genesis.chain_id,
                         Vote.decode(a[0]), a[1], Vote.decode(b[0]), b[1])
    return execute_transaction(view, signed, BlockContext(network.genesis.chain_id, height, 0))


def test_a_double_vote_is_recorded_once(network: DemoNetwork) -> None:
    view = StateView(_State(network))
    a = _signed(network, "validator-1", b"\x01" * 32)
    b = _signed(network, "validator-1", b"\x02" * 32)
    receipt = _report(network, view, 0, a, b)
    assert receipt.is_ok, receipt  # type: ignore[attr-defined]
    assert receipt.events[0].name == "double_vote"  # type: ignore[attr-defined]
    assert receipt.events[0].data["validator"] == "validator-1"  # type: ignore[attr-defined]
    assert view.get(evidence_key(Vote(3, 0, VOTE_PREVOTE, b"", "validator-1"))) is not None
    again = _report(network, view, 1, b, a)
    assert again.code == "evidence_already_recorded"  # type: ignore[attr-defined]


@pytest.mark.parametrize("case", ["same_block", "other_kind", "forged", "future_height", "not_a_validator"])
def test_invalid_evidence_is_refused(network: DemoNetwork, case: str) -> None:
    view = StateView(_State(network))
    a = _signed(network, "validator-1", b"\x01" * 32)
    b = {
        "same_block": _signed(network, "validator-1", b"\x01" * 32),
        "other_kind": _signed(network, "validator-1", b"\x02" * 32, kind=VOTE_PRECOMMIT),
        "forged": (_signed(network, "validator-1", b"\x02" * 32)[0], b"\x00" * 64),
        "future_height": _signed(network, "validator-1", b"\x02" * 32),
        "not_a_validator": _signed(network, "validator-1", b"\x02" * 32),
    }[case]
    if case == "not_a_validator":
        vote = Vote(3, 0, VOTE_PREVOTE, b"\x03" * 32, "alipay-agg")
        a = (vote.encode(), network.member_keys["alipay-agg"].sign_raw(vote.signing_bytes(network.genesis.chain_id)))
        b = (Vote(3, 0, VOTE_PREVOTE, b"\x04" * 32, "alipay-agg").encode(), a[1])
    receipt = _report(network, view, 0, a, b, height=3 if case == "future_height" else 10)
    assert receipt.code == "invalid_evidence"  # type: ignore[attr-defined]
