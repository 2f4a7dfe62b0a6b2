"""merchant: aggregated-payment settlement (payments through channels, daily batches, tiered commission).

An aggregator (a member with the role ``participant``) collects payments
for its merchants through payment channels (WeChat Pay, Alipay, UnionPay,
e-CNY, ...) and already holds the collected funds on the ledger. It
registers each merchant with a settlement cycle (T+0 or T+1), records every
payment into the merchant's open batch (no money moves), and settles a
batch in one call: the channel fees go to the channels, the merchant's net
goes to the merchant, and the aggregator keeps its commission.

State (``<agg>`` the aggregator, ``<CCY>`` a currency code):

    merchant/terms/<agg>/<merchant>               MerchantTerms [settlement_cycle]
    merchant/cursor/<agg>/<merchant>/<CCY>        BatchCursor [first_unsettled, next_batch]
    merchant/batch/<agg>/<merchant>/<CCY>/<id>    Batch [day, settlement_cycle, payment_count, gross_minor,
                                                  channels, settlement]
    merchant/payment/<agg>/<payment_ref>          Payment [merchant, channel, currency, amount_minor,
                                                  fee_minor, batch]
    merchant/volume/<agg>/<merchant>/<CCY>        MonthlyVolume [month, volume_minor]

Parameters (genesis ``params``, integers):

    channel_fee_bps_<channel>        the channel's fee in basis points; a channel exists where this is set
                                     and a member named ``<channel>`` (its fee account) exists
    merchant_tier<k>_bps             commission rate of tier k (k = 0..7, contiguous from 0); none: no commission
    merchant_tier<k>_minor_<ccy>     for k >= 1: the month's volume (minor units of <ccy>) from which tier k applies

Rounding (docs/CONTRACTS.md has a worked example): every rate is an integer
number of basis points and every division rounds down.

    fee_minor of a payment  = amount_minor * channel_bps // 10_000     (per payment, when it is recorded)
    commission_minor        = batch gross_minor * tier_bps // 10_000   (per batch, when it is settled)
    net_minor               = gross_minor - sum(fee_minor) - commission_minor

so the parts sum exactly to the gross, and every rounding remainder is the
merchant's. A batch holds one day's payments (day = block ``timestamp_ms //
86_400_000``); a T+1 batch of day D settles from day D+1. Batches of one
aggregator, merchant and currency settle in the order they opened.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from contracts import arguments
from contracts.compliance import current_day
from contracts.money import move
from contracts.runtime import EVENTS_PER_TX_MAX, WRITES_PER_TX_MAX, CallContext, ContractError, register
from ledger import encoding as enc
from ledger.names import is_identifier, is_member_name
from ledger.state import BALANCE_MAX, StateView, param_key

BPS_DENOMINATOR = 10_000
"""Rates are integer basis points: 60 bps = 0.60 %."""
SETTLEMENT_CYCLES = (0, 1)
"""T+0: a batch may settle the day it opens; T+1: from the next day."""
TIERS_MAX = 8
CHANNEL_NAME_BYTES_MAX = 16
PAYMENT_REF_BYTES_MAX = 64
PAYMENTS_PER_BATCH_MAX = 1_000_000
"""A payment that would not fit the open batch (count, gross or channels) opens the next batch."""
CHANNELS_PER_BATCH_MAX = 16
_PAYMENT_REF_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-")
"""No ``/``: a payment reference is part of a state key."""

assert len("channel_fee_bps_") + CHANNEL_NAME_BYTES_MAX <= 32  # every channel's parameter name is valid
assert len(f"merchant_tier{TIERS_MAX - 1}_minor_") + 8 <= 32  # ... and every tier's, for any currency code
assert TIERS_MAX <= 10  # the tier number is one digit
assert PAYMENTS_PER_BATCH_MAX < 2**32  # Batch.payment_count is a u32
# settle writes each channel's account, the aggregator's and the merchant's, the aggregator's daily spend,
# the batch, the cursor and the volume; it emits batch_settled and at most one aml_report per payment leg.
assert CHANNELS_PER_BATCH_MAX + 6 <= WRITES_PER_TX_MAX
assert 1 + CHANNELS_PER_BATCH_MAX + 1 <= EVENTS_PER_TX_MAX


# --- Records ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MerchantTerms(enc.Record):
    settlement_cycle: int
    """0 (T+0) or 1 (T+1); a batch keeps the cycle in force when it opened."""

    WIRE: ClassVar[tuple[enc.FieldCheck, ...]] = (enc.uint(8),)


@dataclass(frozen=True, slots=True)
class BatchCursor(enc.Record):
    first_unsettled: int
    """The oldest batch not yet settled (== next_batch when every batch is settled)."""
    next_batch: int
    """The id the next batch to open gets; batches are numbered from 0."""

    WIRE: ClassVar[tuple[enc.FieldCheck, ...]] = (enc.uint(64), enc.uint(64))


@dataclass(frozen=True, slots=True)
class ChannelTotal(enc.Record):
    channel: str
    payment_count: int
    gross_minor: int
    fee_minor: int
    """The sum of this channel's per-payment fees (each rounded down when recorded)."""

    WIRE: ClassVar[tuple[enc.FieldCheck, ...]] = (
        enc.text(CHANNEL_NAME_BYTES_MAX), enc.uint(32), enc.uint(63), enc.uint(63))


@dataclass(frozen=True, slots=True)
class Settlement(enc.Record):
    height: int
    day: int
    commission_bps: int
    commission_minor: int
    fee_minor: int
    """All channels' fees."""
    net_minor: int
    """What the merchant received: gross - fee - commission."""

    WIRE: ClassVar[tuple[enc.FieldCheck, ...]] = (
        enc.uint(64), enc.uint(64), enc.uint(16), enc.uint(63), enc.uint(63), enc.uint(63))


@dataclass(frozen=True, slots=True)
class Batch(enc.Record):
    day: int
    """The day its payments were recorded: block timestamp_ms // 86_400_000."""
    settlement_cycle: int
    payment_count: int
    gross_minor: int
    channels: tuple[ChannelTotal, ...]
    """Sorted by channel: the per-channel totals settle reads instead of every payment."""
    settlement: Settlement | None
    """None while open; what was paid once settled."""

    WIRE: ClassVar[tuple[enc.FieldCheck, ...]] = (
        enc.uint(64), enc.uint(8), enc.uint(32), enc.uint(63),
        enc.array_of(enc.record(ChannelTotal), CHANNELS_PER_BATCH_MAX), enc.optional(enc.record(Settlement)))

    @property
    def fee_minor(self) -> int:
        return sum(total.fee_minor for total in self.channels)


@dataclass(frozen=True, slots=True)
class Payment(enc.Record):
    merchant: str
    channel: str
    currency: str
    amount_minor: int
    fee_minor: int
    batch: int

    WIRE: ClassVar[tuple[enc.FieldCheck, ...]] = (
        enc.text(64), enc.text(CHANNEL_NAME_BYTES_MAX), enc.text(8), enc.uint(63), enc.uint(63), enc.uint(64))


@dataclass(frozen=True, slots=True)
class MonthlyVolume(enc.Record):
    month: int
    """year * 12 + (month - 1) of the civil (UTC) calendar."""
    volume_minor: int
    """Gross of the settled batches whose payments were recorded in that month (capped at 2^63 - 1)."""

    WIRE: ClassVar[tuple[enc.FieldCheck, ...]] = (enc.uint(32), enc.uint(63))


@dataclass(frozen=True, slots=True)
class Tier:
    from_minor: int
    """The month's volume from which this tier's rate applies (0 for tier 0)."""
    bps: int


@dataclass(frozen=True, slots=True)
class Split:
    """A batch's gross divided into its parts: fee_minor + commission_minor + net_minor == gross_minor."""

    gross_minor: int
    fee_minor: int
    commission_bps: int
    commission_minor: int
    net_minor: int


# --- State keys and reads -----------------------------------------------------------------------------


def terms_key(aggregator: str, merchant: str) -> bytes:
    return f"merchant/terms/{aggregator}/{merchant}".encode()


def cursor_key(aggregator: str, merchant: str, currency: str) -> bytes:
    return f"merchant/cursor/{aggregator}/{merchant}/{currency}".encode()


def batch_key(aggregator: str, merchant: str, currency: str, batch: int) -> bytes:
    return f"merchant/batch/{aggregator}/{merchant}/{currency}/{batch}".encode()


def payment_key(aggregator: str, payment_ref: str) -> bytes:
    return f"merchant/payment/{aggregator}/{payment_ref}".encode()


def volume_key(aggregator: str, merchant: str, currency: str) -> bytes:
    return f"merchant/volume/{aggregator}/{merchant}/{currency}".encode()


def get_terms(state: StateView, aggregator: str, merchant: str) -> MerchantTerms | None:
    data = state.get(terms_key(aggregator, merchant))
    return None if data is None else MerchantTerms.decode(data)


def get_cursor(state: StateView, aggregator: str, merchant: str, currency: str) -> BatchCursor:
    data = state.get(cursor_key(aggregator, merchant, currency))
    return BatchCursor(0, 0) if data is None else BatchCursor.decode(data)


def get_batch(state: StateView, aggregator: str, merchant: str, currency: str, batch: int) -> Batch | None:
    data = state.get(batch_key(aggregator, merchant, currency, batch))
    return None if data is None else Batch.decode(data)


def get_payment(state: StateView, aggregator: str, payment_ref: str) -> Payment | None:
    data = state.get(payment_key(aggregator, payment_ref))
    return None if data is None else Payment.decode(data)


def get_volume(state: StateView, aggregator: str, merchant: str, currency: str) -> MonthlyVolume:
    data = state.get(volume_key(aggregator, merchant, currency))
    return MonthlyVolume(0, 0) if data is None else MonthlyVolume.decode(data)


def _get_param(state: StateView, name: str) -> int | None:
    """A parameter, or None where genesis does not set it (absent differs from 0 here)."""
    return None if state.get(param_key(name)) is None else state.get_param(name, 0)


# --- Pure calculations --------------------------------------------------------------------------------


def compute_civil_date(day: int) -> tuple[int, int, int]:
    """(year, month 1-12, day 1-31) of a day count since 1970-01-01, integers only.

    Howard Hinnant's ``civil_from_days`` (http://howardhinnant.github.io/date_algorithms.html):
    the proleptic Gregorian calendar in 400-year eras whose years start on 1 March.
    """
    shifted = day + 719_468  # days since 0000-03-01
    era = shifted // 146_097
    day_of_era = shifted - era * 146_097  # [0, 146096]
    year_of_era = (day_of_era - day_of_era // 1_460 + day_of_era // 36_524 - day_of_era // 146_096) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)  # from 1 March
    month_from_march = (5 * day_of_year + 2) // 153  # [0, 11]
    day_of_month = day_of_year - (153 * month_from_march + 2) // 5 + 1
    month = month_from_march + 3 if month_from_march < 10 else month_from_march - 9
    year = year_of_era + era * 400 + (1 if month <= 2 else 0)
    return year, month, day_of_month


def compute_month(day: int) -> int:
    """The civil month of a day as one counter: year * 12 + (month - 1)."""
    year, month, _ = compute_civil_date(day)
    return year * 12 + month - 1


def compute_fee(amount_minor: int, bps: int) -> int:
    """A rate applied to an amount, rounded down (the remainder stays with the merchant)."""
    return amount_minor * bps // BPS_DENOMINATOR


def select_commission_bps(tiers: tuple[Tier, ...], volume_minor: int) -> int:
    """The rate of the highest tier whose threshold the month's volume reaches; 0 without tiers."""
    bps = 0
    for tier in tiers:
        if volume_minor >= tier.from_minor:
            bps = tier.bps
    return bps


def compute_split(gross_minor: int, fee_minor: int, commission_bps: int) -> Split:
    """Commission on the batch's gross, rounded down; the merchant gets the rest."""
    commission_minor = compute_fee(gross_minor, commission_bps)
    net_minor = gross_minor - fee_minor - commission_minor
    # Rates that add up to more than the gross are a bad parameter set, not a bad call.
    if net_minor < 0:
        raise ContractError("invalid_fee_schedule", f"fees {fee_minor} and commission {commission_minor} "
                            f"exceed the gross {gross_minor}")
    return Split(gross_minor, fee_minor, commission_bps, commission_minor, net_minor)


def add_payment(batch: Batch, channel: str, amount_minor: int, fee_minor: int) -> Batch:
    """The batch with one more payment counted in its totals and its channel's totals."""
    totals = {total.channel: total for total in batch.channels}
    old = totals.get(channel, ChannelTotal(channel, 0, 0, 0))
    totals[channel] = ChannelTotal(channel, old.payment_count + 1, old.gross_minor + amount_minor,
                                   old.fee_minor + fee_minor)
    return Batch(batch.day, batch.settlement_cycle, batch.payment_count + 1, batch.gross_minor + amount_minor,
                 tuple(totals[name] for name in sorted(totals)), batch.settlement)


def is_room_in_batch(batch: Batch, channel: str, amount_minor: int) -> bool:
    return (batch.payment_count < PAYMENTS_PER_BATCH_MAX
            and batch.gross_minor + amount_minor <= BALANCE_MAX
            and (len(batch.channels) < CHANNELS_PER_BATCH_MAX or any(t.channel == channel for t in batch.channels)))


# --- The fee schedule (chain parameters) --------------------------------------------------------------


def _check_rate(name: str, bps: int) -> int:
    if not 0 <= bps <= BPS_DENOMINATOR:
        raise ContractError("invalid_fee_schedule", f"{name} = {bps} is not in [0, {BPS_DENOMINATOR}] bps")
    return bps


def get_channel_fee_bps(state: StateView, channel: str) -> int | None:
    name = f"channel_fee_bps_{channel}"
    bps = _get_param(state, name)
    return None if bps is None else _check_rate(name, bps)


def get_commission_tiers(state: StateView, currency: str) -> tuple[Tier, ...]:
    """Tiers 0, 1, ... while ``merchant_tier<k>_bps`` is set (and, from tier 1, its threshold in ``currency``)."""
    tiers: list[Tier] = []
    for number in range(TIERS_MAX):
        bps = _get_param(state, f"merchant_tier{number}_bps")
        from_minor = 0 if number == 0 else _get_param(state, f"merchant_tier{number}_minor_{currency.lower()}")
        if bps is None or from_minor is None:
            break
        _check_rate(f"merchant_tier{number}_bps", bps)
        # Each tier starts above the one before it (tier 0 at 0), or the schedule is ambiguous.
        if tiers and from_minor <= tiers[-1].from_minor:
            raise ContractError("invalid_fee_schedule", f"merchant_tier{number}_minor_{currency.lower()} = "
                                f"{from_minor} does not exceed the tier below")
        tiers.append(Tier(from_minor, bps))
    return tuple(tiers)


# --- Arguments (the stateless checks, run at admission and again in the call) ------------------------


def _merchant(state: StateView, args: dict[str, Any]) -> str:
    name = args.get("merchant")
    if not is_member_name(name) or state.get_member(name) is None:  # type: ignore[arg-type]
        raise ContractError("unknown_account", f"merchant {name!r} is not a member")
    assert isinstance(name, str)
    return name


def _channel(state: StateView, args: dict[str, Any]) -> tuple[str, int]:
    """A configured channel and its fee rate: the parameter is set and its fee account is a member."""
    name = args.get("channel")
    if not is_identifier(name) or len(name) > CHANNEL_NAME_BYTES_MAX:  # type: ignore[arg-type]
        raise ContractError("unknown_channel", f"channel {name!r}")
    assert isinstance(name, str)
    bps = get_channel_fee_bps(state, name)
    if bps is None or state.get_member(name) is None:
        raise ContractError("unknown_channel", f"channel {name!r} is not configured")
    return name, bps


def _payment_ref(args: dict[str, Any]) -> str:
    ref = args.get("payment_ref")
    if type(ref) is not str or not 0 < len(ref) <= PAYMENT_REF_BYTES_MAX or not set(ref) <= _PAYMENT_REF_CHARS:
        raise ContractError("invalid_argument", f"payment_ref: 1 to {PAYMENT_REF_BYTES_MAX} of [A-Za-z0-9._:-]")
    return ref


def _settlement_cycle(args: dict[str, Any]) -> int:
    cycle = args.get("settlement_cycle")
    if type(cycle) is not int or cycle not in SETTLEMENT_CYCLES:
        raise ContractError("invalid_argument", "settlement_cycle must be 0 (T+0) or 1 (T+1)")
    return cycle


def _batch_number(args: dict[str, Any]) -> int | None:
    batch = args.get("batch")
    if batch is None:
        return None
    if type(batch) is not int or not 0 <= batch <= enc.U64_MAX:
        raise ContractError("invalid_argument", "batch must be a batch number")
    return batch


def check_register_args(state: StateView, args: dict[str, Any]) -> None:
    _merchant(state, args)
    _settlement_cycle(args)


def check_record_args(state: StateView, args: dict[str, Any]) -> None:
    _merchant(state, args)
    _channel(state, args)
    arguments.currency(state, args)
    arguments.amount(args)
    _payment_ref(args)


def check_settle_args(state: StateView, args: dict[str, Any]) -> None:
    _merchant(state, args)
    arguments.currency(state, args)
    _batch_number(args)


# --- Rules --------------------------------------------------------------------------------------------


def _require_aggregator(context: CallContext) -> None:
    sender = context.state.get_member(context.sender)
    assert sender is not None  # admission checked the sender is a member
    if "participant" not in sender.roles:
        raise ContractError("not_authorized", f"{context.sender} lacks the role participant")


def _require_terms(context: CallContext, merchant: str) -> MerchantTerms:
    terms = get_terms(context.state, context.sender, merchant)
    if terms is None:
        raise ContractError("merchant_not_registered", f"{merchant} is not registered with {context.sender}")
    return terms


@register("merchant", "register_merchant", check=check_register_args)
def process_register_merchant(context: CallContext, args: dict[str, Any]) -> None:
    merchant = _merchant(context.state, args)
    cycle = _settlement_cycle(args)
    _require_aggregator(context)
    # An aggregator paying itself would hide its commission in its own net.
    if merchant == context.sender:
        raise ContractError("invalid_argument", "an aggregator cannot be its own merchant")
    # Re-sending the same registration changes nothing: say so (new terms are allowed).
    terms = get_terms(context.state, context.sender, merchant)
    if terms is not None and terms.settlement_cycle == cycle:
        raise ContractError("merchant_exists")
    context.state.set(terms_key(context.sender, merchant), MerchantTerms(cycle).encode())
    context.emit("merchant_registered", merchant=merchant, settlement_cycle=cycle)


def _check_new_payment_ref(existing: Payment | None, merchant: str, channel: str, currency: str,
                           amount: int) -> None:
    """A reference is recorded once: a retry learns whether it is the same payment or a clash."""
    if existing is None:
        return
    if existing.merchant != merchant:
        raise ContractError("payment_exists_with_different_merchant")
    if existing.channel != channel:
        raise ContractError("payment_exists_with_different_channel")
    if existing.currency != currency:
        raise ContractError("payment_exists_with_different_currency")
    if existing.amount_minor != amount:
        raise ContractError("payment_exists_with_different_amount_minor")
    raise ContractError("payment_exists")


def _open_batch(context: CallContext, merchant: str, currency: str, terms: MerchantTerms, channel: str,
                amount: int) -> tuple[BatchCursor, int, Batch]:
    """The batch a payment goes into: the latest if it is unsettled, today's, on today's terms and has room."""
    state, day = context.state, current_day(context)
    cursor = get_cursor(state, context.sender, merchant, currency)
    if cursor.first_unsettled < cursor.next_batch:
        latest = cursor.next_batch - 1
        batch = get_batch(state, context.sender, merchant, currency, latest)
        assert batch is not None and batch.settlement is None, (merchant, currency, latest)
        if batch.day == day and batch.settlement_cycle == terms.settlement_cycle and \
                is_room_in_batch(batch, channel, amount):
            return cursor, latest, batch
    opened = Batch(day, terms.settlement_cycle, 0, 0, (), None)
    return BatchCursor(cursor.first_unsettled, cursor.next_batch + 1), cursor.next_batch, opened


@register("merchant", "record_payment", check=check_record_args)
def process_record_payment(context: CallContext, args: dict[str, Any]) -> None:
    merchant = _merchant(context.state, args)
    channel, fee_bps = _channel(context.state, args)
    currency = arguments.currency(context.state, args).code
    amount = arguments.amount(args)
    payment_ref = _payment_ref(args)
    _require_aggregator(context)
    terms = _require_terms(context, merchant)
    _check_new_payment_ref(get_payment(context.state, context.sender, payment_ref), merchant, channel, currency,
                           amount)
    fee = compute_fee(amount, fee_bps)
    cursor, number, batch = _open_batch(context, merchant, currency, terms, channel, amount)
    state = context.state
    if batch.payment_count == 0:  # a batch opened: the cursor moved
        state.set(cursor_key(context.sender, merchant, currency), cursor.encode())
    state.set(batch_key(context.sender, merchant, currency, number),
              add_payment(batch, channel, amount, fee).encode())
    state.set(payment_key(context.sender, payment_ref),
              Payment(merchant, channel, currency, amount, fee, number).encode())
    context.emit("payment_recorded", merchant=merchant, channel=channel, currency=currency, amount_minor=amount,
                 fee_minor=fee, payment_ref=payment_ref, batch=number)


def _batch_to_settle(cursor: BatchCursor, requested: int | None) -> int:
    """The oldest unsettled batch; a named batch must be that one (so a retried settle cannot pay twice)."""
    if cursor.first_unsettled == cursor.next_batch and requested is None:
        raise ContractError("nothing_to_settle")
    if requested is None:
        return cursor.first_unsettled
    if requested >= cursor.next_batch:
        raise ContractError("unknown_batch", f"batch {requested} was never opened")
    if requested < cursor.first_unsettled:
        raise ContractError("batch_already_settled", f"batch {requested}")
    if requested != cursor.first_unsettled:
        raise ContractError("batch_out_of_order", f"batch {cursor.first_unsettled} settles first")
    return requested


def _add_to_month(context: CallContext, merchant: str, currency: str, batch: Batch) -> tuple[int, int]:
    """The merchant's volume in the month of the batch's payments, this batch included; and that month."""
    month = compute_month(batch.day)
    volume = get_volume(context.state, context.sender, merchant, currency)
    # Another month (later, or earlier if the chain's day length was ever different): this batch starts it.
    before = volume.volume_minor if volume.month == month else 0
    return month, min(before + batch.gross_minor, BALANCE_MAX)


def _pay_out(context: CallContext, merchant: str, currency: str, batch: Batch, split: Split) -> None:
    """The channels' fees and the merchant's net leave the aggregator; its commission stays."""
    for total in batch.channels:
        if total.fee_minor == 0:
            continue
        # A channel's fee account is a member (it can spend its fees); it must still be one.
        if context.state.get_member(total.channel) is None:
            raise ContractError("unknown_channel", f"channel {total.channel!r} has no fee account")
        if total.channel != context.sender:  # an aggregator that is also the channel already holds the fee
            move(context, context.sender, total.channel, currency, total.fee_minor)
    if split.net_minor:
        move(context, context.sender, merchant, currency, split.net_minor)


@register("merchant", "settle", check=check_settle_args)
def process_settle(context: CallContext, args: dict[str, Any]) -> None:
    merchant = _merchant(context.state, args)
    currency = arguments.currency(context.state, args).code
    requested = _batch_number(args)
    _require_aggregator(context)
    _require_terms(context, merchant)
    cursor = get_cursor(context.state, context.sender, merchant, currency)
    number = _batch_to_settle(cursor, requested)
    batch = get_batch(context.state, context.sender, merchant, currency, number)
    assert batch is not None and batch.settlement is None, (merchant, currency, number)
    today = current_day(context)
    # T+1: a batch of day D settles from day D+1.
    if today < batch.day + batch.settlement_cycle:
        raise ContractError("settlement_not_due", f"batch {number} settles from day {batch.day + 1}")
    month, month_volume = _add_to_month(context, merchant, currency, batch)
    commission_bps = select_commission_bps(get_commission_tiers(context.state, currency), month_volume)
    split = compute_split(batch.gross_minor, batch.fee_minor, commission_bps)
    _pay_out(context, merchant, currency, batch, split)
    settlement = Settlement(context.block.height, today, commission_bps, split.commission_minor, split.fee_minor,
                            split.net_minor)
    state = context.state
    state.set(batch_key(context.sender, merchant, currency, number),
              Batch(batch.day, batch.settlement_cycle, batch.payment_count, batch.gross_minor, batch.channels,
                    settlement).encode())
    state.set(cursor_key(context.sender, merchant, currency),
              BatchCursor(number + 1, cursor.next_batch).encode())
    state.set(volume_key(context.sender, merchant, currency), MonthlyVolume(month, month_volume).encode())
    context.emit("batch_settled", merchant=merchant, currency=currency, batch=number,
                 payment_count=batch.payment_count, gross_minor=split.gross_minor,
                 channel_fees={total.channel: total.fee_minor for total in batch.channels},
                 fee_minor=split.fee_minor, commission_bps=commission_bps,
                 commission_minor=split.commission_minor, net_minor=split.net_minor)


for _record in (MerchantTerms, BatchCursor, ChannelTotal, Settlement, Batch, Payment, MonthlyVolume):
    enc.check_record_wire(_record)

__all__ = [
    "BPS_DENOMINATOR",
    "Batch",
    "BatchCursor",
    "ChannelTotal",
    "MerchantTerms",
    "MonthlyVolume",
    "Payment",
    "Settlement",
    "Split",
    "Tier",
    "add_payment",
    "compute_civil_date",
    "compute_fee",
    "compute_month",
    "compute_split",
    "get_batch",
    "get_channel_fee_bps",
    "get_commission_tiers",
    "get_cursor",
    "get_payment",
    "get_terms",
    "get_volume",
    "select_commission_bps",
]
