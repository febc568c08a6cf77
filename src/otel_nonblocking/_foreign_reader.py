"""A metric reader the package did not build, under the package's one flush and exit budget.

A pull exporter (prometheus's reader, from ``OTEL_METRICS_EXPORTER=prometheus``) or any
``MetricReader`` handed to ``configure_telemetry(metric_readers=...)`` joins the
``MeterProvider`` as it is. Its ``force_flush`` and ``shutdown`` are someone else's code:
each runs on a thread of ours and is waited for at most the share of the deadline it is
given, and a call still running is abandoned (never a second one meanwhile).
"""

from __future__ import annotations

from opentelemetry.sdk.metrics.export import MetricReader

from . import _state
from ._deadline import Deadline
from ._metric_reader import MetricReaderStats
from ._suppress import BoundedCall, start_call


class ForeignReader:
    """``reader``'s flush and shutdown, bounded, with the methods the package's flush and
    shutdown call on its own metric readers (``flush_within``, ``shutdown_within``,
    ``stats``). It exports nothing itself, so its stats count nothing."""

    def __init__(self, reader: MetricReader) -> None:
        self.reader = reader
        self._running: BoundedCall[object] | None = None
        self._shut_down = False
        _state.after_fork_in_child(self._after_fork)

    def _after_fork(self) -> None:
        """In a forked child: a call the parent's thread was running is not running here."""
        self._running = None

    def _bounded(self, call: str, deadline: Deadline) -> bool:
        """Run ``reader.<call>(timeout_millis=...)`` on a thread of ours, waiting at most
        what is left of ``deadline``: True if it returned in time without raising (and,
        for a flush, said so)."""
        running = self._running
        if running is not None and not running.done:
            return False  # the previous call still hangs: never a second thread
        millis = deadline.remaining() * 1000
        method = getattr(self.reader, call)
        self._running = running = start_call(
            lambda: method(timeout_millis=millis), "otel-nonblocking-foreign-reader"
        )
        if not running.wait(deadline.remaining()):
            return False
        return running.error is None and running.value is not False

    def flush_within(self, deadline: Deadline) -> _state.FlushCounts:
        if self._shut_down:
            return _state.FlushCounts()
        return _state.FlushCounts(complete=self._bounded("force_flush", deadline))

    def shutdown_within(self, deadline: Deadline) -> _state.FlushCounts:
        if self._shut_down:
            return _state.FlushCounts()
        self._shut_down = True
        return _state.FlushCounts(complete=self._bounded("shutdown", deadline))

    def stats(self) -> MetricReaderStats:
        return MetricReaderStats(shut_down=self._shut_down)
