"""The ledger alone, without threads: every item taken is counted once, flushes settle."""

from __future__ import annotations

import collections

from otel_nonblocking._deadline import Deadline
from otel_nonblocking._ledger import (
    MAYBE_DELIVERED,
    QUEUE_FULL,
    SHUTDOWN,
    SPOOL_FULL,
    TO_SPOOL,
    Ledger,
    ProcessorStats,
)
from otel_nonblocking._log import AggregatedWarning


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


ATTEMPT = object()  # stands for an abandoned attempt that may still deliver a batch


def _ledger(retry_capacity: int = 100) -> tuple[Ledger, collections.deque[str], Clock]:
    clock = Clock()
    ledger = Ledger(retry_capacity, AggregatedWarning("items dropped", clock=clock))
    queue = collections.deque(f"item{i}" for i in range(10))
    return ledger, queue, clock


def _holds(stats: ProcessorStats) -> bool:
    return stats.enqueued == stats.exported + stats.dropped_total + stats.pending + stats.spooled


def test_taken_items_are_numbered_consecutively_and_leave_the_queue() -> None:
    ledger, queue, _ = _ledger()
    first = ledger.take(queue, 4)
    second = ledger.take(queue, 3)
    assert (first.start, len(first), second.start, len(second)) == (0, 4, 4, 3)
    assert first.items == ["item0", "item1", "item2", "item3"]
    assert list(queue) == ["item7", "item8", "item9"]
    assert ledger.taken == 7


def test_the_invariant_holds_through_every_kind_of_outcome() -> None:
    ledger, queue, _ = _ledger(retry_capacity=2)
    stats = ledger.snapshot(len(queue), full=2, closed=1)
    assert (stats.enqueued, stats.pending, stats.dropped_total) == (13, 10, 3)
    assert _holds(stats)
    ledger.count_exported(ledger.take(queue, 3), {"unencodable": 1})  # one left out
    retry = ledger.take(queue, 2)
    assert ledger.retry.push(retry) == []
    ledger.drop(ledger.take(queue, 1), "http_400")
    spooled = ledger.take(queue, 2)
    ledger.count_spooled(spooled, 2)
    ledger.in_flight = ledger.take(queue, 1)
    stats = ledger.snapshot(len(queue), full=2, closed=1)
    assert stats.exported == 2
    assert dict(stats.dropped) == {"unencodable": 1, "http_400": 1, QUEUE_FULL: 2, SHUTDOWN: 1}
    assert (stats.spooled, stats.retrying, stats.queue_depth) == (2, 2, 1)
    assert stats.pending == 1 + 2 + 1  # queued, retrying, in flight
    assert _holds(stats)
    ledger.count_unspooled(2, own=True)  # the spool delivered them
    ledger.count_unspooled(5, own=False)  # another process's: recovered, not ours
    stats = ledger.snapshot(len(queue), full=2, closed=1)
    assert (stats.exported, stats.spooled, stats.recovered) == (4, 0, 5)
    assert _holds(stats)


def test_a_batch_in_doubt_is_parked_not_dropped_until_its_attempt_is_known() -> None:
    ledger, queue, _ = _ledger()
    delivered, lost = ledger.take(queue, 2), ledger.take(queue, 3)
    delivered.doubt = lost.doubt = ATTEMPT  # type: ignore[assignment]
    ledger.drop(delivered, "export_timeout")
    ledger.drop(lost, "export_timeout")
    stats = ledger.snapshot(len(queue), 0, 0)
    assert (stats.dropped_total, stats.pending) == (0, 10)  # not a known loss yet
    assert ledger.in_doubt(retrying=False) == [delivered, lost]
    ledger.apply_verdict(delivered, True)
    ledger.apply_verdict(lost, False)
    stats = ledger.snapshot(len(queue), 0, 0)
    assert (stats.exported, dict(stats.dropped), stats.pending) == (2, {"export_timeout": 3}, 5)
    assert _holds(stats)


def test_a_parked_batch_bound_for_disk_goes_to_the_spooling_list_when_not_delivered() -> None:
    ledger, queue, _ = _ledger()
    batch = ledger.take(queue, 4)
    ledger.doubtful.append((batch, TO_SPOOL))
    ledger.apply_verdict(batch, False)
    assert ledger.spooling == [batch]
    assert ledger.snapshot(len(queue), 0, 0).pending == 10


def test_a_retry_batch_in_doubt_that_got_through_leaves_the_buffer_as_exported() -> None:
    ledger, queue, _ = _ledger()
    batch = ledger.take(queue, 4)
    batch.doubt = ATTEMPT  # type: ignore[assignment]
    ledger.retry.push(batch)
    assert ledger.in_doubt(retrying=True) == [batch]
    ledger.apply_verdict(batch, True)
    assert not ledger.retry
    assert ledger.snapshot(len(queue), 0, 0).exported == 4


def test_giving_up_counts_maybe_delivered_while_the_answer_is_still_out() -> None:
    ledger, queue, _ = _ledger()
    unknown, delivered, plain = ledger.take(queue, 2), ledger.take(queue, 3), ledger.take(queue, 1)
    unknown.doubt = delivered.doubt = ATTEMPT  # type: ignore[assignment]
    ledger.give_up(unknown, SHUTDOWN, None)
    ledger.give_up(delivered, SHUTDOWN, True)
    ledger.give_up(plain, SHUTDOWN, None)  # no attempt out: a plain drop
    stats = ledger.snapshot(len(queue), 0, 0)
    assert dict(stats.dropped) == {MAYBE_DELIVERED: 2, SHUTDOWN: 1}
    assert stats.exported == 3
    assert _holds(stats)


def test_a_flush_completes_once_every_item_below_its_target_is_settled() -> None:
    ledger, queue, clock = _ledger()
    batch = ledger.take(queue, 3)
    ledger.in_flight = batch
    request = ledger.add_flush(ledger.taken, Deadline.after(5.0, clock))
    assert not request.done.is_set()
    ledger.in_flight = None
    ledger.count_exported(batch)
    ledger.resolve_flushes()
    assert request.done.is_set()
    assert request.report(done=True).ok
    assert ledger.flushes == []


def test_a_flush_is_not_ok_when_an_item_it_covers_is_dropped_or_spooled() -> None:
    ledger, queue, clock = _ledger()
    dropped, spooled, later = ledger.take(queue, 2), ledger.take(queue, 2), ledger.take(queue, 2)
    ledger.in_flight = dropped
    ledger.spooling.append(spooled)
    first = ledger.add_flush(2, Deadline.after(5.0, clock))
    second = ledger.add_flush(4, Deadline.after(5.0, clock))
    assert not first.done.is_set()
    ledger.in_flight = later
    ledger.drop(dropped, "http_400")
    ledger.spooling.clear()
    ledger.count_spooled(spooled, 2)
    ledger.resolve_flushes()
    assert first.done.is_set()
    assert second.done.is_set()
    assert not first.report(done=True).ok
    assert not second.report(done=True).ok


def test_a_flush_reports_the_drops_of_batches_given_up_on_before_it_began() -> None:
    ledger, queue, clock = _ledger()
    earlier = ledger.take(queue, 3)
    earlier.doubt = ATTEMPT  # type: ignore[assignment]
    ledger.drop(earlier, "backend_unavailable")  # parked: its attempt may deliver it
    request = ledger.add_flush(ledger.taken, Deadline.after(5.0, clock))
    assert request.earlier == (earlier,)
    ledger.apply_verdict(earlier, False)
    ledger.resolve_flushes()
    report = request.report(done=True)
    assert (report.ok, dict(report.dropped_earlier)) == (False, {"backend_unavailable": 3})


def test_flushes_that_had_their_probe_or_end_first_are_given_up_when_nothing_can_go_out() -> None:
    ledger, queue, clock = _ledger()
    ledger.in_flight = ledger.take(queue, 2)
    tried = ledger.add_flush(2, Deadline.after(10.0, clock))
    short = ledger.add_flush(2, Deadline.after(1.0, clock))
    patient = ledger.add_flush(2, Deadline.after(10.0, clock))
    tried.tried = True
    assert ledger.probe_wanted()
    ledger.fail_flushes_by(clock() + 5.0)
    assert tried.done.is_set()
    assert short.done.is_set()
    assert not patient.done.is_set()
    assert not tried.report(done=True).ok
    assert ledger.flushes == [patient]


def test_evictions_from_the_spool_move_own_items_from_spooled_to_dropped() -> None:
    ledger, queue, _ = _ledger()
    ledger.count_spooled(ledger.take(queue, 4), 4)
    ledger.count_unspooled(3, own=True, reason=SPOOL_FULL)
    ledger.count_unspooled(7, own=False, reason=SPOOL_FULL)  # another process's: not ours
    stats = ledger.snapshot(len(queue), 0, 0)
    assert (stats.spooled, dict(stats.dropped), stats.recovered) == (1, {SPOOL_FULL: 3}, 0)
    assert _holds(stats)


def test_door_drops_are_reported_once() -> None:
    ledger, _, _ = _ledger()
    assert ledger.new_door_drops(5) == 5
    assert ledger.new_door_drops(5) == 0
    assert ledger.new_door_drops(8) == 3


def test_finished_counts_each_item_once_by_how_its_export_ended() -> None:
    ledger, queue, _ = _ledger()
    ledger.count_exported(ledger.take(queue, 3))
    sent = ledger.take(queue, 2)
    ledger.retry.push(sent)  # failed once, kept: its export is not over
    assert ledger.snapshot(len(queue), full=4, closed=0).finished == {"success": 3}
    ledger.retry.clear()
    ledger.give_up(sent, SHUTDOWN, None)  # sent before, then out of time: finished, failed
    # Taken off the queue only to be given up at shutdown: no export of theirs finished.
    ledger.give_up(ledger.take(queue, len(queue)), SHUTDOWN, None, sent=False)
    ledger.count_unspooled(7, own=False)  # another process's spooled items, delivered
    stats = ledger.snapshot(0, full=4, closed=1)
    assert stats.finished == {"success": 10, SHUTDOWN: 2}
    assert stats.dropped == {SHUTDOWN: 2 + 5 + 1, QUEUE_FULL: 4}
    assert _holds(stats)
