"""The ledger: where every item that left a pipeline's queue is, and who waits for it.

Items get consecutive sequence numbers as they leave the queue (:meth:`Ledger.take`);
each is then in exactly one place (in flight, the retry buffer, on its way to disk, in
doubt) until it is counted once as exported, dropped (by reason) or spooled. Flush
requests wait for every item below a sequence number. Only the worker changes the
ledger, holding :attr:`Ledger.lock`; nothing here starts a thread or waits, so tests
drive it directly (``tests/test_ledger.py``).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ._deadline import Deadline
from ._exporter import ExportOutcome, ExportReport
from ._guard import GuardedLock, Wake
from ._log import AggregatedWarning
from ._requests import TOO_LARGE as TOO_LARGE  # re-exported: a drop reason
from ._requests import UNENCODABLE as UNENCODABLE  # re-exported: a drop reason
from ._retry import Batch, RetryBuffer, Staged

#: Why an item was dropped: the keys of :attr:`ProcessorStats.dropped`. A batch the
#: backend rejected for good is counted as ``http_<status>`` (``http_400``, ...).
QUEUE_FULL = "queue_full"
EXPORT_FAILED = "export_failed"
EXPORT_TIMEOUT = "export_timeout"
# The backend failed each of the batch's attempts that reached it (429/502/503/504, or a
# request reset or timed out after it went out; a refused connection costs no attempt), or
# at shutdown when its probe failed: an outage, not a rejection.
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
TO_SPOOL = "to_spool"

_NONE: Mapping[str, int] = MappingProxyType({})


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
    ``finished`` counts spans whose export is over, once each, by outcome: ``success``
    (delivered: ``exported + recovered``) or the reason they were dropped after leaving
    the queue to be exported (a batch sent again after a transient failure counts only
    when its last attempt ends); ``otel.sdk.exporter.span.exported`` publishes it.
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
    finished: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


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


class FlushRequest:
    """A flush (or shutdown) waiting for every item numbered below ``target``."""

    __slots__ = ("deadline", "done", "earlier", "earlier_dropped", "ok", "target", "tried")

    def __init__(self, target: int, deadline: Deadline, earlier: tuple[Batch, ...] = ()) -> None:
        self.target = target  # every item with a sequence number below it
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
        self.earlier_dropped: Counter[str] = Counter()  # items of ``earlier`` dropped, by reason

    def report(self, done: bool) -> FlushReport:
        return FlushReport(
            ok=done and self.ok,
            done=done,
            dropped_earlier=MappingProxyType(dict(self.earlier_dropped)),
        )


class Ledger:
    """Counters, the places a taken item can be, and the flush requests (under ``lock``)."""

    def __init__(self, retry_capacity: int, warn: AggregatedWarning) -> None:
        # The export side's lock: the worker holds it to change anything here; the
        # application's threads take it only with a bound (see _guard.py).
        self.lock = GuardedLock()
        self.warn = warn
        self.taken = 0  # sequence number of the next item to leave the queue
        self.exported = 0
        self.retried = 0
        self.dropped: Counter[str] = Counter()
        # Of ``dropped``: items given up at shutdown without ever leaving the queue for an
        # export (no export of theirs finished; the processor's door drops are not here).
        self.unsent: Counter[str] = Counter()
        self.spooled = 0  # this pipeline's items on disk
        self.recovered = 0  # other processes' spooled items this one delivered
        self.export_count = 0
        self.last_export_seconds: float | None = None
        self.door_drops_seen = 0  # queue_full drops already reported in a warning
        # Where a taken item is until it is counted:
        self.in_flight: Batch | None = None
        self.retry = RetryBuffer(retry_capacity)
        # Encoded by the worker's stage, numbered, waiting to be batched (_stage.py).
        self.staged = Staged()
        self.spooling: list[Batch] = []  # batches on their way to disk
        # Batches to be dropped or spooled whose timed-out attempt may still deliver them,
        # with where each goes if it did not (a drop reason, or TO_SPOOL). Nothing is
        # counted lost, or spooled to be sent again, while the backend may have it.
        self.doubtful: list[tuple[Batch, str]] = []
        self.flushes: list[FlushRequest] = []
        # Shutdown's own flush: it may probe an open breaker once, like a flush.
        self.closing: FlushRequest | None = None

    # -- taking items off the queue --

    def take(self, queue: deque[Any], count: int) -> Batch:
        """The next ``count`` items of ``queue``, numbered."""
        batch = Batch([queue.popleft() for _ in range(count)], self.taken)
        self.taken += count
        return batch

    def settled(self) -> bool:
        """Nothing taken is still on its way (the queue is the caller's to look at)."""
        return (
            not self.staged
            and not self.retry
            and self.in_flight is None
            and not self.spooling
            and not self.doubtful
        )

    # -- counting --

    def record_export(self, seconds: float, retried: int) -> None:
        self.export_count += 1
        self.last_export_seconds = seconds
        self.retried += retried

    def count_exported(self, batch: Batch, rejected: Mapping[str, int] = _NONE) -> None:
        """``batch`` went out; the items the request left out are dropped by reason."""
        left_out = 0
        for reason, count in rejected.items():
            count = min(count, len(batch) - left_out)
            if count > 0:
                self.drop(batch.head(count), reason)
                left_out += count
        self.exported += len(batch) - left_out

    def drop(self, batch: Batch, reason: str, *, sent: bool = True) -> None:
        """Count ``batch`` as dropped; the flushes covering it fail. ``sent``: False for
        items taken off the queue only to be given up (their export never began).

        A batch whose timed-out attempt may still deliver it is parked instead, and
        dropped for ``reason`` only once that attempt is known to have failed."""
        if batch.doubt is not None:
            self.doubtful.append((batch, reason))
            return
        self.dropped[reason] += len(batch)
        if not sent:
            self.unsent[reason] += len(batch)
        for request in self.flushes:
            if batch.start < request.target:
                request.ok = False
                if any(earlier is batch for earlier in request.earlier):
                    request.earlier_dropped[reason] += len(batch)
        self.warn.add(reason, len(batch))

    def count_spooled(self, batch: Batch, written: int) -> None:
        """``written`` items of ``batch`` are on disk: pending delivery, not exported."""
        self.spooled += written
        for request in self.flushes:
            if batch.start < request.target:
                request.ok = False

    def count_unspooled(self, items: int, *, own: bool, reason: str | None = None) -> None:
        """A spool file of ``items`` left the disk: delivered (``reason`` None) or dropped.
        Only this pipeline's own files were counted as spooled."""
        if not own:
            if reason is None:
                self.recovered += items
            return
        self.spooled -= items
        if reason is None:
            self.exported += items
        else:
            self.dropped[reason] += items

    # -- batches in doubt: an abandoned attempt may still deliver them --

    def in_doubt(self, *, retrying: bool) -> list[Batch]:
        """The parked batches (and, with ``retrying``, the retry buffer's) in doubt."""
        batches = [batch for batch, _ in self.doubtful]
        if retrying:
            batches += [batch for batch in self.retry if batch.doubt is not None]
        return batches

    def apply_verdict(self, batch: Batch, delivered: bool) -> None:
        """Settle a batch in doubt, parked or in the retry buffer. Delivered: exported.
        Not: a parked batch goes where it was going; a retry batch may be sent again."""
        parked = next((i for i, (b, _) in enumerate(self.doubtful) if b is batch), None)
        if parked is None and not any(b is batch for b in self.retry):
            return  # settled meanwhile (by shutdown)
        batch.doubt = None
        if parked is None:
            if delivered:
                self.retry.remove(batch)
                self.exported += len(batch)
            return
        _, then = self.doubtful.pop(parked)
        if delivered:
            self.exported += len(batch)
        elif then == TO_SPOOL:
            self.spooling.append(batch)
        else:
            self.drop(batch, then)

    def give_up(
        self, batch: Batch, reason: str, verdict: bool | None, *, sent: bool = True
    ) -> None:
        """At the end: drop ``batch`` for ``reason``, unless its abandoned attempt
        delivered it (``verdict`` True: exported) or may still (None: maybe_delivered).
        ``sent``: False for a batch taken off the queue only now (see :meth:`drop`)."""
        attempt, batch.doubt = batch.doubt, None
        if attempt is not None:
            if verdict:
                self.exported += len(batch)
                return
            if verdict is None:
                reason = MAYBE_DELIVERED
        self.drop(batch, reason, sent=sent)

    # -- flush requests --

    def add_flush(self, target: int, deadline: Deadline) -> FlushRequest:
        """A flush of every item below ``target``; done at once if they are settled."""
        earlier = tuple(batch for batch, then in self.doubtful if then != TO_SPOOL)
        request = FlushRequest(target, deadline, earlier)
        self.flushes.append(request)
        self.resolve_flushes()
        return request

    def withdraw(self, request: FlushRequest) -> None:
        if request in self.flushes:
            self.flushes.remove(request)

    def waiting(self) -> tuple[FlushRequest, ...]:
        """The flushes (and shutdown's) an export now running can count as their probe."""
        return (*self.flushes, *((self.closing,) if self.closing else ()))

    def probe_wanted(self) -> bool:
        """A flush (or shutdown) waits that has not seen an export fail yet."""
        closing = self.closing
        if closing is not None and not closing.tried:
            return True
        return any(not request.tried for request in self.flushes)

    def fail_flushes_by(self, until: float) -> None:
        """Nothing can go out before ``until``: a flush that had its probe, or whose
        deadline comes first, is done, not ok (its items stay pending)."""
        waiting = []
        for request in self.flushes:
            if request.tried or until >= request.deadline.at:
                request.ok = False
                request.done.set()
            else:
                waiting.append(request)
        self.flushes = waiting

    def resolve_flushes(self) -> None:
        """Complete the flush requests whose items are all settled."""
        if not self.flushes:
            return
        unsettled = [self.taken]
        staged = self.staged.first()
        if staged is not None:
            unsettled.append(staged)
        if self.in_flight is not None:
            unsettled.append(self.in_flight.start)
        oldest_retry = self.retry.min_start()
        if oldest_retry is not None:
            unsettled.append(oldest_retry)
        unsettled.extend(batch.start for batch in self.spooling)
        unsettled.extend(batch.start for batch, _ in self.doubtful)
        settled_below = min(unsettled)
        waiting = []
        for request in self.flushes:
            if settled_below >= request.target:
                request.done.set()
            else:
                waiting.append(request)
        self.flushes = waiting

    # -- reading --

    def snapshot(self, queued: int, full: int, closed: int) -> ProcessorStats:
        """The counters, with ``queued`` items waiting in the queue and ``full`` and
        ``closed`` turned away at the door (read by the caller, as is the lock)."""
        dropped = Counter(self.dropped)
        in_flight = 0 if self.in_flight is None else len(self.in_flight)
        retrying = self.retry.size
        spooling = sum(len(batch) for batch in self.spooling)
        spooling += sum(len(batch) for batch, _ in self.doubtful)
        if full:
            dropped[QUEUE_FULL] += full
        if closed:
            dropped[SHUTDOWN] += closed
        return ProcessorStats(
            enqueued=self.taken + queued + full + closed,  # staged items are in taken
            exported=self.exported,
            dropped=MappingProxyType(dict(dropped)),
            pending=queued + len(self.staged) + in_flight + retrying + spooling,
            queue_depth=queued + len(self.staged),
            export_count=self.export_count,
            last_export_seconds=self.last_export_seconds,
            retrying=retrying,
            retried=self.retried,
            spooled=self.spooled,
            recovered=self.recovered,
            finished=self._finished(),
        )

    def _finished(self) -> Mapping[str, int]:
        """Items whose export is over, by outcome (see :attr:`ProcessorStats.finished`)."""
        delivered = self.exported + self.recovered
        finished = {"success": delivered} if delivered else {}
        for reason, count in self.dropped.items():
            count -= self.unsent[reason]
            if count > 0:
                finished[reason] = count
        return MappingProxyType(finished)

    def new_door_drops(self, full: int) -> int:
        """Of ``full`` queue_full drops so far, those not reported yet."""
        new = full - self.door_drops_seen
        self.door_drops_seen = full
        return new


def failure_reason(report: ExportReport) -> str:
    """The drop reason for an export that failed for good (see the constants)."""
    if report.outcome is ExportOutcome.TIMEOUT:
        return EXPORT_TIMEOUT
    if report.outcome is ExportOutcome.SHUTDOWN:
        return SHUTDOWN
    if report.too_large:
        return TOO_LARGE  # alone over a message size limit (OTLP/gRPC)
    if report.status is not None and not 200 <= report.status < 300:
        return f"http_{report.status}"
    return EXPORT_FAILED
