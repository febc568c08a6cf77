"""NonBlockingSpanProcessor: ``on_end`` is a deque append and a counter; a worker exports.

The path of a span: ``on_end`` appends it to ``_queue`` (or counts it as a drop) ->
the worker thread (:meth:`NonBlockingSpanProcessor._work`) takes batches off the queue ->
:meth:`DeadlineSpanExporter.export_outcome` runs the real export on its runner thread
under a wall-clock deadline -> the worker counts every span as exported or dropped.
"""

from __future__ import annotations

import atexit
import collections
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter

from . import _config
from ._config import UNSET, _Unset
from ._deadline import Clock, Deadline, millis_to_seconds
from ._errors import ConfigurationError
from ._exporter import DeadlineSpanExporter, ExportOutcome
from ._fork import after_fork_in_child
from ._log import AggregatedWarning
from ._tally import Tally

#: Why a span was dropped; the keys of :attr:`ProcessorStats.dropped`.
QUEUE_FULL = "queue_full"
EXPORT_FAILED = "export_failed"
EXPORT_TIMEOUT = "export_timeout"
SHUTDOWN = "shutdown"


@dataclass(frozen=True)
class ProcessorStats:
    """An immutable snapshot. ``enqueued == exported + dropped_total + pending`` always.

    ``enqueued`` counts every sampled span handed to ``on_end``, including those the
    full queue turned away at once (they are also in ``dropped["queue_full"]``).
    """

    enqueued: int
    exported: int
    dropped: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    pending: int = 0
    queue_depth: int = 0
    export_count: int = 0
    last_export_seconds: float | None = None

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


class _FlushRequest:
    __slots__ = ("done", "ok", "target")

    def __init__(self, target: int) -> None:
        self.target = target  # every span taken with a sequence number below it
        self.done = threading.Event()
        self.ok = True


_OUTCOME_REASON: Mapping[ExportOutcome, str] = {
    ExportOutcome.TIMEOUT: EXPORT_TIMEOUT,
    ExportOutcome.SHUTDOWN: SHUTDOWN,
}


class NonBlockingSpanProcessor(SpanProcessor):
    """A span processor that never makes the instrumented code wait.

    Settings come from the arguments, else the ``OTEL_BSP_*`` variables, else the
    defaults in ``docs/configuration.md``. When the queue is full, the *newest* span is
    dropped and counted (``queue_full``): the spans already queued are older and
    closer to export.

    >>> from opentelemetry.sdk.trace import TracerProvider
    >>> from opentelemetry.sdk.trace.export import ConsoleSpanExporter
    >>> provider = TracerProvider()
    >>> provider.add_span_processor(NonBlockingSpanProcessor(ConsoleSpanExporter()))
    """

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        max_queue_size: int | _Unset = UNSET,
        max_export_batch_size: int | _Unset = UNSET,
        schedule_delay_millis: int | _Unset = UNSET,
        export_timeout_millis: int | _Unset = UNSET,
        shutdown_timeout_millis: int | _Unset = UNSET,
        clock: Clock = time.monotonic,
    ) -> None:
        self._max_queue_size = _config.MAX_QUEUE_SIZE.resolve(max_queue_size)
        batch = _config.MAX_EXPORT_BATCH_SIZE.resolve(max_export_batch_size)
        if batch > self._max_queue_size:
            if not isinstance(max_export_batch_size, _Unset):
                raise ConfigurationError(
                    f"max_export_batch_size ({batch}) must not exceed "
                    f"max_queue_size ({self._max_queue_size})"
                )
            batch = self._max_queue_size
        self._batch_size = batch
        self._schedule_delay = _config.SCHEDULE_DELAY_MILLIS.resolve(schedule_delay_millis) / 1000
        self._export_timeout = _config.EXPORT_TIMEOUT_MILLIS.resolve(export_timeout_millis) / 1000
        self._shutdown_budget = (
            _config.SHUTDOWN_TIMEOUT_MILLIS.resolve(shutdown_timeout_millis) / 1000
        )
        if isinstance(exporter, DeadlineSpanExporter):
            self._exporter = exporter
        else:
            self._exporter = DeadlineSpanExporter(
                exporter, timeout_millis=self._export_timeout * 1000, clock=clock
            )
        self._clock = clock
        self._flush_listeners: tuple[FlushListener, ...] = ()
        self._init_state()
        after_fork_in_child(self._init_state)
        atexit.register(_shutdown_at_exit, weakref.ref(self))
        _LIVE.add(self)

    def _init_state(self) -> None:
        """Fresh queue, counters, locks and worker (at start, and in a forked child)."""
        self._queue: collections.deque[ReadableSpan] = collections.deque()
        self._wake = threading.Event()
        self._closed = False
        self._full_drops = Tally()
        self._closed_drops = Tally()
        # Everything below is the export side's; on_end never touches this lock.
        self._lock = threading.Lock()
        self._taken = 0
        self._in_flight = 0
        self._exported = 0
        self._dropped: Counter[str] = Counter()
        self._export_count = 0
        self._last_export_seconds: float | None = None
        self._flushes: list[_FlushRequest] = []
        self._dropped_seen_full = 0  # queue_full drops already reported in a warning
        self._stop_by: Deadline | None = None
        self._shutdown_lock = threading.Lock()
        self._warn = AggregatedWarning("spans dropped", clock=self._clock)
        self._worker = threading.Thread(
            target=self._work, name="otel-nonblocking-worker", daemon=True
        )
        self._worker.start()

    @property
    def exporter(self) -> DeadlineSpanExporter:
        """The deadline-wrapped exporter this processor exports through."""
        return self._exporter

    # -- the caller's side: nothing here may wait, log, or take the export side's lock --

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        if not span.context.trace_flags.sampled:
            return
        if self._closed:
            next(self._closed_drops.counter)
            return
        queue = self._queue
        if len(queue) >= self._max_queue_size:
            next(self._full_drops.counter)
            return
        queue.append(span)
        if len(queue) >= self._batch_size and not self._wake.is_set():
            self._wake.set()

    # -- the worker --

    def _work(self) -> None:
        while True:
            self._wake.wait(self._schedule_delay)
            self._wake.clear()
            try:
                self._drain()
            except Exception as error:  # noqa: BLE001 - the worker must survive anything
                self._warn.add(f"worker error {type(error).__name__}")
            self._report_door_drops()
            self._warn.maybe_emit()
            if self._closed and (not self._queue or self._out_of_time()):
                return

    def _out_of_time(self) -> bool:
        stop_by = self._stop_by
        return stop_by is not None and stop_by.expired()

    def _drain(self) -> None:
        while self._queue and not self._out_of_time():
            with self._lock:
                count = min(len(self._queue), self._batch_size)
                batch = [self._queue.popleft() for _ in range(count)]
                start = self._taken
                self._taken += count
                self._in_flight = count
            timeout = self._export_timeout
            if self._stop_by is not None:
                timeout = min(timeout, self._stop_by.remaining())
            began = self._clock()
            outcome = self._exporter.export_outcome(batch, timeout=timeout)
            del batch
            self._settle(start, count, outcome, self._clock() - began)

    def _settle(self, start: int, count: int, outcome: ExportOutcome, seconds: float) -> None:
        success = outcome is ExportOutcome.SUCCESS
        reason = _OUTCOME_REASON.get(outcome, EXPORT_FAILED)
        with self._lock:
            self._in_flight = 0
            self._export_count += 1
            self._last_export_seconds = seconds
            if success:
                self._exported += count
            else:
                self._dropped[reason] += count
            end = start + count
            still_waiting = []
            for request in self._flushes:
                if not success and start < request.target:
                    request.ok = False
                if end >= request.target:
                    request.done.set()
                else:
                    still_waiting.append(request)
            self._flushes = still_waiting
        if not success:
            self._warn.add(reason, count)

    def _report_door_drops(self) -> None:
        full = self._full_drops.value()
        with self._lock:
            new = full - self._dropped_seen_full
            self._dropped_seen_full = full
        self._warn.add(QUEUE_FULL, new)

    # -- flush, shutdown, stats --

    def add_flush_listener(self, listener: FlushListener) -> None:
        """Call ``listener(flushed_ok, seconds)`` after every ``force_flush`` (caller's thread)."""
        self._flush_listeners = (*self._flush_listeners, listener)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Wait up to ``timeout_millis`` for every span ended before this call to be exported.

        Returns True only if all of them were exported successfully. The export runs
        on the worker, never on the calling thread.
        """
        started = self._clock()
        ok = self._force_flush(timeout_millis)
        for listener in self._flush_listeners:
            try:
                listener(ok, self._clock() - started)
            except Exception as error:  # noqa: BLE001 - a listener must not break flush
                self._warn.add(f"flush listener raised {type(error).__name__}")
        return ok

    def _force_flush(self, timeout_millis: int) -> bool:
        deadline = Deadline.after(millis_to_seconds(timeout_millis), self._clock)
        with self._lock:
            target = self._taken + len(self._queue)
            if target <= self._taken - self._in_flight:
                return True
            request = _FlushRequest(target)
            self._flushes.append(request)
        self._wake.set()
        done = request.done.wait(deadline.remaining())
        if not done:
            with self._lock:
                if request in self._flushes:
                    self._flushes.remove(request)
        return done and request.ok

    def shutdown(self, timeout_millis: float | None = None) -> None:
        """Export what is queued within the budget, then drop the rest (``shutdown``).

        ``timeout_millis`` defaults to ``shutdown_timeout_millis`` (the exit hook's
        budget). Idempotent; later ``on_end`` calls count ``shutdown`` drops.
        """
        with self._shutdown_lock:
            if self._closed:
                return
            budget = (
                self._shutdown_budget
                if timeout_millis is None
                else millis_to_seconds(timeout_millis)
            )
            deadline = Deadline.after(budget, self._clock)
            self._stop_by = deadline
            self._closed = True
        self._wake.set()
        if self._worker.is_alive() and self._worker is not threading.current_thread():
            self._worker.join(deadline.remaining())
        with self._lock:
            left = len(self._queue)
            self._queue.clear()
            self._taken += left
            if left:
                self._dropped[SHUTDOWN] += left
        self._warn.add(SHUTDOWN, left)
        self._exporter.shutdown(timeout_millis=deadline.remaining() * 1000)
        self._warn.maybe_emit(force=True)

    def stats(self) -> ProcessorStats:
        """A consistent snapshot of the counters."""
        full = self._full_drops.value()
        closed = self._closed_drops.value()
        with self._lock:
            queued = len(self._queue)
            dropped = Counter(self._dropped)
            taken, in_flight, exported = self._taken, self._in_flight, self._exported
            export_count, last = self._export_count, self._last_export_seconds
        if full:
            dropped[QUEUE_FULL] += full
        if closed:
            dropped[SHUTDOWN] += closed
        return ProcessorStats(
            enqueued=taken + queued + full + closed,
            exported=exported,
            dropped=MappingProxyType(dict(dropped)),
            pending=queued + in_flight,
            queue_depth=queued,
            export_count=export_count,
            last_export_seconds=last,
        )


#: ``listener(flushed_ok, seconds)``, called after each ``force_flush``.
FlushListener = Callable[[bool, float], object]

_LIVE: weakref.WeakSet[NonBlockingSpanProcessor] = weakref.WeakSet()


def live_processors() -> list[NonBlockingSpanProcessor]:
    """Every NonBlockingSpanProcessor in this process that is still referenced."""
    return list(_LIVE)


def _shutdown_at_exit(ref: weakref.ref[NonBlockingSpanProcessor]) -> None:
    processor = ref()
    if processor is not None:
        processor.shutdown()
