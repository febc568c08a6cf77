"""A metric export over the message size limit goes out as parts under it, within its
one deadline: ``_exporter_metrics.split_metrics_data`` and the metric door's sending."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
    MetricsData,
)
from opentelemetry.sdk.resources import Resource

from otel_nonblocking import DeadlineMetricExporter, NonBlockingMetricReader, otlp_metric_exporter
from otel_nonblocking._exporter_metrics import count_data_points, split_metrics_data
from otel_nonblocking.testing import FakeGrpcBackend, FakeOTLPBackend
from tests.test_metrics import Metered

POINTS_EXPORTED = "otel.sdk.exporter.metric_data_point.exported"
PAD = "p" * 40  # makes each data point some 80 bytes on the wire


def _record(provider: MeterProvider, series: int) -> None:
    """Two scopes, three metrics (a sum, a histogram, a gauge-like up-down counter)."""
    orders = provider.get_meter("shop").create_counter("orders")
    latency = provider.get_meter("shop").create_histogram("latency")
    stock = provider.get_meter("warehouse").create_up_down_counter("stock")
    for i in range(series):
        orders.add(1, {"series": f"{i}-{PAD}"})
        stock.add(i, {"series": f"{i}-{PAD}"})
        if i % 10 == 0:
            latency.record(i, {"series": f"{i}-{PAD}"})


def _collected(series: int) -> MetricsData:
    reader = InMemoryMetricReader()
    provider = MeterProvider(
        metric_readers=[reader], resource=Resource.create({"service.name": "split"})
    )
    _record(provider, series)
    data = reader.get_metrics_data()
    provider.shutdown()
    assert data is not None
    return data


def _points(data: MetricsData) -> Counter[tuple[str, str, str, str]]:
    """Each data point as (resource, scope, metric, series), counted."""
    return Counter(
        (
            str(rm.resource.attributes.get("service.name")),
            sm.scope.name,
            metric.name,
            str(dict(point.attributes)["series"]),
        )
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        for point in metric.data.data_points
    )


def _received(backend_points: list[Any]) -> Counter[tuple[str, str]]:
    """Data points of decoded OTLP metric requests, as (metric, series), counted."""
    found: Counter[tuple[str, str]] = Counter()
    for request in backend_points:
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    kind = metric.WhichOneof("data")
                    for point in getattr(metric, kind).data_points:
                        attributes = {a.key: a.value.string_value for a in point.attributes}
                        found[(metric.name, attributes["series"])] += 1
    return found


def _expected(series: int) -> Counter[tuple[str, str]]:
    want: Counter[tuple[str, str]] = Counter()
    for i in range(series):
        want[("orders", f"{i}-{PAD}")] += 1
        want[("stock", f"{i}-{PAD}")] += 1
        if i % 10 == 0:
            want[("latency", f"{i}-{PAD}")] += 1
    return want


def test_a_split_shares_out_every_data_point_once_and_keeps_resources_scopes_and_metrics() -> None:
    data = _collected(101)
    first, second = split_metrics_data(data) or pytest.fail("not split")
    total = count_data_points([data])
    assert {count_data_points([first]), count_data_points([second])} == {
        total // 2,
        total - total // 2,
    }
    assert _points(first) + _points(second) == _points(data)
    assert not (_points(first) & _points(second))
    for part in (first, second):  # metric fields (temporality, monotonic) kept
        for rm in part.resource_metrics:
            assert rm.resource is data.resource_metrics[0].resource
            for sm in rm.scope_metrics:
                assert sm.metrics  # no empty scope is sent
    one_point = _collected(1)
    halves = split_metrics_data(one_point)
    assert halves is not None  # "orders" and "stock": two points
    assert split_metrics_data(halves[0]) is None  # one point cannot be split


class _TooLargeError(Exception):
    too_large = True


class _LimitedExporter(MetricExporter):
    """Refuses a request of more than ``limit`` data points (as the OTLP/gRPC client does
    over its message size limit); FAILURE for the ``fail_at``-th request it accepts."""

    def __init__(self, limit: int, fail_at: int | None = None) -> None:
        super().__init__()
        self.limit = limit
        self.fail_at = fail_at
        self.delivered: list[MetricsData] = []
        self.refused = 0

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        if count_data_points([metrics_data]) > self.limit:
            self.refused += 1
            raise _TooLargeError("over the limit")
        if self.fail_at is not None and len(self.delivered) + 1 == self.fail_at:
            self.fail_at = None
            return MetricExportResult.FAILURE
        self.delivered.append(metrics_data)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


def test_an_export_over_the_limit_goes_out_in_parts_under_it_within_one_export() -> None:
    data = _collected(200)
    inner = _LimitedExporter(limit=50)
    exporter = DeadlineMetricExporter(inner, timeout_millis=5000)
    assert exporter.export(data) is MetricExportResult.SUCCESS
    assert inner.refused >= 3
    assert all(count_data_points([part]) <= 50 for part in inner.delivered)
    delivered: Counter[tuple[str, str, str, str]] = Counter()
    for part in inner.delivered:
        delivered += _points(part)
    assert delivered == _points(data)  # every data point once
    assert exporter.stats().outcomes == {"success": 1}  # one export


def test_a_part_that_fails_fails_the_export_and_the_parts_after_it_are_not_sent() -> None:
    data = _collected(200)
    inner = _LimitedExporter(limit=50, fail_at=2)
    exporter = DeadlineMetricExporter(inner, timeout_millis=5000)
    assert exporter.export(data) is MetricExportResult.FAILURE
    assert len(inner.delivered) == 1  # the first part; the second failed, nothing after
    assert exporter.stats().outcomes == {"export_failed": 1}


def test_a_data_point_too_large_alone_fails_the_export_as_too_large() -> None:
    inner = _LimitedExporter(limit=0)
    exporter = DeadlineMetricExporter(inner, timeout_millis=5000)
    report = exporter.export_report([_collected(2)])
    assert report.outcome.value == "export_failed"
    assert report.too_large
    assert inner.delivered == []


def _reader_over(exporter: DeadlineMetricExporter, series: int) -> tuple[Any, Any]:
    reader = NonBlockingMetricReader(exporter, export_interval_millis=math.inf)
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    _record(provider, series)
    return provider, reader


def test_a_reader_export_over_a_collectors_http_body_limit_arrives_whole_after_413s() -> None:
    series = 600  # ~110 KB of data points; the collector takes 20 KB bodies
    with FakeOTLPBackend(max_body_bytes=20_000) as backend:
        provider, reader = _reader_over(
            otlp_metric_exporter(backend.metrics_endpoint, timeout=5), series
        )
        try:
            assert reader.force_flush(timeout_millis=8000)
            statuses = Counter(r.status for r in backend.requests)
            assert statuses[413] >= 3
            accepted = [r.decoded for r in backend.requests if r.accepted]
            assert _received(accepted) == _expected(series)  # every data point, once
            assert reader.stats().exports_ok == 1
            assert reader.stats().exports_failed == 0
        finally:
            provider.shutdown(timeout_millis=2000)


def test_a_reader_export_over_the_grpc_message_limit_arrives_whole_in_parts() -> None:
    # Before: RESOURCE_EXHAUSTED "larger than max" failed the whole export, every time.
    series = 600
    metered = Metered()
    with FakeGrpcBackend(max_receive_bytes=24_000) as backend:
        provider, reader = _reader_over(
            otlp_metric_exporter(backend.endpoint, timeout=5, protocol="grpc"), series
        )
        try:
            metered.enable()
            assert reader.force_flush(timeout_millis=8000)
            # One export, however many requests: its data points count once.
            points = sum(_expected(series).values())
            assert metered.read().values(POINTS_EXPORTED, reader.exporter) == {None: points}
            refused = [r for r in backend.requests if not r.accepted]
            assert refused == []  # refused by the server before its service saw them
            accepted = [r.decoded for r in backend.requests if r.accepted]
            assert len(accepted) >= 5
            assert all(request.ByteSize() <= 24_000 for request in accepted)
            assert _received(accepted) == _expected(series)  # every data point, once
            assert reader.stats().exports_ok == 1
            assert reader.exporter.stats().outcomes == {"success": 1}
        finally:
            provider.shutdown(timeout_millis=2000)
            metered.handle.disable()
            metered.provider.shutdown()
