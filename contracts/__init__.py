"""Deterministic settlement rules executed on the state.

Pure functions of (state, transaction, block context): no clock, no
randomness, no I/O, no floats.
"""

from contracts import accounts as _accounts  # noqa: F401  (registers the accounts contract)
from contracts import compliance as _compliance  # noqa: F401  (registers the compliance contract)
from contracts import escrow as _escrow  # noqa: F401  (registers the escrow contract)
from contracts import evidence as _evidence  # noqa: F401  (registers the evidence contract)
from contracts import fx as _fx  # noqa: F401  (registers the fx contract)
from contracts import governance as _governance  # noqa: F401  (registers governance and its block step)
from contracts import merchant as _merchant  # noqa: F401  (registers the merchant settlement contract)
from contracts import netting as _netting  # noqa: F401  (registers the netting contract)
