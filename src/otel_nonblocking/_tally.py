"""A lock-free counter for the hot path, read exactly from elsewhere.

``next()`` on an ``itertools.count`` is a single C call under the GIL, so concurrent
increments are never lost and the incrementing thread takes no lock. Readers read the
count's ``repr`` (also one C call), so they take no lock either: a reader may be a
signal handler that interrupted another reader.
"""

from __future__ import annotations

import itertools


class Tally:
    """``next(tally.counter)`` counts one; :meth:`value` reads the total.

    >>> t = Tally()
    >>> next(t.counter); next(t.counter)
    0
    1
    >>> t.value()
    2
    """

    __slots__ = ("counter",)

    def __init__(self) -> None:
        self.counter = itertools.count()

    def value(self) -> int:
        return int(repr(self.counter)[6:-1])  # "count(41)": the next value, so 41 counted
