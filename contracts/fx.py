"""fx: cross-border payment versus payment through an FX provider's posted quote.

An FX provider (a member with the role ``fx_provider``) posts a quote: a
currency pair, a mid rate as an exact integer ratio, a spread, a flat fee, a
validity window in heights and a size. A payer then pays a member abroad
against that quote, in one call with two legs:

    source leg   payer    -> provider   source currency   fee + converted + remainder
    target leg   provider -> payee      target currency   the converted amount

Both legs go through ``money.move`` (compliance on each), in the call's one
view: if either fails, neither happened. The rate is in MAJOR units (target
major units per source major unit); the exponents of the two currencies are
applied exactly, so CNY (2) to JPY (0) needs no special case. Every division
is floor or ceiling as stated below, and the sub-unit rounding remainder
goes to the provider, named in the event, so no value is created or lost.

State:

    fx/quote/<provider>/<quote_id>   FxQuote (pair and exponents, rate, spread, fee, window, size, remaining size)

The conversion (docs/CONTRACTS.md, "fx", has worked examples):

    N = rate_num * (10_000 - spread_bps) * 10**target_exponent
    D = rate_den * 10_000 * 10**source_exponent
    N / D = target minor units per source minor unit, after the spread

    by source (payer pays exactly source_minor):
        target_minor    = floor((source_minor - fee_minor) * N / D)
        converted_minor = ceil(target_minor * D / N)          the exact source price of target_minor
        remainder_minor = source_minor - fee_minor - converted_minor    (>= 0; to the provider)
    by target (payee gets exactly target_minor):
        converted_minor = ceil(target_minor * D / N)
        remainder_minor = 0
        source_minor    = fee_minor + converted_minor
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from contracts import arguments
from contracts.money import move
from contracts.runtime import CallContext, ContractError, register
from ledger import encoding as enc
from ledger.state import BALANCE_MAX, StateView, currency_key

FX_PROVIDER_ROLE = "fx_provider"
BPS_DENOMINATOR = 10_000
"""Basis points in one: a spread of 25 bps scales the rate by (10_000 - 25) / 10_000."""
SPREAD_BPS_MAX = 1_000
"""A spread above 10 % is refused as a likely mistake (a provider can still quote any rate)."""
RATE_TERM_MAX = 10**18
"""Largest rate numerator or denominator: 18 digits of precision is more than any FX rate carries."""
QUOTE_WINDOW_HEIGHTS_MAX = 1_000_000
"""A quote is valid for at most this many heights (about 11.5 days of one-second blocks)."""
HEIGHT_MAX = enc.U64_MAX
QUOTE_ID_BYTES_MAX = 32
_QUOTE_ID_FIRST = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_QUOTE_ID_REST = _QUOTE_ID_FIRST | frozenset("._-")
QUOTE_KEY_PREFIX = b"fx/quote/"
WRITTEN_QUOTES_CACHED = 4096

assert RATE_TERM_MAX < BALANCE_MAX  # a rate term fits the record's 63-bit fields
assert 0 <= SPREAD_BPS_MAX < BPS_DENOMINATOR  # the rate after the spread is still positive


@dataclass(frozen=True, slots=True)
class FxQuote(enc.Record):
    """A provider's standing offer: sell ``target_currency`` for ``source_currency`` at a fixed rate."""

    source_currency: str
    """What the payer pays in (the provider receives)."""
    target_currency: str
    """What the payee receives (the provider pays out)."""
    source_exponent: int
    """The source currency's exponent, copied at posting (an exponent never changes): no currency read per payment."""
    target_exponent: int
    """The target currency's exponent, copied likewise."""
    rate_num: int
    """Mid rate = rate_num / rate_den target MAJOR units per source MAJOR unit; both in [1, RATE_TERM_MAX]."""
    rate_den: int
    spread_bps: int
    """The provider's markup: the rate applied is the mid rate times (10_000 - spread_bps) / 10_000."""
    fee_minor: int
    """A flat fee per payment, in the source currency's minor units, to the provider."""
    valid_from_height: int
    """First height at which the quote can be used."""
    valid_until_height: int
    """Last height at which the quote can be used (inclusive)."""
    size_target_minor: int
    """The most target minor units the provider will pay out under this quote, in all."""
    remaining_target_minor: int
    """What is left of the size: size minus every payment's target_minor; never negative."""

    WIRE: ClassVar[tuple[enc.FieldCheck, ...]] = (
        enc.text(8),
        enc.text(8),
        enc.uint(8),
        enc.uint(8),
        enc.uint(63),
        enc.uint(63),
        enc.uint(16),
        enc.uint(63),
        enc.uint(64),
        enc.uint(64),
        enc.uint(63),
        enc.uint(63),
    )


@dataclass(frozen=True, slots=True)
class Conversion:
    """The amounts of one payment under a quote; source_minor = fee + converted + remainder."""

    source_minor: int
    fee_minor: int
    converted_minor: int
    remainder_minor: int
    target_minor: int


_written_quotes: dict[bytes, FxQuote] = {}
"""Quotes by the bytes ``put_quote`` wrote (a memo: records are immutable, equal bytes are equal quotes)."""


# --- Keys, pure arithmetic ----------------------------------------------------------------------


def quote_key(provider: str, quote_id: str) -> bytes:
    return QUOTE_KEY_PREFIX + provider.encode() + b"/" + quote_id.encode()


def is_quote_id(value: object) -> bool:
    """1 to 32 of ``a-z 0-9 . _ -``, starting with a letter or digit (it sits inside a state key)."""
    return (isinstance(value, str) and 0 < len(value) <= QUOTE_ID_BYTES_MAX and value[0] in _QUOTE_ID_FIRST
            and all(character in _QUOTE_ID_REST for character in value))


def div_ceil(numerator: int, denominator: int) -> int:
    assert numerator >= 0 and denominator > 0, (numerator, denominator)
    return -(-numerator // denominator)


def compute_rate_minor(quote: FxQuote) -> tuple[int, int]:
    """``(N, D)``: target minor units per source minor unit = N / D, after the spread, exactly."""
    numerator = quote.rate_num * (BPS_DENOMINATOR - quote.spread_bps) * 10**quote.target_exponent
    denominator = quote.rate_den * BPS_DENOMINATOR * 10**quote.source_exponent
    return numerator, denominator


def compute_by_source(source_minor: int, fee_minor: int, numerator: int, denominator: int) -> Conversion:
    """The payer pays exactly ``source_minor``; the payee gets the floor; the remainder stays with the provider."""
    if source_minor <= fee_minor:
        raise ContractError("amount_below_fee", f"{source_minor} does not cover the fee of {fee_minor}")
    convertible = source_minor - fee_minor
    target = convertible * numerator // denominator
    if target > BALANCE_MAX:
        raise ContractError("amount_too_large", f"the payment converts to {target} minor units")
    converted = div_ceil(target * denominator, numerator)
    return Conversion(source_minor, fee_minor, converted, convertible - converted, target)


def compute_by_target(target_minor: int, fee_minor: int, numerator: int, denominator: int) -> Conversion:
    """The payee gets exactly ``target_minor``; the payer pays its ceiling price plus the fee."""
    converted = div_ceil(target_minor * denominator, numerator)
    source = fee_minor + converted
    if source > BALANCE_MAX:
        raise ContractError("amount_too_large", f"the payment costs {source} source minor units")
    return Conversion(source, fee_minor, converted, 0, target_minor)


# --- Quote storage --------------------------------------------------------------------------------


def get_quote(state: StateView, provider: str, quote_id: str) -> FxQuote | None:
    data = state.get(quote_key(provider, quote_id))
    if data is None:
        return None
    quote = _written_quotes.get(data)
    return quote if quote is not None else FxQuote.decode(data)


def put_quote(state: StateView, provider: str, quote_id: str, quote: FxQuote) -> None:
    data = quote.encode()
    # Every payment rewrites its quote, and the next payment reads it back: keep the record, skip the decode.
    if len(_written_quotes) >= WRITTEN_QUOTES_CACHED:
        _written_quotes.clear()
    _written_quotes[data] = quote
    state.set(quote_key(provider, quote_id), data)


# --- Argument checks (stateless: the same at admission and in the call) --------------------------


def _integer(args: dict[str, Any], field: str, low: int, high: int, *, default: int | None = None) -> int:
    """An integer argument in [low, high] that is not an amount: ``invalid_argument`` otherwise."""
    value = args.get(field, default)
    if type(value) is not int or not low <= value <= high:
        raise ContractError("invalid_argument", f"{field} must be an integer in [{low}, {high}]")
    return value


def _currency_exponent(state: StateView, args: dict[str, Any], field: str) -> tuple[str, int]:
    supply = arguments.currency(state, args, field)
    return supply.code, supply.exponent


def _quote_id(args: dict[str, Any]) -> str:
    quote_id = args.get("quote_id")
    if not is_quote_id(quote_id):
        raise ContractError("invalid_argument", "quote_id must be 1-32 of a-z 0-9 . _ - (first a letter or digit)")
    assert isinstance(quote_id, str)
    return quote_id


def _pair(state: StateView, args: dict[str, Any]) -> tuple[str, int, str, int]:
    """Two known, different currencies: (source, its exponent, target, its exponent)."""
    source, source_exponent = _currency_exponent(state, args, "source_currency")
    target, target_exponent = _currency_exponent(state, args, "target_currency")
    if source == target:
        raise ContractError("invalid_argument", "source_currency and target_currency must differ")
    return source, source_exponent, target, target_exponent


def _pair_codes(state: StateView, args: dict[str, Any]) -> tuple[str, str]:
    """``_pair`` without the exponents: the same checks and codes, and no record decoded (a payment's hot path)."""
    codes = []
    for field in ("source_currency", "target_currency"):
        code = args.get(field)
        if not isinstance(code, str) or state.get(currency_key(code)) is None:
            raise ContractError("unknown_currency", f"{field} {code!r}")
        codes.append(code)
    if codes[0] == codes[1]:
        raise ContractError("invalid_argument", "source_currency and target_currency must differ")
    return codes[0], codes[1]


def _check_window(valid_from: int, valid_until: int) -> None:
    if valid_until - valid_from > QUOTE_WINDOW_HEIGHTS_MAX:
        raise ContractError("invalid_argument", f"a quote is valid for at most {QUOTE_WINDOW_HEIGHTS_MAX} heights")


def check_post_quote_args(state: StateView, args: dict[str, Any]) -> None:
    """``post_quote``: the terms, in the order the call checks them."""
    _quote_id(args)
    _pair(state, args)
    _integer(args, "rate_num", 1, RATE_TERM_MAX)
    _integer(args, "rate_den", 1, RATE_TERM_MAX)
    _integer(args, "spread_bps", 0, SPREAD_BPS_MAX, default=0)
    arguments.amount(args, "fee_minor", zero_allowed=True)
    until = _integer(args, "valid_until_height", 0, HEIGHT_MAX)
    if "valid_from_height" in args:  # absent: the call's height (the call checks that window)
        start = _integer(args, "valid_from_height", 0, until)
        _check_window(start, until)
    arguments.amount(args, "size_target_minor")


def check_withdraw_quote_args(state: StateView, args: dict[str, Any]) -> None:
    _quote_id(args)


def _bounded_amounts(args: dict[str, Any]) -> tuple[bool, int, int]:
    """``(by_source, amount, bound)``: exactly one of source_minor / target_minor, with its slippage bound."""
    if ("source_minor" in args) == ("target_minor" in args):
        raise ContractError("invalid_argument", "give exactly one of source_minor and target_minor")
    if "source_minor" in args:
        return True, arguments.amount(args, "source_minor"), arguments.amount(args, "min_target_minor")
    return False, arguments.amount(args, "target_minor"), arguments.amount(args, "max_source_minor")


def check_pay_args(state: StateView, args: dict[str, Any]) -> None:
    """``pay``: who, which quote, which pair, how much and the slippage bound."""
    arguments.member(state, args, "provider")
    _quote_id(args)
    arguments.member(state, args, "to")
    _pair_codes(state, args)
    _bounded_amounts(args)


# --- Methods ----------------------------------------------------------------------------------------


def _require_provider_role(state: StateView, name: str) -> None:
    member = state.get_member(name)
    if member is None or FX_PROVIDER_ROLE not in member.roles:
        raise ContractError("not_authorized", f"{name} lacks the role {FX_PROVIDER_ROLE}")


@register("fx", "post_quote", check=check_post_quote_args)
def process_post_quote(context: CallContext, args: dict[str, Any]) -> None:
    """Post, or replace with new terms and a fresh size, the sender's quote ``quote_id``."""
    check_post_quote_args(context.state, args)
    _source, source_exponent, _target, target_exponent = _pair(context.state, args)
    height = context.block.height
    valid_until = args["valid_until_height"]
    valid_from = args.get("valid_from_height", height)
    # Only an FX provider may quote.
    _require_provider_role(context.state, context.sender)
    # The window must not end before this height (a quote nobody could use) ...
    if valid_until < height:
        raise ContractError("quote_expired", f"valid_until_height {valid_until} is before height {height}")
    # ... nor be longer than the maximum (checked again: valid_from defaults to this height).
    _check_window(valid_from, valid_until)
    size = args["size_target_minor"]
    quote = FxQuote(args["source_currency"], args["target_currency"], source_exponent, target_exponent,
                    args["rate_num"], args["rate_den"], args.get("spread_bps", 0), args.get("fee_minor", 0),
                    valid_from, valid_until, size, size)
    put_quote(context.state, context.sender, args["quote_id"], quote)
    context.emit("fx_quote_posted", provider=context.sender, quote_id=args["quote_id"],
                 source_currency=quote.source_currency, target_currency=quote.target_currency,
                 rate_num=quote.rate_num, rate_den=quote.rate_den, spread_bps=quote.spread_bps,
                 fee_minor=quote.fee_minor, valid_from_height=valid_from, valid_until_height=valid_until,
                 size_target_minor=size)


@register("fx", "withdraw_quote", check=check_withdraw_quote_args)
def process_withdraw_quote(context: CallContext, args: dict[str, Any]) -> None:
    """Delete the sender's quote: no payment can use it afterwards (the id may be posted again)."""
    quote_id = _quote_id(args)
    quote = get_quote(context.state, context.sender, quote_id)
    if quote is None:
        raise ContractError("unknown_quote", f"{context.sender} has no quote {quote_id}")
    context.state.delete(quote_key(context.sender, quote_id))
    context.emit("fx_quote_withdrawn", provider=context.sender, quote_id=quote_id,
                 remaining_target_minor=quote.remaining_target_minor)


def _check_quote_usable(state: StateView, provider: str, quote_id: str, quote: FxQuote | None,
                        source: str, target: str, height: int) -> FxQuote:
    # The quote exists ...
    if quote is None:
        raise ContractError("unknown_quote", f"{provider} has no quote {quote_id}")
    # ... for the pair the payer named (a replaced quote may have changed it) ...
    if (quote.source_currency, quote.target_currency) != (source, target):
        raise ContractError("quote_currency_mismatch",
                            f"quote {quote_id} is {quote.source_currency}->{quote.target_currency}")
    # ... its provider still holds the role ...
    _require_provider_role(state, provider)
    # ... and this height is inside its window.
    if height < quote.valid_from_height:
        raise ContractError("quote_not_yet_valid", f"quote {quote_id} is valid from height {quote.valid_from_height}")
    if height > quote.valid_until_height:
        raise ContractError("quote_expired", f"quote {quote_id} expired at height {quote.valid_until_height}")
    return quote


@register("fx", "pay", check=check_pay_args)
def process_pay(context: CallContext, args: dict[str, Any]) -> None:
    """Pay ``to`` in the target currency with the sender's source currency, both legs or neither."""
    state = context.state
    provider = arguments.member(state, args, "provider")
    quote_id = _quote_id(args)
    payee = arguments.member(state, args, "to")
    source, target = _pair_codes(state, args)
    by_source, amount, bound = _bounded_amounts(args)
    quote = _check_quote_usable(state, provider, quote_id, get_quote(state, provider, quote_id), source, target,
                                context.block.height)
    numerator, denominator = compute_rate_minor(quote)
    if by_source:
        conversion = compute_by_source(amount, quote.fee_minor, numerator, denominator)
        # The payee must get at least what the payer accepted (this also refuses a zero target).
        if conversion.target_minor < bound:
            raise ContractError("slippage_exceeded", f"{conversion.target_minor} {target} is below {bound}")
    else:
        conversion = compute_by_target(amount, quote.fee_minor, numerator, denominator)
        # The payer must pay at most what it accepted.
        if conversion.source_minor > bound:
            raise ContractError("slippage_exceeded", f"{conversion.source_minor} {source} is above {bound}")
    # The quote's remaining size must cover the target amount.
    if conversion.target_minor > quote.remaining_target_minor:
        raise ContractError("quote_exhausted", f"quote {quote_id} has {quote.remaining_target_minor} {target} left")
    # Effects: both legs (each compliance checked), then the quote's size. A failure anywhere drops them all.
    move(context, context.sender, provider, source, conversion.source_minor)
    move(context, provider, payee, target, conversion.target_minor)
    remaining = quote.remaining_target_minor - conversion.target_minor
    assert remaining >= 0, remaining
    put_quote(state, provider, quote_id, _with_remaining(quote, remaining))
    context.emit("fx_paid", payer=context.sender, provider=provider, quote_id=quote_id, to=payee,
                 source_currency=source, source_minor=conversion.source_minor, fee_minor=conversion.fee_minor,
                 converted_minor=conversion.converted_minor, remainder_minor=conversion.remainder_minor,
                 target_currency=target, target_minor=conversion.target_minor, rate_num=quote.rate_num,
                 rate_den=quote.rate_den, spread_bps=quote.spread_bps)


def _with_remaining(quote: FxQuote, remaining: int) -> FxQuote:
    """``dataclasses.replace`` spelled out: this runs on every payment."""
    return FxQuote(quote.source_currency, quote.target_currency, quote.source_exponent, quote.target_exponent,
                   quote.rate_num, quote.rate_den, quote.spread_bps, quote.fee_minor, quote.valid_from_height,
                   quote.valid_until_height, quote.size_target_minor, remaining)


enc.check_record_wire(FxQuote)

__all__ = [
    "BPS_DENOMINATOR",
    "FX_PROVIDER_ROLE",
    "QUOTE_WINDOW_HEIGHTS_MAX",
    "RATE_TERM_MAX",
    "SPREAD_BPS_MAX",
    "Conversion",
    "FxQuote",
    "compute_by_source",
    "compute_by_target",
    "compute_rate_minor",
    "div_ceil",
    "get_quote",
    "is_quote_id",
    "process_pay",
    "process_post_quote",
    "process_withdraw_quote",
    "quote_key",
]
