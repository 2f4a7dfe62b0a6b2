"""Who may read what: signed read requests checked against the committed members.

The wire format is in ``ledger.read_request``; this module is the node's
side: it looks the signer up in the committed state, checks the signature
and the clock window, remembers each nonce until its window closes (so a
request cannot be replayed), and answers the permission questions of
docs/SECURITY.md:

- any member may read headers, certificates, blocks and proofs;
- an account's balances, and a transaction's receipt, only its owner (the
  sender, or a member the transaction names as a party), auditors and
  regulators.

The clock is injected so tests can move it; the nonce memory is bounded,
and when it is full the node sheds reads (429) rather than grow.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ledger.genesis import Member
from ledger.read_request import (
    READ_SKEW_MS_MAX,
    ReadAuthError,
    parse_read_credentials,
    verify_read_request,
)

READ_NONCES_MAX = 200_000
"""Nonces remembered at once: a minute of reads at over 3,000/s."""
READ_NONCES_PER_MEMBER_MAX = 20_000
"""One member's share, so a member reading too fast is refused (429) before it can crowd out the others."""
PRIVILEGED_ROLES = frozenset({"auditor", "regulator"})
PARTY_FIELDS = ("to", "from", "payer", "payee", "merchant", "beneficiary", "arbiter", "counterparty", "provider")
"""Transaction argument fields that name a party who may read the transaction's receipt."""


@dataclass(frozen=True, slots=True)
class Reader:
    """An authenticated member making a read."""

    name: str
    roles: tuple[str, ...]

    @property
    def is_privileged(self) -> bool:
        return not PRIVILEGED_ROLES.isdisjoint(self.roles)

    def may_read_account(self, account: str) -> bool:
        return self.is_privileged or account == self.name

    def may_read_transaction(self, sender: str, args: Mapping[str, object]) -> bool:
        return self.is_privileged or self.name == sender or any(args.get(field) == self.name for field in PARTY_FIELDS)


class ReadAuthenticator:
    def __init__(self, chain_id: str, get_member: Callable[[str], Member | None], clock_ms: Callable[[], int],
                 nonces_max: int = READ_NONCES_MAX, nonces_per_member_max: int = READ_NONCES_PER_MEMBER_MAX) -> None:
        self.chain_id = chain_id
        self._get_member = get_member
        self._clock_ms = clock_ms
        self._nonces_max = nonces_max
        self._nonces_per_member_max = nonces_per_member_max
        self._per_member: Counter[str] = Counter()
        self._seen: OrderedDict[tuple[str, bytes], int] = OrderedDict()
        """(member, nonce) -> the time after which the nonce's timestamp is stale anyway."""

    def authenticate(self, headers: Mapping[str, str], method: str, target: bytes, body: bytes) -> Reader:
        """The member who signed this request; raises ``ReadAuthError`` (401/429) otherwise."""
        credentials = parse_read_credentials(dict(headers))
        if credentials is None:
            raise ReadAuthError("unauthenticated", "this read needs a member's signature (x-ledger-member, "
                                "x-ledger-timestamp, x-ledger-nonce, x-ledger-signature); see docs/SECURITY.md")
        now = self._clock_ms()
        if abs(now - credentials.timestamp_ms) > READ_SKEW_MS_MAX:
            raise ReadAuthError("stale_request", f"timestamp {credentials.timestamp_ms} is more than "
                                f"{READ_SKEW_MS_MAX} ms from the node's clock {now}")
        member = self._get_member(credentials.member)
        if member is None:
            raise ReadAuthError("unauthenticated", f"{credentials.member} is not a member")
        if not verify_read_request(credentials, member.public_key, self.chain_id, method, target, body):
            raise ReadAuthError("invalid_signature", f"read request signed as {credentials.member}")
        self._remember(credentials.member, credentials.nonce, credentials.timestamp_ms, now)
        return Reader(member.name, member.roles)

    def _remember(self, member: str, nonce: bytes, timestamp_ms: int, now: int) -> None:
        while self._seen and next(iter(self._seen.values())) < now:
            (expired_member, _nonce), _expiry = self._seen.popitem(last=False)
            self._per_member[expired_member] -= 1
            if not self._per_member[expired_member]:
                del self._per_member[expired_member]
        key = (member, nonce)
        if key in self._seen:
            raise ReadAuthError("replayed_request", "this read request's nonce was already used")
        if self._per_member[member] >= self._nonces_per_member_max:
            raise ReadAuthError("too_many_requests", f"{member} made too many signed reads in the replay window")
        if len(self._seen) >= self._nonces_max:
            raise ReadAuthError("too_many_requests", "too many signed reads in the replay window")
        self._per_member[member] += 1
        # Insertion order is nearly expiry order (timestamps within the skew of now); an entry kept
        # a little past its expiry only costs memory, never lets a replay through.
        self._seen[key] = timestamp_ms + READ_SKEW_MS_MAX


__all__ = ["PARTY_FIELDS", "ReadAuthenticator", "Reader"]
