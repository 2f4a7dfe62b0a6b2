"""governance: changes decided by more than 2/3 of the validators' power; a validator set switched at a height."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.keys import PrivateKey
from ledger.state import KEY_PENDING_VALIDATORS, KEY_VALIDATORS
from ledger.state import validator_set_in_force
from ledger.validators import ValidatorSet
from node.devchain import make_demo_network
from tests.contract_harness import ContractChain

NETWORK = make_demo_network([f"validator-{i}" for i in range(4)], seed=6)
NEW_KEY = PrivateKey(b"\x42" * 32)


def _decide(chain: ContractChain, proposal_id: str, action: str, args: dict, approvers: int = 3) -> list[str]:
    """validator-0 proposes, the next ones approve; the outcome of each call."""
    outcomes = []
    receipt = chain.call("validator-0", "governance", "propose", proposal_id=proposal_id, action=action, args=args)
    outcomes.append("ok" if receipt.is_ok else receipt.code)
    for number in range(1, approvers):
        receipt = chain.call(f"validator-{number}", "governance", "approve", proposal_id=proposal_id)
        outcomes.append(("executed" if any(e.name == "executed" for e in receipt.events) else "ok")
                        if receipt.is_ok else receipt.code)
    return outcomes


def test_two_of_four_is_not_enough_three_of_four_executes() -> None:
    chain = ContractChain(NETWORK)
    args = {"name": "bank-sg", "public_key": NEW_KEY.public_key, "roles": ["participant"]}
    assert _decide(chain, "add_sg", "add_member", args, approvers=2) == ["ok", "ok"]
    assert chain.view.get_member("bank-sg") is None, "2 of 4 equal powers is not more than 2/3"
    receipt = chain.call("validator-2", "governance", "approve", proposal_id="add_sg")
    assert receipt.is_ok and receipt.events[-1].name == "executed"
    member = chain.view.get_member("bank-sg")
    assert member is not None and member.public_key == NEW_KEY.public_key
    assert chain.call("validator-3", "governance", "approve", proposal_id="add_sg").code == "proposal_executed"


def test_only_validators_take_part_and_each_once() -> None:
    chain = ContractChain(NETWORK)
    assert chain.call("bank-cn", "governance", "propose", proposal_id="p", action="set_param",
                      args={"name": "x", "value": 1}).code == "not_a_validator"
    assert chain.call("validator-0", "governance", "propose", proposal_id="p", action="set_param",
                      args={"name": "x", "value": 1}).is_ok
    assert chain.call("validator-0", "governance", "approve", proposal_id="p").code == "already_approved"
    assert chain.call("validator-1", "governance", "approve", proposal_id="nope").code == "unknown_proposal"
    assert chain.call("validator-1", "governance", "propose", proposal_id="p", action="set_param",
                      args={"name": "x", "value": 2}).code == "proposal_exists"
    assert chain.call("validator-1", "governance", "propose", proposal_id="q", action="explode",
                      args={}).code == "invalid_argument"


def test_param_roles_and_key_rotation() -> None:
    chain = ContractChain(NETWORK)
    assert _decide(chain, "limit", "set_param", {"name": "tx_limit_minor_cny", "value": 100})[-1] == "executed"
    assert chain.view.get_param("tx_limit_minor_cny", 0) == 100
    assert _decide(chain, "roles", "set_roles", {"name": "merchant-001", "roles": ["participant", "fx_provider"]})[-1] \
        == "executed"
    assert chain.view.get_member("merchant-001").roles == ("fx_provider", "participant")  # type: ignore[union-attr]
    assert _decide(chain, "rotate", "rotate_key", {"name": "merchant-002", "public_key": NEW_KEY.public_key})[-1] \
        == "executed"
    assert chain.view.get_member("merchant-002").public_key == NEW_KEY.public_key  # type: ignore[union-attr]


def test_a_member_with_money_cannot_be_removed_and_a_new_member_needs_kyc() -> None:
    chain = ContractChain(NETWORK)
    assert chain.call("bank-cn", "accounts", "issue", currency="CNY", to="merchant-001", amount_minor=5).is_ok
    assert _decide(chain, "rm", "remove_member", {"name": "merchant-001"})[-1] == "member_has_balance"
    assert _decide(chain, "rm2", "remove_member", {"name": "merchant-002"})[-1] == "executed"
    assert chain.view.get_member("merchant-002") is None
    args = {"name": "bank-sg", "public_key": NEW_KEY.public_key, "roles": ["participant"]}
    assert _decide(chain, "add", "add_member", args)[-1] == "executed"
    receipt = chain.call("merchant-001", "accounts", "transfer", currency="CNY", to="bank-sg", amount_minor=1)
    assert receipt.code == "kyc_required"


def test_validator_set_switches_at_the_stated_height() -> None:
    chain = ContractChain(NETWORK)
    old = chain.view.get_validator_set()
    entries = [[v.name, v.public_key, v.voting_power] for v in old.validators[:3]] + [["validator-9", NEW_KEY.public_key, 2]]
    outcome = _decide(chain, "swap", "set_validators", {"validators": entries, "effective_height": chain.height + 1})
    assert outcome[-1] == "effective_height_passed"
    effective = chain.height + 5
    assert _decide(chain, "swap2", "set_validators", {"validators": entries, "effective_height": effective})[-1] \
        == "executed"
    again = _decide(chain, "swap3", "set_validators", {"validators": entries, "effective_height": effective + 5})
    assert again[-1] == "validator_change_pending", "one change at a time"
    while chain.height < effective - 1:
        chain.next_block()
        assert chain.view.get_validator_set() == old and chain.data.get(KEY_PENDING_VALIDATORS) is not None
        assert validator_set_in_force(chain.view, chain.height) == old
    assert [v.name for v in validator_set_in_force(chain.view, effective).validators][-1] == "validator-9"
    chain.next_block()  # the block at the effective height moves the set into `validators` first
    assert chain.height == effective
    new = ValidatorSet.decode(chain.data[KEY_VALIDATORS])
    assert [v.name for v in new.validators] == ["validator-0", "validator-1", "validator-2", "validator-9"]
    assert KEY_PENDING_VALIDATORS not in chain.data


def test_a_chain_that_switches_validator_sets_verifies_and_replays(tmp_path: Path) -> None:
    """End to end on a store: the new set certifies from the effective height; the auditor follows it."""
    from contracts.block_builder import build_block
    from ledger.block import sign_commit
    from ledger.store import Store
    from ledger.transaction import Transaction
    from ledger.verify import verify_store
    from audit.run import audit_data_dir

    network = make_demo_network([f"validator-{i}" for i in range(4)], seed=6)
    store = Store.create(tmp_path / "data", network.genesis)
    keys = dict(network.validator_keys)
    nonces = {name: 0 for name in keys}
    effective = 5

    def tx(sender: str, method: str, **args: object) -> object:
        signed = Transaction(sender, nonces[sender], "governance", method, dict(args), 0).sign(keys[sender],
                                                                                               store.chain_id)
        nonces[sender] += 1
        return signed

    entries = [[n, keys[n].public_key, 1] for n in ("validator-0", "validator-1", "validator-2")] + \
        [["validator-9", NEW_KEY.public_key, 1]]
    blocks = [[tx("validator-0", "propose", proposal_id="swap", action="set_validators",
                  args={"validators": entries, "effective_height": effective}),
               tx("validator-1", "approve", proposal_id="swap"), tx("validator-2", "approve", proposal_id="swap")]]
    blocks += [[] for _ in range(6)]
    signers_by_height = {}
    for number, transactions in enumerate(blocks):
        if store.head_height == effective - 1:  # a node restarted right before the switch reopens its store
            store.close()
            store = Store.open(tmp_path / "data")
            assert store.get_validator_set_at(effective).validators[-1].name == "validator-9"
        height = store.head_height + 1
        executed = build_block(store, transactions, "validator-0", network.genesis.genesis_time_ms + 1000 * height)
        in_force = store.get_validator_set_at(height)
        signer_keys = {**keys, "validator-9": NEW_KEY}
        signers = [(v.name, signer_keys[v.name]) for v in in_force.validators]
        signers_by_height[height] = [name for name, _key in signers]
        certificate = sign_commit(store.chain_id, executed.block.header, 0, signers)
        store.append_block(executed.block, certificate, executed.changes, executed.encoded_receipts)
    assert "validator-3" in signers_by_height[effective - 1] and "validator-9" not in signers_by_height[effective - 1]
    assert "validator-9" in signers_by_height[effective] and "validator-3" not in signers_by_height[effective]
    store.close()
    store = Store.open(tmp_path / "data")
    try:
        report = verify_store(store)
        assert report.ok, report.describe()
    finally:
        store.close()
    audited = audit_data_dir(tmp_path / "data")
    assert audited.ok and audited.head_height == len(blocks), audited.to_json()


def test_governance_refuses_what_would_break_the_chain() -> None:
    chain = ContractChain(NETWORK)
    roles = ["participant", "auditor", "regulator", "registrar", "fx_provider", "validator"] + \
        [f"issuer:C{n:02d}" for n in range(11)]
    assert _decide(chain, "r", "set_roles", {"name": "merchant-001", "roles": roles}, approvers=1) == \
        ["invalid_argument"], "17 roles would make a member record nobody can decode"
    assert _decide(chain, "big", "set_param", {"name": "x", "value": 2**63}, approvers=1) == ["invalid_argument"]
    assert _decide(chain, "day", "set_param", {"name": "day_ms", "value": 1000}, approvers=1) == ["param_fixed"]


def test_a_contract_bug_fails_the_call_on_every_node_instead_of_halting_the_chain() -> None:
    from contracts.runtime import register

    @register("test_only", "crash")
    def crash(context, args):  # type: ignore[no-untyped-def]
        context.state.put_param("leftover", 1)
        raise AssertionError("a bug")

    chain = ContractChain(NETWORK)
    receipt = chain.call("bank-cn", "test_only", "crash")
    assert (receipt.status, receipt.code) == (1, "contract_fault")
    assert chain.view.get_param("leftover", 0) == 0, "its writes are dropped like any failed call's"


def test_a_key_rotated_in_a_block_counts_from_the_next_block(tmp_path: Path) -> None:
    """The runtime admits against the registry at the block's start, as the auditor checks signatures."""
    from contracts.block_builder import build_block
    from ledger.block import sign_commit
    from ledger.errors import InvalidBlock
    from ledger.store import Store
    from ledger.transaction import Transaction
    from ledger.verify import verify_store
    from audit.run import audit_data_dir

    network = make_demo_network([f"validator-{i}" for i in range(4)], seed=6)
    store = Store.create(tmp_path / "data", network.genesis)
    keys = {**network.validator_keys, **network.member_keys}
    nonces: dict[str, int] = {}

    def tx(sender: str, contract: str, method: str, key: PrivateKey | None = None, **args: object) -> object:
        nonce = nonces.get(sender, 0)
        nonces[sender] = nonce + 1
        return Transaction(sender, nonce, contract, method, dict(args), 0).sign(key or keys[sender], store.chain_id)

    def commit(transactions: list) -> None:  # type: ignore[type-arg]
        height = store.head_height + 1
        executed = build_block(store, transactions, "validator-0", network.genesis.genesis_time_ms + 1000 * height)
        certificate = sign_commit(store.chain_id, executed.block.header, 0, list(network.validator_keys.items()))
        store.append_block(executed.block, certificate, executed.changes, executed.encoded_receipts)

    rotate = {"name": "bank-cn", "public_key": NEW_KEY.public_key}
    commit([tx("validator-0", "governance", "propose", proposal_id="rot", action="rotate_key", args=rotate),
            tx("validator-1", "governance", "approve", proposal_id="rot"),
            tx("validator-2", "governance", "approve", proposal_id="rot"),
            # signed with the old key, after the rotation executed in this very block: still valid here
            tx("bank-cn", "accounts", "issue", currency="CNY", to="bank-cn", amount_minor=5)])
    with pytest.raises(InvalidBlock):  # the old key no longer counts in the next block
        build_block(store, [tx("bank-cn", "accounts", "issue", currency="CNY", to="bank-cn", amount_minor=5)],
                    "validator-0", network.genesis.genesis_time_ms + 10_000)
    nonces["bank-cn"] = 1
    commit([tx("bank-cn", "accounts", "issue", key=NEW_KEY, currency="CNY", to="bank-cn", amount_minor=7)])
    store.close()
    store = Store.open(tmp_path / "data")
    try:
        assert verify_store(store).ok
    finally:
        store.close()
    assert audit_data_dir(tmp_path / "data").ok


@pytest.mark.parametrize(("action", "args"), [
    ("add_member", {"name": "x", "public_key": b"short", "roles": ["participant"]}),
    ("add_member", {"name": "x", "public_key": NEW_KEY.public_key, "roles": ["emperor"]}),
    ("set_validators", {"validators": [], "effective_height": 9}),
    ("set_validators", {"validators": [["v", NEW_KEY.public_key, 0]], "effective_height": 9}),
    ("set_param", {"name": "Bad Name", "value": 1}),
    ("rotate_key", {"name": "nobody", "public_key": NEW_KEY.public_key}),
])
def test_malformed_proposals_are_refused(action: str, args: dict) -> None:
    chain = ContractChain(NETWORK)
    receipt = chain.call("validator-0", "governance", "propose", proposal_id="bad", action=action, args=args)
    assert receipt.code in {"invalid_argument", "unknown_account"}


def test_a_removed_member_cannot_be_paid() -> None:
    chain = ContractChain(NETWORK)
    assert chain.call("bank-cn", "accounts", "issue", currency="CNY", to="alipay-agg", amount_minor=500).is_ok
    assert _decide(chain, "rm", "remove_member", {"name": "merchant-002"})[-1] == "executed"
    assert chain.call("alipay-agg", "escrow", "lock", escrow_id="e1", to="merchant-002", currency="CNY",
                      amount_minor=100, timeout_height=chain.height + 10).code in {"unknown_account", "account_frozen"}
    chain.check_invariants()


def test_a_proposer_leaves_out_transactions_signed_with_a_key_that_has_since_changed(tmp_path: Path) -> None:
    from ledger.block import sign_commit
    from ledger.store import Store
    from ledger.transaction import Transaction
    from node.app import LedgerApplication
    from node.mempool import Mempool

    network = make_demo_network([f"validator-{i}" for i in range(4)], seed=6)
    store = Store.create(tmp_path / "data", network.genesis)
    pool = Mempool(store.chain_id)
    app = LedgerApplication(store, pool, "validator-0")
    keys = {**network.validator_keys, **network.member_keys}

    def tx(sender: str, contract: str, method: str, **args: object) -> object:
        return Transaction(sender, 0, contract, method, dict(args), 0).sign(keys[sender], store.chain_id)

    old_key_issue = tx("bank-cn", "accounts", "issue", currency="CNY", to="bank-cn", amount_minor=5)
    rotate = {"name": "bank-cn", "public_key": NEW_KEY.public_key}
    governance = [tx("validator-0", "governance", "propose", proposal_id="rot", action="rotate_key", args=rotate),
                  tx("validator-1", "governance", "approve", proposal_id="rot"),
                  tx("validator-2", "governance", "approve", proposal_id="rot")]
    pool.admit_many(governance, store)
    block = app.propose_block(1, 0, network.genesis.genesis_time_ms + 1000)
    app.commit(block, sign_commit(store.chain_id, block.header, 0, list(network.validator_keys.items())))
    # bank-cn's transaction was admitted under its old key (before the rotation committed) at another node
    # and gossiped: this pool admitted it then too.
    pool._by_id[old_key_issue.tx_id] = old_key_issue  # type: ignore[attr-defined]
    pool._by_sender.setdefault("bank-cn", {})[0] = old_key_issue.tx_id  # type: ignore[attr-defined]
    pool._verified_key[old_key_issue.tx_id] = keys["bank-cn"].public_key  # type: ignore[attr-defined]
    honest = tx("alipay-agg", "accounts", "transfer", currency="CNY", to="bank-cn", amount_minor=0 + 1)
    pool.admit_many([honest], store)
    block = app.propose_block(2, 0, network.genesis.genesis_time_ms + 2000)
    assert [signed.tx_id for signed in block.transactions] == [honest.tx_id], "the others' payments still go in"
    assert not pool.contains(old_key_issue.tx_id)
    store.close()
