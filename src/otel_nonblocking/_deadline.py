"""Deadline arithmetic: one monotonic end time, and the time left passed from part to part.

A flush or shutdown fixes a single :class:`Deadline` and hands ``remaining()`` to each
step in turn, so the steps together can never take longer than the budget.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

Clock = Callable[[], float]


@dataclass(frozen=True)
class Deadline:
    """A fixed point on a monotonic clock.

    >>> d = Deadline.after(2.0)
    >>> 0 < d.remaining() <= 2.0
    True
    """

    at: float
    clock: Clock = field(default=time.monotonic, compare=False, repr=False)

    @classmethod
    def after(cls, seconds: float | None, clock: Clock = time.monotonic) -> Deadline:
        """A deadline ``seconds`` from now; ``None`` means no limit."""
        if seconds is None:
            seconds = float("inf")
        elif math.isnan(seconds):
            seconds = 0.0
        return cls(clock() + max(seconds, 0.0), clock)

    def remaining(self) -> float:
        """Seconds left: never negative, and never more than a thread wait accepts."""
        return wait_seconds(self.at - self.clock())

    def expired(self) -> bool:
        return self.clock() >= self.at

    def earliest(self, seconds: float | None) -> Deadline:
        """This deadline or one ``seconds`` from now, whichever comes first."""
        if seconds is None:
            return self
        return Deadline(min(self.at, self.clock() + max(seconds, 0.0)), self.clock)


def wait_seconds(seconds: float) -> float:
    """``seconds`` as a timeout every thread wait takes: not negative (NaN: 0), and not
    above ``threading.TIMEOUT_MAX`` (a lock's wait raises on either).

    >>> wait_seconds(-1.0), wait_seconds(1e300) == threading.TIMEOUT_MAX
    (0.0, True)
    """
    if not seconds > 0:  # also NaN
        return 0.0
    return min(seconds, threading.TIMEOUT_MAX)


def millis_to_seconds(timeout_millis: float | None) -> float | None:
    """OTel passes durations in milliseconds; ``None`` stays "no limit"."""
    if timeout_millis is None:
        return None
    if math.isnan(timeout_millis):
        return 0.0
    return max(timeout_millis, 0) / 1000.0
