"""A circuit breaker: after repeated failures, fail fast for a back-off period.

closed --(failure_threshold failures in a row)--> open --(backoff elapsed)--> half-open
half-open lets exactly one probe through: success closes, failure re-opens with a
doubled back-off (capped).
"""

from __future__ import annotations

import enum
import threading
import time

from ._deadline import Clock


class BreakerState(str, enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Thread-safe; only the export side uses it, never ``on_end``.

    >>> b = CircuitBreaker(failure_threshold=1, backoff_seconds=5.0)
    >>> b.allow()
    True
    >>> b.record_failure(); b.allow()
    False
    """

    def __init__(
        self,
        *,
        failure_threshold: int = 3,
        backoff_seconds: float = 5.0,
        max_backoff_seconds: float = 60.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self._threshold = failure_threshold
        self._base_backoff = backoff_seconds
        self._max_backoff = max(max_backoff_seconds, backoff_seconds)
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._backoff = backoff_seconds
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
            self._state = BreakerState.HALF_OPEN
            self._probe_out = False
            self.transitions += 1

    def allow(self) -> bool:
        """May an export go out now? In half-open state only one probe may."""
        with self._lock:
            self._maybe_half_open()
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
            self._backoff = self._base_backoff
            self._probe_out = False

    def record_failure(self, *, retry_after: float | None = None) -> None:
        """Count a failure. ``retry_after``: the backend said when to come back, and
        that (capped at the maximum back-off) replaces the breaker's own back-off."""
        with self._lock:
            self._failures += 1
            if self._state is BreakerState.HALF_OPEN:
                if retry_after is None:
                    self._backoff = min(self._backoff * 2, self._max_backoff)
                self._open(retry_after)
            elif self._state is BreakerState.CLOSED and self._failures >= self._threshold:
                self._open(retry_after)

    def _open(self, retry_after: float | None = None) -> None:
        wait = self._backoff if retry_after is None else min(retry_after, self._max_backoff)
        self._state = BreakerState.OPEN
        self._open_until = self._clock() + wait
        self._probe_out = False
        self.transitions += 1
