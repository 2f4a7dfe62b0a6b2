"""Deterministic settlement rules executed on the state.

Pure functions of (state, transaction, block context): no clock, no
randomness, no I/O, no floats.
"""

from contracts import accounts as _accounts  # noqa: F401  (registers the accounts contract)
from contracts import evidence as _evidence  # noqa: F401  (registers the evidence contract)
