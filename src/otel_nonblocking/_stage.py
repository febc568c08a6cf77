"""The worker's stage: spans waiting for export are kept encoded, not as span objects.

Where the package owns the encoding (its OTLP/HTTP and OTLP/gRPC span exporters,
Langfuse's too), :class:`EncodingStage` turns the spans ``on_end`` queued into encoded
items (``_assemble.py``) on every worker turn, also while exports are held back, and keeps
no reference to the spans: a waiting span costs its encoded size in ``bytes``, which the
garbage collector does not track, instead of a dozen tracked objects. Any other exporter
gets span objects as before: :class:`NoStage` takes batches straight off the door's queue.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ._ledger import QUEUE_FULL
from ._requests import UNENCODABLE
from ._retry import Batch

if TYPE_CHECKING:
    from ._assemble import SpanPieces
    from ._worker import Worker

# One slice encodes for about this long, then the worker lets go of the GIL
# (time.sleep(0)): an application thread waits at most about this long for it. Spans at the
# SDK's default limits (128 attributes, 128 events) take about 1 ms each, small ones a few µs.
SLICE_SECONDS = 0.0005
# And at most this many spans: what one commit under the ledger's lock handles.
SLICE_SPANS = 256
# Memory of one staged item beyond its length: the bytes object's header and its slot.
ITEM_OVERHEAD_BYTES = 33 + 8
# While an export runs, the worker encodes what arrives for at most this long per poll,
# and polls this often.
POLL_SECONDS = 0.005
# on_end still wakes the worker at a batch's worth of spans, not sooner: waking it every
# 64 spans made no difference to the full collections of an outage (5 and 5 in one
# bench_request_path --outage run each) and raised span.end()'s p99 against stock's from
# 0.36-0.63 to 0.78-0.86 (bench_span_end --otlp, two runs each, taking turns).


class NoStage:
    """Spans stay span objects: batches are taken straight off the door's queue.

    The null stage, and the base of :class:`EncodingStage`: the worker calls the same
    methods on either without asking which it has.
    """

    active = False

    def __init__(self, worker: Worker) -> None:
        self._door = worker.door
        self._ledger = worker.ledger

    def run(self, budget: float | None = None) -> None:
        return None

    def ready(self) -> int:
        """Items that can be taken as a batch now."""
        return len(self._door.queue)

    def pending(self) -> int:
        """Items waiting to be taken, encoded or not."""
        return len(self._door.queue)

    def take(self, count: int) -> Batch:
        """The next ``count`` items as a batch (the caller holds the ledger's lock)."""
        return self._ledger.take(self._door.queue, count)

    def crowded(self) -> bool:
        """Half the queue's room is used: time to move batches to disk in an outage."""
        return len(self._door.queue) >= max(self._door.cap // 2, 1)

    def relieved(self) -> bool:
        return len(self._door.queue) <= self._door.cap // 4


class EncodingStage(NoStage):
    """Encodes the door's queue into the ledger's staged items, bounded by ``max_bytes``.

    A span enters the ledger's numbering (``Ledger.taken``) when it leaves the door's
    queue here; one the encoder rejects is dropped at once (``unencodable``), and one that
    finds the staged items over their memory budget is dropped unencoded (``queue_full``).
    """

    active = True

    def __init__(self, worker: Worker, pieces: SpanPieces) -> None:
        super().__init__(worker)
        self._pieces = pieces
        self._max_bytes = worker.settings.max_queue_bytes
        self._ledger.staged.item_overhead = ITEM_OVERHEAD_BYTES
        self._ledger.staged.packs = True  # items are bytes: a backlog is kept compressed

    def run(self, budget: float | None = None) -> None:
        """Encode what waits in the door's queue, a slice at a time, letting go of the GIL
        between slices; with ``budget``, for about that many seconds at most."""
        began = time.perf_counter()
        queue = self._door.queue
        while queue:
            self._slice()
            if not queue or (budget is not None and time.perf_counter() - began >= budget):
                return
            time.sleep(0)  # let the application's threads run

    def _slice(self) -> None:
        queue = self._door.queue
        try:
            first = queue[0]
        except IndexError:  # shutdown gave them up meanwhile
            return
        items: list[bytes | None] = []
        if self._ledger.staged.size_bytes < self._max_bytes:
            pieces = self._pieces
            until = time.perf_counter() + SLICE_SECONDS
            for index in range(min(len(queue), SLICE_SPANS)):
                try:
                    items.append(pieces.item(queue[index]))
                except Exception:  # noqa: BLE001 - one bad span costs one span
                    items.append(None)
                if time.perf_counter() >= until:
                    break
        self._commit(first, items, full=not items)

    def _commit(self, first: Any, items: list[bytes | None], *, full: bool) -> None:
        """Number the slice, stage it, and drop what could not be staged; the spans leave
        the door's queue (unless shutdown took them meanwhile)."""
        queue, ledger = self._door.queue, self._ledger
        with ledger.lock:
            if not queue or queue[0] is not first:
                return  # shutdown gave them up meanwhile (only it takes from the queue too)
            if full:  # over the memory budget: the newest are turned away, unencoded
                ledger.drop(
                    ledger.take(queue, min(len(queue), SLICE_SPANS)), QUEUE_FULL, sent=False
                )
                ledger.resolve_flushes()
                return
            number = ledger.taken
            for item in items:
                queue.popleft()
                if item is None:
                    ledger.drop(Batch([None], number), UNENCODABLE, sent=False)
                else:
                    ledger.staged.add(number, item)
                number += 1
            ledger.taken = number
            ledger.resolve_flushes()

    def ready(self) -> int:
        return len(self._ledger.staged)

    def pending(self) -> int:
        return len(self._ledger.staged) + len(self._door.queue)

    def take(self, count: int) -> Batch:
        return self._ledger.staged.take(count)

    def crowded(self) -> bool:
        # With a spool, past half of max_queue_size spans too, as for span objects: the
        # user who sized the queue so asked for the disk that early.
        staged = self._ledger.staged
        return (
            len(staged) >= max(self._door.max_size // 2, 1)
            or staged.size_bytes >= self._max_bytes // 2
        )

    def relieved(self) -> bool:
        staged = self._ledger.staged
        return len(staged) <= self._door.max_size // 4 and staged.size_bytes <= self._max_bytes // 4


def stage_for(worker: Worker) -> NoStage:
    """The encoding stage where the sender's exporter is ours (it encodes, sends what it
    encoded, and has :class:`SpanPieces`), else :class:`NoStage`. Looked up on the worker."""
    codec = getattr(worker.sender, "codec", None)
    pieces = getattr(codec, "pieces", None) if codec is not None and codec.exports else None
    if pieces is None:
        return NoStage(worker)
    return EncodingStage(worker, pieces)
