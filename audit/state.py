"""The auditor's own copy of the world state, rebuilt by replay.

The auditor trusts no node's state: it starts from the genesis and applies
what its own execution of the contracts wrote, block by block. It keeps:

- every live key's value in a dict (a ``StateReader`` for the contracts),
  with the height that last wrote it, so a node's state rows can be compared
  row by row and a bad row named by the height of its last write;
- its own state tree, in memory, whose root must equal each header's state
  root. Pages are immutable and content-addressed, so the tree would grow
  with every block; ``PruningNodeStore`` drops each page an update replaced,
  which keeps memory proportional to the state, never to the chain.

Memory is O(live keys): a few hundred bytes per key.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence

from ledger import smt
from ledger.genesis import Genesis
from ledger.state import compute_genesis_state


class PruningNodeStore:
    """State-tree pages reachable from the latest root only.

    ``StateTree.update`` reads exactly the pages on the changed paths and
    writes their replacements. When every change is real (a new value, a new
    key or a deletion), every page it read changes its hash, so the pages
    read and not rewritten are unreachable from the new root and are
    dropped. ``ReplayState.apply`` removes no-op changes before updating.
    """

    def __init__(self) -> None:
        self.pages: dict[bytes, bytes] = {}
        self._read: list[bytes] = []
        self._written: set[bytes] = set()

    def get_node(self, node_hash: bytes) -> bytes | None:
        self._read.append(node_hash)
        return self.pages.get(node_hash)

    def get_nodes(self, node_hashes: Sequence[bytes]) -> Mapping[bytes, bytes]:
        self._read.extend(node_hashes)
        pages = self.pages
        return {h: pages[h] for h in node_hashes if h in pages}

    def put_nodes(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        pages, written = self.pages, self._written
        for node_hash, body in items:
            pages[node_hash] = body
            written.add(node_hash)

    def drop_replaced(self) -> None:
        """Forget the pages the last update read and did not write again."""
        pages, written = self.pages, self._written
        for node_hash in self._read:
            if node_hash not in written:
                pages.pop(node_hash, None)
        self._read = []
        self._written = set()


class ReplayState:
    """Key/value state plus its root, advanced one block's changes at a time."""

    def __init__(self, values: dict[bytes, bytes], written_at: dict[bytes, int], root: bytes | None = None) -> None:
        """Use ``from_genesis`` or ``from_items``; ``root`` is checked when given."""
        self.values = values
        self.written_at = written_at
        self._pages = PruningNodeStore()
        self._tree = smt.StateTree(self._pages)
        self.root = self._tree.update(smt.EMPTY_HASH, values) if values else smt.EMPTY_HASH
        self._pages.drop_replaced()
        if root is not None and root != self.root:
            raise ValueError("the saved state does not give its saved root")

    @classmethod
    def from_genesis(cls, genesis: Genesis) -> ReplayState:
        values = compute_genesis_state(genesis)
        return cls(values, dict.fromkeys(values, 0))

    def get(self, key: bytes) -> bytes | None:
        return self.values.get(key)

    def apply(self, changes: Mapping[bytes, bytes | None], height: int) -> bytes:
        """Apply one block's writes (None deletes); return the new root."""
        values, written_at = self.values, self.written_at
        real: dict[bytes, bytes | None] = {}
        for key, value in changes.items():
            if value is None:
                if key in values:
                    del values[key]
                    del written_at[key]
                    real[key] = None
            else:
                if values.get(key) != value:
                    real[key] = value
                values[key] = value
                written_at[key] = height
        if real:
            self.root = self._tree.update(self.root, real)
            self._pages.drop_replaced()
        return self.root

    def pages(self) -> dict[bytes, bytes]:
        """The tree's pages: exactly those reachable from ``root``."""
        return self._pages.pages

    def items(self) -> Iterator[tuple[bytes, bytes, int]]:
        """(key, value, height of its last write) for every live key."""
        written_at = self.written_at
        for key, value in self.values.items():
            yield key, value, written_at[key]


__all__ = ["PruningNodeStore", "ReplayState"]
