"""The opentelemetry-instrument configurator honours the usual per-signal variables:
metric temporality and histogram aggregation (over http/protobuf and gRPC, checked in the
requests the collector decodes), ``OTEL_METRIC_EXPORT_INTERVAL`` /
``OTEL_METRIC_EXPORT_TIMEOUT``, and ``OTEL_BLRP_*``."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from opentelemetry import metrics as metrics_api
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality

import otel_nonblocking as nb
from otel_nonblocking import _state
from otel_nonblocking._distro import OtelNonblockingConfigurator
from otel_nonblocking.testing import FakeGrpcBackend, FakeOTLPBackend, Mode

BUDGET_MARGIN = 0.5
DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE


@pytest.fixture(autouse=True)
def _metrics_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    monkeypatch.setenv("OTEL_LOGS_EXPORTER", "none")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_NONBLOCKING_SELF_METRICS", "false")


def _handle() -> nb.TelemetryHandle:
    [handle] = [h for h in _state.installed_handles() if isinstance(h, nb.TelemetryHandle)]
    return handle


def _backend(protocol: str, mode: Mode = Mode.OK) -> FakeOTLPBackend | FakeGrpcBackend:
    return FakeGrpcBackend(mode) if protocol == "grpc" else FakeOTLPBackend(mode)


def _configure(
    monkeypatch: pytest.MonkeyPatch,
    backend: FakeOTLPBackend | FakeGrpcBackend,
    protocol: str,
) -> nb.TelemetryHandle:
    base = backend.endpoint if isinstance(backend, FakeGrpcBackend) else backend.base_url
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", base)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    OtelNonblockingConfigurator().configure()
    return _handle()


def _metrics(backend: FakeOTLPBackend | FakeGrpcBackend) -> dict[str, Any]:
    """The metrics of the accepted requests, by name (the last one of each name)."""
    if isinstance(backend, FakeOTLPBackend):
        return {m.name: m for m in backend.metrics(accepted=True)}
    return {
        metric.name: metric
        for request in backend.requests
        if request.signal == "metrics" and request.accepted
        for resource in request.decoded.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }


def _metric_requests(backend: FakeOTLPBackend | FakeGrpcBackend) -> int:
    if isinstance(backend, FakeOTLPBackend):
        return sum(1 for r in backend.requests if r.path.endswith("/v1/metrics"))
    return sum(1 for r in backend.requests if r.signal == "metrics")


def _temporality(metric: Any) -> int:
    kind = metric.WhichOneof("data")
    return int(getattr(metric, kind).aggregation_temporality)


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
@pytest.mark.parametrize(
    ("preference", "counter", "up_down", "histogram", "observable"),
    [
        pytest.param(None, CUMULATIVE, CUMULATIVE, CUMULATIVE, CUMULATIVE, id="unset"),
        pytest.param("cumulative", CUMULATIVE, CUMULATIVE, CUMULATIVE, CUMULATIVE, id="cumulative"),
        pytest.param("delta", DELTA, CUMULATIVE, DELTA, DELTA, id="delta"),
        pytest.param("lowmemory", DELTA, CUMULATIVE, DELTA, CUMULATIVE, id="lowmemory"),
    ],
)
@pytest.mark.usefixtures("clean_globals")
def test_temporality_preference_reaches_the_collector(
    monkeypatch: pytest.MonkeyPatch,
    protocol: str,
    preference: str | None,
    counter: int,
    up_down: int,
    histogram: int,
    observable: int,
) -> None:
    if preference is not None:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", preference)
    with _backend(protocol) as backend:
        handle = _configure(monkeypatch, backend, protocol)
        meter = metrics_api.get_meter("tests")
        meter.create_counter("c").add(2)
        meter.create_up_down_counter("ud").add(-1)
        meter.create_histogram("h").record(1.5)
        meter.create_observable_counter("oc", [lambda options: [metrics_api.Observation(5)]])
        assert handle.flush(5).ok
        received = _metrics(backend)
    assert _temporality(received["c"]) == counter
    assert _temporality(received["ud"]) == up_down
    assert _temporality(received["h"]) == histogram
    assert _temporality(received["oc"]) == observable
    assert received["h"].WhichOneof("data") == "histogram"  # explicit buckets by default


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
@pytest.mark.usefixtures("clean_globals")
def test_default_histogram_aggregation_reaches_the_collector(
    monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    monkeypatch.setenv(
        "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION",
        "base2_exponential_bucket_histogram",
    )
    with _backend(protocol) as backend:
        handle = _configure(monkeypatch, backend, protocol)
        metrics_api.get_meter("tests").create_histogram("h").record(1.5)
        assert handle.flush(5).ok
        received = _metrics(backend)
    assert received["h"].WhichOneof("data") == "exponential_histogram"


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
@pytest.mark.usefixtures("clean_globals")
def test_otel_metric_export_interval_sets_the_configured_readers_period(
    monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "100")
    with _backend(protocol) as backend:
        _configure(monkeypatch, backend, protocol)
        metrics_api.get_meter("tests").create_counter("c").add(1)
        deadline = time.monotonic() + 10
        while _metric_requests(backend) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)  # no flush: only the period sends them
        assert _metric_requests(backend) >= 3


@pytest.mark.usefixtures("clean_globals")
def test_otel_metric_export_timeout_bounds_each_export_of_the_configured_reader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_METRIC_EXPORT_TIMEOUT", "300")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "10")  # the exporter's: longer
    with FakeOTLPBackend(Mode.HANG) as backend:
        [reader] = _configure(monkeypatch, backend, "http/protobuf").metric_readers
        metrics_api.get_meter("tests").create_counter("c").add(1)
        started = time.monotonic()
        assert reader.force_flush(5000) is False
        assert time.monotonic() - started < 0.3 + BUDGET_MARGIN
        assert reader.stats().exports_timed_out == 1


@pytest.mark.usefixtures("clean_globals")
def test_otel_blrp_variables_set_the_configured_log_record_processor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    monkeypatch.setenv("OTEL_LOGS_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED", "true")
    monkeypatch.setenv("OTEL_BLRP_MAX_QUEUE_SIZE", "300")
    monkeypatch.setenv("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "4")
    monkeypatch.setenv("OTEL_BLRP_SCHEDULE_DELAY", "250")
    monkeypatch.setenv("OTEL_BLRP_EXPORT_TIMEOUT", "4000")
    with FakeOTLPBackend() as backend:
        [processor] = _configure(monkeypatch, backend, "http/protobuf").log_processors
        settings = processor._settings
        assert settings.max_queue_size == 300
        assert settings.max_export_batch_size == 4
        assert settings.schedule_delay == 0.25
        assert settings.export_timeout == 4.0
        app = logging.getLogger("tests.app")
        for i in range(10):
            app.warning("record %d", i)
        assert nb.flush(5).ok
        sizes = [len(r.log_records) for r in backend.requests if r.path.endswith("/v1/logs")]
        assert sum(sizes) == 10
        assert max(sizes) <= 4  # OTEL_BLRP_MAX_EXPORT_BATCH_SIZE used
