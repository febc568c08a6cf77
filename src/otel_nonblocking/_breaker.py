"""A circuit breaker: after repeated failures, fail fast for a short, jittered while.

closed --(failure_threshold failures in a row)--> open --(back-off elapsed)--> half-open
half-open lets exactly one probe through: success closes, failure re-opens. The back-off
is the same after every failed probe (between half and all of ``backoff_seconds``, at
random), so however long the outage was, a recovered backend is used again within one
back-off. A flush or shutdown may send its probe at once (``allow(probe=True)``).
"""

from __future__ import annotations

import enum
import random
import threading
import time
from collections.abc import Callable

from ._deadline import Clock

#: The longest a backend's ``Retry-After`` keeps the breaker open.
MAX_RETRY_AFTER_SECONDS = 60.0
# The back-off is drawn between this share of backoff_seconds and all of it.
_JITTER_FLOOR = 0.5
# The jitter's own source: drawing from the ``random`` module's shared generator would move
# the application's seeded sequence whenever a backend fails. SystemRandom has no state, so
# it is fork-safe too.
_system_random = random.SystemRandom().random


class BreakerState(str, enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Thread-safe; only the export side uses it, never ``on_end``.

    >>> b = CircuitBreaker(failure_threshold=1, backoff_seconds=1.0)
    >>> b.allow()
    True
    >>> b.record_failure(); b.allow()
    False
    >>> b.allow(probe=True)  # a flush asks: its export goes out as the probe
    True
    """

    def __init__(
        self,
        *,
        failure_threshold: int = 3,
        backoff_seconds: float = 1.0,
        clock: Clock = time.monotonic,
        jitter: Callable[[], float] = _system_random,
    ) -> None:
        self._threshold = failure_threshold
        self._backoff = backoff_seconds
        self._clock = clock
        self._jitter = jitter
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._open_until = 0.0
        self._probe_out = False
        self.transitions = 0

    @property
    def state(self) -> BreakerState:
        with self._lock:
            self._maybe_half_open()
            return self._state

    def _maybe_half_open(self) -> None:
        if self._state is BreakerState.OPEN and self._clock() >= self._open_until:
            self._half_open()

    def _half_open(self) -> None:
        self._state = BreakerState.HALF_OPEN
        self._probe_out = False
        self.transitions += 1

    def allow(self, *, probe: bool = False) -> bool:
        """May an export go out now? In half-open state only one probe may.

        ``probe``: a flush or shutdown asks; an open breaker lets its export out at once
        as the half-open probe (unless a probe is already out).
        """
        with self._lock:
            self._maybe_half_open()
            if self._state is BreakerState.OPEN and probe:
                self._half_open()
            if self._state is BreakerState.CLOSED:
                return True
            if self._state is BreakerState.HALF_OPEN and not self._probe_out:
                self._probe_out = True
                return True
            return False

    def retry_in(self) -> float:
        """Seconds until the next probe may go out (0 when closed or half-open)."""
        with self._lock:
            if self._state is BreakerState.OPEN:
                return max(self._open_until - self._clock(), 0.0)
            return 0.0

    def record_success(self) -> None:
        with self._lock:
            if self._state is not BreakerState.CLOSED:
                self.transitions += 1
            self._state = BreakerState.CLOSED
            self._failures = 0
            self._probe_out = False

    def record_failure(self, *, retry_after: float | None = None) -> None:
        """Count a failure. ``retry_after``: the backend said when to come back, and
        that (capped at :data:`MAX_RETRY_AFTER_SECONDS`) replaces the breaker's back-off."""
        with self._lock:
            self._failures += 1
            if self._state is BreakerState.HALF_OPEN or (
                self._state is BreakerState.CLOSED and self._failures >= self._threshold
            ):
                self._open(retry_after)

    def _open(self, retry_after: float | None = None) -> None:
        if retry_after is None:
            share = _JITTER_FLOOR + (1.0 - _JITTER_FLOOR) * min(max(self._jitter(), 0.0), 1.0)
            wait = self._backoff * share
        else:
            wait = min(retry_after, MAX_RETRY_AFTER_SECONDS)
        self._state = BreakerState.OPEN
        self._open_until = self._clock() + wait
        self._probe_out = False
        self.transitions += 1
