"""The other things module-level ``flush()``/``shutdown()`` cover, besides the package's processors.

An integration that installs its own pipeline (the Langfuse binding) registers an object
with ``flush_within(deadline)``/``shutdown_within(deadline)``; the package's flush then
gives it what is left of the same deadline and adds its counts to the ``FlushResult``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ._deadline import Deadline

_logger = logging.getLogger("otel_nonblocking")


@dataclass(frozen=True)
class FlushCounts:
    """What one registered flushable did during a flush or shutdown.

    ``exported`` and ``dropped`` count spans that reached that state during the call;
    ``pending`` counts spans still waiting, and ``other_pending`` other items still
    waiting (Langfuse scores and media uploads); ``complete`` is False when the
    deadline ended the call while something was still on its way.
    """

    exported: int = 0
    dropped: int = 0
    pending: int = 0
    other_pending: int = 0
    complete: bool = True

    def __add__(self, other: FlushCounts) -> FlushCounts:
        return FlushCounts(
            exported=self.exported + other.exported,
            dropped=self.dropped + other.dropped,
            pending=self.pending + other.pending,
            other_pending=self.other_pending + other.other_pending,
            complete=self.complete and other.complete,
        )


@runtime_checkable
class Flushable(Protocol):
    """Something the package installed besides its processors, flushed with them."""

    def flush_within(self, deadline: Deadline) -> FlushCounts: ...

    def shutdown_within(self, deadline: Deadline) -> FlushCounts: ...


# Writers replace the tuple under the lock; readers (flush(), maybe in a signal handler)
# take no lock: reading one module attribute is atomic.
_lock = threading.Lock()
_registered: tuple[Flushable, ...] = ()


def register(flushable: Flushable) -> None:
    """Have module-level ``flush()``/``shutdown()`` (and ``flush_after``) cover ``flushable``."""
    global _registered
    with _lock:
        if not any(f is flushable for f in _registered):
            _registered = (*_registered, flushable)


def unregister(flushable: Flushable) -> None:
    global _registered
    with _lock:
        _registered = tuple(f for f in _registered if f is not flushable)


def registered() -> list[Flushable]:
    return list(_registered)  # no lock: see above


def run(deadline: Deadline, *, shutdown: bool) -> FlushCounts:
    """Flush (or shut down) every registered flushable, in turn, under ``deadline``.

    A flushable that raises counts as incomplete; the others still run.
    """
    total = FlushCounts()
    for flushable in registered():
        try:
            counts = (
                flushable.shutdown_within(deadline)
                if shutdown
                else flushable.flush_within(deadline)
            )
        except Exception:
            _logger.debug("otel_nonblocking: flushing %r failed", flushable, exc_info=True)
            counts = FlushCounts(complete=False)
        total = total + counts
    return total
