"""The door of a pipeline: the bounded queue the application's threads append to.

Everything here is what the hot path touches (``on_end``: a check, an append, a counter):
no locks, no calls that may wait. The capacity that really turns items away is the
lower of the queue size and what the memory budget holds at the items' learned size.
"""

from __future__ import annotations

import collections
from typing import Any

from ._guard import Wake
from ._tally import Tally


class Door:
    """The queue, its capacity, and the wake-ups and drop tallies the door sets."""

    __slots__ = (
        "batch_size",
        "cap",
        "closed",
        "closed_drops",
        "full_drops",
        "item_overhead",
        "max_bytes",
        "max_size",
        "queue",
        "urgent",
        "wake",
    )

    def __init__(self, max_size: int, batch_size: int, max_bytes: int, item_overhead: int) -> None:
        self.queue: collections.deque[Any] = collections.deque()
        self.max_size = max_size
        self.batch_size = batch_size
        self.max_bytes = max_bytes
        self.item_overhead = item_overhead  # memory of a queued item beyond its encoding
        self.cap = self.cap_for(0)
        # Set from on_end and from flush/shutdown, maybe in a signal handler: no locks.
        self.wake = Wake()  # a batch is ready, or a flush/shutdown asks
        self.urgent = Wake()  # a flush or shutdown asks (wakes a held worker)
        self.closed = False
        self.full_drops = Tally()  # turned away: the queue was full
        self.closed_drops = Tally()  # turned away: shut down

    def cap_for(self, encoded_bytes_per_item: int) -> int:
        """The queue capacity the memory budget allows at that encoded size per item."""
        per_item = self.item_overhead + max(encoded_bytes_per_item, 0)
        return max(min(self.max_size, self.max_bytes // per_item), 1)

    def learn_item_size(self, request_bytes: int | None, count: int) -> None:
        """An export of ``count`` items took ``request_bytes``: adapt the capacity."""
        if request_bytes is None or count <= 0:
            return
        self.cap = self.cap_for(request_bytes // count)

    def ring(self) -> None:
        """A flush or shutdown asks: wake the worker, even from a hold."""
        self.wake.set()
        self.urgent.set()
