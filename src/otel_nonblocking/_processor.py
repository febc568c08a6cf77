"""NonBlockingSpanProcessor: ``on_end`` is a deque append and a counter; a worker exports.

The path of a span: ``on_end`` appends it to the pipeline's queue (``_door.py``), or
counts it as a drop -> the worker thread (``_worker.py``: :meth:`Worker.run`) takes
batches off the queue -> :meth:`DeadlineSpanExporter.export_report` runs the real export
on its runner thread under a wall-clock deadline -> the worker counts every span in the
ledger (``_ledger.py``) as exported, keeps a batch that failed for a transient reason in
the retry buffer (``_retry.py``), or drops it with a reason. With a disk spool
(``spool_dir``), what cannot be delivered in time is written to disk (``_spooler.py``)
instead of dropped, and delivered later: by this worker once the backend takes spans
again, or by the next process's. This module is the span-shaped door to that pipeline
(``_pipeline.py``), which knows nothing about spans.
"""

from __future__ import annotations

import os
import threading
import time

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter

from . import _state
from ._config import UNSET, _Unset
from ._deadline import Clock, millis_to_seconds
from ._exporter import DeadlineSpanExporter
from ._guard import GuardedLock
from ._ledger import BACKEND_UNAVAILABLE as BACKEND_UNAVAILABLE
from ._ledger import EXPORT_FAILED as EXPORT_FAILED
from ._ledger import EXPORT_TIMEOUT as EXPORT_TIMEOUT
from ._ledger import MAYBE_DELIVERED as MAYBE_DELIVERED
from ._ledger import QUEUE_FULL as QUEUE_FULL
from ._ledger import RETRY_BUFFER_FULL as RETRY_BUFFER_FULL
from ._ledger import SHUTDOWN as SHUTDOWN
from ._ledger import SPOOL_ERROR as SPOOL_ERROR
from ._ledger import SPOOL_FULL as SPOOL_FULL
from ._ledger import TOO_LARGE as TOO_LARGE
from ._ledger import UNENCODABLE as UNENCODABLE
from ._ledger import FlushReport as FlushReport
from ._ledger import ProcessorStats as ProcessorStats
from ._pipeline import FlushListener as FlushListener
from ._pipeline import Pipeline
from ._settings import PipelineSettings, spool_checked
from ._spool import SpoolStats

# Memory of one queued span, on top of its encoded size (measured: about 3.4 KiB for a
# span with four attributes and an event, with CPython 3.11 and SDK 1.45).
_SPAN_OVERHEAD_BYTES = 3 * 1024
# The longest stats() waits for the worker to let go of the lock before it reads the
# counters without it.
_STATS_WAIT_SECONDS = 0.5


class NonBlockingSpanProcessor(SpanProcessor):
    """A span processor that never makes the instrumented code wait.

    Settings come from the arguments, else the ``OTEL_BSP_*`` variables, else the
    defaults in ``docs/configuration.md``. When the queue is full, the *newest* span is
    dropped and counted (``queue_full``): the spans already queued are older and
    closer to export. A batch that fails for a transient reason (timeout, refused or
    reset connection, 429/502/503/504) waits in a bounded retry buffer and goes out
    again, oldest first, once the backend answers; ``Retry-After`` holds exports back.

    The first four settings may also be passed by position, in the order of the SDK's
    ``BatchSpanProcessor``; ``None`` for any of them means "not given", as there.

    >>> from opentelemetry.sdk.trace import TracerProvider
    >>> from opentelemetry.sdk.trace.export import ConsoleSpanExporter
    >>> provider = TracerProvider()
    >>> provider.add_span_processor(NonBlockingSpanProcessor(ConsoleSpanExporter()))
    """

    def __init__(
        self,
        exporter: SpanExporter,
        max_queue_size: int | _Unset | None = UNSET,
        schedule_delay_millis: int | _Unset | None = UNSET,
        max_export_batch_size: int | _Unset | None = UNSET,
        export_timeout_millis: int | _Unset | None = UNSET,
        *,
        shutdown_timeout_millis: int | _Unset = UNSET,
        max_queue_bytes: int | _Unset = UNSET,
        retry_buffer_size: int | _Unset = UNSET,
        max_export_attempts: int | _Unset = UNSET,
        spool_dir: str | os.PathLike[str] | _Unset | None = UNSET,
        spool_max_bytes: int | _Unset = UNSET,
        clock: Clock = time.monotonic,
    ) -> None:
        settings = PipelineSettings.resolve(
            max_queue_size=_given(max_queue_size),
            max_export_batch_size=_given(max_export_batch_size),
            schedule_delay_millis=_given(schedule_delay_millis),
            export_timeout_millis=_given(export_timeout_millis),
            shutdown_timeout_millis=shutdown_timeout_millis,
            max_queue_bytes=max_queue_bytes,
            retry_buffer_size=retry_buffer_size,
            max_export_attempts=max_export_attempts,
            spool_dir=spool_dir,
            spool_max_bytes=spool_max_bytes,
        )
        if isinstance(exporter, DeadlineSpanExporter):
            self._exporter = exporter
        else:
            self._exporter = DeadlineSpanExporter(
                exporter, timeout_millis=settings.export_timeout * 1000, clock=clock
            )
        self._settings = _spool_checked(settings, self._exporter, given=spool_dir)
        self._clock = clock
        self._pipeline = Pipeline(
            self._exporter,
            self._settings,
            item_overhead=_SPAN_OVERHEAD_BYTES,
            what="spans",
            clock=clock,
        )
        self._door = self._pipeline.door  # what on_end touches, one attribute away
        _state.after_fork_in_child(self._after_fork)
        _state.track_processor(self)  # live: the package's one exit hook shuts it down

    def _after_fork(self) -> None:
        """In a forked child: a fresh pipeline and worker, unless this processor was shut
        down before the fork; then it stays shut down, with fresh locks and no thread."""
        self._pipeline.after_fork()
        self._door = self._pipeline.door

    @property
    def exporter(self) -> DeadlineSpanExporter:
        """The deadline-wrapped exporter this processor exports through."""
        return self._exporter

    @property
    def queue_capacity(self) -> int:
        """How many span objects the queue holds before it turns the next one away: at
        most ``max_queue_size``, lower when ``max_queue_bytes`` cannot hold that many spans
        of the size exports have shown (learned as spans go out). With the package's
        OTLP span exporter (http/protobuf or gRPC) the worker keeps waiting spans encoded
        instead, bounded by ``max_queue_bytes`` only; ``stats().queue_depth`` counts both."""
        return self._door.cap

    # The names other modules and tests read (settings in the processor's own units).
    @property
    def _max_queue_size(self) -> int:
        return self._settings.max_queue_size

    @property
    def _batch_size(self) -> int:
        return self._settings.max_export_batch_size

    @property
    def _schedule_delay(self) -> float:
        return self._settings.schedule_delay

    @property
    def _export_timeout(self) -> float:
        return self._settings.export_timeout

    @property
    def _lock(self) -> GuardedLock:
        return self._pipeline.lock

    @property
    def _worker(self) -> threading.Thread:
        thread = self._pipeline.worker.thread
        assert thread is not None
        return thread

    # -- the caller's side: nothing here may wait, log, or take the export side's lock --

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        # span.context.trace_flags.sampled, without three property calls: a SpanContext
        # is a tuple whose fourth item is the trace flags, and bit 0 is "sampled". The
        # try costs nothing unless it raises (CPython 3.11+).
        try:
            sampled = span._context[3] & 1  # type: ignore[index]
        except Exception:  # noqa: BLE001 - never raise into the application
            sampled = _sampled(span)
        if not sampled:
            return
        door = self._door
        if door.closed:
            next(door.closed_drops.counter)
            return
        queue = door.queue
        if len(queue) >= door.cap:
            next(door.full_drops.counter)
            return
        queue.append(span)
        if len(queue) >= door.batch_size and not door.wake.is_set():
            door.wake.set()

    # -- flush, shutdown, stats --

    def add_flush_listener(self, listener: FlushListener) -> None:
        """Call ``listener(flushed_ok, seconds)`` after every ``force_flush`` (caller's thread)."""
        self._pipeline.flush_listeners = (*self._pipeline.flush_listeners, listener)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Wait up to ``timeout_millis`` for every span ended before this call to be exported.

        Returns True only if all of them were exported successfully (after retries, if
        any). The export runs on the worker, never on the calling thread.
        """
        return self._flush_report(timeout_millis).ok

    def _flush_report(self, timeout_millis: int) -> FlushReport:
        """:meth:`force_flush`, saying whether the deadline ended it and which drops
        during it were of spans given up on before it began (for the Langfuse binding's
        flush result; see :class:`FlushReport`)."""
        with self._pipeline.call() as entered:
            if not entered:
                # A signal handler interrupted this thread's flush: no nesting.
                return FlushReport(ok=False, done=False)
            return self._pipeline.timed_flush(millis_to_seconds(timeout_millis))

    def busy_here(self) -> bool:
        """True when the calling thread is inside this processor's flush, shutdown or
        stats (a signal handler interrupted it): a flush now would not run."""
        return self._pipeline.busy_here()

    def shutdown(self, timeout_millis: float | None = None) -> None:
        """Export what is pending within the budget, then drop the rest (``shutdown``).

        ``timeout_millis`` defaults to ``shutdown_timeout_millis`` (as TracerProvider's
        shutdown calls it), and at exit to at most the time left of the package's one exit
        budget (``OTEL_NONBLOCKING_EXIT_TIMEOUT``). Idempotent; later ``on_end`` calls
        count ``shutdown`` drops. Returns at once when it interrupted this processor's
        flush or shutdown on the same thread (from a signal handler): the exit hook shuts
        it down later.
        """
        self._pipeline.shutdown(timeout_millis)

    def close_at_exit(self, seconds: float) -> None:
        """The exit hook's turn: shut down within ``seconds`` or the shutdown budget."""
        self._pipeline.close_at_exit(seconds)

    def stats(self) -> ProcessorStats:
        """A consistent snapshot of the counters.

        Best effort instead when the lock is not to be had (the calling thread holds it,
        e.g. from a signal handler, or the worker keeps it): never a wait without bound.
        """
        return self._stats_within(_STATS_WAIT_SECONDS)

    def _stats_within(self, wait: float) -> ProcessorStats:
        """:meth:`stats`, waiting at most ``wait`` seconds for the lock."""
        return self._pipeline.stats_within(wait)

    def spool_stats(self) -> SpoolStats | None:
        """The disk spool's counters, or None when there is no spool."""
        return self._pipeline.spool_stats()


def _given(value: int | _Unset | None) -> int | _Unset:
    """``None`` for a BatchSpanProcessor-shaped argument means "not given", as there."""
    return UNSET if value is None else value


def _spool_checked(
    settings: PipelineSettings,
    exporter: DeadlineSpanExporter,
    *,
    given: str | os.PathLike[str] | _Unset | None,
) -> PipelineSettings:
    """The spool writes OTLP request bodies: without an exporter that has a codec (the
    SDK's OTLP/HTTP one, or the package's OTLP/gRPC one), a spool_dir argument raises and
    the variable is ignored (with a warning)."""
    return spool_checked(
        settings,
        has_codec=exporter.codec is not None,
        given=given,
        exporters="otlp_span_exporter() or the SDK's OTLPSpanExporter",
        exporter_name=type(exporter.inner).__name__,
    )


def _sampled(span: object) -> bool:
    """The slow path of ``on_end``'s sampled check, for a span whose ``_context`` is not an
    SDK ``SpanContext``: as the SDK's processors do, a span without a context counts as
    not sampled (never enqueued, so never counted), and so does one that cannot say."""
    try:
        context = span.context  # type: ignore[attr-defined]
        return bool(context and context.trace_flags.sampled)
    except Exception:  # noqa: BLE001 - whatever it is handed, on_end never raises
        return False
