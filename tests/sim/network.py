"""The simulated network: delay, loss, duplication, reordering and partitions from one RNG.

Modelled on TigerBeetle's ``src/testing/packet_simulator.zig``. Every packet
gets its fate when it is sent: lost (``loss_probability``), else delivered
once or twice (``duplicate_probability``), each copy after its own delay
drawn uniformly from ``[delay_ms_min, delay_ms_max]``. Independent delays
reorder packets. A partition cuts every link between two groups of nodes in
both directions. A clogged link (``clog``) drops everything one node sends
to another until a given time, so nodes see the same round differently
(TigerBeetle's path clogging). Packets are dropped when they are sent across
a cut or a clog and when they arrive across one, so a partition also cuts
packets in flight. The cluster decides when partitions and clogs start and
end.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

Deliver = Callable[[int, str, str, Any], None]
"""``deliver(at_ms, source, target, payload)``: the cluster schedules the arrival."""


@dataclass(frozen=True, slots=True)
class NetworkOptions:
    delay_ms_min: int
    delay_ms_max: int
    loss_probability: float
    duplicate_probability: float

    def __post_init__(self) -> None:
        assert 0 <= self.delay_ms_min <= self.delay_ms_max
        assert 0.0 <= self.loss_probability < 1.0
        assert 0.0 <= self.duplicate_probability < 1.0


class Network:
    """Links between named nodes; ``send`` decides each packet's fate."""

    def __init__(self, rng: random.Random, options: NetworkOptions, deliver: Deliver) -> None:
        self.rng = rng
        self.options = options
        self._deliver = deliver
        self._side: dict[str, int] = {}
        """Partition side per node; nodes on different sides cannot talk. Empty = no partition."""
        self._clogged_until_ms: dict[tuple[str, str], int] = {}
        """(source, target) -> the time the link unclogs."""
        self.now_ms = 0
        self.packets_sent = 0
        self.packets_lost = 0

    def send(self, now_ms: int, source: str, target: str, payload: Any) -> None:
        self.now_ms = now_ms
        self.packets_sent += 1
        if not self.is_link_up(source, target) or self.rng.random() < self.options.loss_probability:
            self.packets_lost += 1
            return
        copies = 2 if self.rng.random() < self.options.duplicate_probability else 1
        for _ in range(copies):
            delay_ms = self.rng.randint(self.options.delay_ms_min, self.options.delay_ms_max)
            self._deliver(now_ms + delay_ms, source, target, payload)

    def is_link_up(self, source: str, target: str) -> bool:
        if self._clogged_until_ms and self._clogged_until_ms.get((source, target), 0) > self.now_ms:
            return False
        return self._side.get(source, 0) == self._side.get(target, 0)

    def clog(self, source: str, target: str, until_ms: int) -> None:
        self._clogged_until_ms[(source, target)] = until_ms

    def start_partition(self, names: Sequence[str]) -> list[str]:
        """Cut a random group off from the rest: sometimes one node, sometimes a random split.

        Returns the group that was cut off.
        """
        assert len(names) >= 2
        if self.rng.random() < 0.5:
            group = [self.rng.choice(list(names))]
        else:
            size = self.rng.randint(1, len(names) - 1)
            group = self.rng.sample(list(names), size)
        self._side = {name: (1 if name in group else 0) for name in names}
        return sorted(group)

    def heal(self) -> None:
        """End the partition and every clog."""
        self._side = {}
        self._clogged_until_ms = {}

    @property
    def is_partitioned(self) -> bool:
        return bool(self._side)


__all__ = ["Deliver", "Network", "NetworkOptions"]
