"""No span lost without a count: retries after transient failures, Retry-After, 413 splits."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider

from otel_nonblocking import NonBlockingSpanProcessor, otlp_span_exporter
from otel_nonblocking.testing import FakeOTLPBackend, Mode
from tests.conftest import RecordingExporter, end_spans


@pytest.fixture
def backend() -> Iterator[FakeOTLPBackend]:
    server = FakeOTLPBackend(Mode.OK, hang_limit=30).start()
    yield server
    server.stop()


def _pipeline(endpoint: str, **kwargs: object) -> tuple[NonBlockingSpanProcessor, TracerProvider]:
    exporter = otlp_span_exporter(endpoint, timeout=0.5)
    exporter._breaker._base_backoff = exporter._breaker._backoff = 0.2
    options: dict[str, object] = {"max_export_batch_size": 10, "schedule_delay_millis": 30}
    options.update(kwargs)
    processor = NonBlockingSpanProcessor(exporter, **options)  # type: ignore[arg-type]
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    return processor, provider


def _settled(processor: NonBlockingSpanProcessor) -> bool:
    stats = processor.stats()
    return stats.enqueued == stats.exported + stats.dropped_total + stats.pending


def test_spans_survive_an_outage_and_arrive_once_after_recovery(backend) -> None:
    processor, provider = _pipeline(backend.endpoint)
    try:
        backend.mode = Mode.HANG
        end_spans(provider, 50)
        assert processor.force_flush(1200) is False  # down: the flush keeps its budget
        stats = processor.stats()
        assert stats.dropped_total == 0
        assert stats.pending == 50
        backend.mode = Mode.RESET
        end_spans(provider, 30)
        processor.force_flush(800)
        backend.mode = Mode.OK
        assert processor.force_flush(5000)
        stats = processor.stats()
        assert stats.exported == 80
        assert stats.dropped_total == 0
        assert stats.retried > 0
        received = Counter(span.span_id for span in backend.accepted_spans())
        assert len(received) == 80
        assert max(received.values()) == 1
    finally:
        processor.shutdown(timeout_millis=500)


def test_retry_after_defers_the_batch_instead_of_dropping_it(backend) -> None:
    backend.mode = Mode.UNAVAILABLE
    backend.retry_after = 1
    processor, provider = _pipeline(backend.endpoint)
    try:
        end_spans(provider, 10)
        assert backend.wait_for_requests(1, timeout=5)
        backend.mode = Mode.OK
        time.sleep(0.5)  # inside the Retry-After window: nothing may go out
        assert backend.request_count == 1
        stats = processor.stats()
        assert stats.pending == 10
        assert stats.dropped_total == 0
        assert processor.force_flush(3000)
        assert backend.request_count == 2
        assert processor.stats().exported == 10
    finally:
        processor.shutdown(timeout_millis=500)


def test_flush_and_shutdown_during_a_long_retry_after_return_at_once(backend) -> None:
    backend.mode = Mode.UNAVAILABLE
    backend.retry_after = 30
    processor, provider = _pipeline(backend.endpoint)
    try:
        end_spans(provider, 10)
        assert backend.wait_for_requests(1, timeout=5)
        # Nothing can go out before the budgets end: they are not spent waiting.
        started = time.monotonic()
        assert processor.force_flush(3000) is False
        assert time.monotonic() - started < 1.5
        assert processor.stats().pending == 10  # kept, not lost
        started = time.monotonic()
        processor.shutdown(timeout_millis=3000)
        assert time.monotonic() - started < 1.5
        assert processor.stats().dropped == {"backend_unavailable": 10}
        assert backend.request_count == 1  # the backend's Retry-After was respected
    finally:
        processor.shutdown(timeout_millis=100)


@pytest.mark.parametrize("status", [400, 401, 403])
def test_permanent_rejection_is_dropped_with_its_status_and_not_retried(backend, status) -> None:
    backend.mode = Mode.ERROR_STATUS
    backend.error_status = status
    processor, provider = _pipeline(backend.endpoint)
    try:
        end_spans(provider, 10)
        assert processor.force_flush(3000) is False
        stats = processor.stats()
        assert stats.dropped == {f"http_{status}": 10}
        assert stats.retried == 0
        assert backend.request_count == 1
    finally:
        processor.shutdown(timeout_millis=500)


def test_too_large_batches_are_split_until_they_fit(backend) -> None:
    one_span = len(_encoded_size_probe(backend))
    backend.clear()
    backend.max_body_bytes = one_span * 3  # at most about three spans per request
    processor, provider = _pipeline(backend.endpoint, max_export_batch_size=16)
    try:
        end_spans(provider, 16)
        assert processor.force_flush(5000)
        stats = processor.stats()
        assert stats.exported == 16
        assert stats.dropped_total == 0
        assert len({span.span_id for span in backend.accepted_spans()}) == 16
        assert any(record.status == 413 for record in backend.requests)
    finally:
        processor.shutdown(timeout_millis=500)


def _encoded_size_probe(backend: FakeOTLPBackend) -> bytes:
    processor, provider = _pipeline(backend.endpoint, max_export_batch_size=1)
    end_spans(provider, 1)
    processor.force_flush(2000)
    processor.shutdown(timeout_millis=500)
    return backend.requests[-1].body


def test_new_spans_wait_in_the_queue_while_a_batch_is_retried(backend) -> None:
    backend.mode = Mode.HANG
    processor, provider = _pipeline(backend.endpoint)
    try:
        for _ in range(3):
            end_spans(provider, 10)
            processor.force_flush(700)
        stats = processor.stats()
        # One failed batch goes out again and again (in flight or waiting to retry),
        # oldest first; the rest wait their turn in the queue.
        assert stats.pending - stats.queue_depth == 10
        assert stats.queue_depth == 20
        assert stats.retried >= 10
        assert stats.dropped_total == 0
        assert _settled(processor)
    finally:
        processor.shutdown(timeout_millis=300)


def test_a_batch_larger_than_the_retry_buffer_is_dropped_and_counted(backend) -> None:
    backend.mode = Mode.HANG
    processor, provider = _pipeline(backend.endpoint, retry_buffer_size=5)
    try:
        end_spans(provider, 10)
        assert processor.force_flush(1500) is False
        stats = processor.stats()
        assert stats.dropped == {"retry_buffer_full": 10}
        assert stats.retrying == 0
        assert _settled(processor)
    finally:
        processor.shutdown(timeout_millis=300)


def test_a_transient_failure_gives_up_after_max_attempts() -> None:
    from opentelemetry.sdk.trace.export import SpanExportResult

    exporter = RecordingExporter(result=SpanExportResult.FAILURE)  # opaque: assumed transient
    from otel_nonblocking import DeadlineSpanExporter

    deadline = DeadlineSpanExporter(exporter, timeout_millis=1000, failure_threshold=100)
    processor = NonBlockingSpanProcessor(
        deadline, max_export_attempts=3, schedule_delay_millis=10, max_export_batch_size=5
    )
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    try:
        end_spans(provider, 5)
        assert processor.force_flush(3000) is False
        stats = processor.stats()
        assert exporter.calls == 3
        assert stats.dropped == {"backend_unavailable": 5}  # an outage, not a rejection
        assert stats.retried == 10
    finally:
        processor.shutdown(timeout_millis=300)


def test_a_burst_of_10000_spans_with_default_settings_loses_nothing(backend) -> None:
    processor = NonBlockingSpanProcessor(otlp_span_exporter(backend.endpoint, timeout=2))
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    try:
        end_spans(provider, 10_000)
        assert processor.force_flush(20_000)
        stats = processor.stats()
        assert stats.exported == 10_000
        assert stats.dropped_total == 0
        assert backend.wait_for_spans(10_000, timeout=5, accepted=True)
    finally:
        processor.shutdown(timeout_millis=500)


def test_zero_retry_buffer_turns_retries_off(backend) -> None:
    backend.mode = Mode.UNAVAILABLE
    backend.retry_after = None
    processor, provider = _pipeline(backend.endpoint, retry_buffer_size=0)
    try:
        end_spans(provider, 10)
        assert processor.force_flush(3000) is False
        # SDK 1.45 gives up on the 503 at once; 1.33 retries it in its own loop until
        # the deadline. Either way the batch is dropped, not kept.
        assert dict(processor.stats().dropped) in ({"http_503": 10}, {"export_timeout": 10})
    finally:
        processor.shutdown(timeout_millis=300)
