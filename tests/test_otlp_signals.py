"""otlp_log_exporter() and otlp_metric_exporter(): the SDK's OTLP/HTTP exporters behind the
deadline, configured from the signal's variables, against the fake backend's faults."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from opentelemetry._logs import LogRecord
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    InMemoryMetricReader,
    MetricsData,
)
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation

from otel_nonblocking import (
    ConfigurationError,
    DeadlineLogExporter,
    DeadlineMetricExporter,
    ExportOutcome,
    otlp_log_exporter,
    otlp_metric_exporter,
)
from otel_nonblocking._compat_sdk import LogExporterBase, LogExportResult
from otel_nonblocking._session import InterruptibleSession, find_session
from otel_nonblocking.testing import FakeOTLPBackend, Mode, refused_endpoint

_SIGNAL_VARS = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_COMPRESSION",
    *(
        f"OTEL_EXPORTER_OTLP_{signal}_{what}"
        for signal in ("TRACES", "LOGS", "METRICS")
        for what in ("ENDPOINT", "HEADERS", "TIMEOUT", "COMPRESSION")
    ),
    "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
    "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION",
)


@pytest.fixture(autouse=True)
def _no_otlp_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in _SIGNAL_VARS:
        monkeypatch.delenv(var, raising=False)


# --- real log records and metrics, made by the SDK ---------------------------------------


class _Collect(LogExporterBase):  # type: ignore[misc]
    def __init__(self) -> None:
        self.records: list[Any] = []

    def export(self, batch: Sequence[Any]) -> Any:
        self.records.extend(batch)
        return LogExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _record(body: str, provider: LoggerProvider) -> Any:
    try:  # newer SDKs take the API's record and hand exporters a ReadableLogRecord
        from opentelemetry.sdk._logs import ReadableLogRecord  # noqa: F401
    except ImportError:  # SDK 1.33 takes its own record, which carries the resource
        from opentelemetry._logs import SeverityNumber
        from opentelemetry.sdk._logs import LogRecord as SDKLogRecord
        from opentelemetry.trace import TraceFlags

        return SDKLogRecord(
            body=body,
            resource=provider.resource,
            trace_id=0,
            span_id=0,
            trace_flags=TraceFlags(0),
            severity_number=SeverityNumber.WARN,
        )
    return LogRecord(body=body)


def log_batch(*bodies: str) -> list[Any]:
    """What the SDK's log processors hand an exporter for log records with ``bodies``
    (``ReadableLogRecord`` in newer releases, ``LogData`` in 1.33)."""
    collect = _Collect()
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(collect))
    logger = provider.get_logger("test_otlp_signals")
    for body in bodies:
        logger.emit(_record(body, provider))
    provider.shutdown()
    return collect.records


def metrics_data(*names: str) -> MetricsData:
    """One collection of a counter per name (cumulative unless the reader says otherwise)."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    meter = provider.get_meter("test_otlp_signals")
    for name in names:
        meter.create_counter(name).add(1)
    data = reader.get_metrics_data()
    provider.shutdown()
    assert data is not None
    return data


def _export_logs(exporter: Any) -> Any:
    return exporter.export(log_batch("hello"))


def _export_metrics(exporter: Any) -> Any:
    return exporter.export(metrics_data("requests"))


# signal -> (factory, endpoint of the backend, export one batch, what the backend received)
SIGNALS: dict[str, tuple[Callable[..., Any], str, Callable[[Any], Any], str]] = {
    "logs": (otlp_log_exporter, "logs_endpoint", _export_logs, "log_bodies"),
    "metrics": (otlp_metric_exporter, "metrics_endpoint", _export_metrics, "metric_names"),
}


@pytest.fixture
def backend() -> Iterator[FakeOTLPBackend]:
    with FakeOTLPBackend(drip_interval=0.2, retry_after=1) as fake:
        yield fake


# --- delivery ---------------------------------------------------------------------------


@pytest.mark.parametrize("compression", [None, "gzip"])
@pytest.mark.parametrize("signal", SIGNALS)
def test_delivers_to_the_signals_path(
    backend: FakeOTLPBackend, signal: str, compression: str | None
) -> None:
    factory, endpoint, export, received = SIGNALS[signal]
    exporter = factory(getattr(backend, endpoint), timeout=2, compression=compression)
    try:
        assert export(exporter).name == "SUCCESS"
    finally:
        exporter.shutdown(timeout_millis=500)
    assert getattr(backend, received)(accepted=True) == (
        ["hello"] if signal == "logs" else ["requests"]
    )
    (request,) = backend.requests
    assert request.headers.get("content-encoding") == compression
    assert exporter.stats().outcomes == {"success": 1}


def test_the_factories_build_the_deadline_doors() -> None:
    logs = otlp_log_exporter("http://127.0.0.1:9/v1/logs", timeout=1.5)
    metrics = otlp_metric_exporter("http://127.0.0.1:9/v1/metrics", timeout=0.7)
    try:
        assert isinstance(logs, DeadlineLogExporter)
        assert isinstance(metrics, DeadlineMetricExporter)
        assert logs.timeout_seconds == 1.5
        assert metrics.timeout_seconds == 0.7
        # The deadline can cut their connections: it finds our session inside each.
        for door in (logs, metrics):
            assert isinstance(find_session(door.inner), InterruptibleSession)
    finally:
        logs.shutdown(timeout_millis=200)
        metrics.shutdown(timeout_millis=200)


# --- faults: every export returns within its deadline + 0.5 s ----------------------------


@pytest.mark.parametrize("mode", ["hang", "drip", "unavailable", "refused"])
@pytest.mark.parametrize("signal", SIGNALS)
def test_a_faulty_backend_costs_at_most_the_deadline(
    backend: FakeOTLPBackend, signal: str, mode: str
) -> None:
    factory, endpoint, export, _ = SIGNALS[signal]
    if mode == "refused":
        url = refused_endpoint(f"/v1/{signal}")
    else:
        backend.mode = Mode(mode)
        url = getattr(backend, endpoint)
    exporter = factory(url, timeout=0.5)
    try:
        started = time.monotonic()
        result = export(exporter)
        elapsed = time.monotonic() - started
        assert result.name == "FAILURE"
        assert elapsed < 0.5 + 0.5
        report = exporter.stats().outcomes
        assert set(report) <= {"export_timeout", "export_failed"}
        if mode == "unavailable":  # what the backend said reaches the caller
            batch = log_batch("again") if signal == "logs" else [metrics_data("again")]
            again = exporter.export_report(batch)
            assert (again.status, again.retry_after, again.transient) == (503, 1.0, True)
    finally:
        started = time.monotonic()
        exporter.shutdown(timeout_millis=500)
        assert time.monotonic() - started < 0.5 + 0.5


@pytest.mark.parametrize("signal", SIGNALS)
def test_a_hung_export_is_reported_as_a_transient_timeout(
    backend: FakeOTLPBackend, signal: str
) -> None:
    factory, endpoint, _, _ = SIGNALS[signal]
    backend.mode = Mode.HANG
    exporter = factory(getattr(backend, endpoint), timeout=0.3)
    batch = log_batch("x") if signal == "logs" else [metrics_data("x")]
    try:
        report = exporter.export_report(batch)
        assert report.outcome is ExportOutcome.TIMEOUT
        assert report.transient
    finally:
        exporter.shutdown(timeout_millis=300)


# --- configuration from the signal's variables ---------------------------------------------


@pytest.mark.parametrize("signal", SIGNALS)
def test_the_signals_own_endpoint_variable_wins(
    backend: FakeOTLPBackend, signal: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    factory, endpoint, export, received = SIGNALS[signal]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", refused_endpoint("/"))
    monkeypatch.setenv(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT", getattr(backend, endpoint))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", refused_endpoint())
    exporter = factory(timeout=2)
    try:
        assert export(exporter).name == "SUCCESS"
    finally:
        exporter.shutdown(timeout_millis=500)
    assert getattr(backend, received)()


@pytest.mark.parametrize("signal", SIGNALS)
def test_the_shared_endpoint_gets_the_signals_path(
    backend: FakeOTLPBackend, signal: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    factory, _, export, _ = SIGNALS[signal]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", backend.base_url + "/")
    exporter = factory(timeout=2)
    try:
        assert export(exporter).name == "SUCCESS"
    finally:
        exporter.shutdown(timeout_millis=500)
    assert [r.path for r in backend.requests] == [f"/v1/{signal}"]


@pytest.mark.parametrize("signal", SIGNALS)
def test_the_signals_headers_timeout_and_compression_variables_apply(
    backend: FakeOTLPBackend, signal: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    factory, endpoint, export, _ = SIGNALS[signal]
    own = f"OTEL_EXPORTER_OTLP_{signal.upper()}"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-shared=1")
    monkeypatch.setenv(f"{own}_HEADERS", "x-signal=2")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "9")
    monkeypatch.setenv(f"{own}_TIMEOUT", "1.25")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "deflate")
    monkeypatch.setenv(f"{own}_COMPRESSION", "gzip")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "7")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-traces=3")
    exporter = factory(getattr(backend, endpoint))
    try:
        assert exporter.timeout_seconds == 1.25
        assert export(exporter).name == "SUCCESS"
    finally:
        exporter.shutdown(timeout_millis=500)
    (request,) = backend.requests
    assert request.headers.get("x-signal") == "2"
    assert "x-shared" not in request.headers  # the first set variable is the one read
    assert "x-traces" not in request.headers
    assert request.headers.get("content-encoding") == "gzip"


@pytest.mark.parametrize("signal", SIGNALS)
def test_the_shared_timeout_and_compression_variables_are_the_fallback(
    signal: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    factory = SIGNALS[signal][0]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "3")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "7")
    exporter = factory(f"http://127.0.0.1:9/v1/{signal}")
    try:
        assert exporter.timeout_seconds == 3
    finally:
        exporter.shutdown(timeout_millis=200)


@pytest.mark.parametrize("signal", SIGNALS)
def test_a_bad_signal_variable_warns_naming_it_and_falls_back(
    signal: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    factory = SIGNALS[signal][0]
    secret = "s3cr3t-value"  # noqa: S105 - a value that must never be shown
    var = f"OTEL_EXPORTER_OTLP_{signal.upper()}_TIMEOUT"
    monkeypatch.setenv(var, secret)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "4")
    monkeypatch.setenv(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT", f"ftp://{secret}")
    caplog.set_level(logging.WARNING, logger="otel_nonblocking")
    exporter = factory()
    try:
        assert exporter.timeout_seconds == 4
    finally:
        exporter.shutdown(timeout_millis=200)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("otel_nonblocking")]
    assert any(var in line for line in lines)
    assert any(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT" in line for line in lines)
    assert not any(secret in line for line in lines)


@pytest.mark.parametrize("signal", SIGNALS)
def test_bad_arguments_raise_configuration_error_without_the_secret(signal: str) -> None:
    factory = SIGNALS[signal][0]
    with pytest.raises(ConfigurationError) as bad_url:
        factory("ftp://user:hunter2@127.0.0.1/v1/x")
    assert "hunter2" not in str(bad_url.value)
    with pytest.raises(ConfigurationError) as bad_header:
        factory("http://127.0.0.1:9/v1/x", headers={"x-key": "hunter2\r\nevil"})
    assert "hunter2" not in str(bad_header.value)
    with pytest.raises(ConfigurationError):
        factory("http://127.0.0.1:9/v1/x", timeout=-1)
    with pytest.raises(ConfigurationError):
        factory("http://127.0.0.1:9/v1/x", compression="zip")


# --- metrics: temporality and aggregation, as the SDK exporter reads them --------------------


def test_metrics_temporality_and_histogram_aggregation_come_from_the_sdks_variables(
    backend: FakeOTLPBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta")
    monkeypatch.setenv(
        "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION",
        "base2_exponential_bucket_histogram",
    )
    exporter = otlp_metric_exporter(backend.metrics_endpoint, timeout=2)
    assert exporter.preferred_temporality is not None
    assert exporter.preferred_temporality[Counter] is AggregationTemporality.DELTA
    assert exporter.preferred_aggregation is not None
    assert isinstance(
        exporter.preferred_aggregation[Histogram], ExponentialBucketHistogramAggregation
    )
    # A reader over the wrapper collects delta sums and exponential histograms.
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=60_000)
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    meter = provider.get_meter("temporality")
    meter.create_counter("c").add(1)
    meter.create_histogram("h").record(1.5)
    try:
        assert reader.force_flush(timeout_millis=5000)
    finally:
        provider.shutdown(timeout_millis=2000)
    metrics = {m.name: m for m in backend.metrics(accepted=True)}
    assert metrics["c"].sum.aggregation_temporality == AggregationTemporality.DELTA.value
    assert metrics["h"].WhichOneof("data") == "exponential_histogram"


def test_metrics_default_to_cumulative_and_explicit_histograms(backend: FakeOTLPBackend) -> None:
    exporter = otlp_metric_exporter(backend.metrics_endpoint, timeout=2)
    try:
        temporality = exporter.preferred_temporality or {}
        assert temporality.get(Counter, AggregationTemporality.CUMULATIVE) is (
            AggregationTemporality.CUMULATIVE
        )
    finally:
        exporter.shutdown(timeout_millis=500)
