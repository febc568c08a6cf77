"""NonBlockingMetricReader: periodic metric collection and export on a thread of ours,
with ``force_flush`` and ``shutdown`` that return within their budget whatever the
exporter does.

Not to be confused with ``metrics.py``, the package's *self*-metrics (the processor's
counters published through the metrics API): this module is a reader for the
application's own metrics, the non-blocking counterpart of the SDK's
``PeriodicExportingMetricReader``.

The path of a collection: the worker thread wakes (the export interval passed, or a
flush or shutdown asks) -> ``MetricReader.collect`` (the SDK reads the instruments and
runs the observable callbacks, on the worker) -> :meth:`_receive_metrics` hands the
data over -> the worker exports it through :class:`DeadlineMetricExporter`
(``export_report``: a hung collector costs the deadline, not the exporter's retries)
-> the outcome is counted (:class:`MetricReaderStats`). The application's threads only
ever append a flush request and wait on its event, bounded.
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.metrics.export import MetricExporter, MetricReader, MetricsData

from . import _config, _state
from ._config import UNSET, _Unset
from ._deadline import Clock, Deadline, millis_to_seconds, wait_seconds
from ._export_core import ExportOutcome
from ._exporter_metrics import DeadlineMetricExporter
from ._log import AggregatedWarning
from ._suppress import start_thread

__all__ = ["MetricReaderStats", "NonBlockingMetricReader"]

#: ``listener(seconds, error_type)``, called after each collection (see
#: :meth:`NonBlockingMetricReader.add_collection_listener`).
CollectionListener = Callable[[float, "str | None"], object]

# Of a shutdown's budget, the share the final export may use: the rest is the
# exporter's own shutdown (a deadline exporter cuts an abandoned attempt there).
_FINAL_EXPORT_SHARE = 0.9


@dataclass(frozen=True)
class MetricReaderStats:
    """A snapshot of a :class:`NonBlockingMetricReader`'s counters.

    ``collections``: collections that produced data to export; ``collections_failed``:
    collections the SDK could not finish (an observable callback raised or ran out of
    time); ``collections_skipped``: collections not made because the previous export
    was still running (the next one carries the data, see docs/metrics.md). Each export
    is counted once: ``exports_ok``, ``exports_failed`` (the backend refused, the
    connection failed, an open breaker failed it fast) or ``exports_timed_out`` (its
    deadline passed first).
    """

    collections: int = 0
    collections_failed: int = 0
    collections_skipped: int = 0
    exports_ok: int = 0
    exports_failed: int = 0
    exports_timed_out: int = 0
    shut_down: bool = False


class _FlushRequest:
    """One ``force_flush`` call waiting for the worker (the caller waits on ``done``)."""

    __slots__ = ("deadline", "done", "ok")

    def __init__(self, deadline: Deadline) -> None:
        self.deadline = deadline
        self.done = threading.Event()
        self.ok = False


class NonBlockingMetricReader(MetricReader):
    """A periodic metric reader that never makes the application's threads wait.

    Collection and export run on the reader's own thread, every
    ``export_interval_millis`` (``OTEL_METRIC_EXPORT_INTERVAL``, 60 s; ``math.inf``:
    only on flush and shutdown). Each export has a wall-clock deadline of
    ``export_timeout_millis`` (``OTEL_METRIC_EXPORT_TIMEOUT``, 30 s). ``force_flush``
    and ``shutdown`` return within their ``timeout_millis`` whatever the exporter does;
    a collection due while an export still runs is skipped and counted, never queued.
    An exporter that is not a :class:`DeadlineMetricExporter` is wrapped in one with that
    deadline. Temporality and aggregation are the exporter's (for the OTLP exporter:
    ``OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`` and
    ``OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION``).

    >>> from opentelemetry.sdk.metrics import MeterProvider
    >>> from opentelemetry.sdk.metrics.export import ConsoleMetricExporter
    >>> reader = NonBlockingMetricReader(ConsoleMetricExporter(), export_interval_millis=5000)
    >>> provider = MeterProvider(metric_readers=[reader])
    >>> provider.shutdown(timeout_millis=1000)
    """

    def __init__(
        self,
        exporter: MetricExporter,
        export_interval_millis: float | _Unset | None = UNSET,
        export_timeout_millis: float | _Unset | None = UNSET,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        if export_interval_millis is None:
            export_interval_millis = UNSET  # as for the SDK's reader: not given
        if isinstance(export_interval_millis, float) and math.isinf(export_interval_millis):
            self._interval = math.inf  # the SDK's reader: no periodic collection
        else:
            self._interval = (
                _config.METRIC_EXPORT_INTERVAL_MILLIS.resolve(export_interval_millis) / 1000
            )
        self._export_timeout = (
            _config.METRIC_EXPORT_TIMEOUT_MILLIS.resolve(
                UNSET if export_timeout_millis is None else export_timeout_millis
            )
            / 1000
        )
        if not isinstance(exporter, DeadlineMetricExporter):
            exporter = DeadlineMetricExporter(
                exporter, timeout_millis=self._export_timeout * 1000, clock=clock
            )
        self._exporter = exporter
        # The exporter's preferences, as the SDK's reader takes them (for the OTLP exporter
        # from OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE and ..._AGGREGATION).
        super().__init__(
            preferred_temporality=exporter.preferred_temporality,
            preferred_aggregation=exporter.preferred_aggregation,
        )
        self._clock = clock
        self._warn = AggregatedWarning("metric exports failed", clock=clock)
        self._counts = dict.fromkeys(
            (
                "collections",
                "collections_failed",
                "collections_skipped",
                "exports_ok",
                "exports_failed",
                "exports_timed_out",
            ),
            0,
        )
        self._collection_listeners: tuple[CollectionListener, ...] = ()
        self._inflight_points = 0  # data points of the export running now (the worker's)
        self._shutdown_once = threading.Lock()  # taken once, never released
        self._closing: Deadline | None = None
        self._final = Deadline(math.inf, clock)  # set by shutdown: when the exports end
        self._start_worker()
        _state.after_fork_in_child(self._after_fork)
        # The package's one exit hook closes it within the exit budget while it lives,
        # whether or not its MeterProvider shuts down at exit.
        self._remove_exit_hook = _state.on_exit(_weak_exit_hook(self))
        weakref.finalize(self, self._remove_exit_hook)
        _state.track_component(self)  # self-metrics observe it (otel_nonblocking.metrics)

    def _start_worker(self) -> None:
        # Written by _receive_metrics on whatever thread collected, taken by the worker.
        self._collected: MetricsData | None = None
        self._flushes: deque[_FlushRequest] = deque()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._next_at = math.inf  # when the next collection is due (the worker's)
        self._in_export = False  # the worker is in an export
        self._thread = start_thread(self._run, "otel-nonblocking-metric-reader")

    def _after_fork(self) -> None:
        """In a forked child: a fresh worker, unless the reader was shut down (threads
        do not survive ``fork``; flush requests of the parent's callers are not ours)."""
        if self._closing is None:
            self._start_worker()
        else:
            self._stopped = threading.Event()
            self._stopped.set()

    @property
    def exporter(self) -> DeadlineMetricExporter:
        """The deadline-wrapped exporter this reader exports through."""
        return self._exporter

    @property
    def data_points_in_flight(self) -> int:
        """Data points of the export running now (0 between exports), counted while a
        collection listener (self-metrics) observes this reader."""
        return self._inflight_points

    def add_collection_listener(self, listener: CollectionListener) -> None:
        """Call ``listener(seconds, error_type)`` after every collection the reader makes,
        on its thread; ``error_type`` is None, or the name of the exception that ended
        the collection. An exception in a listener is counted and ignored."""
        self._collection_listeners = (*self._collection_listeners, listener)

    # -- the application's side: append a request, wake the worker, wait with a bound --

    def _receive_metrics(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> None:
        # MetricReader.collect() calls this on the collecting thread: usually our worker,
        # which exports the data next; if someone called collect() by hand, the worker
        # exports it at its next turn (a newer collection replaces one still waiting).
        self._collected = metrics_data
        if threading.current_thread() is not self._thread:
            self._wake.set()

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        """Collect and export now, on the reader's thread; wait at most ``timeout_millis``.

        True if that export succeeded (and the exporter's own ``force_flush`` did);
        False when it failed, the budget ran out first, or the reader is shut down.
        """
        if self._closing is not None:
            return False
        request = _FlushRequest(Deadline.after(millis_to_seconds(timeout_millis), self._clock))
        self._flushes.append(request)
        self._wake.set()
        if self._stopped.is_set():  # the worker ended (shut down meanwhile): nobody serves it
            return False
        return request.done.wait(request.deadline.remaining()) and request.ok

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        """One last collection and export, then the exporter's shutdown, all within
        ``timeout_millis`` whatever the exporter does; at exit within the package's one
        exit budget (``OTEL_NONBLOCKING_EXIT_TIMEOUT``) too. Idempotent."""
        budget = millis_to_seconds(timeout_millis)
        if _state.exiting():  # a MeterProvider's own exit callback
            # The package's one exit first, in its order (every part its share, this
            # reader too), rather than this reader taking most of the budget before the
            # others' turn. Returns at once if it ran or is running.
            _state.run_exit_hooks()
            exit_left = _state.exit_deadline().remaining()
            budget = exit_left if budget is None else min(budget, exit_left)
        deadline = Deadline.after(budget, self._clock)
        if not self._shutdown_once.acquire(blocking=False):
            return
        # The exports (one still running, then the last collection's) end by this point;
        # the rest of the budget is the exporter's shutdown.
        share = deadline.remaining() * _FINAL_EXPORT_SHARE
        self._final = Deadline.after(share, self._clock)
        self._closing = deadline
        self._wake.set()
        self._stopped.wait(deadline.remaining())
        # timeout_millis=, the name MetricExporter.shutdown takes (the SDK's reader passes
        # timeout=, which the OTLP exporter ignores: opentelemetry-python #5574). The
        # deadline exporter cuts an export still running and bounds the inner shutdown.
        self._exporter.shutdown(timeout_millis=deadline.remaining() * 1000)
        self._warn.maybe_emit(force=True)
        self._remove_exit_hook()

    def close_at_exit(self, seconds: float) -> None:
        """The exit hook's turn: shut down within ``seconds``."""
        self.shutdown(timeout_millis=seconds * 1000)

    def flush_within(self, deadline: Deadline) -> _state.FlushCounts:
        """:class:`~otel_nonblocking._state.Flushable`: flush within what is left."""
        return _state.FlushCounts(complete=self.force_flush(deadline.remaining() * 1000))

    def shutdown_within(self, deadline: Deadline) -> _state.FlushCounts:
        """:class:`~otel_nonblocking._state.Flushable`: shut down within what is left."""
        self.shutdown(timeout_millis=deadline.remaining() * 1000)
        return _state.FlushCounts(complete=self._stopped.is_set())

    def stats(self) -> MetricReaderStats:
        """The counters (written by the worker only; read without a lock). Collections
        whose time has come while an export still runs count as skipped at once."""
        counts = dict(self._counts)
        if self._in_export and self._closing is None:
            counts["collections_skipped"] += self._missed(self._next_at)
        return MetricReaderStats(**counts, shut_down=self._closing is not None)

    def _missed(self, due: float) -> int:
        """Collection times from ``due`` up to now that have passed (0 before ``due``)."""
        late = self._clock() - due
        return int(late // self._interval) + 1 if late >= 0 else 0

    # -- the worker ----------------------------------------------------------------------

    def _run(self) -> None:
        self._next_at = next_at = self._clock() + self._interval
        try:
            while True:
                self._wake.wait(wait_seconds(next_at - self._clock()))
                self._wake.clear()
                if self._closing is not None:
                    self._collect_and_export(self._final, probe=True)
                    return
                flushes = self._take_flushes()
                if flushes:
                    self._flush(flushes)
                elif self._collected is not None:  # collect() called by hand
                    self._export(Deadline.after(self._export_timeout, self._clock))
                if self._clock() >= next_at:
                    self._next_at = next_at = self._tick(next_at)
        finally:
            self._stopped.set()
            for request in self._take_flushes():
                request.done.set()  # ok stays False: nothing more goes out

    def _take_flushes(self) -> list[_FlushRequest]:
        taken = []
        while self._flushes:
            taken.append(self._flushes.popleft())
        return taken

    def _flush(self, requests: list[_FlushRequest]) -> None:
        """Serve every waiting flush with one collection, within the latest deadline."""
        deadline = max((r.deadline for r in requests), key=lambda d: d.at)
        ok = self._collect_and_export(deadline, probe=True)
        if ok and not deadline.expired():
            ok = self._exporter_flush(deadline)
        for request in requests:
            request.ok = ok
            request.done.set()

    def _tick(self, due: float) -> float:
        """The periodic collection due at ``due``; returns when the next one is due.
        Collections whose time passed while an export ran are skipped, not caught up."""
        missed = self._missed(due) - 1  # due times after this one that passed meanwhile
        self._counts["collections_skipped"] += missed
        if self._exporter.busy:
            # An abandoned export still runs: no export could start now. With
            # cumulative temporality the next collection has it all; with delta the
            # SDK keeps accumulating until then, so skipping loses nothing either.
            self._counts["collections_skipped"] += 1
        else:
            self._collect_and_export(Deadline.after(self._export_timeout, self._clock))
        return due + (missed + 1) * self._interval

    def _collect_and_export(self, deadline: Deadline, *, probe: bool = False) -> bool:
        started = self._clock()
        try:
            self.collect(timeout_millis=deadline.remaining() * 1000)
        except Exception as error:  # noqa: BLE001 - a callback's failure is not ours to raise
            self._counts["collections_failed"] += 1
            self._warn.add(f"collection failed: {type(error).__name__}")
            self._collected_in(self._clock() - started, type(error).__name__)
            return False
        self._collected_in(self._clock() - started, None)
        if self._collected is None:
            return True  # nothing recorded yet: nothing to send
        self._counts["collections"] += 1
        return self._export(deadline, probe=probe)

    def _collected_in(self, seconds: float, error_type: str | None) -> None:
        for listener in self._collection_listeners:
            try:
                listener(seconds, error_type)
            except Exception as error:  # noqa: BLE001 - a listener must not stop collections
                self._warn.add(f"collection listener raised {type(error).__name__}")

    def _export(self, deadline: Deadline, *, probe: bool = False) -> bool:
        data, self._collected = self._collected, None
        if data is None:
            return True
        timeout = min(self._export_timeout, deadline.remaining())
        self._in_export = True
        try:
            if self._collection_listeners:  # self-metrics observe this reader
                self._inflight_points = self._exporter.count_items([data])
            report = self._exporter.export_report([data], timeout, cutoff=self._cutoff, probe=probe)
            outcome = report.outcome
        except Exception as error:  # noqa: BLE001 - a bug is counted, never raised here
            self._warn.add(f"export raised {type(error).__name__}")
            outcome = ExportOutcome.FAILED
        finally:
            self._in_export = False
            self._inflight_points = 0
        if outcome is ExportOutcome.SUCCESS:
            self._counts["exports_ok"] += 1
            return True
        if outcome is ExportOutcome.TIMEOUT:
            self._counts["exports_timed_out"] += 1
        else:
            self._counts["exports_failed"] += 1
        return False

    def _cutoff(self) -> float | None:
        """Polled by a running export: a shutdown ends it by the end of its exports' share."""
        return None if self._closing is None else self._final.remaining()

    def _exporter_flush(self, deadline: Deadline) -> bool:
        try:
            return self._exporter.force_flush(timeout_millis=deadline.remaining() * 1000)
        except Exception as error:  # noqa: BLE001
            self._warn.add(f"exporter force_flush raised {type(error).__name__}")
            return False


def _weak_exit_hook(reader: NonBlockingMetricReader) -> Callable[[float], None]:
    """An exit hook that does not keep ``reader`` alive."""
    ref = weakref.ref(reader)

    def hook(seconds: float) -> None:
        live = ref()
        if live is not None:
            live.close_at_exit(seconds)

    return hook
