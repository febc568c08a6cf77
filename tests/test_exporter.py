"""DeadlineSpanExporter: returns within its deadline, never piles up threads, breaks the circuit."""

from __future__ import annotations

import threading
import time

import pytest
from opentelemetry.sdk.trace.export import SpanExportResult

from otel_nonblocking import ConfigurationError, DeadlineSpanExporter, ExportOutcome
from tests.conftest import BlockingExporter, RaisingExporter, RecordingExporter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _threads_named(prefix: str) -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith(prefix))


def test_export_returns_within_deadline_when_the_inner_exporter_never_returns() -> None:
    inner = BlockingExporter()
    exporter = DeadlineSpanExporter(inner, timeout_millis=200)
    started = time.monotonic()
    assert exporter.export([]) is SpanExportResult.FAILURE
    assert time.monotonic() - started < 0.2 + 0.3
    assert exporter.stats().outcomes == {"export_timeout": 1}
    inner.release.set()


def test_at_most_one_abandoned_attempt_and_later_exports_fail_fast() -> None:
    inner = BlockingExporter()
    exporter = DeadlineSpanExporter(inner, timeout_millis=100, failure_threshold=100)
    before = _threads_named("otel-nonblocking-export")
    assert exporter.export_outcome([]) is ExportOutcome.TIMEOUT
    for _ in range(20):
        started = time.monotonic()
        assert exporter.export_outcome([]) is ExportOutcome.BUSY
        assert time.monotonic() - started < 0.1 + 0.3
    assert _threads_named("otel-nonblocking-export") - before <= 1
    assert exporter.stats().attempt_outstanding
    inner.release.set()
    deadline = time.monotonic() + 5
    while exporter.stats().attempt_outstanding and time.monotonic() < deadline:
        time.sleep(0.01)
    assert exporter.export_outcome([]) is ExportOutcome.SUCCESS


@pytest.mark.parametrize(
    ("inner", "detail"),
    [(RaisingExporter(), "RuntimeError"), (RecordingExporter(result=42), "returned int")],
)
def test_raising_or_garbage_inner_exporter_is_a_counted_failure(inner, detail, caplog) -> None:
    exporter = DeadlineSpanExporter(inner, timeout_millis=1000)
    assert exporter.export([]) is SpanExportResult.FAILURE
    assert exporter.stats().outcomes == {"export_failed": 1}
    assert any(detail in r.getMessage() for r in caplog.records)


def test_breaker_opens_after_repeated_failures_and_fails_fast() -> None:
    clock = FakeClock()
    inner = RecordingExporter(result=SpanExportResult.FAILURE)
    exporter = DeadlineSpanExporter(
        inner, timeout_millis=1000, failure_threshold=3, breaker_backoff_millis=5000, clock=clock
    )
    for _ in range(3):
        assert exporter.export_outcome([]) is ExportOutcome.FAILED
    assert exporter.stats().breaker_state == "open"
    for _ in range(10):
        assert exporter.export_outcome([]) is ExportOutcome.CIRCUIT_OPEN
    assert inner.calls == 3


def test_breaker_half_open_probe_closes_it_when_the_backend_recovers() -> None:
    clock = FakeClock()
    inner = RecordingExporter(result=SpanExportResult.FAILURE)
    exporter = DeadlineSpanExporter(
        inner, timeout_millis=1000, failure_threshold=2, breaker_backoff_millis=5000, clock=clock
    )
    exporter.export([])
    exporter.export([])
    assert exporter.export_outcome([]) is ExportOutcome.CIRCUIT_OPEN
    clock.now += 5.0
    # A failed probe re-opens for at most one back-off again (never a doubled one).
    assert exporter.export_outcome([]) is ExportOutcome.FAILED
    assert 2.5 <= exporter.available_in() <= 5.0
    assert exporter.export_outcome([]) is ExportOutcome.CIRCUIT_OPEN
    clock.now += 5.0
    inner.result = SpanExportResult.SUCCESS
    assert exporter.export_outcome([]) is ExportOutcome.SUCCESS
    assert exporter.stats().breaker_state == "closed"
    assert exporter.export_outcome([]) is ExportOutcome.SUCCESS


def test_timeout_argument_caps_the_deadline_per_call() -> None:
    inner = BlockingExporter()
    exporter = DeadlineSpanExporter(inner, timeout_millis=10_000)
    started = time.monotonic()
    assert exporter.export_outcome([], timeout=0.1) is ExportOutcome.TIMEOUT
    assert time.monotonic() - started < 0.1 + 0.3
    inner.release.set()


def test_shutdown_is_bounded_even_if_inner_shutdown_hangs() -> None:
    inner = BlockingExporter(block_shutdown=True)
    exporter = DeadlineSpanExporter(inner, timeout_millis=5000)
    started = time.monotonic()
    exporter.shutdown(timeout_millis=200)
    assert time.monotonic() - started < 0.2 + 0.3
    assert exporter.export_outcome([]) is ExportOutcome.SHUTDOWN
    exporter.shutdown(timeout_millis=200)  # idempotent
    inner.release.set()


def test_force_flush_is_bounded() -> None:
    class SlowFlush(RecordingExporter):
        def force_flush(self, timeout_millis: int = 30000) -> bool:
            time.sleep(2)
            return True

    exporter = DeadlineSpanExporter(SlowFlush(), timeout_millis=5000)
    started = time.monotonic()
    assert exporter.force_flush(timeout_millis=100) is False
    assert time.monotonic() - started < 0.1 + 0.3


@pytest.mark.parametrize("timeout_millis", [1e30, float("inf"), float("nan"), -5])
def test_force_flush_takes_any_budget_without_raising(timeout_millis) -> None:
    # The SDK passes whatever it was given: a wait of 1e27 s or inf raised OverflowError
    # from the caller's force_flush; every wait is now bounded by _deadline.wait_seconds.
    exporter = DeadlineSpanExporter(RecordingExporter(), timeout_millis=1000)
    try:
        result = exporter.force_flush(timeout_millis=timeout_millis)
        if timeout_millis > 0:
            assert result is True
        else:  # no time to wait: True only if the flush won the race to the check
            assert isinstance(result, bool)
    finally:
        exporter.shutdown(timeout_millis=500)


def test_repr_names_no_inner_details() -> None:
    class Secretive(RecordingExporter):
        def __repr__(self) -> str:
            return "Secretive(headers={'authorization': 'Bearer s3cr3t'})"

    exporter = DeadlineSpanExporter(Secretive(), timeout_millis=1500)
    assert "s3cr3t" not in repr(exporter)
    assert repr(exporter) == "DeadlineSpanExporter(Secretive, timeout_millis=1500)"


@pytest.mark.parametrize(
    "kwargs",
    [{"timeout_millis": 0}, {"timeout_millis": float("nan")}, {"failure_threshold": 0}],
)
def test_bad_explicit_arguments_raise(kwargs) -> None:
    with pytest.raises(ConfigurationError):
        DeadlineSpanExporter(RecordingExporter(), **kwargs)


@pytest.mark.parametrize(
    ("timeout_millis", "message"),
    [
        (0, "timeout_millis must be greater than 0, got 0"),
        (10**9, "timeout_millis must be at most a day (86400 seconds), got 1000000000"),
        ("2000", "timeout_millis must be a finite number of milliseconds, got str"),
    ],
)
def test_a_bad_timeout_millis_is_named_as_written(timeout_millis, message) -> None:
    with pytest.raises(ConfigurationError) as caught:
        DeadlineSpanExporter(RecordingExporter(), timeout_millis=timeout_millis)
    assert str(caught.value) == message


def test_listeners_see_every_export_on_the_exporting_thread() -> None:
    seen: list[tuple[ExportOutcome, int, str]] = []
    exporter = DeadlineSpanExporter(RecordingExporter(), timeout_millis=1000)

    def listener(outcome: ExportOutcome, count: int, seconds: float) -> None:
        assert seconds >= 0
        seen.append((outcome, count, threading.current_thread().name))

    def broken(outcome: ExportOutcome, count: int, seconds: float) -> None:
        raise RuntimeError("listener bug")

    exporter.add_listener(broken)
    exporter.add_listener(listener)
    assert exporter.export_outcome([1, 2, 3]) is ExportOutcome.SUCCESS  # type: ignore[list-item]
    exporter.remove_listener(listener)
    exporter.export_outcome([])
    assert seen == [(ExportOutcome.SUCCESS, 3, threading.current_thread().name)]


def test_retry_after_replaces_the_breakers_backoff() -> None:
    from otel_nonblocking._breaker import CircuitBreaker

    clock = FakeClock()
    breaker = CircuitBreaker(
        failure_threshold=1, backoff_seconds=5.0, clock=clock, jitter=lambda: 1.0
    )
    breaker.record_failure()
    assert breaker.retry_in() == 5.0
    clock.now += 5.0
    assert breaker.allow()  # the half-open probe
    breaker.record_failure(retry_after=1.0)  # the backend asked for one second
    assert breaker.retry_in() == 1.0
    clock.now += 1.0
    assert breaker.allow()
    breaker.record_failure()  # no Retry-After: the breaker's own back-off again
    assert breaker.retry_in() == 5.0
    clock.now += 5.0
    assert breaker.allow()
    breaker.record_failure(retry_after=3600.0)  # capped
    assert breaker.retry_in() == 60.0


def test_retry_after_seen_before_a_timeout_sets_the_breakers_backoff() -> None:
    # The SDK's exporter answers a 503 by sleeping and trying again inside one export; when
    # that sleep runs into the deadline the export times out, and the backend's
    # Retry-After, not the breaker's own back-off, decides when to come back.
    from otel_nonblocking._session import InterruptibleSession
    from otel_nonblocking.testing import FakeOTLPBackend, Mode

    release = threading.Event()

    class SleepsAfterA503:
        def __init__(self, endpoint: str) -> None:
            self._session = InterruptibleSession()
            self._endpoint = endpoint

        def export(self, spans: object) -> SpanExportResult:
            response = self._session.post(self._endpoint, data=b"", timeout=2)
            assert response.status_code == 503
            release.wait(10)  # the SDK's back-off sleep, longer than the deadline
            return SpanExportResult.FAILURE

        def shutdown(self) -> None:
            self._session.close()

    with FakeOTLPBackend(Mode.UNAVAILABLE, retry_after=1) as backend:
        inner = SleepsAfterA503(backend.endpoint)
        exporter = DeadlineSpanExporter(
            inner,  # type: ignore[arg-type]
            timeout_millis=500,
            failure_threshold=1,
            breaker_backoff_millis=30_000,
        )
        try:
            assert exporter.export_outcome([]) is ExportOutcome.TIMEOUT
            assert 0.0 < exporter.available_in() <= 1.0  # not 30 s
        finally:
            release.set()
            exporter.shutdown(timeout_millis=2000)
            inner.shutdown()
