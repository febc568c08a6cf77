"""The worker: the one thread that takes batches off the queue, sends them, and counts.

Each turn of its loop: sleep until a batch is ready, a partial batch is due, or a flush
or shutdown asks (or through a Retry-After or open-breaker hold); encode what waits
(the stage, ``_stage.py``, where the exporter is ours); learn what became of batches in
doubt; pump (retry batches oldest first, then new ones) until something fails; count
each outcome in the ledger (exported, split, retried, spooled, dropped). It works on
batches of opaque items: what an item is, and how it is exported, is the sender's
business.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Protocol

from ._deadline import Clock, Deadline
from ._door import Door
from ._exporter import Cutoff, ExportOutcome, ExportReport
from ._ledger import (
    BACKEND_UNAVAILABLE,
    QUEUE_FULL,
    RETRY_BUFFER_FULL,
    SHUTDOWN,
    Ledger,
    failure_reason,
)
from ._retry import PACK_AFTER, PACK_AFTER_HEALTHY, Batch
from ._runner import Attempt
from ._settings import PipelineSettings
from ._spooler import NoSpool, Spooler
from ._stage import POLL_SECONDS, NoStage, stage_for
from ._suppress import start_thread

# The longest a Retry-After from the backend holds exports back.
_MAX_HOLD_SECONDS = 300.0
# How often the worker looks whether a parked batch's abandoned attempt has ended.
_DOUBT_POLL_SECONDS = 0.05
# How often the worker looks again at an overdue partial batch it could not send.
_OVERDUE_POLL_SECONDS = 0.05
# A probe of the breaker carries at most this many items: it only has to learn whether
# the backend is back, and against one that is not, a small request is cheap.
_PROBE_ITEMS = 64


class Sender(Protocol):
    """What a pipeline needs of an exporter: a deadline exporter of any signal
    (:class:`DeadlineSpanExporter`; one for log records does the same for its items)."""

    def export_report(
        self,
        items: Sequence[Any],
        timeout: float | None = None,
        *,
        cutoff: Cutoff | None = None,
        may_split: bool = False,
        probe: bool = False,
    ) -> ExportReport: ...

    def resolve(self, attempt: Attempt[object], wait: float) -> bool | None: ...

    def peek(self, attempt: Attempt[object]) -> bool | None: ...

    def available_in(self) -> float: ...

    @property
    def probing(self) -> bool: ...

    @property
    def busy(self) -> bool: ...

    def shutdown(self, timeout_millis: float | None = None) -> None: ...


class Worker:
    """The export side of a pipeline: its loop, its holds and its deadlines."""

    def __init__(
        self,
        door: Door,
        ledger: Ledger,
        sender: Sender,
        settings: PipelineSettings,
        clock: Clock,
    ) -> None:
        self.door = door
        self.ledger = ledger
        self.warn = ledger.warn
        self.sender = sender
        self.settings = settings
        self.clock = clock
        self.spooler: Spooler = NoSpool(self)
        self.stage = NoStage(self)  # chosen when the thread starts (stage_for)
        self.hold_until = 0.0  # Retry-After: nothing goes out before this
        self.queue_taken_at = clock()  # when a batch last left the queue
        self.stop_by: Deadline | None = None  # set by shutdown
        self.export_by: Deadline | None = None  # stop_by, less the spool's reserve
        self.unreachable = False  # at shutdown: nothing could go out, the worker stopped
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = start_thread(self.run, "otel-nonblocking-worker")

    # -- the loop --

    def run(self) -> None:
        self.stage = stage_for(self)
        self.spooler = self.spooler.open()
        while True:
            self._sleep()
            self._turn()
            if self.door.closed and (
                self.idle() or self.out_of_time() or self.spooler.keeps_the_rest or self.unreachable
            ):
                self.spooler.finish()
                return

    def _sleep(self) -> None:
        door, ledger = self.door, self.ledger
        held = self.held_for()
        if held > 0:
            # Nothing can go out: sleep through batch-ready wake-ups until the hold
            # ends, or a flush or shutdown asks.
            if self.stop_by is not None:
                held = min(held, self.stop_by.remaining())
            held = min(held, self.spooler.poll_seconds)  # to watch the queue fill up
            if ledger.doubtful or (ledger.flushes and self.sender.busy):
                # To learn what became of them; or when the attempt a flush waits
                # for ends, so that the flush may probe.
                held = min(held, _DOUBT_POLL_SECONDS)
            if self.stage.active:
                # An encoding stage wakes for a batch's worth of spans to encode, even now
                # (an outage is when spans wait longest), and at least every schedule
                # delay, so that a trickle of spans is not kept as objects for the hold.
                door.wake.wait(min(held, self.settings.schedule_delay))
            else:
                door.urgent.wait(held)
        else:
            due = 0.0 if self._retry_now() else self._partial_due_in()
            door.wake.wait(min(due, _DOUBT_POLL_SECONDS) if ledger.doubtful else due)
        door.wake.clear()
        door.urgent.clear()

    def _turn(self) -> None:
        try:
            self._set_packing()
            self.stage.run(self._stage_budget())
            self.settle_doubts(None)
            self._pump()
            if not self.door.closed:
                self.spooler.relieve()
            if self.door.closed:
                self.spooler.closing_pass()
        except Exception as error:  # noqa: BLE001 - the worker must survive anything
            self.warn.add(f"worker error {type(error).__name__}")
            self._recover_in_flight()
        self.spooler.tend()
        try:
            self._give_up_hopeless_flushes()  # after spooling: what went to disk is settled
        except Exception as error:  # noqa: BLE001 - the worker must survive anything
            self.warn.add(f"worker error {type(error).__name__}")
        self._report_door_drops()
        self.warn.maybe_emit()
        self.spooler.emit()

    def _set_packing(self) -> None:
        """A backlog is packed early while exports fail or are held back (an outage: it
        may last), late while they go through (a burst leaves within a few exports)."""
        backed_up = self.held_for() > 0 or bool(self.ledger.retry) or bool(self.ledger.doubtful)
        self.ledger.staged.pack_after = PACK_AFTER if backed_up else PACK_AFTER_HEALTHY

    def _recover_in_flight(self) -> None:
        """After an unexpected error mid-export, the batch goes back to be sent again."""
        with self.ledger.lock:
            batch, self.ledger.in_flight = self.ledger.in_flight, None
            if batch is not None:
                batch.doubt = None
                self._requeue(batch, front=True)
            self.ledger.resolve_flushes()

    def _report_door_drops(self) -> None:
        full = self.door.full_drops.value()
        with self.ledger.lock:
            new = self.ledger.new_door_drops(full)
        self.warn.add(QUEUE_FULL, new)

    # -- schedule and holds --

    def idle(self) -> bool:
        return not self.stage.pending() and self.ledger.settled()

    def _stage_budget(self) -> float | None:
        """How long the stage may encode now: without bound, except at shutdown."""
        export_by = self.export_by
        return None if export_by is None else export_by.remaining()

    def out_of_time(self) -> bool:
        """True when no more exports may start (at shutdown; earlier with a spool)."""
        export_by = self.export_by
        return export_by is not None and export_by.expired()

    def held_for(self) -> float:
        """Seconds before anything may be sent: Retry-After, or the open breaker (which a
        flush or shutdown that has not had its probe yet may pass at once)."""
        breaker = self.sender.available_in()
        if breaker > 0 and self.ledger.probe_wanted() and not self.sender.busy:
            breaker = 0.0
        return max(self.hold_until - self.clock(), breaker, 0.0)

    def hold_for(self, report: ExportReport) -> None:
        """A failed export's Retry-After holds everything back (within a bound)."""
        if report.retry_after is not None and report.outcome is not ExportOutcome.SUCCESS:
            self.hold_until = self.clock() + min(report.retry_after, _MAX_HOLD_SECONDS)

    def _retry_now(self) -> bool:
        """A flush or shutdown waits for a batch that failed: send it again at once (the
        breaker's back-off and Retry-After still apply), not after schedule_delay."""
        return bool(self.ledger.retry) and (bool(self.ledger.flushes) or self.door.closed)

    def _may_send_partial(self) -> bool:
        """A batch smaller than max_export_batch_size goes out only when a flush or
        shutdown asks, or when nothing left the queue for schedule_delay: otherwise the
        worker would chase a busy producer with a request for every few items."""
        return (
            bool(self.ledger.flushes)
            or self.door.closed
            or self.clock() - self.queue_taken_at >= self.settings.schedule_delay
        )

    def _partial_due_in(self) -> float:
        """Seconds until a partial batch may go out on the schedule (the worker's sleep).

        Never less than a short floor: when the last pump could not take an overdue batch
        (an attempt still in doubt, say), the worker must not spin."""
        delay = self.settings.schedule_delay
        if not self.stage.pending():
            return delay
        due = self.queue_taken_at + delay - self.clock()
        return max(due, min(_OVERDUE_POLL_SECONDS, delay))

    def _give_up_hopeless_flushes(self) -> None:
        """When nothing can go out now, a flush that had its probe, or that the backend's
        Retry-After outlasts, returns at once (not ok; its items stay pending). At shutdown
        without a spool the worker stops then: the rest is dropped as unreachable."""
        held = self.held_for()
        if held <= 0:
            return
        # The breaker is open and the last attempt still runs. It either may still deliver
        # items (a batch in doubt: its answer decides) or is known to have failed and ends
        # at its next request (the SDK asleep before a retry it may no longer send); either
        # way a flush waits for it (within its budget) and may then probe, so the breaker's
        # back-off does not bound the wait (only a Retry-After does).
        blocked = self.sender.available_in() > 0 and self.sender.busy
        with self.ledger.lock:
            if blocked:
                held = max(self.hold_until - self.clock(), 0.0)
            until = self.clock() + held
            self.ledger.fail_flushes_by(until)
            closing = self.ledger.closing
            if closing is not None and not self.spooler.keeps_the_rest and not self.idle():
                export_by = self.export_by
                late = export_by is not None and until >= export_by.at
                if closing.tried or late:
                    self.unreachable = True

    # -- pump and send --

    def _pump(self) -> None:
        """Send retry batches (oldest first), then new ones, until something fails."""
        while not self.out_of_time() and self.held_for() <= 0:
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

    def _next_batch(self) -> Batch | None:
        if self.spooler.deliver():
            return None
        self.stage.run(self._stage_budget())  # what arrived during the last export
        probing = self.sender.probing
        door, ledger = self.door, self.ledger
        with ledger.lock:
            batch = ledger.retry.pop()
            if batch is not None:
                if probing and batch.doubt is None and len(batch) > _PROBE_ITEMS:
                    batch, rest = batch.cut(_PROBE_ITEMS)
                    self._requeue(rest, front=True)
            else:
                count = min(self.stage.ready(), door.batch_size)
                if count == 0 or (count < door.batch_size and not self._may_send_partial()):
                    return None
                if probing:
                    count = min(count, _PROBE_ITEMS)
                batch = self.stage.take(count)
                self.queue_taken_at = self.clock()
            batch.probe = probing
            ledger.in_flight = batch
            return batch

    def _send(self, batch: Batch) -> bool:
        """Export ``batch`` and settle it; False if the worker should stop for now."""
        timeout = self.settings.export_timeout
        if self.export_by is not None:
            timeout = min(timeout, self.export_by.remaining())
        began = self.clock()
        with self.ledger.lock:  # the flushes this export can count as their probe
            waiting = self.ledger.waiting()
        report = self.sender.export_report(
            batch.items,
            timeout=timeout,
            cutoff=self._poll(self.spooler.cutoff()),
            may_split=True,
            probe=self.ledger.probe_wanted(),
        )
        seconds = self.clock() - began
        outcome = report.outcome
        went_out = (
            outcome is not ExportOutcome.CIRCUIT_OPEN
            and outcome is not ExportOutcome.BUSY
            and not report.too_large  # nothing sent: the batch is to be split first
        )
        if went_out and report.reached and not batch.probe:
            # An attempt is charged only when the backend could have judged the batch: a
            # connection refused (a collector restarting) says nothing about it, and a
            # batch waits out such an outage for as long as the retry buffer has room.
            # Nor is the open breaker's probe charged: the backend was failing before it
            # (an outage of any length would otherwise use up the head batch's attempts);
            # a failed probe's batch steps behind the next one instead (see _settle).
            batch.attempts += 1
        batch.doubt = report.attempt  # a timed-out attempt may still deliver the batch
        self.hold_for(report)
        self.door.learn_item_size(report.request_bytes, len(batch))
        with self.ledger.lock:
            self.ledger.in_flight = None
            self.ledger.record_export(seconds, len(batch) if batch.retried and went_out else 0)
            if outcome is not ExportOutcome.SUCCESS and report.transient:
                for request in waiting:  # each had its probe: a flush that began
                    request.tried = True  # while this export ran still gets its own
            keep_going = self._settle(batch, report)
            self.ledger.resolve_flushes()
        return keep_going

    def _poll(self, cutoff: Cutoff | None) -> Cutoff | None:
        """What the export polls while it runs: ``cutoff``, and with an encoding stage, a
        few milliseconds of encoding what arrived meanwhile, every POLL_SECONDS (an export
        that hangs is where spans would pile up as objects: polled every 50 ms, enough of
        them lived long enough to reach the collector's oldest generation that an outage
        made ten full collections in 20 s, against none polled every 5 ms)."""
        if not self.stage.active:
            return cutoff
        return _StagePoll(self.stage, cutoff)

    def _settle(self, batch: Batch, report: ExportReport) -> bool:
        """Count what became of a sent batch (the caller holds the ledger's lock): exported,
        split, kept to retry, spooled or dropped. False: the worker should stop for now."""
        if report.outcome is ExportOutcome.SUCCESS and not report.too_large:
            self.ledger.count_exported(batch, report.rejected)  # some may have been left out
            return True
        if (report.too_large or report.status == 413) and len(batch) > 1:
            # Over the request size limit (the exporter's, or the backend's): halved
            # until each part fits; an item too large alone comes back as rejected.
            first, second = batch.split()
            self._requeue(second, front=True)
            self._requeue(first, front=True)
            return True
        if report.transient and self._may_retry(batch):
            batch.retried = True
            following = self._following(batch)
            self._requeue(batch, front=True)
            if following is not None:
                # The next probe carries other items: if the backend takes those, it was
                # this batch it failed, and the closed breaker's attempts (charged) decide
                # its fate; if it fails them too, it is down, and no batch is to blame.
                self._requeue(following, front=True)
            return False
        if report.transient and self.spooler.take(batch):
            return False  # out of attempts or buffer: to disk
        self.ledger.drop(batch, self._drop_reason(report))
        return report.outcome is not ExportOutcome.TIMEOUT

    def _following(self, batch: Batch) -> Batch | None:
        """After ``batch`` failed as the probe: the batch the next probe carries instead,
        taken out of the retry buffer (or, when it holds no other, off the queue), or None
        for a batch that was no probe (the caller holds the ledger's lock)."""
        if not batch.probe:
            return None
        following = self.ledger.retry.pop()
        ready = self.stage.ready()
        if following is None and ready:
            following = self.stage.take(min(ready, _PROBE_ITEMS))
        return following

    def _drop_reason(self, report: ExportReport) -> str:
        """Why a batch that failed is dropped rather than kept (see the constants)."""
        if not report.transient or self.settings.retry_buffer_size == 0:
            return failure_reason(report)  # rejected (http_<status>), or retries are off
        if self.door.closed and self.out_of_time():
            return SHUTDOWN  # it might have gone out later: the budget ran out
        return BACKEND_UNAVAILABLE  # out of attempts: each one that reached it failed

    def _may_retry(self, batch: Batch) -> bool:
        settings = self.settings
        if settings.retry_buffer_size == 0 or batch.attempts >= settings.max_export_attempts:
            return False
        return not (self.door.closed and self.out_of_time())

    def _requeue(self, batch: Batch, *, front: bool) -> None:
        """Back into the retry buffer; what it evicts goes to disk, or is dropped."""
        for evicted in self.ledger.retry.push(batch, front=front):
            if not self.spooler.take(evicted):
                self.ledger.drop(evicted, RETRY_BUFFER_FULL)

    # -- late results: an abandoned attempt may still deliver a batch --

    def _resolve_doubt(self, batch: Batch) -> bool | None:
        """Before sending a timed-out batch again, learn whether it got through after all.

        A timed-out attempt whose response had already arrived is left to finish; if it
        delivered the batch, sending it again would duplicate every item in it. True:
        it did (counted as exported); False: it did not (send it); None: unknown yet.
        """
        assert batch.doubt is not None
        wait = 0.1 if self.export_by is None else min(0.1, self.export_by.remaining())
        verdict = self.sender.resolve(batch.doubt, wait)
        ledger = self.ledger
        with ledger.lock:
            if verdict is None:
                ledger.in_flight = None
                self._requeue(batch, front=True)
                ledger.resolve_flushes()
                return None
            batch.doubt = None
            if verdict:
                ledger.in_flight = None
                ledger.count_exported(batch)
                ledger.resolve_flushes()
        return verdict

    def settle_doubts(self, until: Deadline | None, *, retrying: bool = False) -> None:
        """Learn what became of the parked batches (and, with ``retrying``, of the retry
        buffer's) whose abandoned attempt may still deliver them, waiting until ``until``
        at most (None: only attempts already over)."""
        with self.ledger.lock:
            batches = self.ledger.in_doubt(retrying=retrying)
        for batch in batches:
            attempt = batch.doubt
            if attempt is None:
                continue
            wait = 0.0 if until is None else until.remaining()
            verdict = self.sender.resolve(attempt, wait)
            if verdict is None:
                continue
            with self.ledger.lock:
                self.ledger.apply_verdict(batch, verdict)
                self.ledger.resolve_flushes()


class _StagePoll:
    """A running export's cutoff that also lets the stage encode (see ``Worker._poll``)."""

    poll_seconds = POLL_SECONDS

    def __init__(self, stage: NoStage, cutoff: Cutoff | None) -> None:
        self._stage = stage
        self._cutoff = cutoff

    def __call__(self) -> float | None:
        self._stage.run(POLL_SECONDS)
        return None if self._cutoff is None else self._cutoff()
