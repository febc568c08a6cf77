"""Self-metrics of log record processors, metric readers and their exporters, read through
an in-memory metric reader, say what their ``stats()`` say."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider

from otel_nonblocking import (
    DeadlineLogExporter,
    NonBlockingMetricReader,
    NonBlockingSpanProcessor,
    otlp_log_exporter,
    otlp_span_exporter,
)
from otel_nonblocking._log_processor import NonBlockingLogRecordProcessor
from otel_nonblocking.metrics import component_attributes
from otel_nonblocking.testing import FakeOTLPBackend, Mode
from tests.conftest import end_spans
from tests.test_log_processor import BlockedExporter, FailingExporter, _emit
from tests.test_metric_reader import RecordingMetricExporter, ScriptedMetricExporter
from tests.test_metrics import Metered

PROCESSED = "otel.sdk.processor.log.processed"
QUEUE_SIZE = "otel.sdk.processor.log.queue.size"
CAPACITY = "otel.sdk.processor.log.queue.capacity"
ENQUEUED = "otel_nonblocking.processor.log.enqueued"
DROPPED = "otel_nonblocking.processor.log.dropped"
LOG_EXPORTED = "otel.sdk.exporter.log.exported"
SPAN_EXPORTED = "otel.sdk.exporter.span.exported"
LOG_INFLIGHT = "otel.sdk.exporter.log.inflight"
DURATION = "otel.sdk.exporter.operation.duration"
POINTS_EXPORTED = "otel.sdk.exporter.metric_data_point.exported"
POINTS_INFLIGHT = "otel.sdk.exporter.metric_data_point.inflight"
COLLECTION_DURATION = "otel.sdk.metric_reader.collection.duration"
COLLECTIONS = "otel_nonblocking.metric_reader.collections"
READER_EXPORTS = "otel_nonblocking.metric_reader.exports"


@pytest.fixture
def metered() -> Iterator[Metered]:
    made = Metered()
    yield made
    made.handle.disable()
    made.provider.shutdown()


@pytest.fixture
def logs() -> Iterator[LoggerProvider]:
    provider = LoggerProvider(shutdown_on_exit=False)
    yield provider
    provider.shutdown()


def test_log_record_metrics_move_as_records_are_emitted_dropped_and_exported(
    metered: Metered, logs: LoggerProvider
) -> None:
    inner = BlockedExporter()
    processor = NonBlockingLogRecordProcessor(
        DeadlineLogExporter(inner, timeout_millis=30000),
        max_export_batch_size=10,
        max_queue_size=20,
        schedule_delay_millis=30,
    )
    logs.add_log_record_processor(processor)
    metered.enable()
    exporter = processor.exporter
    before = metered.read()
    assert before.values(ENQUEUED, processor) == {None: 0}
    assert before.values(CAPACITY, processor) == {None: 20}
    try:
        _emit(logs, 100)  # the first batch sticks in export, the queue fills, the rest drop
        deadline = time.monotonic() + 5
        while processor.stats().queue_depth > 10 and time.monotonic() < deadline:
            time.sleep(0.01)  # until the worker has taken the first batch
        stats = processor.stats()
        dropped = stats.dropped["queue_full"]
        assert dropped >= 100 - 20 - 10
        got = metered.read()
        assert got.values(ENQUEUED, processor) == {None: 100}
        assert got.values(DROPPED, processor) == {"queue_full": dropped}
        assert got.values(PROCESSED, processor)["queue_full"] == dropped
        assert got.values(QUEUE_SIZE, processor) == {None: stats.queue_depth}
        assert got.values(LOG_INFLIGHT, exporter) == {None: 10}  # the stuck batch
    finally:
        inner.release.set()
    assert processor.force_flush(5000)
    got = metered.read()
    assert got.values(LOG_EXPORTED, exporter) == {None: 100 - dropped}
    assert got.values(PROCESSED, processor) == {None: 100 - dropped, "queue_full": dropped}
    assert got.values(LOG_INFLIGHT, exporter) == {None: 0}
    assert sum(got.counts(DURATION, exporter).values()) == processor.stats().export_count
    assert got.counts("otel_nonblocking.processor.flush.duration", processor) == {None: 1}
    assert component_attributes(processor)["otel.component.type"] == (
        "otel_nonblocking.NonBlockingLogRecordProcessor"
    )
    assert component_attributes(exporter)["otel.component.type"] == (
        "otel_nonblocking.DeadlineLogExporter"
    )


def test_failed_log_exports_are_counted_by_outcome(metered: Metered, logs: LoggerProvider) -> None:
    processor = NonBlockingLogRecordProcessor(
        FailingExporter(), max_export_batch_size=5, retry_buffer_size=0, schedule_delay_millis=30
    )
    logs.add_log_record_processor(processor)
    metered.enable()
    _emit(logs, 5)
    assert processor.force_flush(2000) is False
    got = metered.read()
    assert got.values(LOG_EXPORTED, processor.exporter) == {"export_failed": 5}
    assert got.values(DROPPED, processor) == {"export_failed": 5}
    assert got.values("otel_nonblocking.exporter.breaker.state", processor.exporter)["closed"] == 1


def _application(reader: NonBlockingMetricReader) -> MeterProvider:
    """An application's MeterProvider: one counter, two series (two data points)."""
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    counter = provider.get_meter("tests.app").create_counter("orders")
    counter.add(1, {"shop": "a"})
    counter.add(2, {"shop": "b"})
    return provider


def test_metric_reader_and_exporter_metrics_count_collections_exports_and_data_points(
    metered: Metered,
) -> None:
    exporter = ScriptedMetricExporter("ok", "fail")
    reader = NonBlockingMetricReader(exporter, export_interval_millis=math.inf)
    app = _application(reader)
    try:
        metered.enable()
        assert reader.force_flush(2000)
        got = metered.read()
        assert got.values(COLLECTIONS, reader) == {None: 1, "collection_failed": 0}
        assert got.values(READER_EXPORTS, reader) == {
            None: 1,
            "export_failed": 0,
            "export_timeout": 0,
        }
        assert got.values(POINTS_EXPORTED, reader.exporter) == {None: 2}
        assert got.values(POINTS_INFLIGHT, reader.exporter) == {None: 0}
        assert got.counts(COLLECTION_DURATION, reader) == {None: 1}
        assert reader.force_flush(2000) is False  # the exporter fails this one
        got = metered.read()
        assert got.values(READER_EXPORTS, reader)["export_failed"] == 1
        assert got.values(POINTS_EXPORTED, reader.exporter) == {None: 2, "export_failed": 2}
        assert got.counts(COLLECTION_DURATION, reader) == {None: 2}
        assert component_attributes(reader)["otel.component.type"] == (
            "otel_nonblocking.NonBlockingMetricReader"
        )
    finally:
        app.shutdown(timeout_millis=1000)


def test_a_failing_collection_is_recorded_with_its_error_type(metered: Metered) -> None:
    reader = NonBlockingMetricReader(RecordingMetricExporter(), export_interval_millis=math.inf)
    app = _application(reader)

    def broken(**_kwargs: Any) -> None:
        raise RuntimeError("collection bug")

    try:
        metered.enable()
        reader.collect = broken  # type: ignore[method-assign]
        assert reader.force_flush(2000) is False
        got = metered.read()
        assert got.counts(COLLECTION_DURATION, reader) == {"RuntimeError": 1}
        assert got.values(COLLECTIONS, reader) == {None: 0, "collection_failed": 1}
    finally:
        app.shutdown(timeout_millis=1000)


def test_self_metrics_on_the_readers_own_provider_make_no_export_loop() -> None:
    """The package's metric reader publishing its own numbers exports exactly when it
    would without them: observing is reading counters at a collection that runs anyway."""
    exporter = RecordingMetricExporter()
    reader = NonBlockingMetricReader(exporter, export_interval_millis=math.inf)
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    from otel_nonblocking.metrics import enable_self_metrics

    handle = enable_self_metrics(provider)
    try:
        for _ in range(3):
            assert reader.force_flush(2000)
        time.sleep(0.3)
        assert len(exporter.exported) == 3
        last = {
            m.name
            for rm in exporter.exported[-1].resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
        }
        assert {POINTS_EXPORTED, COLLECTION_DURATION, COLLECTIONS} <= last
    finally:
        handle.disable()
        provider.shutdown(timeout_millis=1000)


def _failed(exporter: Any) -> int:
    """Exports that failed or ran into their deadline."""
    outcomes = exporter.stats().outcomes
    return int(outcomes.get("export_failed", 0) + outcomes.get("export_timeout", 0))


def _fail_then_accept(backend: FakeOTLPBackend, failed_exports: Any, attempts: int = 2) -> None:
    """Answer 503 until ``failed_exports()`` reaches ``attempts``, then 200."""
    deadline = time.monotonic() + 10
    while failed_exports() < attempts and time.monotonic() < deadline:
        time.sleep(0.01)
    assert failed_exports() >= attempts
    backend.mode = Mode.OK


def test_spans_and_log_records_sent_again_after_503s_count_once_as_exported(
    metered: Metered, logs: LoggerProvider
) -> None:
    # The semantic conventions: each item counted exactly once per export operation;
    # attempts that failed and were followed by a retry do not count.
    backend = FakeOTLPBackend(Mode.UNAVAILABLE, retry_after=None).start()
    spans = TracerProvider(shutdown_on_exit=False)
    span_processor = NonBlockingSpanProcessor(
        otlp_span_exporter(backend.endpoint, timeout=1),
        max_export_batch_size=10,
        schedule_delay_millis=30,
        max_export_attempts=10,
    )
    log_processor = NonBlockingLogRecordProcessor(
        otlp_log_exporter(backend.logs_endpoint, timeout=1),
        max_export_batch_size=10,
        schedule_delay_millis=30,
        max_export_attempts=10,
    )
    spans.add_span_processor(span_processor)
    logs.add_log_record_processor(log_processor)
    try:
        metered.enable()
        for processor in (span_processor, log_processor):
            exporter = processor.exporter
            exporter._breaker._base_backoff = exporter._breaker._backoff = 0.05
        end_spans(spans, 10)
        _emit(logs, 10)
        # A 503 fails the export (or, where the SDK sleeps before its own retry, as 1.33
        # does, runs it into its deadline): either way the batch is sent again later.
        _fail_then_accept(
            backend, lambda: min(_failed(p.exporter) for p in (span_processor, log_processor))
        )
        assert span_processor.force_flush(5000)
        assert log_processor.force_flush(5000)
        assert len(backend.accepted_spans()) == 10
        assert len(backend.log_records(accepted=True)) == 10
        got = metered.read()
        for processor, name in ((span_processor, SPAN_EXPORTED), (log_processor, LOG_EXPORTED)):
            assert _failed(processor.exporter) >= 2
            assert processor.stats().retried >= 10
            assert got.values(name, processor.exporter) == {None: 10}  # delivered, once
    finally:
        span_processor.shutdown(timeout_millis=1000)
        log_processor.shutdown(timeout_millis=1000)
        spans.shutdown()
        backend.stop()


def test_a_batch_given_up_counts_once_with_the_reason_of_its_last_attempt(
    metered: Metered, logs: LoggerProvider
) -> None:
    backend = FakeOTLPBackend(Mode.UNAVAILABLE, retry_after=None).start()
    processor = NonBlockingLogRecordProcessor(
        otlp_log_exporter(backend.logs_endpoint, timeout=1),
        max_export_batch_size=5,
        schedule_delay_millis=30,
        max_export_attempts=3,
    )
    logs.add_log_record_processor(processor)
    try:
        metered.enable()
        processor.exporter._breaker._base_backoff = processor.exporter._breaker._backoff = 0.05
        _emit(logs, 5)
        deadline = time.monotonic() + 10
        while "backend_unavailable" not in processor.stats().dropped:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert _failed(processor.exporter) >= 3  # three attempts, each a 503
        got = metered.read()
        assert got.values(LOG_EXPORTED, processor.exporter) == {"backend_unavailable": 5}
    finally:
        processor.shutdown(timeout_millis=1000)
        backend.stop()
