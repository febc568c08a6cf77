"""A pipeline: the door, the ledger, the worker and the spooler, assembled; and the calls
the application's threads make into it (flush, close, stats), each bounded.

It knows nothing about spans or log records: a signal's processor (``_processor.py``,
``_log_processor.py``) resolves the settings, appends to :attr:`Pipeline.door` on its hot
path, and forwards the rest here. The optional disk spool writes the signal's OTLP
requests: it needs a sender with a codec (:class:`~._spooler.SpoolSender`), and the
processor says which signal's spool (``spool_kind``) it is.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

from . import _state
from ._deadline import Clock, Deadline, millis_to_seconds
from ._door import Door
from ._guard import GuardedLock
from ._ledger import (
    BACKEND_UNAVAILABLE,
    SHUTDOWN,
    TO_SPOOL,
    FlushReport,
    FlushRequest,
    Ledger,
    ProcessorStats,
)
from ._log import AggregatedWarning
from ._retry import Batch
from ._settings import PipelineSettings
from ._spool import SPANS, Spool, SpoolKind, SpoolStats
from ._spooler import DiskSpooler, NoSpool, SpoolSender
from ._worker import Sender, Worker

#: ``listener(flushed_ok, seconds)``, called after each ``force_flush``.
FlushListener = Callable[[bool, float], object]

# The longest shutdown() waits to settle its counts when its own budget is spent.
_BOOKKEEPING_GRACE_SECONDS = 0.02


class Pipeline:
    """Items in (:attr:`door`), batches out through ``sender``, every item accounted for."""

    def __init__(
        self,
        sender: Sender,
        settings: PipelineSettings,
        *,
        item_overhead: int,
        what: str,
        clock: Clock,
        spool_kind: SpoolKind = SPANS,
    ) -> None:
        self.sender = sender
        self._spool_kind = spool_kind
        #: ``listener(flushed_ok, seconds)`` after each :meth:`timed_flush` (kept across fork).
        self.flush_listeners: tuple[FlushListener, ...] = ()
        self.settings = settings
        self.clock = clock
        self._item_overhead = item_overhead
        self._what = what  # what the items are called in warnings ("spans", "log records")
        self._init_state()

    def _init_state(self) -> None:
        """Fresh queue, counters, locks and worker (at start, and in a forked child)."""
        settings = self.settings
        self.door = Door(
            settings.max_queue_size,
            settings.max_export_batch_size,
            settings.max_queue_bytes,
            self._item_overhead,
        )
        self.warn = AggregatedWarning(f"{self._what} dropped", clock=self.clock)
        self.ledger = Ledger(settings.retry_buffer_size, self.warn)
        self.worker = Worker(self.door, self.ledger, self.sender, settings, self.clock)
        if settings.spool_dir:  # the worker opens it; only the worker touches it
            if not isinstance(self.sender, SpoolSender):
                raise TypeError("the disk spool needs a sender that can send encoded requests")
            spool = Spool(settings.spool_dir, settings.spool_max_bytes, kind=self._spool_kind)
            self.worker.spooler = DiskSpooler(spool, self.worker, self.sender)
        else:
            self.worker.spooler = NoSpool(self.worker)
        self.shutdown_lock = GuardedLock()
        self.callers: set[int] = set()  # threads inside flush(), close(), stats()
        self.worker.start()

    def after_fork(self) -> None:
        """In a forked child: fresh state and worker, unless the pipeline was closed
        before the fork; then it stays closed, with fresh locks and no thread."""
        if not self.door.closed:
            self._init_state()
            return
        self.ledger.lock = GuardedLock()
        self.shutdown_lock = GuardedLock()
        self.callers = set()

    @property
    def lock(self) -> GuardedLock:
        """The export side's lock (the ledger's)."""
        return self.ledger.lock

    # -- the application's calls: bounded, and never nested on one thread --

    @contextlib.contextmanager
    def call(self) -> Iterator[bool]:
        """Mark this thread as inside a call of ours; False when it already was (a signal
        handler interrupted it there): the call must then not run."""
        me = threading.get_ident()
        if me in self.callers:
            yield False
            return
        self.callers.add(me)
        try:
            yield True
        finally:
            self.callers.discard(me)

    def busy_here(self) -> bool:
        """True when the calling thread is inside a flush, close or stats of this pipeline
        (a signal handler interrupted it): a flush now would not run."""
        return (
            threading.get_ident() in self.callers
            or self.ledger.lock.held_here()
            or self.shutdown_lock.held_here()
        )

    def flush(self, seconds: float | None) -> FlushReport:
        """Wait up to ``seconds`` for every item queued before the call to be settled."""
        deadline = Deadline.after(seconds, self.clock)
        lock = self.ledger.lock
        # False at once when this thread is inside another of our calls (a signal
        # handler interrupted it): waiting for our own lock would never end.
        if not lock.acquire_within(deadline.remaining()):
            return FlushReport(ok=False, done=False)
        try:
            request = self.ledger.add_flush(self.ledger.taken + len(self.door.queue), deadline)
        finally:
            lock.release()
        if not request.done.is_set():
            self.door.ring()
        done = request.done.wait(deadline.remaining())
        if not done and lock.acquire_within(_BOOKKEEPING_GRACE_SECONDS):
            try:
                self.ledger.withdraw(request)
            finally:
                lock.release()
        # A request left in the list is dropped by the worker once its items are settled.
        return request.report(done)

    def timed_flush(self, seconds: float | None) -> FlushReport:
        """A processor's ``force_flush``: :meth:`flush`, then each of
        :attr:`flush_listeners` told how it went and how long it took (caller's thread)."""
        started = self.clock()
        report = self.flush(seconds)
        for listener in self.flush_listeners:
            try:
                listener(report.ok, self.clock() - started)
            except Exception as error:  # noqa: BLE001 - a listener must not break flush
                self.warn.add(f"flush listener raised {type(error).__name__}")
        return report

    def shutdown(self, timeout_millis: float | None) -> None:
        """A processor's ``shutdown(timeout_millis)``: :meth:`close` within that budget.

        ``None`` means ``shutdown_timeout`` (as a provider calls it), and at exit at most
        the time left of the package's one exit budget. Returns at once when it interrupted
        a call of ours on this thread (a signal handler's): the exit hook closes it later.
        """
        with self.call() as entered:
            if not entered:
                return
            if self.lock.held_here():
                # Not inside a call of ours, yet this thread holds the lock: an exception a
                # signal handler raised (SystemExit, say) left a call of ours after it took
                # the lock and before it could let go. Nothing of ours runs on it any more.
                self.lock.release()
            budget: float | None = (
                self.settings.shutdown_timeout
                if timeout_millis is None
                else millis_to_seconds(timeout_millis)
            )
            if timeout_millis is None and _state.exiting():
                # A provider's own exit callback: the package's one exit budget holds.
                exit_left = _state.exit_deadline().remaining()
                budget = exit_left if budget is None else min(budget, exit_left)
            self.close(budget)

    def close_at_exit(self, seconds: float) -> None:
        """The exit hook's turn: close within ``seconds`` or the shutdown budget."""
        self.shutdown(min(seconds, self.settings.shutdown_timeout) * 1000)

    def close(self, budget: float | None) -> None:
        """Export what is pending within ``budget`` seconds, then drop the rest."""
        deadline = Deadline.after(budget, self.clock)  # wall-clock, from the call's start
        if not self.shutdown_lock.acquire_within(deadline.remaining()):
            return  # another shutdown is under way (on this thread: a signal handler's)
        try:
            if self.door.closed:
                return
            self._begin_close(deadline, budget)
        finally:
            self.shutdown_lock.release()
        self.door.ring()
        thread = self.worker.thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(deadline.remaining())
        lock = self.ledger.lock
        if lock.acquire_within(max(deadline.remaining(), _BOOKKEEPING_GRACE_SECONDS)):
            try:
                self._give_up_the_rest()
            finally:
                lock.release()
        # (Else what is left stays counted as pending: this thread holds the lock.)
        self.sender.shutdown(timeout_millis=deadline.remaining() * 1000)
        self.warn.maybe_emit(force=True)
        self.worker.spooler.emit(force=True)

    def _begin_close(self, deadline: Deadline, budget: float | None) -> None:
        worker = self.worker
        worker.stop_by = deadline
        if budget is not None:
            # Exports stop early enough to leave the worker time to spool the rest.
            reserve = worker.spooler.reserve(budget)
            worker.export_by = Deadline(deadline.at - reserve, self.clock) if reserve else deadline
        else:
            worker.export_by = deadline
        # (Never an unbounded wait on the caller's thread: see flush.)
        lock = self.ledger.lock
        if lock.acquire_within(max(deadline.remaining(), _BOOKKEEPING_GRACE_SECONDS)):
            try:
                target = self.ledger.taken + len(self.door.queue)
                self.ledger.closing = FlushRequest(target, deadline)
            finally:
                lock.release()
        self.door.closed = True

    def _give_up_the_rest(self) -> None:
        """At the end of close, the worker stopped: what is left is dropped, unless an
        abandoned attempt delivered it or may still (the caller holds the ledger's lock)."""
        ledger = self.ledger
        left = ledger.take(self.door.queue, len(self.door.queue))
        # Stopped early because nothing could go out, or out of time.
        why = BACKEND_UNAVAILABLE if self.worker.unreachable else SHUTDOWN
        for batch in ledger.retry.clear():
            if batch.items:
                ledger.give_up(batch, why, self._peek(batch))
        for batch in (*ledger.staged.clear(), left):
            if batch.items:  # never sent: no export of theirs finished
                ledger.give_up(batch, why, None, sent=False)
        for batch, reason in ledger.doubtful:
            ledger.give_up(batch, why if reason == TO_SPOOL else reason, self._peek(batch))
        ledger.doubtful.clear()
        ledger.resolve_flushes()

    def _peek(self, batch: Batch) -> bool | None:
        return None if batch.doubt is None else self.sender.peek(batch.doubt)

    # -- reading --

    @contextlib.contextmanager
    def _reading(self, wait: float) -> Iterator[None]:
        """The export side's lock for a read on the application's thread: taken within a
        bound, and not at all when this thread is inside already (a signal handler
        interrupted it), where the read is best effort (each read is atomic)."""
        with self.call() as entered:
            if not entered:
                yield
                return
            lock = self.ledger.lock
            locked = lock.acquire_within(wait)  # after call(): no window for a handler
            try:
                yield
            finally:
                if locked:
                    lock.release()

    def stats_within(self, wait: float) -> ProcessorStats:
        """A consistent snapshot of the counters, waiting at most ``wait`` seconds for the
        lock; best effort without it (never a wait without bound)."""
        full = self.door.full_drops.value()
        closed = self.door.closed_drops.value()
        with self._reading(wait):
            return self.ledger.snapshot(len(self.door.queue), full, closed)

    def spool_stats(self) -> SpoolStats | None:
        return self.worker.spooler.stats()
