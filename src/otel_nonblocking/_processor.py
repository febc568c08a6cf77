"""NonBlockingSpanProcessor: ``on_end`` is a deque append and a counter; a worker exports.

The path of a span: ``on_end`` appends it to ``_queue`` (or counts it as a drop) ->
the worker thread (:meth:`NonBlockingSpanProcessor._work`) takes batches off the queue ->
:meth:`DeadlineSpanExporter.export_report` runs the real export on its runner thread
under a wall-clock deadline -> the worker counts every span as exported, keeps a batch
that failed for a transient reason in the retry buffer, or drops it with a reason.
With a disk spool (``spool_dir``), what cannot be delivered in time is written to disk by
the worker instead of dropped, and delivered later: by this worker once the backend takes
spans again, or by the next process's.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter

from . import _config, _spool, _state
from ._config import UNSET, _Unset
from ._deadline import Clock, Deadline, millis_to_seconds
from ._errors import ConfigurationError
from ._exporter import DeadlineSpanExporter, ExportOutcome, ExportReport
from ._guard import GuardedLock, Wake
from ._log import AggregatedWarning
from ._requests import TOO_LARGE as TOO_LARGE  # re-exported: a drop reason
from ._requests import UNENCODABLE as UNENCODABLE  # re-exported: a drop reason
from ._retry import Batch, RetryBuffer
from ._runner import Attempt
from ._spool import Spool, SpoolFile, SpoolFullError, SpoolStats
from ._suppress import start_thread
from ._tally import Tally

#: Why a span was dropped: the keys of :attr:`ProcessorStats.dropped`. A batch the
#: backend rejected for good is counted as ``http_<status>`` (``http_400``, ...).
QUEUE_FULL = "queue_full"
EXPORT_FAILED = "export_failed"
EXPORT_TIMEOUT = "export_timeout"
# The backend could not be reached (refused, reset, timed out, 429/502/503/504) on any
# of the batch's attempts, or at shutdown when its probe failed: an outage, not a rejection.
BACKEND_UNAVAILABLE = "backend_unavailable"
RETRY_BUFFER_FULL = "retry_buffer_full"
SHUTDOWN = "shutdown"
# UNENCODABLE ("unencodable": no encoder can write the span, e.g. a lone surrogate in its
# name) and TOO_LARGE ("too_large": its request alone is over the size limit) come from
# _requests, where spans are left out of their batch's requests.
SPOOL_FULL = "spool_full"  # evicted from the spool to make room, or larger than it
SPOOL_ERROR = "spool_error"  # the disk refused the write
# Given up on while the answer to its request was still out: the backend may have it (it
# had the whole request), so it is neither sent again nor spooled. Not a known loss.
MAYBE_DELIVERED = "maybe_delivered"
# The destination of a parked batch that is to be spooled once known to be undelivered.
_TO_SPOOL = "to_spool"

_logger = logging.getLogger("otel_nonblocking")

# Memory of one queued span, on top of its encoded size (measured: about 3.4 KiB for a
# span with four attributes and an event, with CPython 3.11 and SDK 1.45).
_SPAN_OVERHEAD_BYTES = 3 * 1024
# The longest a Retry-After from the backend holds exports back.
_MAX_HOLD_SECONDS = 300.0
# With a spool, the part of the shutdown budget kept for writing what is left to disk.
_SPOOL_RESERVE_SHARE = 0.2
_SPOOL_RESERVE_MIN_SECONDS = 0.1
# How often the worker looks for spool files other processes left.
_SPOOL_RESCAN_SECONDS = 60.0
# While exports are held back, how often the worker checks whether the queue needs spooling.
_SPOOL_POLL_SECONDS = 0.1
# How often the worker looks whether a parked batch's abandoned attempt has ended.
_DOUBT_POLL_SECONDS = 0.05
# How often the worker looks again at an overdue partial batch it could not send.
_OVERDUE_POLL_SECONDS = 0.05
# The longest stats() waits for the worker to let go of the lock before it reads the
# counters without it; and the longest shutdown() waits to settle its counts.
_STATS_WAIT_SECONDS = 0.5
_BOOKKEEPING_GRACE_SECONDS = 0.02
# A probe of the breaker carries at most this many spans: it only has to learn whether
# the backend is back, and against one that is not, a small request is cheap.
_PROBE_SPANS = 64


@dataclass(frozen=True)
class ProcessorStats:
    """An immutable snapshot. ``enqueued == exported + dropped_total + pending + spooled``.

    ``enqueued`` counts every sampled span handed to ``on_end``, including those the
    full queue turned away at once (they are also in ``dropped["queue_full"]``).
    ``pending`` counts spans queued, in flight, waiting in the retry buffer
    (``retrying``), being written to the spool, or given up on while their timed-out
    attempt may still deliver them (exported if it does); ``retried`` counts spans sent again
    after a transient failure. ``spooled`` counts this processor's spans on disk, waiting
    to be delivered (when this processor delivers them they move to ``exported``; spans
    evicted from the spool move to ``dropped["spool_full"]``); ``recovered`` counts spans
    other processes spooled that this one delivered (never part of ``enqueued``).
    ``dropped["maybe_delivered"]`` counts spans shutdown gave up on while the answer to
    their request was still out: the backend may have them, so they are not sent again.
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
    spooled: int = 0
    recovered: int = 0

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


class _FlushRequest:
    __slots__ = ("deadline", "done", "earlier", "earlier_dropped", "ok", "target", "tried")

    def __init__(self, target: int, deadline: Deadline, earlier: tuple[Batch, ...] = ()) -> None:
        self.target = target  # every span with a sequence number below it
        self.deadline = deadline
        # Set from the worker, or from a flush on the caller's thread that completes
        # earlier requests; that flush may run in a signal handler which interrupted this
        # request's own wait, so setting it must take no lock (threading.Event's does).
        self.done = Wake()
        self.ok = True
        # An export that began after it failed for a transient reason: it had its probe.
        self.tried = False
        # Batches given up on before it began, only waiting to learn whether their
        # abandoned attempt delivered them: lost, they were lost before this flush.
        self.earlier = earlier
        self.earlier_dropped: Counter[str] = Counter()  # spans of ``earlier`` dropped, by reason


@dataclass(frozen=True)
class FlushReport:
    """What one flush of a :class:`NonBlockingSpanProcessor` came to.

    ``ok``: every span ended before the call was exported (``force_flush``'s answer).
    ``done``: it ended before its deadline, its spans settled, or given up on early
    because nothing could go out (the breaker open after its probe failed, or a
    Retry-After outlasting it); False when the deadline ended the wait.
    ``dropped_earlier``: spans dropped while it waited, by reason, whose batch had been
    given up on before it began (out of attempts, waiting only to learn whether a
    timed-out attempt delivered it after all): a loss that happened before this flush.
    """

    ok: bool
    done: bool
    dropped_earlier: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))


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
        spool_dir: str | os.PathLike[str] | _Unset | None = UNSET,
        spool_max_bytes: int | _Unset = UNSET,
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
        self._spool_dir, self._spool_max_bytes = self._spool_settings(spool_dir, spool_max_bytes)
        self._flush_listeners: tuple[FlushListener, ...] = ()
        self._init_state()
        _state.after_fork_in_child(self._after_fork)
        _state.track_processor(self)  # live: the one exit hook shuts it down

    def _spool_settings(
        self, spool_dir: str | os.PathLike[str] | _Unset | None, max_bytes: int | _Unset
    ) -> tuple[str, int]:
        if isinstance(spool_dir, os.PathLike):
            spool_dir = os.fspath(spool_dir)
        directory = _config.SPOOL_DIR.resolve("" if spool_dir is None else spool_dir)
        limit = _config.SPOOL_MAX_BYTES.resolve(max_bytes)
        if directory and self._exporter.codec is None:
            if not isinstance(spool_dir, _Unset):
                raise ConfigurationError(
                    "spool_dir needs an OTLP/HTTP exporter (otlp_span_exporter() or the "
                    f"SDK's OTLPSpanExporter), not {type(self._exporter.inner).__name__}"
                )
            _logger.warning(
                "OTEL_NONBLOCKING_SPOOL_DIR ignored: the spool needs an OTLP/HTTP exporter"
            )
            directory = ""
        return directory, limit

    def _init_state(self) -> None:
        """Fresh queue, counters, locks and worker (at start, and in a forked child)."""
        self._queue: collections.deque[ReadableSpan] = collections.deque()
        self._queue_cap = self._cap_for(0)
        # Set from on_end and from flush/shutdown, maybe in a signal handler: no locks.
        self._wake = Wake()  # a batch is ready, or a flush/shutdown asks
        self._urgent = Wake()  # a flush or shutdown asks (wakes a held worker)
        self._closed = False
        self._full_drops = Tally()
        self._closed_drops = Tally()
        # Everything below is the export side's; on_end never touches this lock, and
        # the application's threads take it only with a bound (see _guard.py).
        self._lock = GuardedLock()
        self._taken = 0  # sequence number of the next span to leave the queue
        self._queue_taken_at = self._clock()  # when a batch last left the queue
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
        self._export_by: Deadline | None = None  # stop_by, less the spool's reserve
        # Shutdown's own flush: it may probe an open breaker once, like a flush.
        self._closing: _FlushRequest | None = None
        self._unreachable = False  # at shutdown: nothing could go out, the worker stopped
        # The disk spool (None: off). The worker opens it; only the worker touches it.
        self._spool = Spool(self._spool_dir, self._spool_max_bytes) if self._spool_dir else None
        self._spooling: list[Batch] = []  # batches on their way to disk (pending)
        # Batches to be dropped or spooled whose timed-out attempt may still deliver them,
        # with where each goes if it did not (a drop reason, or _TO_SPOOL); pending until
        # the attempt's fate is known. Nothing is counted lost, or spooled to be sent
        # again, while the backend may have it.
        self._doubtful: list[tuple[Batch, str]] = []
        self._spooled = 0
        self._recovered = 0
        self._spool_backlog: list[str] = []
        # A spool file whose send timed out, and the abandoned attempt that may still
        # deliver it: resolved before anything else is sent from the spool.
        self._spool_doubt: tuple[SpoolFile, Attempt[object]] | None = None
        self._spool_scanned_at = float("-inf")
        self._shutdown_lock = GuardedLock()
        self._callers: set[int] = set()  # threads inside force_flush(), shutdown(), stats()
        self._warn = AggregatedWarning("spans dropped", clock=self._clock)
        self._worker = start_thread(self._work, "otel-nonblocking-worker")

    def _after_fork(self) -> None:
        """In a forked child: fresh state and worker, unless this processor was shut down
        before the fork; then it stays shut down, with fresh locks and no thread."""
        if not self._closed:
            self._init_state()
            return
        self._lock = GuardedLock()
        self._shutdown_lock = GuardedLock()
        self._callers = set()

    @property
    def exporter(self) -> DeadlineSpanExporter:
        """The deadline-wrapped exporter this processor exports through."""
        return self._exporter

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
        if self._spool is not None:
            self._open_spool()
        while True:
            held = self._held_for()
            if held > 0:
                # Nothing can go out: sleep through batch-ready wake-ups until the hold
                # ends, or a flush or shutdown asks.
                if self._stop_by is not None:
                    held = min(held, self._stop_by.remaining())
                if self._spool is not None:
                    held = min(held, _SPOOL_POLL_SECONDS)  # to watch the queue fill up
                if self._doubtful or (self._flushes and self._exporter.busy):
                    # To learn what became of them; or when the attempt a flush waits
                    # for ends, so that the flush may probe.
                    held = min(held, _DOUBT_POLL_SECONDS)
                self._urgent.wait(held)
            else:
                due = 0.0 if self._retry_now() else self._partial_due_in()
                self._wake.wait(min(due, _DOUBT_POLL_SECONDS) if self._doubtful else due)
            self._wake.clear()
            self._urgent.clear()
            try:
                self._settle_doubts(None)
                self._pump()
                if self._spool is not None and not self._closed:
                    self._relieve_queue()
                if self._closed and self._spool is None:
                    # Nothing else can go out while an abandoned attempt runs: spend the
                    # budget learning its fate rather than dropping a batch it delivers.
                    self._settle_doubts(self._export_by, retrying=True)
            except Exception as error:  # noqa: BLE001 - the worker must survive anything
                self._warn.add(f"worker error {type(error).__name__}")
                self._recover_in_flight()
            if self._spool is not None:
                try:
                    self._write_spooling()
                    if self._closed and not self._idle():
                        # Nothing more can go out in time: the rest goes to disk, once it
                        # is known not to have been delivered.
                        self._spool_the_rest()
                    if self._closed:
                        self._settle_doubts(self._export_by)
                        self._write_spooling()
                except Exception as error:  # noqa: BLE001 - the worker must survive anything
                    self._warn.add(f"worker error {type(error).__name__}")
            try:
                self._give_up_hopeless_flushes()  # after spooling: what went to disk is settled
            except Exception as error:  # noqa: BLE001 - the worker must survive anything
                self._warn.add(f"worker error {type(error).__name__}")
            self._report_door_drops()
            self._warn.maybe_emit()
            if self._spool is not None:
                self._spool.warn.maybe_emit()
            if self._closed and (
                self._idle() or self._out_of_time() or self._spool is not None or self._unreachable
            ):
                if self._spool is not None and self._spool_doubt is not None:
                    self._give_back_spool_doubt()
                return

    def _recover_in_flight(self) -> None:
        """After an unexpected error mid-export, the batch goes back to be sent again."""
        with self._lock:
            batch, self._in_flight = self._in_flight, None
            if batch is not None:
                batch.doubt = None
                self._requeue(batch, front=True)
            self._resolve_flushes()

    def _idle(self) -> bool:
        return (
            not self._queue
            and not self._retry
            and self._in_flight is None
            and not self._spooling
            and not self._doubtful
        )

    def _out_of_time(self) -> bool:
        """True when no more exports may start (at shutdown; earlier with a spool)."""
        stop_by = self._export_by
        return stop_by is not None and stop_by.expired()

    def _held_for(self) -> float:
        """Seconds before anything may be sent: Retry-After, or the open breaker (which a
        flush or shutdown that has not had its probe yet may pass at once)."""
        breaker = self._exporter.available_in()
        if breaker > 0 and self._probe_wanted() and not self._exporter.busy:
            breaker = 0.0
        return max(self._hold_until - self._clock(), breaker, 0.0)

    def _probe_wanted(self) -> bool:
        """A flush (or shutdown) waits that has not seen an export fail yet: a flush is a
        natural probe, so its export may go out through the open breaker."""
        closing = self._closing
        if closing is not None and not closing.tried:
            return True
        return any(not request.tried for request in self._flushes)

    def _retry_now(self) -> bool:
        """A flush or shutdown waits for a batch that failed: send it again at once (the
        breaker's back-off and Retry-After still apply), not after schedule_delay."""
        return bool(self._retry) and (bool(self._flushes) or self._closed)

    def _give_up_hopeless_flushes(self) -> None:
        """When nothing can go out now, a flush that had its probe, or that the backend's
        Retry-After outlasts, returns at once (not ok; its spans stay pending). At shutdown
        without a spool the worker stops then: the rest is dropped as unreachable."""
        held = self._held_for()
        if held <= 0:
            return
        # The breaker is open and the last attempt still runs. It either may still deliver
        # spans (a batch in doubt: its answer decides) or is known to have failed and ends
        # at its next request (the SDK asleep before a retry it may no longer send); either
        # way a flush waits for it (within its budget) and may then probe, so the breaker's
        # back-off does not bound the wait (only a Retry-After does).
        blocked = self._exporter.available_in() > 0 and self._exporter.busy
        with self._lock:
            if blocked:
                held = max(self._hold_until - self._clock(), 0.0)
            until = self._clock() + held
            waiting = []
            for request in self._flushes:
                if request.tried or until >= request.deadline.at:
                    request.ok = False
                    request.done.set()
                else:
                    waiting.append(request)
            self._flushes = waiting
            closing = self._closing
            if closing is not None and self._spool is None and not self._idle():
                export_by = self._export_by
                late = export_by is not None and until >= export_by.at
                if closing.tried or late:
                    self._unreachable = True

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
        wait = 0.1 if self._export_by is None else min(0.1, self._export_by.remaining())
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
        if self._spool is not None and self._deliver_spooled():
            return None
        probing = self._exporter.probing
        with self._lock:
            batch = self._retry.pop()
            if batch is not None:
                if probing and batch.doubt is None and len(batch) > _PROBE_SPANS:
                    batch, rest = _cut(batch, _PROBE_SPANS)
                    self._requeue(rest, front=True)
            else:
                count = min(len(self._queue), self._batch_size)
                if count == 0 or (count < self._batch_size and not self._may_send_partial()):
                    return None
                if probing:
                    count = min(count, _PROBE_SPANS)
                batch = Batch([self._queue.popleft() for _ in range(count)], self._taken)
                self._taken += count
                self._queue_taken_at = self._clock()
            self._in_flight = batch
            return batch

    def _may_send_partial(self) -> bool:
        """A batch smaller than max_export_batch_size goes out only when a flush or
        shutdown asks, or when nothing left the queue for schedule_delay: otherwise the
        worker would chase a busy producer with a request for every few spans."""
        return (
            bool(self._flushes)
            or self._closed
            or self._clock() - self._queue_taken_at >= self._schedule_delay
        )

    def _partial_due_in(self) -> float:
        """Seconds until a partial batch may go out on the schedule (the worker's sleep).

        Never less than a short floor: when the last pump could not take an overdue batch
        (an attempt still in doubt, say), the worker must not spin."""
        if not self._queue:
            return self._schedule_delay
        due = self._queue_taken_at + self._schedule_delay - self._clock()
        return max(due, min(_OVERDUE_POLL_SECONDS, self._schedule_delay))

    def _send(self, batch: Batch) -> bool:
        """Export ``batch`` and settle it; False if the worker should stop for now."""
        timeout = self._export_timeout
        if self._export_by is not None:
            timeout = min(timeout, self._export_by.remaining())
        began = self._clock()
        cutoff = self._export_cutoff if self._spool is not None else None
        with self._lock:  # the flushes this export can count as their probe
            waiting = (*self._flushes, *((self._closing,) if self._closing else ()))
        report = self._exporter.export_report(
            batch.spans,
            timeout=timeout,
            cutoff=cutoff,
            may_split=True,
            probe=self._probe_wanted(),
        )
        seconds = self._clock() - began
        outcome = report.outcome
        went_out = (
            outcome is not ExportOutcome.CIRCUIT_OPEN
            and outcome is not ExportOutcome.BUSY
            and not report.too_large  # nothing sent: the batch is to be split first
        )
        if went_out:
            batch.attempts += 1
        batch.doubt = report.attempt  # a timed-out attempt may still deliver the batch
        if report.retry_after is not None and outcome is not ExportOutcome.SUCCESS:
            self._hold_until = self._clock() + min(report.retry_after, _MAX_HOLD_SECONDS)
        self._learn_span_size(report, len(batch))
        with self._lock:
            self._in_flight = None
            self._export_count += 1
            self._last_export_seconds = seconds
            if batch.retried and went_out:
                self._retried += len(batch)
            if outcome is not ExportOutcome.SUCCESS and report.transient:
                for request in waiting:  # each had its probe: a flush that began
                    request.tried = True  # while this export ran still gets its own
            if outcome is ExportOutcome.SUCCESS and not report.too_large:
                left_out = 0  # spans left out of the request, each counted by its reason
                for reason, count in report.rejected.items():
                    count = min(count, len(batch) - left_out)
                    if count > 0:
                        self._drop(Batch(batch.spans[:count], batch.start), reason)
                        left_out += count
                self._exported += len(batch) - left_out
                keep_going = True
            elif (report.too_large or report.status == 413) and len(batch) > 1:
                # Over the request size limit (the exporter's, or the backend's): halved
                # until each part fits; a span too large alone comes back as rejected.
                first, second = batch.split()
                self._requeue(second, front=True)
                self._requeue(first, front=True)
                keep_going = True
            elif report.transient and self._may_retry(batch):
                batch.retried = True
                self._requeue(batch, front=True)
                keep_going = False
            elif report.transient and self._spool is not None:
                self._spooling.append(batch)  # out of attempts or buffer: to disk
                keep_going = False
            else:
                self._drop(batch, self._drop_reason(report))
                keep_going = outcome is not ExportOutcome.TIMEOUT
            self._resolve_flushes()
        return keep_going

    def _drop_reason(self, report: ExportReport) -> str:
        """Why a batch that failed is dropped rather than kept (see the constants)."""
        if not report.transient or self._retry_capacity == 0:
            return _reason(report)  # rejected (http_<status>), or retries are off
        if self._closed and self._out_of_time():
            return SHUTDOWN  # it might have gone out later: the budget ran out
        return BACKEND_UNAVAILABLE  # out of attempts: the backend stayed unreachable

    # -- the disk spool (worker only) --

    def _export_cutoff(self) -> float | None:
        """Once shutdown begins, an export already running ends in time to spool its batch."""
        export_by = self._export_by
        return None if export_by is None else export_by.remaining()

    def _open_spool(self) -> None:
        spool = self._spool
        assert spool is not None
        try:
            spool.open()
            self._spool_backlog = spool.backlog()
        except _spool.UnsafeSpoolDirectoryError as error:
            # The path is named by its setting, never quoted: it may say more than it should.
            _logger.warning(
                "otel_nonblocking: span spool off: the directory set by spool_dir / "
                "OTEL_NONBLOCKING_SPOOL_DIR %s, so other users could read, plant or remove "
                "batches; spans that cannot be delivered are dropped",
                error,
            )
            self._spool = None
            return
        except Exception as error:  # noqa: BLE001 - no spool is better than no worker
            _logger.warning(
                "otel_nonblocking: span spool unavailable (%s); spans that cannot be "
                "delivered are dropped",
                type(error).__name__,
            )
            self._spool = None
            return
        self._spool_scanned_at = self._clock()

    def _deliver_spooled(self) -> bool:
        """Send spooled files (this processor's own and other processes'), oldest first,
        while nothing more urgent waits; True if one failed (the worker should stop for now).

        An own file's spans move from ``spooled`` to ``exported`` (or to a drop reason when
        the backend refuses them for good); another writer's count as ``recovered``."""
        spool = self._spool
        assert spool is not None
        if self._spool_doubt is not None and not self._settle_spool_doubt(wait=0.1):
            return True  # still unknown: nothing else goes out from the spool meanwhile
        while not self._closed and not self._flushes and not self._retry:
            if len(self._queue) >= self._batch_size or self._held_for() > 0:
                return False
            if not self._spool_backlog:
                if self._clock() - self._spool_scanned_at < _SPOOL_RESCAN_SECONDS:
                    return False
                self._spool_backlog = spool.backlog()
                self._spool_scanned_at = self._clock()
                if not self._spool_backlog:
                    return False
            name = self._spool_backlog.pop(0)
            file = spool.claim(name)
            if file is None:
                continue  # another process has it, or it was corrupt (set aside)
            report = self._exporter.export_encoded_report(
                file.payload, file.spans, timeout=self._export_timeout
            )
            outcome = report.outcome
            if report.retry_after is not None and outcome is not ExportOutcome.SUCCESS:
                self._hold_until = self._clock() + min(report.retry_after, _MAX_HOLD_SECONDS)
            if outcome is ExportOutcome.SUCCESS:
                self._spool_delivered(file)
            elif outcome is ExportOutcome.TIMEOUT and report.attempt is not None:
                # The backend may have it after all: keep the claim until we know, so
                # that the file is not sent twice.
                self._spool_doubt = (file, report.attempt)
                return True
            elif report.transient:
                spool.release(file)
                self._spool_backlog.insert(0, name)
                return True
            else:
                spool.remove(file)
                spool.warn.add(f"spooled spans refused by the backend ({_reason(report)})")
                if file.own:
                    with self._lock:
                        self._spooled -= file.spans
                        self._dropped[_reason(report)] += file.spans
        return False

    def _spool_delivered(self, file: SpoolFile) -> None:
        assert self._spool is not None
        self._spool.remove(file)
        with self._lock:
            if file.own:
                self._spooled -= file.spans
                self._exported += file.spans
            else:
                self._recovered += file.spans

    def _settle_spool_doubt(self, wait: float) -> bool:
        """Learn what became of a spool file's timed-out send: delivered (counted, removed)
        or not (released, sent again first). False while the attempt is still running."""
        assert self._spool is not None
        assert self._spool_doubt is not None
        file, attempt = self._spool_doubt
        verdict = self._exporter.resolve(attempt, wait)
        if verdict is None:
            return False
        self._spool_doubt = None
        if verdict:
            self._spool_delivered(file)
        else:
            self._spool.release(file)
            self._spool_backlog.insert(0, file.name)
        return True

    def _give_back_spool_doubt(self) -> None:
        """At the end: learn, within the export budget, what became of a spool file whose
        send timed out. Still unknown, the backend may have it: the file is removed, not
        given back for the next process to send again; this processor's own spans in it
        count as ``maybe_delivered``."""
        try:
            wait = 0.0 if self._export_by is None else self._export_by.remaining()
            if self._settle_spool_doubt(wait=wait):
                return
            assert self._spool is not None
            assert self._spool_doubt is not None
            file, self._spool_doubt = self._spool_doubt[0], None
            self._spool.remove(file)
            if file.own:
                with self._lock:
                    self._spooled -= file.spans
                    self._dropped[MAYBE_DELIVERED] += file.spans
                    self._warn.add(MAYBE_DELIVERED, file.spans)
            else:
                self._spool.warn.add(
                    "spooled spans whose delivery is unknown not sent again", file.spans
                )
        except Exception as error:  # noqa: BLE001 - the worker must end cleanly
            self._warn.add(f"worker error {type(error).__name__}")

    def _write_spooling(self) -> None:
        """Write the batches waiting in ``_spooling`` to disk, oldest first."""
        while True:
            with self._lock:
                if not self._spooling:
                    return
                batch = self._spooling[0]
            self._write_one(batch)

    def _write_one(self, batch: Batch) -> None:
        if batch.doubt is not None:
            # Written now, it would be sent again even if its attempt delivers it.
            with self._lock:
                self._spooling = [b for b in self._spooling if b is not batch]
                self._doubtful.append((batch, _TO_SPOOL))
            return
        spool = self._spool
        codec = self._exporter.codec
        reason: str | None = None
        evicted = []
        written = 0  # spans on disk
        left_out: Mapping[str, int] = {}  # spans no request can carry, by reason
        if spool is None or codec is None:
            reason = RETRY_BUFFER_FULL
        elif self._stop_by is not None and self._stop_by.expired():
            reason = SHUTDOWN
        else:
            try:
                # One file per request: bad spans left out, each file under the size limit.
                encoded = codec.encode_batch(batch.spans)
                left_out = encoded.rejected
                for part in encoded.requests:
                    evicted += spool.write(part.data, part.spans)
                    written += part.spans
            except SpoolFullError:
                reason = SPOOL_FULL
            except Exception as error:  # noqa: BLE001 - a full or broken disk: count, go on
                reason = SPOOL_ERROR
                spool.warn.add(f"spool write failed ({type(error).__name__})")
        with self._lock:
            self._spooling = [b for b in self._spooling if b is not batch]
            if written:
                self._spooled += written
                for request in self._flushes:
                    if batch.start < request.target:
                        request.ok = False  # on disk, not exported
                # Look at the directory again at the next chance: this file is to be sent
                # once the backend takes spans again.
                self._spool_scanned_at = float("-inf")
            for why, count in left_out.items():
                self._drop(Batch(batch.spans[:count], batch.start), why)
            unwritten = len(batch) - written - sum(left_out.values())
            if reason is not None and unwritten > 0:
                self._drop(Batch(batch.spans[:unwritten], batch.start), reason)
            for gone in evicted:
                if gone.own:
                    self._spooled -= gone.spans
                    self._dropped[SPOOL_FULL] += gone.spans
                    self._warn.add(SPOOL_FULL, gone.spans)
                elif spool is not None:
                    spool.warn.add("another process's spooled spans evicted", gone.spans)
            self._resolve_flushes()
        if written and spool is not None:
            spool.warn.add("spans spooled to disk, to be sent later", written)

    def _relieve_queue(self) -> None:
        """While the backend is unavailable, move queued batches to disk before the queue
        fills up and turns spans away at the door."""
        if self._held_for() <= 0 and not self._retry:
            return
        cap = self._queue_cap
        if len(self._queue) < max(cap // 2, 1):
            return
        with self._lock:
            while len(self._queue) > cap // 4:
                count = min(len(self._queue), self._batch_size)
                batch = Batch([self._queue.popleft() for _ in range(count)], self._taken)
                self._taken += count
                self._spooling.append(batch)

    def _spool_the_rest(self) -> None:
        """At shutdown: everything still pending goes to disk (within the budget)."""
        with self._lock:
            batches = self._retry.clear()
            while self._queue:
                count = min(len(self._queue), self._batch_size)
                batches.append(Batch([self._queue.popleft() for _ in range(count)], self._taken))
                self._taken += count
            self._spooling.extend(batches)
        self._write_spooling()

    def _may_retry(self, batch: Batch) -> bool:
        if self._retry_capacity == 0 or batch.attempts >= self._max_attempts:
            return False
        return not (self._closed and self._out_of_time())

    def _requeue(self, batch: Batch, *, front: bool) -> None:
        for evicted in self._retry.push(batch, front=front):
            if self._spool is not None:
                self._spooling.append(evicted)  # written once the lock is released
            else:
                self._drop(evicted, RETRY_BUFFER_FULL)

    def _drop(self, batch: Batch, reason: str) -> None:
        """Count ``batch`` as dropped (caller holds the lock); flushes covering it fail.

        A batch whose timed-out attempt may still deliver it is parked instead, and
        dropped for ``reason`` only once that attempt is known to have failed."""
        if batch.doubt is not None:
            self._doubtful.append((batch, reason))
            return
        self._dropped[reason] += len(batch)
        for request in self._flushes:
            if batch.start < request.target:
                request.ok = False
                if any(earlier is batch for earlier in request.earlier):
                    request.earlier_dropped[reason] += len(batch)
        self._warn.add(reason, len(batch))

    # -- batches in doubt: an abandoned attempt may still deliver them --

    def _settle_doubts(self, until: Deadline | None, *, retrying: bool = False) -> None:
        """Learn what became of the parked batches (and, with ``retrying``, of the retry
        buffer's) whose abandoned attempt may still deliver them, waiting until ``until``
        at most (None: only attempts already over). Delivered: exported. Not delivered:
        a parked batch goes on where it was going (its drop reason, or the spool); a
        retry batch may be sent again."""
        with self._lock:
            batches = [batch for batch, _ in self._doubtful]
            if retrying:
                batches += [batch for batch in self._retry if batch.doubt is not None]
        for batch in batches:
            attempt = batch.doubt
            if attempt is None:
                continue
            wait = 0.0 if until is None else until.remaining()
            verdict = self._exporter.resolve(attempt, wait)
            if verdict is None:
                continue
            with self._lock:
                self._apply_verdict(batch, verdict)
                self._resolve_flushes()

    def _apply_verdict(self, batch: Batch, delivered: bool) -> None:
        """Settle a batch in doubt, parked or in the retry buffer (caller holds the lock)."""
        parked = next((i for i, (b, _) in enumerate(self._doubtful) if b is batch), None)
        if parked is None and not any(b is batch for b in self._retry):
            return  # settled meanwhile (by shutdown)
        batch.doubt = None
        if parked is None:
            if delivered:
                self._retry.remove(batch)
                self._exported += len(batch)
            return
        _, then = self._doubtful.pop(parked)
        if delivered:
            self._exported += len(batch)
        elif then == _TO_SPOOL:
            self._spooling.append(batch)
        else:
            self._drop(batch, then)

    def _give_up(self, batch: Batch, reason: str) -> None:
        """At the end of shutdown: drop ``batch`` for ``reason``, unless its abandoned
        attempt delivered it (exported) or may still (``maybe_delivered``). Caller holds
        the lock."""
        attempt, batch.doubt = batch.doubt, None
        if attempt is not None:
            verdict = self._exporter.peek(attempt)
            if verdict:
                self._exported += len(batch)
                return
            if verdict is None:
                reason = MAYBE_DELIVERED
        self._drop(batch, reason)

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
        unsettled.extend(batch.start for batch in self._spooling)
        unsettled.extend(batch.start for batch, _ in self._doubtful)
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
        return self._flush_report(timeout_millis).ok

    def _flush_report(self, timeout_millis: int) -> FlushReport:
        """:meth:`force_flush`, saying whether the deadline ended it and which drops
        during it were of spans given up on before it began (for the Langfuse binding's
        flush result; see :class:`FlushReport`)."""
        me = threading.get_ident()
        if me in self._callers:
            # A signal handler interrupted this thread's flush: no nesting.
            return FlushReport(ok=False, done=False)
        self._callers.add(me)
        try:
            started = self._clock()
            report = self._flush(timeout_millis)
            for listener in self._flush_listeners:
                try:
                    listener(report.ok, self._clock() - started)
                except Exception as error:  # noqa: BLE001 - a listener must not break flush
                    self._warn.add(f"flush listener raised {type(error).__name__}")
            return report
        finally:
            self._callers.discard(me)

    def _flush(self, timeout_millis: int) -> FlushReport:
        deadline = Deadline.after(millis_to_seconds(timeout_millis), self._clock)
        # False at once when this thread is inside another of our calls (a signal
        # handler interrupted it): waiting for our own lock would never end.
        if not self._lock.acquire_within(deadline.remaining()):
            return FlushReport(ok=False, done=False)
        try:
            earlier = tuple(batch for batch, then in self._doubtful if then != _TO_SPOOL)
            request = _FlushRequest(self._taken + len(self._queue), deadline, earlier)
            self._flushes.append(request)
            self._resolve_flushes()
        finally:
            self._lock.release()
        if not request.done.is_set():
            self._wake.set()
            self._urgent.set()
        done = request.done.wait(deadline.remaining())
        if not done and self._lock.acquire_within(_BOOKKEEPING_GRACE_SECONDS):
            try:
                if request in self._flushes:
                    self._flushes.remove(request)
            finally:
                self._lock.release()
        # A request left in the list is dropped by the worker once its spans are settled.
        return FlushReport(
            ok=done and request.ok,
            done=done,
            dropped_earlier=MappingProxyType(dict(request.earlier_dropped)),
        )

    def busy_here(self) -> bool:
        """True when the calling thread is inside this processor's flush, shutdown or
        stats (a signal handler interrupted it): a flush now would not run."""
        return (
            threading.get_ident() in self._callers
            or self._lock.held_here()
            or self._shutdown_lock.held_here()
        )

    def shutdown(self, timeout_millis: float | None = None) -> None:
        """Export what is pending within the budget, then drop the rest (``shutdown``).

        ``timeout_millis`` defaults to ``shutdown_timeout_millis`` (as TracerProvider's
        shutdown calls it), and at exit to at most the time left of the package's one exit
        budget (``OTEL_NONBLOCKING_EXIT_TIMEOUT``). Idempotent; later ``on_end`` calls
        count ``shutdown`` drops. Returns at once when it interrupted this processor's
        flush or shutdown on the same thread (from a signal handler): the exit hook shuts
        it down later.
        """
        me = threading.get_ident()
        if me in self._callers:
            return
        if self._lock.held_here():
            # Not inside a call of ours, yet this thread holds the lock: an exception a
            # signal handler raised (SystemExit, say) left a call of ours after it took
            # the lock and before it could let go. Nothing of ours runs on it any more.
            self._lock.release()
        self._callers.add(me)
        try:
            self._shutdown(timeout_millis)
        finally:
            self._callers.discard(me)

    def _shutdown(self, timeout_millis: float | None) -> None:
        budget = (
            self._shutdown_budget if timeout_millis is None else millis_to_seconds(timeout_millis)
        )
        if timeout_millis is None and _state.exiting():
            # A TracerProvider's own exit callback: the package's one exit budget holds.
            exit_left = _state.exit_deadline().remaining()
            budget = exit_left if budget is None else min(budget, exit_left)
        deadline = Deadline.after(budget, self._clock)  # wall-clock, from the call's start
        if not self._shutdown_lock.acquire_within(deadline.remaining()):
            return  # another shutdown is under way (on this thread: a signal handler's)
        try:
            if self._closed:
                return
            self._stop_by = deadline
            if self._spool is not None and budget is not None:
                # Exports stop early enough to leave the worker time to spool the rest.
                reserve = min(
                    max(budget * _SPOOL_RESERVE_SHARE, _SPOOL_RESERVE_MIN_SECONDS), budget
                )
                self._export_by = Deadline(deadline.at - reserve, self._clock)
            else:
                self._export_by = deadline
            # (Never an unbounded wait on the caller's thread: see force_flush.)
            if self._lock.acquire_within(max(deadline.remaining(), _BOOKKEEPING_GRACE_SECONDS)):
                try:
                    self._closing = _FlushRequest(self._taken + len(self._queue), deadline)
                finally:
                    self._lock.release()
            self._closed = True
        finally:
            self._shutdown_lock.release()
        self._wake.set()
        self._urgent.set()
        if self._worker.is_alive() and self._worker is not threading.current_thread():
            self._worker.join(deadline.remaining())
        if self._lock.acquire_within(max(deadline.remaining(), _BOOKKEEPING_GRACE_SECONDS)):
            try:
                left = Batch(list(self._queue), self._taken)
                self._queue.clear()
                self._taken += len(left)
                # Stopped early because nothing could go out, or out of time.
                why = BACKEND_UNAVAILABLE if self._unreachable else SHUTDOWN
                for batch in (*self._retry.clear(), left):
                    if batch.spans:
                        self._give_up(batch, why)
                for batch, reason in self._doubtful:
                    self._give_up(batch, why if reason == _TO_SPOOL else reason)
                self._doubtful.clear()
                self._resolve_flushes()
            finally:
                self._lock.release()
        # (Else what is left stays counted as pending: this thread holds the lock.)
        self._exporter.shutdown(timeout_millis=deadline.remaining() * 1000)
        self._warn.maybe_emit(force=True)
        if self._spool is not None:
            self._spool.warn.maybe_emit(force=True)

    def close_at_exit(self, seconds: float) -> None:
        """The exit hook's turn: shut down within ``seconds`` or the shutdown budget."""
        self.shutdown(timeout_millis=min(seconds, self._shutdown_budget) * 1000)

    @contextlib.contextmanager
    def _reading(self, wait: float) -> Iterator[None]:
        """The export side's lock for a read on the application's thread: taken within a
        bound, and not at all when this thread is inside already (a signal handler
        interrupted it), where the read is best effort (each read is atomic)."""
        me = threading.get_ident()
        if me in self._callers:
            yield
            return
        self._callers.add(me)  # before the lock: no window for a handler to wait in
        try:
            locked = self._lock.acquire_within(wait)
            try:
                yield
            finally:
                if locked:
                    self._lock.release()
        finally:
            self._callers.discard(me)

    def stats(self) -> ProcessorStats:
        """A consistent snapshot of the counters.

        Best effort instead when the lock is not to be had (the calling thread holds it,
        e.g. from a signal handler, or the worker keeps it): never a wait without bound.
        """
        return self._stats_within(_STATS_WAIT_SECONDS)

    def _stats_within(self, wait: float) -> ProcessorStats:
        """:meth:`stats`, waiting at most ``wait`` seconds for the lock."""
        full = self._full_drops.value()
        closed = self._closed_drops.value()
        with self._reading(wait):
            queued = len(self._queue)
            dropped = Counter(self._dropped)
            in_flight = 0 if self._in_flight is None else len(self._in_flight)
            retrying = self._retry.spans
            spooling = sum(len(batch) for batch in self._spooling)
            spooling += sum(len(batch) for batch, _ in self._doubtful)
            spooled, recovered = self._spooled, self._recovered
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
            pending=queued + in_flight + retrying + spooling,
            queue_depth=queued,
            export_count=export_count,
            last_export_seconds=last,
            retrying=retrying,
            retried=retried,
            spooled=spooled,
            recovered=recovered,
        )

    def spool_stats(self) -> SpoolStats | None:
        """The disk spool's counters, or None when there is no spool."""
        spool = self._spool
        return None if spool is None else spool.stats()


def _sampled(span: object) -> bool:
    """The slow path of ``on_end``'s sampled check, for a span whose ``_context`` is not an
    SDK ``SpanContext``: as the SDK's processors do, a span without a context counts as
    not sampled (never enqueued, so never counted), and so does one that cannot say."""
    try:
        context = span.context  # type: ignore[attr-defined]
        return bool(context and context.trace_flags.sampled)
    except Exception:  # noqa: BLE001 - whatever it is handed, on_end never raises
        return False


def _cut(batch: Batch, count: int) -> tuple[Batch, Batch]:
    """The first ``count`` spans of ``batch`` (a probe), and the rest."""
    head = Batch(batch.spans[:count], batch.start, batch.attempts, batch.retried)
    rest = Batch(batch.spans[count:], batch.start + count, batch.attempts, batch.retried)
    return head, rest


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
