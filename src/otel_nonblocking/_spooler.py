"""What the worker does with what cannot be delivered in time: keep it on disk, or not.

:class:`DiskSpooler` writes such batches to a :class:`~._spool.Spool` and sends spooled
files (this process's and others') once the backend takes items again. :class:`NoSpool`
is the same interface when no spool is configured (or it could not be opened): it takes
nothing, and at shutdown spends the budget learning what became of batches in doubt.
The worker calls either without asking which it has. Only the worker thread calls them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from . import _spool
from ._exporter import Cutoff, DeadlineSpanExporter, ExportOutcome
from ._ledger import (
    MAYBE_DELIVERED,
    RETRY_BUFFER_FULL,
    SHUTDOWN,
    SPOOL_ERROR,
    SPOOL_FULL,
    TO_SPOOL,
    failure_reason,
)
from ._retry import Batch
from ._runner import Attempt
from ._spool import Spool, SpoolFile, SpoolFullError, SpoolStats

if TYPE_CHECKING:
    from ._worker import Worker

_logger = logging.getLogger("otel_nonblocking")

# With a spool, the part of the shutdown budget kept for writing what is left to disk.
_SPOOL_RESERVE_SHARE = 0.2
_SPOOL_RESERVE_MIN_SECONDS = 0.1
# How often the worker looks for spool files other processes left.
_SPOOL_RESCAN_SECONDS = 60.0
# While exports are held back, how often the worker checks whether the queue needs spooling.
_SPOOL_POLL_SECONDS = 0.1


class NoSpool:
    """No disk: a batch out of attempts or buffer is dropped; nothing is delivered later."""

    #: At shutdown the worker goes on until the work is done or the budget is spent.
    keeps_the_rest = False
    poll_seconds = float("inf")

    def __init__(self, worker: Worker) -> None:
        self._worker = worker

    def open(self) -> NoSpool:
        return self

    def reserve(self, budget: float) -> float:
        return 0.0

    def cutoff(self) -> Cutoff | None:
        return None

    def take(self, batch: Batch) -> bool:
        return False

    def deliver(self) -> bool:
        return False

    def relieve(self) -> None:
        return None

    def closing_pass(self) -> None:
        """Nothing else can go out while an abandoned attempt runs: spend the budget
        learning its fate rather than dropping a batch it delivers."""
        self._worker.settle_doubts(self._worker.export_by, retrying=True)

    def tend(self) -> None:
        return None

    def finish(self) -> None:
        return None

    def emit(self, *, force: bool = False) -> None:
        return None

    def stats(self) -> SpoolStats | None:
        return None


class DiskSpooler:
    """The disk spool, as the worker sees it. Its counts go to the worker's ledger."""

    #: At shutdown what is left goes to disk in one pass, and the worker stops.
    keeps_the_rest = True
    poll_seconds = _SPOOL_POLL_SECONDS

    def __init__(self, spool: Spool, worker: Worker, sender: DeadlineSpanExporter) -> None:
        self._spool = spool
        self._worker = worker
        self._sender = sender
        self._backlog: list[str] = []
        # A spool file whose send timed out, and the abandoned attempt that may still
        # deliver it: resolved before anything else is sent from the spool.
        self._doubt: tuple[SpoolFile, Attempt[object]] | None = None
        self._scanned_at = float("-inf")

    def open(self) -> DiskSpooler | NoSpool:
        """Open the directory; if that fails, say so once and go on without a spool."""
        try:
            self._spool.open()
            self._backlog = self._spool.backlog()
        except _spool.UnsafeSpoolDirectoryError as error:
            # The path is named by its setting, never quoted: it may say more than it should.
            _logger.warning(
                "otel_nonblocking: span spool off: the directory set by spool_dir / "
                "OTEL_NONBLOCKING_SPOOL_DIR %s, so other users could read, plant or remove "
                "batches; spans that cannot be delivered are dropped",
                error,
            )
            return NoSpool(self._worker)
        except Exception as error:  # noqa: BLE001 - no spool is better than no worker
            _logger.warning(
                "otel_nonblocking: span spool unavailable (%s); spans that cannot be "
                "delivered are dropped",
                type(error).__name__,
            )
            return NoSpool(self._worker)
        self._scanned_at = self._worker.clock()
        return self

    def reserve(self, budget: float) -> float:
        """Of a shutdown budget, the part kept for writing what is left to disk."""
        return min(max(budget * _SPOOL_RESERVE_SHARE, _SPOOL_RESERVE_MIN_SECONDS), budget)

    def cutoff(self) -> Cutoff | None:
        """Once shutdown begins, an export already running ends in time to spool its batch."""
        return self._export_cutoff

    def _export_cutoff(self) -> float | None:
        export_by = self._worker.export_by
        return None if export_by is None else export_by.remaining()

    def take(self, batch: Batch) -> bool:
        """Out of attempts or buffer: to disk (written once the lock is released)."""
        self._worker.ledger.spooling.append(batch)
        return True

    # -- sending spooled files --

    def deliver(self) -> bool:
        """Send spooled files (this processor's own and other processes'), oldest first,
        while nothing more urgent waits; True if one failed (the worker should stop for now).

        An own file's spans move from ``spooled`` to ``exported`` (or to a drop reason when
        the backend refuses them for good); another writer's count as ``recovered``."""
        if self._doubt is not None and not self._settle_doubt(wait=0.1):
            return True  # still unknown: nothing else goes out from the spool meanwhile
        worker = self._worker
        while self._may_deliver():
            if not self._backlog and not self._rescan():
                return False
            name = self._backlog.pop(0)
            file = self._spool.claim(name)
            if file is None:
                continue  # another process has it, or it was corrupt (set aside)
            report = self._sender.export_encoded_report(
                file.payload, file.spans, timeout=worker.settings.export_timeout
            )
            worker.hold_for(report)
            if report.outcome is ExportOutcome.SUCCESS:
                self._delivered(file)
            elif report.outcome is ExportOutcome.TIMEOUT and report.attempt is not None:
                # The backend may have it after all: keep the claim until we know, so
                # that the file is not sent twice.
                self._doubt = (file, report.attempt)
                return True
            elif report.transient:
                self._spool.release(file)
                self._backlog.insert(0, name)
                return True
            else:
                reason = failure_reason(report)
                self._spool.remove(file)
                self._spool.warn.add(f"spooled spans refused by the backend ({reason})")
                with worker.ledger.lock:
                    worker.ledger.count_unspooled(file.spans, own=file.own, reason=reason)
        return False

    def _may_deliver(self) -> bool:
        """Nothing more urgent than spooled files waits, and the backend may be sent to."""
        worker = self._worker
        return (
            not worker.door.closed
            and not worker.ledger.flushes
            and not worker.ledger.retry
            and worker.stage.pending() < worker.door.batch_size
            and worker.held_for() <= 0
        )

    def _rescan(self) -> bool:
        """Look at the directory again, at most every so often; True if files wait."""
        if self._worker.clock() - self._scanned_at < _SPOOL_RESCAN_SECONDS:
            return False
        self._backlog = self._spool.backlog()
        self._scanned_at = self._worker.clock()
        return bool(self._backlog)

    def _delivered(self, file: SpoolFile) -> None:
        self._spool.remove(file)
        with self._worker.ledger.lock:
            self._worker.ledger.count_unspooled(file.spans, own=file.own)

    def _settle_doubt(self, wait: float) -> bool:
        """Learn what became of a spool file's timed-out send: delivered (counted, removed)
        or not (released, sent again first). False while the attempt is still running."""
        assert self._doubt is not None
        file, attempt = self._doubt
        verdict = self._sender.resolve(attempt, wait)
        if verdict is None:
            return False
        self._doubt = None
        if verdict:
            self._delivered(file)
        else:
            self._spool.release(file)
            self._backlog.insert(0, file.name)
        return True

    def finish(self) -> None:
        """At the end: learn, within the export budget, what became of a spool file whose
        send timed out. Still unknown, the backend may have it: the file is removed, not
        given back for the next process to send again; this processor's own spans in it
        count as ``maybe_delivered``."""
        if self._doubt is None:
            return
        worker = self._worker
        try:
            export_by = worker.export_by
            if self._settle_doubt(wait=0.0 if export_by is None else export_by.remaining()):
                return
            file, self._doubt = self._doubt[0], None
            self._spool.remove(file)
            if file.own:
                with worker.ledger.lock:
                    worker.ledger.count_unspooled(file.spans, own=True, reason=MAYBE_DELIVERED)
                    worker.warn.add(MAYBE_DELIVERED, file.spans)
            else:
                self._spool.warn.add(
                    "spooled spans whose delivery is unknown not sent again", file.spans
                )
        except Exception as error:  # noqa: BLE001 - the worker must end cleanly
            worker.warn.add(f"worker error {type(error).__name__}")

    # -- writing to disk --

    def closing_pass(self) -> None:
        return None  # what cannot go out goes to disk (tend), rather than waiting

    def tend(self) -> None:
        """Write what waits for the disk; at shutdown, everything still pending, once it
        is known not to have been delivered."""
        worker = self._worker
        try:
            self._write_spooling()
            if worker.door.closed and not worker.idle():
                # Nothing more can go out in time: the rest goes to disk.
                self._spool_the_rest()
            if worker.door.closed:
                worker.settle_doubts(worker.export_by)
                self._write_spooling()
        except Exception as error:  # noqa: BLE001 - the worker must survive anything
            worker.warn.add(f"worker error {type(error).__name__}")

    def _write_spooling(self) -> None:
        """Write the batches waiting in the ledger's ``spooling`` to disk, oldest first."""
        ledger = self._worker.ledger
        while True:
            with ledger.lock:
                if not ledger.spooling:
                    return
                batch = ledger.spooling[0]
            self._write_one(batch)

    def _write_one(self, batch: Batch) -> None:
        ledger = self._worker.ledger
        if batch.doubt is not None:
            # Written now, it would be sent again even if its attempt delivers it.
            with ledger.lock:
                ledger.spooling = [b for b in ledger.spooling if b is not batch]
                ledger.doubtful.append((batch, TO_SPOOL))
            return
        reason, written, left_out, evicted = self._encode_and_write(batch)
        with ledger.lock:
            ledger.spooling = [b for b in ledger.spooling if b is not batch]
            if written:
                ledger.count_spooled(batch, written)
                # Look at the directory again at the next chance: this file is to be sent
                # once the backend takes spans again.
                self._scanned_at = float("-inf")
            for why, count in left_out.items():
                ledger.drop(batch.head(count), why)
            unwritten = len(batch) - written - sum(left_out.values())
            if reason is not None and unwritten > 0:
                ledger.drop(batch.head(unwritten), reason)
            for gone in evicted:
                if gone.own:
                    ledger.count_unspooled(gone.spans, own=True, reason=SPOOL_FULL)
                    ledger.warn.add(SPOOL_FULL, gone.spans)
                else:
                    self._spool.warn.add("another process's spooled spans evicted", gone.spans)
            ledger.resolve_flushes()
        if written:
            self._spool.warn.add("spans spooled to disk, to be sent later", written)

    def _encode_and_write(
        self, batch: Batch
    ) -> tuple[str | None, int, Mapping[str, int], list[_spool.Evicted]]:
        """One file per request (bad items left out, each file under the size limit):
        the drop reason for what was not written, items written, left out, evicted."""
        codec = self._sender.codec
        stop_by = self._worker.stop_by
        evicted: list[_spool.Evicted] = []
        written = 0
        left_out: Mapping[str, int] = {}
        if codec is None:
            return RETRY_BUFFER_FULL, written, left_out, evicted
        if stop_by is not None and stop_by.expired():
            return SHUTDOWN, written, left_out, evicted
        try:
            encoded = codec.encode_batch(batch.items)
            left_out = encoded.rejected
            for part in encoded.requests:
                evicted += self._spool.write(part.data, part.spans)
                written += part.spans
        except SpoolFullError:
            return SPOOL_FULL, written, left_out, evicted
        except Exception as error:  # noqa: BLE001 - a full or broken disk: count, go on
            self._spool.warn.add(f"spool write failed ({type(error).__name__})")
            return SPOOL_ERROR, written, left_out, evicted
        return None, written, left_out, evicted

    def relieve(self) -> None:
        """While the backend is unavailable, move queued batches to disk before the queue
        fills up and turns items away at the door."""
        worker = self._worker
        if worker.held_for() <= 0 and not worker.ledger.retry:
            return
        stage = worker.stage
        if not stage.crowded():
            return
        with worker.ledger.lock:
            while stage.ready() and not stage.relieved():
                count = min(stage.ready(), worker.door.batch_size)
                worker.ledger.spooling.append(stage.take(count))

    def _spool_the_rest(self) -> None:
        """At shutdown: everything still pending goes to disk (within the budget)."""
        door, ledger, stage = self._worker.door, self._worker.ledger, self._worker.stage
        stop_by = self._worker.stop_by
        # The door is closed: what is left in its queue, encoded (within the budget).
        stage.run(None if stop_by is None else stop_by.remaining())
        with ledger.lock:
            batches = ledger.retry.clear()
            while stage.ready():
                batches.append(stage.take(min(stage.ready(), door.batch_size)))
            ledger.spooling.extend(batches)
        self._write_spooling()

    def emit(self, *, force: bool = False) -> None:
        self._spool.warn.maybe_emit(force=force)

    def stats(self) -> SpoolStats | None:
        return self._spool.stats()


Spooler = DiskSpooler | NoSpool
