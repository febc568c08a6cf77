"""Self-metrics read through an in-memory metric reader say what ``stats()`` says."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import MappingProxyType, SimpleNamespace
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

from otel_nonblocking import (
    ConfigurationError,
    DeadlineSpanExporter,
    NonBlockingSpanProcessor,
    ProcessorStats,
    otlp_span_exporter,
)
from otel_nonblocking import metrics as self_metrics
from otel_nonblocking.metrics import (
    INSTRUMENTS,
    SelfMetrics,
    component_attributes,
    enable_self_metrics,
)
from otel_nonblocking.testing import FakeOTLPBackend, Mode
from tests.conftest import (
    BlockingExporter,
    RaisingExporter,
    RecordingExporter,
    end_spans,
    wait_for_child,
)

PROCESSED = "otel.sdk.processor.span.processed"
EXPORTED = "otel.sdk.exporter.span.exported"
DURATION = "otel.sdk.exporter.operation.duration"
DROPPED = "otel_nonblocking.processor.span.dropped"
FLUSH = "otel_nonblocking.processor.flush.duration"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "observability.md"


class Readings:
    """One collection of an in-memory reader, filtered to one component."""

    def __init__(self, reader: InMemoryMetricReader) -> None:
        data = reader.get_metrics_data()
        self.metrics: dict[str, Any] = {}
        if data is not None:
            for resource_metrics in data.resource_metrics:
                for scope_metrics in resource_metrics.scope_metrics:
                    if scope_metrics.scope.name == "otel_nonblocking":
                        for metric in scope_metrics.metrics:
                            self.metrics[metric.name] = metric

    def points(self, name: str, component: object) -> dict[str | None, Any]:
        """Data points of ``name`` for ``component``, keyed by ``error.type`` (or state)."""
        wanted = component_attributes(component)  # type: ignore[arg-type]
        metric = self.metrics.get(name)
        found: dict[str | None, Any] = {}
        for point in [] if metric is None else metric.data.data_points:
            attributes = dict(point.attributes)
            if all(attributes.get(k) == v for k, v in wanted.items()):
                key = attributes.get("error.type", attributes.get("otel_nonblocking.breaker.state"))
                found[key] = point
        return found

    def values(self, name: str, component: object) -> dict[str | None, int]:
        return {k: p.value for k, p in self.points(name, component).items()}

    def counts(self, name: str, component: object) -> dict[str | None, int]:
        return {k: p.count for k, p in self.points(name, component).items()}


class Metered:
    """An SDK MeterProvider with an in-memory reader, and self-metrics enabled on it."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader])
        self.handle = self.enable()

    def enable(self) -> SelfMetrics:
        """Enable (again): attaches the listeners of processors created since."""
        return enable_self_metrics(self.provider)

    def read(self) -> Readings:
        return Readings(self.reader)


@pytest.fixture
def metered() -> Iterator[Metered]:
    made = Metered()
    yield made
    made.handle.disable()
    made.provider.shutdown()


@pytest.fixture
def pipeline() -> Iterator[Callable[..., tuple[NonBlockingSpanProcessor, TracerProvider]]]:
    made: list[tuple[NonBlockingSpanProcessor, TracerProvider]] = []

    def make(exporter: Any, **options: Any) -> tuple[NonBlockingSpanProcessor, TracerProvider]:
        options.setdefault("schedule_delay_millis", 30)
        processor = NonBlockingSpanProcessor(exporter, **options)
        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(processor)
        made.append((processor, provider))
        return processor, provider

    yield make
    for processor, _ in made:
        processor.shutdown(timeout_millis=500)


def _wait(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_metrics_match_stats_after_a_run_that_drops_retries_and_times_out(
    metered, pipeline
) -> None:
    backend = FakeOTLPBackend(Mode.OK, drip_interval=0.5).start()
    try:
        exporter = otlp_span_exporter(backend.endpoint, timeout=0.5)
        exporter._breaker._base_backoff = exporter._breaker._backoff = 0.2
        processor, provider = pipeline(
            exporter, max_queue_size=20, max_export_batch_size=10, max_export_attempts=2
        )
        metered.enable()
        end_spans(provider, 10)
        assert processor.force_flush(3000)  # 10 exported

        # Every attempt times out, and its connection is cut once it is a deadline
        # overdue (a trickling answer is no delivery); the batch is tried twice.
        backend.mode = Mode.DRIP
        end_spans(provider, 10)
        assert _wait(lambda: processor.exporter.stats().outcomes.get("export_timeout", 0) >= 1)
        end_spans(provider, 40)  # the worker is stuck or held: the queue overflows
        assert _wait(lambda: "backend_unavailable" in processor.stats().dropped)

        backend.mode = Mode.RESET  # a transient failure: kept and sent again later
        # With the timeouts before it, the resets open the breaker.
        assert _wait(lambda: processor.exporter.stats().breaker_transitions > 0)
        backend.mode = Mode.OK
        assert _wait(lambda: processor.force_flush(1000), timeout=10)
        processor.shutdown(timeout_millis=1000)
    finally:
        backend.stop()

    stats, exporter_stats = processor.stats(), processor.exporter.stats()
    assert stats.dropped["queue_full"] > 0
    assert stats.dropped["backend_unavailable"] >= 10  # out of attempts: an outage
    assert stats.retried > 0
    assert stats.pending == 0
    got = metered.read()

    assert got.values(DROPPED, processor) == dict(stats.dropped)
    assert got.values("otel_nonblocking.processor.span.enqueued", processor) == {
        None: stats.enqueued
    }
    assert got.values("otel_nonblocking.processor.span.retried", processor) == {None: stats.retried}
    processed = got.values(PROCESSED, processor)
    handed_over = stats.exported + stats.dropped_total - stats.dropped["queue_full"]
    assert processed == {None: handed_over, "queue_full": stats.dropped["queue_full"]}
    assert sum(processed.values()) == stats.enqueued  # every span accounted for once
    assert got.values("otel.sdk.processor.span.queue.capacity", processor) == {None: 20}
    assert got.values("otel.sdk.processor.span.queue.size", processor) == {None: 0}

    exporter = processor.exporter
    exported = got.values(EXPORTED, exporter)
    # Each span once, by how its export ended: tried twice, a timed-out batch counts once.
    after_queue = {r: n for r, n in stats.dropped.items() if r != "queue_full"}
    assert exported == {None: stats.exported, **after_queue}
    assert "export_timeout" not in exported
    calls = got.counts(DURATION, exporter)
    assert calls == {
        (None if outcome == "success" else outcome): n
        for outcome, n in exporter_stats.outcomes.items()
    }
    durations = got.points(DURATION, exporter)
    assert durations["export_timeout"].min >= 0.45  # each waited for its 0.5 s deadline
    assert got.values("otel_nonblocking.exporter.breaker.transitions", exporter) == {
        None: exporter_stats.breaker_transitions
    }
    assert exporter_stats.breaker_transitions > 0
    assert got.values("otel_nonblocking.exporter.connection.interrupted", exporter) == {
        None: exporter_stats.interrupted_connections
    }
    assert exporter_stats.interrupted_connections > 0
    assert got.values("otel_nonblocking.exporter.breaker.state", exporter) == {
        "closed": 1,
        "open": 0,
        "half_open": 0,
    }
    assert got.counts(FLUSH, processor)[None] >= 2  # the first and the last flush


def test_every_instrument_is_published_with_its_unit_and_kind(metered, pipeline) -> None:
    import io
    import math

    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

    from otel_nonblocking import NonBlockingLogRecordProcessor, NonBlockingMetricReader
    from tests.test_log_processor import FailingExporter, _emit

    processor, provider = pipeline(RaisingExporter())  # every export fails: a drop
    logs = LoggerProvider(shutdown_on_exit=False)
    log_processor = NonBlockingLogRecordProcessor(FailingExporter(), retry_buffer_size=0)
    logs.add_log_record_processor(log_processor)
    reader = NonBlockingMetricReader(
        ConsoleMetricExporter(out=io.StringIO()), export_interval_millis=math.inf
    )
    app = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    app.get_meter("tests").create_counter("orders").add(1)
    metered.enable()
    end_spans(provider, 3)
    _emit(logs, 3)
    assert processor.force_flush(2000) is False
    assert log_processor.force_flush(2000) is False
    assert reader.force_flush(2000)
    got = metered.read()
    app.shutdown(timeout_millis=1000)
    logs.shutdown()
    kinds = {
        "observable_counter": ("Sum", True),
        "observable_up_down_counter": ("Sum", False),
        "histogram": ("Histogram", None),
    }
    for spec in INSTRUMENTS:
        metric = got.metrics[spec.name]
        assert metric.unit == spec.unit, spec.name
        data_type, monotonic = kinds[spec.kind]
        assert type(metric.data).__name__ == data_type, spec.name
        if monotonic is not None:
            assert metric.data.is_monotonic is monotonic, spec.name


def test_semantic_convention_names_are_those_of_the_installed_semconv_package() -> None:
    from opentelemetry.semconv._incubating.metrics import otel_metrics

    assert self_metrics.PROCESSOR_SPAN_PROCESSED == otel_metrics.OTEL_SDK_PROCESSOR_SPAN_PROCESSED
    assert self_metrics.EXPORTER_SPAN_EXPORTED == otel_metrics.OTEL_SDK_EXPORTER_SPAN_EXPORTED
    assert (
        self_metrics.EXPORTER_OPERATION_DURATION
        == otel_metrics.OTEL_SDK_EXPORTER_OPERATION_DURATION
    )
    assert self_metrics.PROCESSOR_SPAN_QUEUE_SIZE == otel_metrics.OTEL_SDK_PROCESSOR_SPAN_QUEUE_SIZE
    assert (
        self_metrics.PROCESSOR_SPAN_QUEUE_CAPACITY
        == otel_metrics.OTEL_SDK_PROCESSOR_SPAN_QUEUE_CAPACITY
    )
    assert (self_metrics.COMPONENT_TYPE, self_metrics.COMPONENT_NAME) == (
        "otel.component.type",
        "otel.component.name",
    )
    assert self_metrics.ERROR_TYPE == "error.type"
    own = [s.name for s in INSTRUMENTS if not s.name.startswith("otel.sdk.")]
    assert all(name.startswith("otel_nonblocking.") for name in own)


def test_docs_table_lists_every_instrument_with_its_unit() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for spec in INSTRUMENTS:
        row = re.search(rf"^\| `{re.escape(spec.name)}` \|.*$", text, re.MULTILINE)
        assert row is not None, f"{spec.name} missing from {DOCS.name}"
        assert f"`{spec.unit}`" in row.group(0), spec.name


def test_component_names_are_stable_and_distinct_per_object(pipeline) -> None:
    first, _ = pipeline(RecordingExporter())
    second, _ = pipeline(RecordingExporter())
    a, b = component_attributes(first), component_attributes(second)
    assert a["otel.component.type"] == "otel_nonblocking.NonBlockingSpanProcessor"
    assert a["otel.component.name"] != b["otel.component.name"]
    assert re.fullmatch(r"otel_nonblocking\.NonBlockingSpanProcessor/\d+", a["otel.component.name"])
    assert component_attributes(first) == a
    assert component_attributes(first.exporter)["otel.component.type"] == (
        "otel_nonblocking.DeadlineSpanExporter"
    )
    with pytest.raises(ConfigurationError, match="component"):
        component_attributes(object())  # type: ignore[arg-type]


class _StatsProcessor(NonBlockingSpanProcessor):
    """A processor whose ``stats()`` the test controls and counts."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls = 0
        self.fake: ProcessorStats | None = None

    def stats(self) -> ProcessorStats:
        self.calls += 1
        return super().stats() if self.fake is None else self.fake


def test_nothing_runs_on_span_end_and_counters_are_read_at_collection(metered) -> None:
    processor = _StatsProcessor(RecordingExporter(), schedule_delay_millis=30)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    try:
        end_spans(provider, 1000)
        assert processor.force_flush(2000)
        assert processor.calls == 0
        got = metered.read()
        assert processor.calls > 0
        assert got.values(PROCESSED, processor) == {None: 1000}
    finally:
        processor.shutdown(timeout_millis=500)


def test_new_drop_reasons_appear_as_error_type_without_code_changes(metered) -> None:
    processor = _StatsProcessor(RecordingExporter())
    try:
        processor.fake = ProcessorStats(
            enqueued=20,
            exported=10,
            dropped=MappingProxyType({"queue_full": 2, "spooled": 3, "http_400": 5}),
        )
        got = metered.read()
        assert got.values(DROPPED, processor) == {"queue_full": 2, "spooled": 3, "http_400": 5}
        # Unknown reasons happen after the hand-off to the exporter.
        assert got.values(PROCESSED, processor) == {None: 18, "queue_full": 2}
    finally:
        processor.shutdown(timeout_millis=500)


def test_counters_never_go_backwards(metered) -> None:
    processor = _StatsProcessor(RecordingExporter())
    try:
        processor.fake = ProcessorStats(enqueued=10, exported=10)
        assert metered.read().values(PROCESSED, processor) == {None: 10}
        processor.fake = ProcessorStats(
            enqueued=10, exported=5, dropped=MappingProxyType({"shutdown": 5})
        )
        got = metered.read()
        assert got.values(PROCESSED, processor) == {None: 10, "already_shutdown": 5}
    finally:
        processor.shutdown(timeout_millis=500)


def test_enabling_twice_returns_the_same_handle_and_counts_once(metered, pipeline) -> None:
    handle = metered.handle
    assert enable_self_metrics(metered.provider) is handle
    assert handle.enabled
    processor, tracer_provider = pipeline(RecordingExporter(), max_export_batch_size=5)
    assert metered.enable() is handle  # attaches the new processor's listeners, once
    assert metered.enable() is handle
    end_spans(tracer_provider, 10)
    assert processor.force_flush(2000)
    got = metered.read()
    assert got.values(EXPORTED, processor.exporter) == {None: 10}
    assert sum(got.counts(DURATION, processor.exporter).values()) == 2


def test_a_processor_created_later_is_observed_at_the_next_collection(metered, pipeline) -> None:
    processor, provider = pipeline(RecordingExporter(), max_export_batch_size=5)
    assert metered.read().values(PROCESSED, processor) == {None: 0}
    end_spans(provider, 5)  # after the first collection: the listeners are attached
    assert processor.force_flush(2000)
    got = metered.read()
    assert got.values(PROCESSED, processor) == {None: 5}
    assert got.values(EXPORTED, processor.exporter) == {None: 5}


def test_disable_stops_publishing_and_enable_resumes(pipeline) -> None:
    memory = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[memory])
    processor, tracer_provider = pipeline(RecordingExporter(), max_export_batch_size=5)
    handle = enable_self_metrics(provider)
    try:
        handle.disable()
        assert not handle.enabled
        end_spans(tracer_provider, 5)
        assert processor.force_flush(2000)
        got = Readings(memory)
        assert got.values(PROCESSED, processor) == {}
        assert got.values(EXPORTED, processor.exporter) == {}
        assert processor.exporter._listeners == ()
        assert enable_self_metrics(provider) is handle
        end_spans(tracer_provider, 5)
        assert processor.force_flush(2000)
        got = Readings(memory)
        assert got.values(PROCESSED, processor) == {None: 10}
        # Read from stats(), complete from the start, like processed.
        assert got.values(EXPORTED, processor.exporter) == {None: 10}
    finally:
        handle.disable()
        provider.shutdown()


def test_each_meter_provider_gets_every_count(pipeline) -> None:
    readers = [InMemoryMetricReader(), InMemoryMetricReader()]
    providers = [MeterProvider(metric_readers=[r]) for r in readers]
    handles = [enable_self_metrics(p) for p in providers]
    try:
        assert handles[0] is not handles[1]
        processor, tracer_provider = pipeline(RecordingExporter(), max_export_batch_size=4)
        enable_self_metrics(providers[0])
        enable_self_metrics(providers[1])
        end_spans(tracer_provider, 8)
        assert processor.force_flush(2000)
        for memory in readers:
            got = Readings(memory)
            assert got.values(EXPORTED, processor.exporter) == {None: 8}
            assert got.values(PROCESSED, processor) == {None: 8}
    finally:
        for handle, provider in zip(handles, providers, strict=True):
            handle.disable()
            provider.shutdown()


def test_breaker_state_and_failed_exports_are_reported(metered, pipeline) -> None:
    exporter = DeadlineSpanExporter(
        RaisingExporter(), timeout_millis=1000, failure_threshold=1, breaker_backoff_millis=60000
    )
    processor, provider = pipeline(exporter, max_export_batch_size=5)
    metered.enable()
    end_spans(provider, 5)
    processor.force_flush(500)
    assert _wait(lambda: exporter.stats().breaker_state == "open")
    got = metered.read()
    assert got.values("otel_nonblocking.exporter.breaker.state", exporter) == {
        "closed": 0,
        "open": 1,
        "half_open": 0,
    }
    assert got.values(EXPORTED, exporter)["export_failed"] == 5
    assert got.values("otel_nonblocking.exporter.breaker.transitions", exporter) == {None: 1}


def test_a_flush_that_runs_out_of_time_is_recorded_as_incomplete(metered, pipeline) -> None:
    inner = BlockingExporter()
    processor, provider = pipeline(inner, max_export_batch_size=2, export_timeout_millis=5000)
    metered.enable()
    try:
        end_spans(provider, 2)
        assert inner.entered.wait(5)
        assert processor.force_flush(50) is False
    finally:
        inner.release.set()
    assert processor.force_flush(2000)
    flushes = metered.read().points(FLUSH, processor)
    assert flushes["incomplete"].count == 1
    assert flushes["incomplete"].min >= 0.04
    assert flushes[None].count == 1


def test_default_provider_is_the_global_one_even_when_set_later(pipeline, monkeypatch) -> None:
    from opentelemetry.metrics import _internal as metrics_api
    from opentelemetry.util._once import Once

    monkeypatch.setattr(metrics_api, "_METER_PROVIDER_SET_ONCE", Once())
    monkeypatch.setattr(metrics_api, "_METER_PROVIDER", None)
    monkeypatch.setattr(metrics_api, "_PROXY_METER_PROVIDER", metrics_api._ProxyMeterProvider())
    monkeypatch.delenv("OTEL_PYTHON_METER_PROVIDER", raising=False)
    processor, tracer_provider = pipeline(RecordingExporter(), max_export_batch_size=5)
    handle = enable_self_metrics()  # no MeterProvider yet: the API's proxy
    memory = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[memory])
    try:
        metrics_api.set_meter_provider(provider)
        assert enable_self_metrics() is handle  # the same handle: nothing counted twice
        assert enable_self_metrics(provider) is handle
        end_spans(tracer_provider, 5)
        assert processor.force_flush(2000)
        got = Readings(memory)
        assert got.values(PROCESSED, processor) == {None: 5}
        assert got.values(EXPORTED, processor.exporter) == {None: 5}
    finally:
        handle.disable()
        provider.shutdown()


def test_the_documented_run_time_switch_turns_off_the_global_self_metrics(
    pipeline, monkeypatch
) -> None:
    # docs/observability.md: ``enable_self_metrics().disable()`` turns off what
    # configure_tracing() turned on for the global MeterProvider.
    from opentelemetry.metrics import _internal as metrics_api
    from opentelemetry.util._once import Once

    monkeypatch.setattr(metrics_api, "_METER_PROVIDER_SET_ONCE", Once())
    monkeypatch.setattr(metrics_api, "_METER_PROVIDER", None)
    monkeypatch.setattr(metrics_api, "_PROXY_METER_PROVIDER", metrics_api._ProxyMeterProvider())
    memory = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[memory])
    metrics_api.set_meter_provider(provider)
    processor, tracer_provider = pipeline(RecordingExporter(), max_export_batch_size=5)
    turned_on = enable_self_metrics()  # what configure_tracing() does
    try:
        end_spans(tracer_provider, 5)
        assert processor.force_flush(2000)
        assert Readings(memory).values(PROCESSED, processor) == {None: 5}
        enable_self_metrics().disable()
        assert Readings(memory).values(PROCESSED, processor) == {}
    finally:
        turned_on.disable()
        provider.shutdown()


def test_a_bad_meter_provider_raises_a_configuration_error_naming_it() -> None:
    with pytest.raises(ConfigurationError, match="meter_provider"):
        enable_self_metrics("not a meter provider")  # type: ignore[arg-type]


def test_handle_type_is_public() -> None:
    provider = MeterProvider()
    handle = enable_self_metrics(provider)
    try:
        assert isinstance(handle, SelfMetrics)
    finally:
        handle.disable()
        provider.shutdown()


class _SpanCountingExporter(DeadlineSpanExporter):
    """An exporter whose ``stats()`` counts spans by outcome (``spans``) from its start."""

    def stats(self) -> Any:
        base = super().stats()
        return SimpleNamespace(**{**base.__dict__, "spans": {"success": 40, "export_timeout": 7}})


def test_exporter_span_counts_come_from_stats_where_the_exporter_has_them(
    metered, pipeline
) -> None:
    exporter = _SpanCountingExporter(RecordingExporter(), timeout_millis=1000)
    processor, _ = pipeline(exporter)
    got = metered.read()
    assert got.values(EXPORTED, exporter) == {None: 40, "export_timeout": 7}
    assert processor.exporter is exporter


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
@pytest.mark.filterwarnings("ignore:.*multi-threaded.*:DeprecationWarning")
def test_a_forked_child_collects_without_deadlock(metered, pipeline) -> None:
    processor, provider = pipeline(RecordingExporter(), max_export_batch_size=5)
    metered.enable()
    handle = metered.handle
    handle._lock.acquire()  # held at fork time by "another thread"
    try:
        pid = os.fork()
        if pid == 0:  # the child: its collection must not hang
            code = 1
            try:
                end_spans(provider, 5)
                if processor.force_flush(5000):
                    got = metered.read()
                    code = 0 if got.values(PROCESSED, processor) == {None: 5} else 2
            finally:
                os._exit(code)
    finally:
        handle._lock.release()
    code = wait_for_child(pid)
    assert code == 0


def test_queue_capacity_metric_reports_the_capacity_the_byte_budget_leaves(
    metered, pipeline
) -> None:
    processor, _ = pipeline(RecordingExporter(), max_queue_size=100, max_queue_bytes=10 * 3 * 1024)
    metered.enable()
    got = metered.read()
    assert got.values("otel.sdk.processor.span.queue.capacity", processor) == {None: 10}
    assert processor.queue_capacity == 10
