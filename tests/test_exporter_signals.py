"""The deadline core for every signal: DeadlineLogExporter, DeadlineMetricExporter, the core.

Each door over a simple exporter blocked on an Event returns within its deadline, counts
its outcomes, breaks the circuit, and keeps at most one abandoned attempt.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation
from opentelemetry.sdk.trace.export import SpanExportResult

from otel_nonblocking import ConfigurationError, ExportOutcome
from otel_nonblocking._compat_sdk import LogExporterBase, LogExportResult
from otel_nonblocking._exporter import (
    DeadlineExporter,
    DeadlineLogExporter,
    DeadlineMetricExporter,
)

# --- simple blocking exporters, one per signal -----------------------------------------


class BlockingLogExporter(LogExporterBase):  # type: ignore[misc]
    """Blocks in export until ``release`` is set; then answers ``result``."""

    def __init__(self, result: Any = None) -> None:
        self.release = threading.Event()
        self.block = True
        self.result = LogExportResult.SUCCESS if result is None else result
        self.calls = 0
        self.batches: list[list[Any]] = []

    def export(self, batch: Sequence[Any]) -> Any:
        self.calls += 1
        self.batches.append(list(batch))
        if self.block:
            self.release.wait(30)
        return self.result

    def shutdown(self) -> None:
        self.release.set()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class BlockingMetricExporter(MetricExporter):
    """Blocks in export until ``release`` is set; records the timeout it was given."""

    def __init__(self, result: MetricExportResult = MetricExportResult.SUCCESS, **kwargs: Any):
        super().__init__(**kwargs)
        self.release = threading.Event()
        self.block = True
        self.result = result
        self.calls = 0
        self.exported: list[MetricsData] = []
        self.timeouts: list[float] = []

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        self.calls += 1
        self.exported.append(metrics_data)
        self.timeouts.append(timeout_millis)
        if self.block:
            self.release.wait(30)
        return self.result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.release.set()


def _log_door(inner: BlockingLogExporter, **kwargs: Any) -> DeadlineLogExporter:
    return DeadlineLogExporter(inner, **kwargs)


def _metric_door(inner: BlockingMetricExporter, **kwargs: Any) -> DeadlineMetricExporter:
    return DeadlineMetricExporter(inner, **kwargs)


def _empty_metrics() -> MetricsData:
    return MetricsData(resource_metrics=[])


# Each case: (make the inner exporter, make the door, one batch, what export() says on success)
SIGNALS = {
    "logs": (BlockingLogExporter, _log_door, lambda: ["record"]),
    "metrics": (BlockingMetricExporter, _metric_door, lambda: [_empty_metrics()]),
}


def _export(door: Any, batch: list[Any]) -> Any:
    if isinstance(door, DeadlineMetricExporter):
        return door.export(batch[0])
    return door.export(batch)


def _wait_idle(door: Any, limit: float = 5.0) -> None:
    end = time.monotonic() + limit
    while door.busy and time.monotonic() < end:
        time.sleep(0.01)
    assert not door.busy


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- what every door does ---------------------------------------------------------------


@pytest.mark.parametrize("signal", SIGNALS)
def test_a_blocked_exporter_returns_within_the_deadline_and_counts(signal: str) -> None:
    make_inner, make_door, batch = SIGNALS[signal]
    inner = make_inner()
    door = make_door(inner, timeout_millis=200)
    started = time.monotonic()
    result = _export(door, batch())
    assert time.monotonic() - started < 0.2 + 0.5
    assert result.name == "FAILURE"
    assert door.stats().outcomes == {"export_timeout": 1}
    inner.release.set()
    _wait_idle(door)
    inner.block = False
    assert _export(door, batch()).name == "SUCCESS"
    assert door.stats().outcomes == {"export_timeout": 1, "success": 1}


@pytest.mark.parametrize("signal", SIGNALS)
def test_at_most_one_abandoned_attempt_later_exports_fail_fast(signal: str) -> None:
    make_inner, make_door, batch = SIGNALS[signal]
    inner = make_inner()
    door = make_door(inner, timeout_millis=100, failure_threshold=100)
    assert door.export_report(batch()).outcome is ExportOutcome.TIMEOUT
    for _ in range(5):
        started = time.monotonic()
        assert door.export_report(batch()).outcome is ExportOutcome.BUSY
        assert time.monotonic() - started < 0.1 + 0.5
    assert inner.calls == 1  # the abandoned attempt is the only one that ever ran
    assert door.busy
    assert door.stats().attempt_outstanding
    inner.release.set()
    _wait_idle(door)
    assert door.export_report(batch()).outcome is ExportOutcome.SUCCESS


@pytest.mark.parametrize("signal", SIGNALS)
def test_the_breaker_opens_after_repeated_failures_and_fails_fast(signal: str) -> None:
    make_inner, make_door, batch = SIGNALS[signal]
    inner = make_inner()
    inner.block = False
    inner.result = type(inner.result).FAILURE
    clock = FakeClock()
    door = make_door(
        inner, timeout_millis=1000, failure_threshold=3, breaker_backoff_millis=5000, clock=clock
    )
    for _ in range(3):
        assert door.export_report(batch()).outcome is ExportOutcome.FAILED
    assert door.stats().breaker_state == "open"
    assert door.available_in() > 0
    for _ in range(5):
        assert door.export_report(batch()).outcome is ExportOutcome.CIRCUIT_OPEN
    assert inner.calls == 3
    # A flush's probe goes out at once and closes the breaker once the backend is back.
    inner.result = type(inner.result).SUCCESS
    assert door.export_report(batch(), probe=True).outcome is ExportOutcome.SUCCESS
    assert door.stats().breaker_state == "closed"


@pytest.mark.parametrize("signal", SIGNALS)
def test_a_timed_out_attempt_that_ends_later_resolves(signal: str) -> None:
    make_inner, make_door, batch = SIGNALS[signal]
    inner = make_inner()
    door = make_door(inner, timeout_millis=100)
    report = door.export_report(batch())
    assert report.outcome is ExportOutcome.TIMEOUT
    assert report.transient
    assert report.attempt is not None
    assert door.peek(report.attempt) is None  # still running
    inner.release.set()
    assert door.resolve(report.attempt, 5.0) is True
    assert door.stats().outcomes["late_success"] == 1


@pytest.mark.parametrize("signal", SIGNALS)
def test_shutdown_is_bounded_and_later_exports_say_shutdown(signal: str) -> None:
    make_inner, make_door, batch = SIGNALS[signal]
    inner = make_inner()
    door = make_door(inner, timeout_millis=5000)
    started = time.monotonic()
    door.shutdown(timeout_millis=200)
    assert time.monotonic() - started < 0.2 + 0.5
    assert door.export_report(batch()).outcome is ExportOutcome.SHUTDOWN
    assert door.force_flush(100) is True


@pytest.mark.parametrize("signal", SIGNALS)
def test_a_garbage_result_is_a_permanent_failure(signal: str) -> None:
    make_inner, make_door, batch = SIGNALS[signal]
    inner = make_inner(result=42)
    inner.block = False
    door = make_door(inner, timeout_millis=1000)
    report = door.export_report(batch())
    assert report.outcome is ExportOutcome.FAILED
    assert not report.transient


# --- logs -------------------------------------------------------------------------------


def test_the_log_door_is_the_sdks_log_exporter_and_answers_its_result() -> None:
    inner = BlockingLogExporter()
    inner.block = False
    door = DeadlineLogExporter(inner, timeout_millis=1000)
    assert isinstance(door, LogExporterBase)
    assert door.export(["a", "b"]) is LogExportResult.SUCCESS
    assert inner.batches == [["a", "b"]]
    assert repr(door) == "DeadlineLogExporter(BlockingLogExporter, timeout_millis=1000)"


def test_the_log_door_refuses_a_non_exporter() -> None:
    with pytest.raises(ConfigurationError):
        DeadlineLogExporter(object(), timeout_millis=1000)


# --- metrics ----------------------------------------------------------------------------


def test_the_callers_timeout_millis_wins_when_it_is_shorter() -> None:
    inner = BlockingMetricExporter()
    door = DeadlineMetricExporter(inner, timeout_millis=10_000)
    started = time.monotonic()
    assert door.export(_empty_metrics(), timeout_millis=150) is MetricExportResult.FAILURE
    assert time.monotonic() - started < 0.15 + 0.5
    assert 0 < inner.timeouts[0] <= 150  # the inner exporter is told the time left
    inner.release.set()


def test_the_wrappers_deadline_wins_when_it_is_shorter() -> None:
    inner = BlockingMetricExporter()
    door = DeadlineMetricExporter(inner, timeout_millis=150)
    started = time.monotonic()
    assert door.export(_empty_metrics(), timeout_millis=30_000) is MetricExportResult.FAILURE
    assert time.monotonic() - started < 0.15 + 0.5
    assert 0 < inner.timeouts[0] <= 150
    inner.release.set()


def test_several_metrics_data_go_out_as_one_export() -> None:
    inner = BlockingMetricExporter()
    inner.block = False
    door = DeadlineMetricExporter(inner, timeout_millis=1000)
    first, second = _empty_metrics(), _empty_metrics()
    first.resource_metrics.append("rm1")  # type: ignore[arg-type]
    second.resource_metrics.append("rm2")  # type: ignore[arg-type]
    assert door.export_report([first, second]).outcome is ExportOutcome.SUCCESS
    assert inner.calls == 1
    assert list(inner.exported[0].resource_metrics) == ["rm1", "rm2"]


def test_the_metric_door_forwards_the_inner_exporters_preferences() -> None:
    temporality = {Counter: AggregationTemporality.DELTA}
    aggregation = {Histogram: ExplicitBucketHistogramAggregation(boundaries=[1.0, 2.0])}
    inner = BlockingMetricExporter(
        preferred_temporality=temporality, preferred_aggregation=aggregation
    )
    door = DeadlineMetricExporter(inner, timeout_millis=1000)
    assert door.preferred_temporality == temporality
    assert door.preferred_aggregation == aggregation
    # A reader over the door collects what the inner exporter asked for.
    inner.block = False
    reader = PeriodicExportingMetricReader(door, export_interval_millis=60_000)
    provider = MeterProvider(metric_readers=[reader])
    try:
        meter = provider.get_meter("test")
        meter.create_counter("c").add(1)
        meter.create_histogram("h").record(1.5)
        assert reader.force_flush(timeout_millis=5000)
    finally:
        provider.shutdown(timeout_millis=2000)
    metrics = {
        m.name: m
        for rm in inner.exported[0].resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    assert metrics["c"].data.aggregation_temporality is AggregationTemporality.DELTA
    assert list(metrics["h"].data.data_points[0].explicit_bounds) == [1.0, 2.0]


def test_a_reader_over_a_hung_exporter_shuts_down_within_its_budget() -> None:
    inner = BlockingMetricExporter()
    door = DeadlineMetricExporter(inner, timeout_millis=200)
    reader = PeriodicExportingMetricReader(door, export_interval_millis=60_000)
    provider = MeterProvider(metric_readers=[reader])
    provider.get_meter("test").create_counter("c").add(1)
    started = time.monotonic()
    # The reader's final collect exports into the hung exporter, then shuts it down.
    provider.shutdown(timeout_millis=1000)
    assert time.monotonic() - started < 1.0 + 0.5
    assert inner.calls >= 1
    inner.release.set()


# --- the core alone ---------------------------------------------------------------------


class _Result(enum.Enum):
    SUCCESS = 0
    FAILURE = 1


def test_the_core_knows_nothing_of_the_items_it_exports() -> None:
    seen: list[tuple[list[Any], float]] = []

    def call(batch: list[Any], deadline: Any) -> _Result:
        seen.append((batch, deadline.remaining()))
        return _Result.SUCCESS if batch != ["bad"] else _Result.FAILURE

    core: DeadlineExporter[Any] = DeadlineExporter(
        object(), call, (_Result,), noun="thing", timeout_millis=500
    )
    assert core.export_report([1, 2]).outcome is ExportOutcome.SUCCESS
    assert seen[0][0] == [1, 2]
    assert 0 < seen[0][1] <= 0.5
    assert core.export_report(["bad"]).outcome is ExportOutcome.FAILED
    # A result of another enum with a SUCCESS member is not success: it is a bug.
    other = enum.Enum("Other", "SUCCESS FAILURE")
    wrong: DeadlineExporter[Any] = DeadlineExporter(
        object(), lambda b, d: other.SUCCESS, (_Result,), timeout_millis=500
    )
    report = wrong.export_report([1])
    assert report.outcome is ExportOutcome.FAILED
    assert not report.transient


def test_the_span_door_loads_neither_the_logs_nor_the_metrics_sdk() -> None:
    from tests.test_import_cost import _loaded_after

    loaded = _loaded_after(
        "import sys\nfrom otel_nonblocking._exporter import DeadlineSpanExporter"
    )
    assert (
        sorted(
            m
            for m in loaded
            if m.startswith(("opentelemetry.sdk._logs", "opentelemetry.sdk.metrics"))
        )
        == []
    )
    loaded = _loaded_after("import sys\nfrom otel_nonblocking._exporter import DeadlineLogExporter")
    assert "otel_nonblocking._exporter_logs" in loaded
    assert "otel_nonblocking._exporter_metrics" not in loaded


def test_the_span_doors_peek_is_still_a_static_method() -> None:
    from otel_nonblocking import DeadlineSpanExporter
    from tests.conftest import RecordingExporter

    door = DeadlineSpanExporter(RecordingExporter(), timeout_millis=1000)
    attempt = door._runner.try_submit(lambda: SpanExportResult.SUCCESS)
    assert attempt is not None
    assert attempt.done.wait(5)
    assert DeadlineSpanExporter.peek(attempt) is True
    assert door.peek(attempt) is True


def test_the_log_door_takes_every_log_result_enum_of_the_sdk() -> None:
    # Newer SDKs renamed LogExportResult to LogRecordExportResult and kept the old name:
    # an exporter returning either one's SUCCESS has delivered its batch.
    from otel_nonblocking._compat_sdk import log_export_result_types

    for result_type in log_export_result_types():
        inner = BlockingLogExporter(result=result_type.SUCCESS)
        inner.block = False
        door = DeadlineLogExporter(inner, timeout_millis=1000)
        assert door.export_report(["r"]).outcome is ExportOutcome.SUCCESS, result_type
        assert door.export(["r"]) is LogExportResult.SUCCESS
