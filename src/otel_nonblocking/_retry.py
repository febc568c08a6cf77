"""Batches, the retry buffer (batches whose export failed for a transient reason), and the
staged items (encoded, numbered, waiting to be batched).

A :class:`Batch` holds whatever the pipeline carries (span objects, or spans encoded by
the stage: ``_stage.py``), numbered consecutively. The buffer is bounded in items; when a new batch
does not fit, the oldest batches are evicted and returned so the caller can count them.
Only the worker thread touches it (under the ledger's lock, so ``stats()`` can read it).
"""

from __future__ import annotations

import collections
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


class Staged:
    """Items numbered as they left the door, waiting to be taken as batches, oldest first.

    Numbers run in order with gaps where an item was dropped on its way (one the encoder
    rejected, say): the runs of consecutive numbers are kept, and a batch is taken from one
    run, so that a :class:`Batch`'s numbers stay consecutive. ``size_bytes`` is the items'
    memory (their length plus ``item_overhead`` each).
    """

    def __init__(self, item_overhead: int = 0) -> None:
        self._items: collections.deque[Any] = collections.deque()
        self._runs: collections.deque[list[int]] = collections.deque()  # [start, count]
        self.item_overhead = item_overhead
        self.size_bytes = 0

    def __len__(self) -> int:
        return len(self._items)

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

    def take(self, count: int) -> Batch:
        """At most ``count`` of the oldest items (fewer at a gap in the numbers)."""
        run = self._runs[0]
        count = min(count, run[1])
        items = [self._items.popleft() for _ in range(count)]
        start = run[0]
        run[0] += count
        run[1] -= count
        if not run[1]:
            self._runs.popleft()
        self.size_bytes -= sum(map(len, items)) + count * self.item_overhead
        return Batch(items, start)

    def clear(self) -> list[Batch]:
        """Every item, as batches."""
        batches = []
        while self._items:
            batches.append(self.take(len(self._items)))
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
