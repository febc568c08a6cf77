"""The retry buffer: batches whose export failed for a transient reason, oldest first.

Bounded in spans; when a new batch does not fit, the oldest batches are evicted and
returned so the caller can count them. Only the worker thread touches it (under the
processor's export-side lock, so ``stats()`` can read it).
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from dataclasses import dataclass, field

from opentelemetry.sdk.trace import ReadableSpan

from ._runner import Attempt


@dataclass
class Batch:
    """Spans with consecutive sequence numbers ``start .. start + len(spans) - 1``."""

    spans: list[ReadableSpan]
    start: int
    attempts: int = 0
    retried: bool = field(default=False, compare=False)
    #: The abandoned attempt of the last try, while it may still deliver the batch.
    doubt: Attempt[object] | None = field(default=None, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.spans)

    def split(self) -> tuple[Batch, Batch]:
        """Two halves, for a backend that said the request was too large."""
        half = len(self.spans) // 2
        return (
            Batch(self.spans[:half], self.start, self.attempts, self.retried),
            Batch(self.spans[half:], self.start + half, self.attempts, self.retried),
        )


class RetryBuffer:
    """A deque of :class:`Batch`, capped at ``capacity`` spans in all.

    >>> buffer = RetryBuffer(capacity=3)
    >>> buffer.push(Batch([], 0))
    []
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._batches: collections.deque[Batch] = collections.deque()
        self.spans = 0

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
        self.spans += len(batch)
        evicted = []
        while self.spans > self.capacity and self._batches:
            oldest = self._batches.popleft()
            self.spans -= len(oldest)
            evicted.append(oldest)
        return evicted

    def pop(self) -> Batch | None:
        """The oldest batch, or None."""
        if not self._batches:
            return None
        batch = self._batches.popleft()
        self.spans -= len(batch)
        return batch

    def remove(self, batch: Batch) -> None:
        """Take ``batch`` (this very object) out of the buffer, if it is there."""
        for index, held in enumerate(self._batches):
            if held is batch:
                del self._batches[index]
                self.spans -= len(batch)
                return

    def clear(self) -> list[Batch]:
        batches = list(self._batches)
        self._batches.clear()
        self.spans = 0
        return batches

    def min_start(self) -> int | None:
        return min((b.start for b in self._batches), default=None)
