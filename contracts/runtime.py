"""The contracts runtime: dispatch, atomic calls, receipts.

A transaction is first admitted against the state (its sender is a member,
its signature verifies under the member's key in force, its nonce is the
next one, it has not expired); a transaction that fails admission makes the
whole block invalid, so proposers never include one. An admitted
transaction always consumes its nonce. Its call then runs in a child view
of the state: on success the view is committed and the receipt lists its
events; on a ``ContractError`` the view is dropped and the receipt carries
the error's stable code. Either way the outcome is deterministic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ledger import encoding as enc
from ledger import keys
from ledger.errors import InvalidBlock
from ledger.state import StateView
from ledger.transaction import SignedTransaction

EVENTS_PER_TX_MAX = 64
WRITES_PER_TX_MAX = 256

RECEIPT_OK = 0
RECEIPT_FAILED = 1


class ContractError(Exception):
    """A call that breaks a contract rule; the transaction fails, the block stays valid."""

    def __init__(self, code: str, detail: str = "") -> None:
        self.code = code
        self.detail = detail or code
        super().__init__(f"{code}: {self.detail}")


def _utf8(key: str) -> bytes:
    return key.encode("utf-8")


@dataclass(frozen=True, slots=True)
class Event(enc.Record):
    name: str
    data: dict[str, Any]

    WIRE: ClassVar[tuple[enc.FieldCheck, ...]] = (enc.text(64), enc.text_map)


@dataclass(frozen=True, slots=True)
class Receipt(enc.Record):
    status: int
    """RECEIPT_OK or RECEIPT_FAILED."""
    code: str
    """Empty on success; the contract's stable error code on failure."""
    events: tuple[Event, ...]

    WIRE: ClassVar[tuple[enc.FieldCheck, ...]] = (
        enc.uint(8),
        enc.text(64),
        enc.array_of(enc.record(Event), EVENTS_PER_TX_MAX),
    )

    @property
    def is_ok(self) -> bool:
        return self.status == RECEIPT_OK

    def encode(self) -> bytes:
        """The canonical bytes; built directly when every event's data is flat (every receipt is encoded on
        every node and by every audit; tests check this equals the generic encoder)."""
        events = []
        for event in self.events:
            data = event.data
            for value in data.values():
                kind = type(value)
                if not (kind is str or kind is bytes or kind is bool or value is None
                        or (kind is int and enc.INT_MIN <= value <= enc.INT_MAX)):
                    return enc.encode(self.to_wire())  # nested or unusual values: the generic path
            events.append([event.name, {key: data[key] for key in sorted(data, key=_utf8)}])
        return enc.pack_normalised([self.status, self.code, events])


@dataclass(frozen=True, slots=True)
class BlockContext:
    """What a contract may know about where it runs: no clock, no randomness."""

    chain_id: str
    height: int
    timestamp_ms: int


@dataclass
class CallContext:
    block: BlockContext
    sender: str
    state: StateView
    events: list[Event]

    def emit(self, name: str, **data: Any) -> None:
        if len(self.events) >= EVENTS_PER_TX_MAX:
            raise ContractError("too_many_events")
        self.events.append(Event(name, data))


Method = Callable[[CallContext, dict[str, Any]], None]
ArgsCheck = Callable[[StateView, dict[str, Any]], None]
"""A method's argument check that needs no sender and no balances: run at admission and in the call."""
_registry: dict[tuple[str, str], Method] = {}
_checks: dict[tuple[str, str], ArgsCheck] = {}


def register(contract: str, method: str, check: ArgsCheck | None = None) -> Callable[[Method], Method]:
    """Register a method; ``check`` (if any) must raise the same ``ContractError`` the method would."""

    def decorate(function: Method) -> Method:
        assert (contract, method) not in _registry, (contract, method)
        _registry[(contract, method)] = function
        if check is not None:
            _checks[(contract, method)] = check
        return function

    return decorate


BlockStep = Callable[[StateView, "BlockContext"], None]
_block_steps: list[BlockStep] = []


def register_block_step(step: BlockStep) -> BlockStep:
    """A deterministic step every block runs before its transactions (e.g. a scheduled validator-set change)."""
    _block_steps.append(step)
    return step


def run_block_steps(view: StateView, block: BlockContext) -> None:
    for step in _block_steps:
        step(view, block)


def precheck_call(view: StateView, signed: SignedTransaction) -> None:
    """Refuse, before admission, a call that would certainly fail: unknown method or bad arguments.

    Only rules that no pending transaction can change are checked (argument
    types and ranges, names that exist in the committed state), so a
    transaction refused here would fail in any block; it is the node's
    courtesy to the sender, and the call re-checks everything when it runs.
    """
    tx = signed.body
    if (tx.contract, tx.method) not in _registry:
        raise ContractError("unknown_method", f"no method {tx.contract}.{tx.method}")
    check = _checks.get((tx.contract, tx.method))
    if check is not None:
        check(view, tx.args)


Verdict = tuple[bool, bytes]
"""A signature check done ahead of time: (is valid, under which public key)."""


def admit(view: StateView, signed: SignedTransaction, block: BlockContext, verdict: Verdict | None = None,
          registry: StateView | None = None) -> None:
    """Block-level rules for one transaction; a failure invalidates the block."""
    tx = signed.body
    # Membership and keys as of the block's start: a change made by governance counts from the next block,
    # so the auditor, checking every signature against the registry before the block, agrees.
    member = (registry or view).get_member(tx.sender)
    if member is None:
        raise InvalidBlock("unknown_sender", f"{tx.sender} is not a member", height=block.height)
    # A verdict counts only for the key in force (the one the signature was checked under).
    signature_ok = verdict[0] if verdict is not None and verdict[1] == member.public_key else None
    if signature_ok is None:
        signature_ok = signed.is_signed_by(member.public_key, block.chain_id)
    if not signature_ok:
        raise InvalidBlock("invalid_signature", f"transaction from {tx.sender}", height=block.height)
    account = view.get_account(tx.sender)
    if tx.nonce != account.nonce:
        raise InvalidBlock("bad_nonce", f"{tx.sender} nonce {tx.nonce}, expected {account.nonce}", height=block.height)
    if tx.expiry_height and tx.expiry_height < block.height:
        raise InvalidBlock("expired", f"expired at height {tx.expiry_height}", height=block.height)


def execute_transaction(view: StateView, signed: SignedTransaction, block: BlockContext,
                        verdict: Verdict | None = None, registry: StateView | None = None) -> Receipt:
    """Admit (against ``registry``, the state at the block's start; default ``view``), consume the nonce,
    run the call atomically, return its receipt."""
    admit(view, signed, block, verdict, registry)
    tx = signed.body
    view.put_account(tx.sender, view.get_account(tx.sender).with_nonce(tx.nonce + 1))
    method = _registry.get((tx.contract, tx.method))
    if method is None:
        return Receipt(RECEIPT_FAILED, "unknown_method", ())
    call_view = view.child()
    context = CallContext(block, tx.sender, call_view, [])
    try:
        method(context, tx.args)
        if len(call_view.changes()) > WRITES_PER_TX_MAX:
            raise ContractError("too_many_writes")
    except ContractError as error:
        return Receipt(RECEIPT_FAILED, error.code, ())
    except Exception:  # noqa: BLE001 - a contract's bug must fail the call on every node alike, not halt the chain
        return Receipt(RECEIPT_FAILED, "contract_fault", ())
    call_view.commit()
    return Receipt(RECEIPT_OK, "", tuple(context.events))


SignatureCache = Callable[[bytes, bytes], bool]
"""``(tx_id, public_key) -> True`` if this node already verified that signature under that key."""


def execute_block(view: StateView, transactions: Sequence[SignedTransaction], block: BlockContext,
                  already_verified: SignatureCache | None = None) -> list[Receipt]:
    """Execute a block's transactions in order; signatures checked in one parallel batch.

    A node passes ``already_verified`` (its mempool's record) so a signature
    it checked at admission is not checked again under the same key; the
    verdict is the same, only the work is saved.
    """
    run_block_steps(view, block)
    registry = view.snapshot()
    verdicts = _verify_signatures(registry, transactions, block.chain_id, already_verified)
    return [execute_transaction(view, signed, block, ok, registry) for signed, ok in zip(transactions, verdicts)]


def _verify_signatures(view: StateView, transactions: Sequence[SignedTransaction], chain_id: str,
                       already_verified: SignatureCache | None) -> list[Verdict | None]:
    """Verify every signature under the key in force now (admission re-checks if a key rotated in the block)."""
    verdicts: list[Verdict | None] = [None] * len(transactions)
    positions: list[int] = []
    items: list[tuple[bytes, bytes, bytes]] = []
    for index, signed in enumerate(transactions):
        member = view.get_member(signed.body.sender)
        key = member.public_key if member else b""
        if already_verified is not None and key and already_verified(signed.tx_id, key):
            verdicts[index] = (True, key)
            continue
        positions.append(index)
        items.append((key, signed.body.signing_bytes(chain_id), signed.signature))
    for index, item, is_valid in zip(positions, items, keys.verify_many(items)):
        verdicts[index] = (is_valid, item[0])
    return verdicts


def get_method(contract: str, method: str) -> Method | None:
    return _registry.get((contract, method))


for _record in (Event, Receipt):
    enc.check_record_wire(_record)

__all__ = [
    "BlockContext",
    "CallContext",
    "ContractError",
    "Event",
    "Receipt",
    "admit",
    "execute_block",
    "execute_transaction",
    "get_method",
    "precheck_call",
    "register",
    "register_block_step",
    "run_block_steps",
]
