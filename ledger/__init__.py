"""The chain's data and rules, with no networking.

Owns the canonical encoding, hashing, keys and signatures, transactions,
blocks and commit certificates, Merkle trees and the transparency log, the
world state and its root, the durable store, genesis, and chain
verification (the auditor's engine). Everything an independent verifier
needs lives here; nothing here imports ``contracts`` or ``node``.
"""
