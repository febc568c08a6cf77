"""NonBlockingSpanProcessor: ``on_end`` is a deque append and a counter; a worker exports.

The path of a span: ``on_end`` appends it to ``_queue`` (or counts it as a drop) ->
the worker thread (:meth:`NonBlockingSpanProcessor._work`) takes batches off the queue ->
:meth:`DeadlineSpanExporter.export_report` runs the real export on its runner thread
under a wall-clock deadline -> the worker counts every span as exported, keeps a batch
that failed for a transient reason in the retry buffer, or drops it with a reason.
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
from ._exporter import DeadlineSpanExporter, ExportOutcome, ExportReport
from ._fork import after_fork_in_child
from ._log import AggregatedWarning
from ._retry import Batch, RetryBuffer
from ._tally import Tally

#: Why a span was dropped: the keys of :attr:`ProcessorStats.dropped`. A batch the
#: backend rejected for good is counted as ``http_<status>`` (``http_400``, ...).
QUEUE_FULL = "queue_full"
EXPORT_FAILED = "export_failed"
EXPORT_TIMEOUT = "export_timeout"
RETRY_BUFFER_FULL = "retry_buffer_full"
SHUTDOWN = "shutdown"

# Memory of one queued span, on top of its encoded size (measured: about 3.4 KiB for a
# span with four attributes and an event, with CPython 3.11 and SDK 1.45).
_SPAN_OVERHEAD_BYTES = 3 * 1024
# The longest a Retry-After from the backend holds exports back.
_MAX_HOLD_SECONDS = 300.0


@dataclass(frozen=True)
class ProcessorStats:
    """An immutable snapshot. ``enqueued == exported + dropped_total + pending`` always.

    ``enqueued`` counts every sampled span handed to ``on_end``, including those the
    full queue turned away at once (they are also in ``dropped["queue_full"]``).
    ``pending`` counts spans queued, in flight, or waiting in the retry buffer
    (``retrying``); ``retried`` counts spans sent again after a transient failure.
    """

    enqueued: int
    exported: int
    dropped: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    pending: int = 0
    queue_depth: int = 0
    export_count: int = 0
    last_export_seconds: float | None = None
    retrying: int = 0
    retried: int = 0

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


class _FlushRequest:
    __slots__ = ("done", "ok", "target")

    def __init__(self, target: int) -> None:
        self.target = target  # every span with a sequence number below it
        self.done = threading.Event()
        self.ok = True


class NonBlockingSpanProcessor(SpanProcessor):
    """A span processor that never makes the instrumented code wait.

    Settings come from the arguments, else the ``OTEL_BSP_*`` variables, else the
    defaults in ``docs/configuration.md``. When the queue is full, the *newest* span is
    dropped and counted (``queue_full``): the spans already queued are older and
    closer to export. A batch that fails for a transient reason (timeout, refused or
    reset connection, 429/502/503/504) waits in a bounded retry buffer and goes out
    again, oldest first, once the backend answers; ``Retry-After`` holds exports back.

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
        max_queue_bytes: int | _Unset = UNSET,
        retry_buffer_size: int | _Unset = UNSET,
        max_export_attempts: int | _Unset = UNSET,
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
        self._max_queue_bytes = _config.MAX_QUEUE_BYTES.resolve(max_queue_bytes)
        self._retry_capacity = _config.RETRY_BUFFER_SIZE.resolve(retry_buffer_size)
        self._max_attempts = _config.MAX_EXPORT_ATTEMPTS.resolve(max_export_attempts)
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
        self._queue_cap = self._cap_for(0)
        self._wake = threading.Event()  # a batch is ready, or a flush/shutdown asks
        self._urgent = threading.Event()  # a flush or shutdown asks (wakes a held worker)
        self._closed = False
        self._full_drops = Tally()
        self._closed_drops = Tally()
        # Everything below is the export side's; on_end never touches this lock.
        self._lock = threading.Lock()
        self._taken = 0  # sequence number of the next span to leave the queue
        self._in_flight: Batch | None = None
        self._retry = RetryBuffer(self._retry_capacity)
        self._hold_until = 0.0  # Retry-After: nothing goes out before this
        self._exported = 0
        self._retried = 0
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
        # span.context.trace_flags.sampled, without three property calls: a SpanContext
        # is a tuple whose fourth item is the trace flags, and bit 0 is "sampled".
        if not span._context[3] & 1:  # type: ignore[index]
            return
        if self._closed:
            next(self._closed_drops.counter)
            return
        queue = self._queue
        if len(queue) >= self._queue_cap:
            next(self._full_drops.counter)
            return
        queue.append(span)
        if len(queue) >= self._batch_size and not self._wake.is_set():
            self._wake.set()

    # -- the worker --

    def _work(self) -> None:
        while True:
            held = self._held_for()
            if held > 0:
                # Nothing can go out: sleep through batch-ready wake-ups until the hold
                # ends, or a flush or shutdown asks.
                if self._stop_by is not None:
                    held = min(held, self._stop_by.remaining())
                self._urgent.wait(held)
            else:
                self._wake.wait(self._schedule_delay)
            self._wake.clear()
            self._urgent.clear()
            try:
                self._pump()
            except Exception as error:  # noqa: BLE001 - the worker must survive anything
                self._warn.add(f"worker error {type(error).__name__}")
            self._report_door_drops()
            self._warn.maybe_emit()
            if self._closed and (self._idle() or self._out_of_time()):
                return

    def _idle(self) -> bool:
        return not self._queue and not self._retry and self._in_flight is None

    def _out_of_time(self) -> bool:
        stop_by = self._stop_by
        return stop_by is not None and stop_by.expired()

    def _held_for(self) -> float:
        """Seconds before anything may be sent: Retry-After, or the open breaker."""
        return max(self._hold_until - self._clock(), self._exporter.available_in(), 0.0)

    def _pump(self) -> None:
        """Send retry batches (oldest first), then new ones, until something fails."""
        while not self._out_of_time() and self._held_for() <= 0:
            batch = self._next_batch()
            if batch is None:
                return
            if batch.doubt is not None:
                verdict = self._resolve_doubt(batch)
                if verdict is None:
                    return  # still running: look again on the next wake-up
                if verdict:
                    continue  # it got through after all
            if not self._send(batch):
                return

    def _resolve_doubt(self, batch: Batch) -> bool | None:
        """Before sending a timed-out batch again, learn whether it got through after all.

        A timed-out attempt whose response had already arrived is left to finish; if it
        delivered the batch, sending it again would duplicate every span in it. True:
        it did (counted as exported); False: it did not (send it); None: unknown yet.
        """
        assert batch.doubt is not None
        wait = 0.1 if self._stop_by is None else min(0.1, self._stop_by.remaining())
        verdict = self._exporter.resolve(batch.doubt, wait)
        with self._lock:
            if verdict is None:
                self._in_flight = None
                self._requeue(batch, front=True)
                self._resolve_flushes()
                return None
            batch.doubt = None
            if verdict:
                self._in_flight = None
                self._exported += len(batch)
                self._resolve_flushes()
        return verdict

    def _next_batch(self) -> Batch | None:
        with self._lock:
            batch = self._retry.pop()
            if batch is None:
                count = min(len(self._queue), self._batch_size)
                if count == 0:
                    return None
                batch = Batch([self._queue.popleft() for _ in range(count)], self._taken)
                self._taken += count
            self._in_flight = batch
            return batch

    def _send(self, batch: Batch) -> bool:
        """Export ``batch`` and settle it; False if the worker should stop for now."""
        timeout = self._export_timeout
        if self._stop_by is not None:
            timeout = min(timeout, self._stop_by.remaining())
        began = self._clock()
        report = self._exporter.export_report(batch.spans, timeout=timeout)
        seconds = self._clock() - began
        outcome = report.outcome
        went_out = outcome is not ExportOutcome.CIRCUIT_OPEN and outcome is not ExportOutcome.BUSY
        if went_out:
            batch.attempts += 1
        if report.retry_after is not None and outcome is not ExportOutcome.SUCCESS:
            self._hold_until = self._clock() + min(report.retry_after, _MAX_HOLD_SECONDS)
        self._learn_span_size(report, len(batch))
        with self._lock:
            self._in_flight = None
            self._export_count += 1
            self._last_export_seconds = seconds
            if batch.retried and went_out:
                self._retried += len(batch)
            if outcome is ExportOutcome.SUCCESS:
                self._exported += len(batch)
                keep_going = True
            elif report.status == 413 and len(batch) > 1:
                first, second = batch.split()
                self._requeue(second, front=True)
                self._requeue(first, front=True)
                keep_going = True
            elif report.transient and self._may_retry(batch):
                batch.retried = True
                batch.doubt = report.attempt
                self._requeue(batch, front=True)
                keep_going = False
            else:
                self._drop(batch, _reason(report))
                keep_going = outcome is not ExportOutcome.TIMEOUT
            self._resolve_flushes()
        return keep_going

    def _may_retry(self, batch: Batch) -> bool:
        if self._retry_capacity == 0 or batch.attempts >= self._max_attempts:
            return False
        return not (self._closed and self._out_of_time())

    def _requeue(self, batch: Batch, *, front: bool) -> None:
        for evicted in self._retry.push(batch, front=front):
            self._drop(evicted, RETRY_BUFFER_FULL)

    def _drop(self, batch: Batch, reason: str) -> None:
        """Count ``batch`` as dropped (caller holds the lock); flushes covering it fail."""
        self._dropped[reason] += len(batch)
        for request in self._flushes:
            if batch.start < request.target:
                request.ok = False
        self._warn.add(reason, len(batch))

    def _resolve_flushes(self) -> None:
        """Complete the flush requests whose spans are all settled (caller holds the lock)."""
        if not self._flushes:
            return
        unsettled = [self._taken]
        if self._in_flight is not None:
            unsettled.append(self._in_flight.start)
        oldest_retry = self._retry.min_start()
        if oldest_retry is not None:
            unsettled.append(oldest_retry)
        settled_below = min(unsettled)
        waiting = []
        for request in self._flushes:
            if settled_below >= request.target:
                request.done.set()
            else:
                waiting.append(request)
        self._flushes = waiting

    def _learn_span_size(self, report: ExportReport, count: int) -> None:
        if report.request_bytes is None or count <= 0:
            return
        self._queue_cap = self._cap_for(report.request_bytes // count)

    def _cap_for(self, encoded_bytes_per_span: int) -> int:
        per_span = _SPAN_OVERHEAD_BYTES + max(encoded_bytes_per_span, 0)
        return max(min(self._max_queue_size, self._max_queue_bytes // per_span), 1)

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

        Returns True only if all of them were exported successfully (after retries, if
        any). The export runs on the worker, never on the calling thread.
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
            request = _FlushRequest(self._taken + len(self._queue))
            self._flushes.append(request)
            self._resolve_flushes()
        if not request.done.is_set():
            self._wake.set()
            self._urgent.set()
        done = request.done.wait(deadline.remaining())
        if not done:
            with self._lock:
                if request in self._flushes:
                    self._flushes.remove(request)
        return done and request.ok

    def shutdown(self, timeout_millis: float | None = None) -> None:
        """Export what is pending within the budget, then drop the rest (``shutdown``).

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
        self._urgent.set()
        if self._worker.is_alive() and self._worker is not threading.current_thread():
            self._worker.join(deadline.remaining())
        with self._lock:
            left = Batch(list(self._queue), self._taken)
            self._queue.clear()
            self._taken += len(left)
            for batch in (*self._retry.clear(), left):
                if batch.spans:
                    self._drop(batch, SHUTDOWN)
            self._resolve_flushes()
        self._exporter.shutdown(timeout_millis=deadline.remaining() * 1000)
        self._warn.maybe_emit(force=True)

    def stats(self) -> ProcessorStats:
        """A consistent snapshot of the counters."""
        full = self._full_drops.value()
        closed = self._closed_drops.value()
        with self._lock:
            queued = len(self._queue)
            dropped = Counter(self._dropped)
            in_flight = 0 if self._in_flight is None else len(self._in_flight)
            retrying = self._retry.spans
            taken, exported, retried = self._taken, self._exported, self._retried
            export_count, last = self._export_count, self._last_export_seconds
        if full:
            dropped[QUEUE_FULL] += full
        if closed:
            dropped[SHUTDOWN] += closed
        return ProcessorStats(
            enqueued=taken + queued + full + closed,
            exported=exported,
            dropped=MappingProxyType(dict(dropped)),
            pending=queued + in_flight + retrying,
            queue_depth=queued,
            export_count=export_count,
            last_export_seconds=last,
            retrying=retrying,
            retried=retried,
        )


def _reason(report: ExportReport) -> str:
    if report.outcome is ExportOutcome.TIMEOUT:
        return EXPORT_TIMEOUT
    if report.outcome is ExportOutcome.SHUTDOWN:
        return SHUTDOWN
    if report.status is not None and not 200 <= report.status < 300:
        return f"http_{report.status}"
    return EXPORT_FAILED


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
