"""NonBlockingSpanProcessor: on_end never waits, every span is accounted for, budgets hold."""

from __future__ import annotations

import os
import threading
import time

import pytest
from opentelemetry.sdk.trace import TracerProvider

from otel_nonblocking import ConfigurationError, DeadlineSpanExporter, NonBlockingSpanProcessor
from tests.conftest import (
    BlockingExporter,
    RaisingExporter,
    RecordingExporter,
    end_spans,
    wait_for_child,
)


def _invariant_holds(processor: NonBlockingSpanProcessor) -> bool:
    stats = processor.stats()
    return stats.enqueued == stats.exported + stats.dropped_total + stats.pending


def test_on_end_never_waits_on_a_blocked_exporter(make_spans) -> None:
    exporter = BlockingExporter()
    processor = NonBlockingSpanProcessor(
        exporter, max_queue_size=100_000, max_export_batch_size=10, export_timeout_millis=20_000
    )
    provider = make_spans(processor)
    end_spans(provider, 10)
    assert exporter.entered.wait(5), "the worker never started exporting"
    started = time.perf_counter()
    end_spans(provider, 5000)
    elapsed = time.perf_counter() - started
    exporter.release.set()
    # 5000 spans while the exporter is blocked: if on_end waited even once on the
    # export side it would take seconds; a generous bound still catches that.
    assert elapsed < 2.0
    assert processor.stats().enqueued == 5010


def test_every_span_is_exported_with_a_healthy_exporter(make_spans) -> None:
    exporter = RecordingExporter()
    processor = NonBlockingSpanProcessor(exporter, max_queue_size=10_000, schedule_delay_millis=50)
    provider = make_spans(processor)
    end_spans(provider, 1234)
    assert processor.force_flush(5000)
    stats = processor.stats()
    assert stats.exported == 1234 == len(exporter.spans)
    assert stats.pending == 0
    assert stats.dropped_total == 0
    assert stats.export_count >= 3  # batches of at most 512


def test_batches_never_exceed_max_export_batch_size(make_spans) -> None:
    sizes: list[int] = []

    class SizeExporter(RecordingExporter):
        def export(self, spans):  # type: ignore[no-untyped-def]
            sizes.append(len(spans))
            return super().export(spans)

    processor = NonBlockingSpanProcessor(SizeExporter(), max_export_batch_size=7)
    provider = make_spans(processor)
    end_spans(provider, 100)
    assert processor.force_flush(5000)
    assert sum(sizes) == 100
    assert max(sizes) <= 7


def test_worker_exports_on_schedule_without_a_full_batch(make_spans) -> None:
    exporter = RecordingExporter()
    processor = NonBlockingSpanProcessor(exporter, schedule_delay_millis=50)
    end_spans(make_spans(processor), 3)
    deadline = time.monotonic() + 5
    while len(exporter.spans) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(exporter.spans) == 3


def test_a_steady_producer_gets_full_batches_not_a_request_per_few_spans(make_spans) -> None:
    sizes: list[int] = []

    class SlowishExporter(RecordingExporter):
        def export(self, spans):  # type: ignore[no-untyped-def]
            sizes.append(len(spans))
            time.sleep(0.002)  # a fast backend still takes a moment per request
            return super().export(spans)

    processor = NonBlockingSpanProcessor(
        SlowishExporter(), max_export_batch_size=50, schedule_delay_millis=5000
    )
    provider = make_spans(processor)
    for _ in range(100):  # 1,000 spans over at least 0.1 s, a few at a time
        end_spans(provider, 10)
        time.sleep(0.001)
    deadline = time.monotonic() + 5
    while processor.stats().exported < 1000 and time.monotonic() < deadline:
        time.sleep(0.01)
    # Every batch was a full one: the worker waited for 50 spans instead of sending
    # whatever had arrived during the previous request (the schedule delay is 5 s).
    assert sum(sizes) == 1000
    assert set(sizes) == {50}
    assert processor.stats().export_count == 20


def test_a_flush_sends_the_partial_batch_at_once(make_spans) -> None:
    exporter = RecordingExporter()
    processor = NonBlockingSpanProcessor(
        exporter, max_export_batch_size=50, schedule_delay_millis=60_000
    )
    end_spans(make_spans(processor), 7)
    time.sleep(0.2)
    assert exporter.calls == 0  # not due for a minute
    started = time.monotonic()
    assert processor.force_flush(5000)
    assert time.monotonic() - started < 1.0
    assert len(exporter.spans) == 7


def test_full_queue_drops_the_newest_and_counts_queue_full(make_spans) -> None:
    exporter = BlockingExporter()
    processor = NonBlockingSpanProcessor(
        exporter, max_queue_size=50, max_export_batch_size=10, export_timeout_millis=20_000
    )
    provider = make_spans(processor)
    end_spans(provider, 10, name="first")
    assert exporter.entered.wait(5)
    end_spans(provider, 200, name="later")
    stats = processor.stats()
    assert stats.dropped["queue_full"] == 150
    assert stats.queue_depth == 50
    assert _invariant_holds(processor)
    exporter.release.set()
    assert processor.force_flush(5000)
    assert [s.name for s in exporter.spans[:10]] == ["first"] * 10


def test_accounting_is_exact_after_concurrent_on_end_from_8_threads(make_spans) -> None:
    exporter = RecordingExporter()
    processor = NonBlockingSpanProcessor(
        exporter, max_queue_size=500, max_export_batch_size=100, schedule_delay_millis=10
    )
    provider = make_spans(processor)
    barrier = threading.Barrier(8)

    def produce() -> None:
        barrier.wait()
        end_spans(provider, 5000)

    threads = [threading.Thread(target=produce) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    processor.force_flush(10_000)
    stats = processor.stats()
    assert stats.enqueued == 40_000
    assert stats.exported + stats.dropped_total + stats.pending == 40_000
    assert stats.exported == len(exporter.spans)
    assert set(stats.dropped) <= {"queue_full"}


@pytest.mark.parametrize(
    ("exporter", "reason"),
    [
        (RaisingExporter(), "export_failed"),
        (RecordingExporter(result=None), "export_failed"),
        (RecordingExporter(result="garbage"), "export_failed"),
    ],
    ids=["raises", "returns-none", "returns-garbage"],
)
def test_worker_survives_a_bad_exporter_and_counts_the_drops(make_spans, exporter, reason) -> None:
    # A broken exporter is a permanent failure: dropped at once, never retried.
    deadline = DeadlineSpanExporter(exporter, timeout_millis=2000, failure_threshold=100)
    processor = NonBlockingSpanProcessor(deadline, max_export_batch_size=5)
    provider = make_spans(processor)
    end_spans(provider, 20)
    assert processor.force_flush(5000) is False
    end_spans(provider, 5)
    processor.force_flush(5000)
    stats = processor.stats()
    assert stats.dropped[reason] == 25
    assert exporter.calls == 5  # the worker kept exporting after every failure
    assert stats.retried == 0
    assert stats.pending == 0


def test_a_hung_exporter_costs_the_flush_its_budget_and_the_spans_go_out_later(
    make_spans,
) -> None:
    exporter = BlockingExporter()
    processor = NonBlockingSpanProcessor(
        exporter, export_timeout_millis=200, max_export_batch_size=5, schedule_delay_millis=20
    )
    provider = make_spans(processor)
    end_spans(provider, 5)
    started = time.monotonic()
    assert processor.force_flush(600) is False
    assert time.monotonic() - started < 0.6 + 0.5
    stats = processor.stats()
    assert stats.pending == 5
    assert stats.dropped_total == 0
    assert processor.exporter.stats().outcomes["export_timeout"] == 1
    # The exporter recovers: the abandoned attempt delivers the first batch after all,
    # so it is counted as exported and not sent twice; new spans follow.
    exporter.release.set()
    end_spans(provider, 5)
    assert processor.force_flush(3000)
    stats = processor.stats()
    assert stats.exported == 10
    assert stats.pending == 0
    assert stats.retried == 0
    assert len(exporter.spans) == 10  # nothing was exported twice
    assert processor.exporter.stats().outcomes["late_success"] == 1


def test_force_flush_keeps_its_budget_with_a_blocked_exporter(make_spans) -> None:
    exporter = BlockingExporter()
    processor = NonBlockingSpanProcessor(exporter, export_timeout_millis=30_000)
    provider = make_spans(processor)
    end_spans(provider, 10)
    started = time.monotonic()
    assert processor.force_flush(300) is False
    assert time.monotonic() - started < 0.3 + 0.5
    exporter.release.set()


def test_force_flush_never_exports_on_the_calling_thread(make_spans) -> None:
    threads: set[str] = set()

    class ThreadExporter(RecordingExporter):
        def export(self, spans):  # type: ignore[no-untyped-def]
            threads.add(threading.current_thread().name)
            return super().export(spans)

    processor = NonBlockingSpanProcessor(ThreadExporter())
    end_spans(make_spans(processor), 10)
    assert processor.force_flush(5000)
    assert threading.current_thread().name not in threads
    assert threads


def test_force_flush_with_nothing_pending_returns_true_at_once(make_spans) -> None:
    processor = NonBlockingSpanProcessor(BlockingExporter())
    make_spans(processor)
    started = time.monotonic()
    assert processor.force_flush(5000)
    assert time.monotonic() - started < 0.5


def test_shutdown_keeps_its_budget_and_counts_what_it_dropped(make_spans) -> None:
    exporter = BlockingExporter(block_shutdown=True)
    processor = NonBlockingSpanProcessor(
        exporter, max_export_batch_size=10, export_timeout_millis=30_000
    )
    provider = make_spans(processor)
    end_spans(provider, 10)
    assert exporter.entered.wait(5)
    end_spans(provider, 90)
    started = time.monotonic()
    processor.shutdown(timeout_millis=400)
    assert time.monotonic() - started < 0.4 + 0.5
    stats = processor.stats()
    assert stats.dropped["shutdown"] == 90
    assert stats.pending == 10  # the batch still stuck in the exporter
    assert _invariant_holds(processor)
    exporter.release.set()


def test_shutdown_is_idempotent_and_later_spans_count_as_shutdown_drops(make_spans) -> None:
    exporter = RecordingExporter()
    processor = NonBlockingSpanProcessor(exporter)
    provider = make_spans(processor)
    end_spans(provider, 3)
    processor.shutdown(timeout_millis=2000)
    processor.shutdown(timeout_millis=2000)
    assert exporter.shutdown_called
    assert processor.stats().exported == 3
    end_spans(provider, 4)
    stats = processor.stats()
    assert stats.dropped["shutdown"] == 4
    assert stats.enqueued == 7


def test_unsampled_spans_are_ignored(make_spans) -> None:
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    exporter = RecordingExporter()
    processor = NonBlockingSpanProcessor(exporter)
    provider = TracerProvider(sampler=ALWAYS_OFF, shutdown_on_exit=False)
    provider.add_span_processor(processor)
    end_spans(provider, 5)
    processor.force_flush(1000)
    assert processor.stats().enqueued == 0
    provider.shutdown()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
@pytest.mark.filterwarnings("ignore:.*multi-threaded.*:DeprecationWarning")
def test_forked_child_gets_a_fresh_queue_and_worker_and_no_deadlock(make_spans) -> None:
    exporter = BlockingExporter()
    processor = NonBlockingSpanProcessor(
        exporter, max_export_batch_size=5, export_timeout_millis=30_000
    )
    provider = make_spans(processor)
    end_spans(provider, 5)
    assert exporter.entered.wait(5)  # the parent's worker is inside an export
    end_spans(provider, 20)  # ... and the parent has spans queued
    processor._lock.acquire()  # and the export side's lock is held at fork time
    try:
        pid = os.fork()
        if pid == 0:  # the child: must not hang, must not see the parent's spans
            code = 1
            try:
                exporter.release.set()
                before = processor.stats()
                end_spans(provider, 7)
                flushed = processor.force_flush(5000)
                after = processor.stats()
                child_spans = len(exporter.spans)
                if (
                    (before.enqueued, before.pending) == (0, 0)
                    and flushed
                    and (after.exported == 7 == child_spans)
                ):
                    code = 0
            finally:
                os._exit(code)
    finally:
        processor._lock.release()
    code = wait_for_child(pid)
    exporter.release.set()
    assert code == 0


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"max_queue_size": 0}, "max_queue_size"),
        ({"max_queue_size": -5}, "max_queue_size"),
        ({"max_export_batch_size": 0}, "max_export_batch_size"),
        ({"schedule_delay_millis": "10"}, "schedule_delay_millis"),
        ({"export_timeout_millis": 0}, "export_timeout_millis"),
        ({"max_queue_size": 10, "max_export_batch_size": 20}, "max_export_batch_size"),
        ({"shutdown_timeout_millis": -1}, "shutdown_timeout_millis"),
        ({"max_queue_size": True}, "max_queue_size"),
    ],
)
def test_bad_explicit_argument_raises_a_valueerror_naming_it(kwargs, named) -> None:
    with pytest.raises(ConfigurationError, match=named) as caught:
        NonBlockingSpanProcessor(RecordingExporter(), **kwargs)
    assert isinstance(caught.value, ValueError)


def test_env_variables_set_the_defaults_and_arguments_win(monkeypatch) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "77")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "7")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "123")
    monkeypatch.setenv("OTEL_BSP_EXPORT_TIMEOUT", "4567")
    processor = NonBlockingSpanProcessor(RecordingExporter())
    assert processor._max_queue_size == 77
    assert processor._batch_size == 7
    assert processor._schedule_delay == pytest.approx(0.123)
    assert processor.exporter.timeout_seconds == pytest.approx(4.567)
    explicit = NonBlockingSpanProcessor(RecordingExporter(), max_queue_size=99)
    assert explicit._max_queue_size == 99
    processor.shutdown(0)
    explicit.shutdown(0)


def test_malformed_env_value_warns_once_and_falls_back(monkeypatch, caplog) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "lots")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "-3")
    first = NonBlockingSpanProcessor(RecordingExporter())
    second = NonBlockingSpanProcessor(RecordingExporter())
    assert first._max_queue_size == second._max_queue_size == 16384
    assert first._schedule_delay == pytest.approx(1.0)
    warnings = [r for r in caplog.records if "OTEL_BSP_MAX_QUEUE_SIZE" in r.getMessage()]
    assert len(warnings) == 1
    assert any("OTEL_BSP_SCHEDULE_DELAY" in r.getMessage() for r in caplog.records)
    first.shutdown(0)
    second.shutdown(0)


def test_flush_listeners_and_live_registry(make_spans) -> None:
    from otel_nonblocking._state import live_processors

    processor = NonBlockingSpanProcessor(RecordingExporter())
    calls: list[bool] = []
    processor.add_flush_listener(lambda ok, seconds: calls.append(ok))
    end_spans(make_spans(processor), 2)
    assert processor.force_flush(2000)
    assert calls == [True]
    assert processor in live_processors()


def test_the_stock_positional_form_sets_the_same_four_settings() -> None:
    # BatchSpanProcessor(span_exporter, max_queue_size, schedule_delay_millis,
    # max_export_batch_size, export_timeout_millis): the same order, the same meaning.
    processor = NonBlockingSpanProcessor(RecordingExporter(), 77, 123, 7, 4567)
    settings = processor._settings
    assert (settings.max_queue_size, settings.max_export_batch_size) == (77, 7)
    assert settings.schedule_delay == pytest.approx(0.123)
    assert processor.exporter.timeout_seconds == pytest.approx(4.567)
    processor.shutdown(0)


def test_none_in_the_stock_arguments_means_not_given(monkeypatch) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "55")
    processor = NonBlockingSpanProcessor(RecordingExporter(), None, None, None, None)
    assert processor._settings.max_queue_size == 55  # the variable, as for the stock class
    assert processor._settings.schedule_delay == pytest.approx(1.0)
    processor.shutdown(0)


def test_only_the_stock_four_settings_may_be_positional() -> None:
    with pytest.raises(TypeError):
        NonBlockingSpanProcessor(RecordingExporter(), 77, 123, 7, 4567, 2000)  # type: ignore[misc]


def test_queue_capacity_is_what_turns_spans_away_when_the_byte_budget_lowers_it(
    make_spans,
) -> None:
    # 10 spans' worth of the byte budget (3 KiB each before any export taught the size);
    # no batch is ever ready and no partial batch is due, so nothing leaves the queue.
    processor = NonBlockingSpanProcessor(
        RecordingExporter(),
        max_queue_size=100,
        max_export_batch_size=100,
        schedule_delay_millis=60_000,
        max_queue_bytes=10 * 3 * 1024,
    )
    try:
        assert processor.queue_capacity == 10
        end_spans(make_spans(processor), 15)
        stats = processor.stats()
        assert stats.queue_depth == processor.queue_capacity
        assert stats.dropped == {"queue_full": 5}
    finally:
        processor.shutdown(0)
    default = NonBlockingSpanProcessor(RecordingExporter())
    assert default.queue_capacity == default._settings.max_queue_size == 16384
    default.shutdown(0)
