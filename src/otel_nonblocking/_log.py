"""Aggregated, rate-limited warnings, emitted from the worker thread only.

Repeated failures become one line per interval with a count, so a dead backend does not
flood the application's logs. Messages carry counts, reasons and exception type names,
never headers, keys or span contents.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

from ._deadline import Clock
from ._guard import GuardedLock
from ._state import after_fork_in_child

logger = logging.getLogger("otel_nonblocking")
_LOCK_WAIT_SECONDS = 1.0  # the lock is only ever held for a counter update


class AggregatedWarning:
    """Counts events by reason and logs them at most once per ``interval`` seconds.

    >>> w = AggregatedWarning("spans dropped", interval=10.0)
    >>> w.add("queue_full", 3)   # logs now; more within 10 s are summed into the next line
    """

    def __init__(
        self,
        what: str,
        *,
        interval: float = 10.0,
        clock: Clock = time.monotonic,
        level: int = logging.WARNING,
    ) -> None:
        self._what = what
        self._interval = interval
        self._clock = clock
        self._level = level
        self._lock = GuardedLock()
        after_fork_in_child(self._fresh_lock)  # module-level ones live through a fork
        self._pending: Counter[str] = Counter()
        self._next_at = float("-inf")

    def _fresh_lock(self) -> None:
        # A lock held by another thread at fork time stays held in the child, where every
        # add() would then wait its full second and give up its count.
        self._lock = GuardedLock()

    def add(self, reason: str, count: int = 1) -> None:
        if count <= 0:
            return
        # Never waits on itself: a signal handler interrupting this thread inside add()
        # or maybe_emit() gives up its count rather than hang.
        if not self._lock.acquire_within(_LOCK_WAIT_SECONDS):
            return
        try:
            self._pending[reason] += count
        finally:
            self._lock.release()
        self.maybe_emit()

    def maybe_emit(self, *, force: bool = False) -> None:
        if not self._lock.acquire_within(_LOCK_WAIT_SECONDS):
            return
        try:
            now = self._clock()
            if not self._pending or (not force and now < self._next_at):
                return
            summary = ", ".join(f"{reason}={n}" for reason, n in sorted(self._pending.items()))
            self._pending.clear()
            self._next_at = now + self._interval
        finally:
            self._lock.release()
        logger.log(
            self._level,
            "otel_nonblocking: %s (%s); your code is fine, telemetry had a problem",
            self._what,
            summary,
        )
