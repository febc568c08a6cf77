"""A lock-free counter for the hot path, read exactly from elsewhere.

``next()`` on an ``itertools.count`` is a single C call under the GIL, so concurrent
increments are never lost and the incrementing thread takes no lock. Readers take a
reader-only lock and subtract their own reads.
"""

from __future__ import annotations

import itertools
import threading


class Tally:
    """``next(tally.counter)`` counts one; :meth:`value` reads the total.

    >>> t = Tally()
    >>> next(t.counter); next(t.counter)
    0
    1
    >>> t.value()
    2
    """

    __slots__ = ("_lock", "_reads", "counter")

    def __init__(self) -> None:
        self.counter = itertools.count()
        self._reads = 0
        self._lock = threading.Lock()

    def value(self) -> int:
        with self._lock:
            seen = next(self.counter) - self._reads
            self._reads += 1
        return seen
