"""Batches, the retry buffer (batches whose export failed for a transient reason), and the
staged items (encoded, numbered, waiting to be batched).

A :class:`Batch` holds whatever the pipeline carries (span objects, or spans encoded by
the stage: ``_stage.py``), numbered consecutively. The buffer is bounded in items; when a
new batch does not fit, the oldest batches are evicted and returned so the caller can
count them.
Only the worker thread touches it (under the ledger's lock, so ``stats()`` can read it).
"""

from __future__ import annotations

import array
import collections
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ._runner import Attempt


@dataclass
class Batch:
    """Items with consecutive sequence numbers ``start .. start + len(items) - 1``."""

    items: list[Any]
    start: int
    attempts: int = 0
    retried: bool = field(default=False, compare=False)
    #: Its last export went out as the open breaker's probe (see ``Worker._send``).
    probe: bool = field(default=False, compare=False)
    #: The abandoned attempt of the last try, while it may still deliver the batch.
    doubt: Attempt[object] | None = field(default=None, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.items)

    def head(self, count: int) -> Batch:
        """The first ``count`` items, as a batch of their own (to count them)."""
        return Batch(self.items[:count], self.start)

    def cut(self, count: int) -> tuple[Batch, Batch]:
        """The first ``count`` items (a probe), and the rest; both keep the history."""
        return (
            Batch(self.items[:count], self.start, self.attempts, self.retried),
            Batch(self.items[count:], self.start + count, self.attempts, self.retried),
        )

    def split(self) -> tuple[Batch, Batch]:
        """Two halves, for a backend that said the request was too large."""
        return self.cut(len(self.items) // 2)


# A backlog of staged items (an outage, a slow backend) is packed: past PACK_AFTER items
# kept as they came, the oldest PACK_ITEMS of them become one zlib block (level 1). Encoded
# spans of one service compress about 4x (measured: 176 bytes a span with four attributes
# packed into 41, for 1.2 us of CPU a span), so a long outage costs a quarter of the memory.
# While exports go through, a burst is not packed below PACK_AFTER_HEALTHY items (about
# 3.5 MiB of small spans): it leaves within a few exports, and packing it would only cost
# CPU (the worker sets ``Staged.pack_after`` from the exports' state on every turn).
PACK_AFTER = 1024
PACK_AFTER_HEALTHY = 16384
PACK_ITEMS = 256
_BLOCK_OVERHEAD = 128  # a block's objects: its tuple and two bytes headers, its slot


class Staged:
    """Items numbered as they left the door, waiting to be taken as batches, oldest first.

    Numbers run in order with gaps where an item was dropped on its way (one the encoder
    rejected, say): the runs of consecutive numbers are kept, and a batch is taken from one
    run, so that a :class:`Batch`'s numbers stay consecutive. ``size_bytes`` is the items'
    memory (their length plus ``item_overhead`` each, or their packed size). With
    ``packs`` (``bytes`` items only), a backlog is kept compressed in blocks and unpacked
    a block at a time as batches are taken.
    """

    def __init__(self, item_overhead: int = 0, *, packs: bool = False) -> None:
        self._head: collections.deque[Any] = collections.deque()  # unpacked, oldest
        # (count, zlib block, the items' lengths as array("I") bytes), oldest first
        self._blocks: collections.deque[tuple[int, bytes, bytes]] = collections.deque()
        self._packed = 0  # items in blocks
        self._items: collections.deque[Any] = collections.deque()  # newest, as added
        self._runs: collections.deque[list[int]] = collections.deque()  # [start, count]
        self.item_overhead = item_overhead
        self.packs = packs
        self.pack_after = PACK_AFTER
        self.size_bytes = 0

    def __len__(self) -> int:
        return len(self._head) + self._packed + len(self._items)

    def first(self) -> int | None:
        """The number of the oldest item, or None."""
        return self._runs[0][0] if self._runs else None

    def add(self, number: int, item: Any) -> None:
        """Append ``item``, numbered ``number`` (above every number added before)."""
        runs = self._runs
        if runs and runs[-1][0] + runs[-1][1] == number:
            runs[-1][1] += 1
        else:
            runs.append([number, 1])
        self._items.append(item)
        self.size_bytes += len(item) + self.item_overhead
        if self.packs and len(self._items) >= self.pack_after:
            self._pack()

    def _pack(self) -> None:
        items = [self._items.popleft() for _ in range(PACK_ITEMS)]
        raw = b"".join(items)
        block = zlib.compress(raw, 1)
        lengths = array.array("I", map(len, items)).tobytes()
        self._blocks.append((len(items), block, lengths))
        self._packed += len(items)
        self.size_bytes += len(block) + len(lengths) + _BLOCK_OVERHEAD
        self.size_bytes -= len(raw) + len(items) * self.item_overhead

    def _unpack(self) -> None:
        count, block, lengths = self._blocks.popleft()
        raw = zlib.decompress(block)
        sizes = array.array("I")
        sizes.frombytes(lengths)
        pos = 0
        for size in sizes:
            self._head.append(raw[pos : pos + size])
            pos += size
        self._packed -= count
        self.size_bytes -= len(block) + len(lengths) + _BLOCK_OVERHEAD
        self.size_bytes += len(raw) + count * self.item_overhead

    def take(self, count: int) -> Batch:
        """At most ``count`` of the oldest items (fewer at a gap in the numbers)."""
        run = self._runs[0]
        count = min(count, run[1])
        items = []
        for _ in range(count):
            if not self._head and self._blocks:
                self._unpack()
            items.append((self._head or self._items).popleft())
        start = run[0]
        run[0] += count
        run[1] -= count
        if not run[1]:
            self._runs.popleft()
        self.size_bytes -= sum(map(len, items)) + count * self.item_overhead
        return Batch(items, start)

    def clear(self) -> list[Batch]:
        """Every item let go of, as batches of their numbers to count (one per run; the
        items themselves are not unpacked: ``None`` stands for each)."""
        batches = [Batch([None] * count, start) for start, count in self._runs]
        for held in (self._head, self._blocks, self._items, self._runs):
            held.clear()
        self._packed = 0
        self.size_bytes = 0
        return batches


class RetryBuffer:
    """A deque of :class:`Batch`, capped at ``capacity`` items in all.

    >>> buffer = RetryBuffer(capacity=3)
    >>> buffer.push(Batch([], 0))
    []
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._batches: collections.deque[Batch] = collections.deque()
        self.size = 0  # items held

    def __bool__(self) -> bool:
        return bool(self._batches)

    def __iter__(self) -> Iterator[Batch]:
        return iter(self._batches)

    def push(self, batch: Batch, *, front: bool = False) -> list[Batch]:
        """Add ``batch`` (at the front if it is older than all others); return evictions."""
        if front:
            self._batches.appendleft(batch)
        else:
            self._batches.append(batch)
        self.size += len(batch)
        evicted = []
        while self.size > self.capacity and self._batches:
            oldest = self._batches.popleft()
            self.size -= len(oldest)
            evicted.append(oldest)
        return evicted

    def pop(self) -> Batch | None:
        """The oldest batch, or None."""
        if not self._batches:
            return None
        batch = self._batches.popleft()
        self.size -= len(batch)
        return batch

    def remove(self, batch: Batch) -> None:
        """Take ``batch`` (this very object) out of the buffer, if it is there."""
        for index, held in enumerate(self._batches):
            if held is batch:
                del self._batches[index]
                self.size -= len(batch)
                return

    def clear(self) -> list[Batch]:
        batches = list(self._batches)
        self._batches.clear()
        self.size = 0
        return batches

    def min_start(self) -> int | None:
        return min((b.start for b in self._batches), default=None)
