"""NonBlockingMetricReader: collection and export on the reader's thread; force_flush and
shutdown within their budget whatever the exporter does; collections skipped, never
piled up; temporality and aggregation from the exporter; the spec's variables.

The SDK's PeriodicExportingMetricReader in the same cases (measured on this machine with
SDK 1.45.2 by the script quoted in docs/metrics.md; not asserted): over an exporter blocked
on an event, ``force_flush(300)`` took 30.0 s (it exports on the calling thread, until the
exporter returns) and ``MeterProvider.shutdown(timeout_millis=500)`` 30.5 s (it calls the
exporter's ``shutdown`` without a bound). Against a FakeOTLPBackend that never answers,
with the SDK's ``OTLPMetricExporter(timeout=3)``, ``force_flush(500)`` took 3.0 s; against
503 with Retry-After, 2.0 s. This reader: 0.30 s, 0.50 s, 0.50 s and 0.50 s.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    ExponentialHistogram,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    Sum,
)

from otel_nonblocking import (
    ConfigurationError,
    DeadlineMetricExporter,
    MetricReaderStats,
    NonBlockingMetricReader,
)
from otel_nonblocking.testing import FakeOTLPBackend, Mode, refused_endpoint

# What "returns within its budget" allows on a loaded two-core machine.
_SLACK = 0.5


class RecordingMetricExporter(MetricExporter):
    """Succeeds (or returns ``result``); remembers what it was given."""

    def __init__(self, result: MetricExportResult = MetricExportResult.SUCCESS) -> None:
        super().__init__()
        self.result = result
        self.exported: list[MetricsData] = []
        self.export_threads: list[str] = []
        self.shutdown_kwargs: list[dict[str, Any]] = []

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        self.export_threads.append(threading.current_thread().name)
        self.exported.append(metrics_data)
        return self.result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.shutdown_kwargs.append({"timeout_millis": timeout_millis, **kwargs})

    def sums(self) -> list[float]:
        return [
            point.value
            for data in self.exported
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for metric in sm.metrics
            if isinstance(metric.data, Sum)
            for point in metric.data.data_points
        ]


class BlockedMetricExporter(RecordingMetricExporter):
    """Blocks every export, and its shutdown, until ``release`` is set (no deadline of
    its own: the worst exporter the reader can be given)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.entered = threading.Event()
        self.calls = 0

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        self.calls += 1
        self.entered.set()
        self.release.wait(30)
        return super().export(metrics_data, timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        super().shutdown(timeout_millis, **kwargs)
        self.release.wait(30)


class ScriptedMetricExporter(RecordingMetricExporter):
    """Ends each export as ``script`` says, in turn: "ok", "fail" (FAILURE), "raise",
    or "hang" (until ``release`` is set)."""

    def __init__(self, *script: str) -> None:
        super().__init__()
        self.script = list(script)
        self.release = threading.Event()

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        step = self.script.pop(0) if self.script else "ok"
        if step == "raise":
            raise RuntimeError("secret-token-in-message")
        if step == "hang":
            self.release.wait(30)
        super().export(metrics_data, timeout_millis)
        return MetricExportResult.FAILURE if step == "fail" else MetricExportResult.SUCCESS


@pytest.fixture
def blocked() -> Iterator[BlockedMetricExporter]:
    exporter = BlockedMetricExporter()
    yield exporter
    exporter.release.set()


def _provider(reader: NonBlockingMetricReader) -> MeterProvider:
    return MeterProvider(metric_readers=[reader], shutdown_on_exit=False)


def _wait_for(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())


# --- the bounds -------------------------------------------------------------------------


def test_force_flush_returns_within_its_budget_while_the_exporter_hangs(
    blocked: BlockedMetricExporter,
) -> None:
    reader = NonBlockingMetricReader(blocked, export_interval_millis=60_000)
    provider = _provider(reader)
    provider.get_meter("app").create_counter("requests").add(1)
    started = time.monotonic()
    assert reader.force_flush(timeout_millis=300) is False
    assert time.monotonic() - started < 0.3 + _SLACK
    assert blocked.entered.is_set()  # the export did start, on the reader's thread
    blocked.release.set()


def test_shutdown_returns_within_its_budget_while_export_and_shutdown_hang(
    blocked: BlockedMetricExporter,
) -> None:
    reader = NonBlockingMetricReader(blocked, export_interval_millis=60_000)
    provider = _provider(reader)
    provider.get_meter("app").create_counter("requests").add(1)
    started = time.monotonic()
    provider.shutdown(timeout_millis=500)  # MeterProvider hands the reader what is left
    assert time.monotonic() - started < 0.5 + _SLACK
    assert reader.stats().shut_down
    assert reader.force_flush(timeout_millis=100) is False  # after shutdown: nothing goes out


def test_a_counter_on_the_application_thread_never_waits_for_a_blocked_export(
    blocked: BlockedMetricExporter,
) -> None:
    reader = NonBlockingMetricReader(blocked, export_interval_millis=20)
    provider = _provider(reader)
    counter = provider.get_meter("app").create_counter("requests")
    counter.add(1)
    assert blocked.entered.wait(5)  # the reader's thread is stuck in export now
    slowest = 0.0
    for _ in range(2000):
        began = time.perf_counter()
        counter.add(1, {"route": "/"})
        slowest = max(slowest, time.perf_counter() - began)
    assert slowest < 0.1  # microseconds in practice; the export holds no lock we take
    blocked.release.set()
    provider.shutdown(timeout_millis=1000)


def test_export_and_collection_run_on_the_readers_thread() -> None:
    exporter = RecordingMetricExporter()
    reader = NonBlockingMetricReader(exporter, export_interval_millis=60_000)
    provider = _provider(reader)
    provider.get_meter("app").create_counter("requests").add(3)
    assert reader.force_flush(timeout_millis=2000) is True
    # Through the deadline exporter's runner: never the application's thread.
    assert len(exporter.export_threads) == 1
    assert exporter.export_threads[0].startswith("otel-nonblocking-")
    assert exporter.export_threads[0] != threading.current_thread().name
    assert isinstance(reader.exporter, DeadlineMetricExporter)
    assert exporter.sums() == [3]
    provider.shutdown(timeout_millis=1000)


def test_shutdown_exports_a_last_collection_and_shuts_the_exporter_down() -> None:
    exporter = RecordingMetricExporter()
    reader = NonBlockingMetricReader(exporter, export_interval_millis=60_000)
    provider = _provider(reader)
    provider.get_meter("app").create_counter("requests").add(5)
    provider.shutdown(timeout_millis=1000)
    assert exporter.sums() == [5]
    assert len(exporter.shutdown_kwargs) == 1
    provider.shutdown(timeout_millis=1000)  # idempotent (the provider warns, not us)


def test_shutdown_at_exit_keeps_the_exit_budget(
    blocked: BlockedMetricExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    from otel_nonblocking import _state

    reader = NonBlockingMetricReader(blocked, export_interval_millis=60_000)
    provider = _provider(reader)
    provider.get_meter("app").create_counter("requests").add(1)
    monkeypatch.setattr(_state, "exiting", lambda: True)
    _state.set_exit_budget(0.3)
    started = time.monotonic()
    provider.shutdown()  # the MeterProvider's exit callback asks for 30 s
    assert time.monotonic() - started < 0.3 + _SLACK


# --- never piling up exports ----------------------------------------------------------------


def test_collections_due_while_an_export_runs_are_skipped_not_queued(
    blocked: BlockedMetricExporter,
) -> None:
    reader = NonBlockingMetricReader(blocked, export_interval_millis=50)
    provider = _provider(reader)
    provider.get_meter("app").create_counter("requests").add(1)
    assert blocked.entered.wait(5)
    time.sleep(0.5)
    assert blocked.calls == 1  # one export at a time, nothing queued behind it
    assert reader.stats().collections_skipped >= 3
    blocked.release.set()
    # Once the export returns, collections resume on the interval; none catches up.
    assert _wait_for(lambda: reader.stats().exports_ok >= 2)
    assert blocked.calls <= 4
    provider.shutdown(timeout_millis=1000)


def test_a_collection_is_skipped_while_an_abandoned_export_still_runs(
    blocked: BlockedMetricExporter,
) -> None:
    # The deadline gives up on the export after 100 ms; the exporter stays stuck in it,
    # so no export could start: collections wait, and none piles up behind it.
    reader = NonBlockingMetricReader(blocked, export_interval_millis=30, export_timeout_millis=100)
    provider = _provider(reader)
    provider.get_meter("app").create_counter("requests").add(1)
    assert _wait_for(lambda: reader.stats().exports_timed_out == 1)
    assert _wait_for(lambda: reader.stats().collections_skipped >= 3)
    assert blocked.calls == 1
    blocked.release.set()
    assert _wait_for(lambda: reader.stats().exports_ok >= 1)
    # Cumulative: the first export after the skips carries everything.
    assert blocked.sums()[-1] == 1
    provider.shutdown(timeout_millis=1000)


# --- accounting -------------------------------------------------------------------------------


def test_stats_count_each_export_once_by_outcome(caplog: pytest.LogCaptureFixture) -> None:
    exporter = ScriptedMetricExporter("ok", "fail", "raise", "hang", "ok")
    reader = NonBlockingMetricReader(
        exporter, export_interval_millis=60_000, export_timeout_millis=300
    )
    provider = _provider(reader)
    provider.get_meter("app").create_counter("requests").add(1)
    with caplog.at_level(logging.WARNING, logger="otel_nonblocking"):
        results = [reader.force_flush(5000) for _ in range(4)]
    assert results == [True, False, False, False]
    assert reader.stats() == MetricReaderStats(
        collections=4, exports_ok=1, exports_failed=2, exports_timed_out=1
    )
    assert "metric exports failed" in caplog.text  # aggregated, rate-limited
    assert "secret-token" not in caplog.text
    exporter.release.set()
    # A flush is a probe: it goes out even though three failures opened the breaker.
    assert _wait_for(lambda: not reader.exporter.busy)
    assert reader.force_flush(5000) is True
    assert reader.stats().exports_ok == 2
    provider.shutdown(timeout_millis=1000)


# --- temporality, aggregation and settings from the environment ------------------------------


class _CapturingOTLP(OTLPMetricExporter):
    """The SDK's OTLP metric exporter (its preferences read from the environment), with
    the wire replaced by a list."""

    def __init__(self) -> None:
        super().__init__(endpoint="http://127.0.0.1:9/v1/metrics")
        self.exported: list[MetricsData] = []

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        self.exported.append(metrics_data)
        return MetricExportResult.SUCCESS


def _metrics(data: list[MetricsData]) -> dict[str, Any]:
    return {
        metric.name: metric.data
        for d in data
        for rm in d.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
    }


def test_temporality_and_aggregation_come_from_the_exporter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta")
    monkeypatch.setenv(
        "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION",
        "base2_exponential_bucket_histogram",
    )
    exporter = _CapturingOTLP()
    reader = NonBlockingMetricReader(exporter, export_interval_millis=60_000)
    provider = _provider(reader)
    meter = provider.get_meter("app")
    meter.create_counter("requests").add(2)
    meter.create_histogram("latency").record(1.5)
    assert reader.force_flush(2000)
    metrics = _metrics(exporter.exported)
    assert metrics["requests"].aggregation_temporality is AggregationTemporality.DELTA
    assert isinstance(metrics["latency"], ExponentialHistogram)
    provider.shutdown(timeout_millis=1000)


def test_default_temporality_is_cumulative() -> None:
    exporter = _CapturingOTLP()
    reader = NonBlockingMetricReader(exporter, export_interval_millis=60_000)
    provider = _provider(reader)
    provider.get_meter("app").create_counter("requests").add(2)
    assert reader.force_flush(2000)
    metrics = _metrics(exporter.exported)
    assert metrics["requests"].aggregation_temporality is AggregationTemporality.CUMULATIVE
    provider.shutdown(timeout_millis=1000)


def test_the_export_interval_comes_from_otel_metric_export_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "50")
    exporter = RecordingMetricExporter()
    reader = NonBlockingMetricReader(exporter)
    provider = _provider(reader)
    provider.get_meter("app").create_counter("requests").add(1)
    assert _wait_for(lambda: len(exporter.exported) >= 2, timeout=5)
    provider.shutdown(timeout_millis=1000)


def test_the_export_timeout_comes_from_otel_metric_export_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_METRIC_EXPORT_TIMEOUT", "300")
    exporter = ScriptedMetricExporter("hang")
    reader = NonBlockingMetricReader(exporter, export_interval_millis=60_000)
    assert reader.exporter.timeout_seconds == pytest.approx(0.3)
    provider = _provider(reader)
    provider.get_meter("app").create_counter("requests").add(1)
    started = time.monotonic()
    assert reader.force_flush(10_000) is False  # the export's deadline, not the flush's
    assert time.monotonic() - started < 0.3 + _SLACK
    assert reader.stats().exports_timed_out == 1
    exporter.release.set()
    provider.shutdown(timeout_millis=1000)


def test_a_bad_variable_warns_once_naming_it_and_falls_back(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "soon-secret")
    with caplog.at_level(logging.WARNING, logger="otel_nonblocking"):
        reader = NonBlockingMetricReader(RecordingMetricExporter())
        NonBlockingMetricReader(RecordingMetricExporter())
    warnings = [r for r in caplog.records if "OTEL_METRIC_EXPORT_INTERVAL" in r.getMessage()]
    assert len(warnings) == 1
    assert "soon-secret" not in caplog.text
    assert reader._interval == 60.0
    reader.shutdown(timeout_millis=500)


@pytest.mark.parametrize(
    ("argument", "value"),
    [("export_interval_millis", 0), ("export_interval_millis", -5), ("export_timeout_millis", 0)],
)
def test_a_bad_argument_raises_configuration_error(argument: str, value: float) -> None:
    with pytest.raises(ConfigurationError, match=argument):
        NonBlockingMetricReader(RecordingMetricExporter(), **{argument: value})


def test_an_infinite_interval_collects_only_on_flush() -> None:
    exporter = RecordingMetricExporter()
    reader = NonBlockingMetricReader(exporter, export_interval_millis=float("inf"))
    provider = _provider(reader)
    provider.get_meter("app").create_counter("requests").add(1)
    time.sleep(0.2)
    assert exporter.exported == []
    assert reader.force_flush(2000)
    assert exporter.sums() == [1]
    provider.shutdown(timeout_millis=1000)


# --- against a real socket: the fake OTLP backend ---------------------------------------------


@pytest.mark.parametrize("mode", [Mode.HANG, Mode.DRIP, Mode.UNAVAILABLE, "refused"])
def test_flush_and_shutdown_keep_their_budget_against_a_broken_collector(
    mode: Mode | str,
) -> None:
    backend = FakeOTLPBackend(
        Mode.OK if mode == "refused" else mode, path="/v1/metrics", retry_after=1
    ).start()
    try:
        endpoint = refused_endpoint("/v1/metrics") if mode == "refused" else backend.endpoint
        # The SDK's exporter, no deadline of its own beyond its 3 s timeout and retries.
        exporter = OTLPMetricExporter(endpoint=endpoint, timeout=3)
        reader = NonBlockingMetricReader(exporter, export_interval_millis=60_000)
        provider = _provider(reader)
        provider.get_meter("app").create_counter("requests").add(1)
        started = time.monotonic()
        assert reader.force_flush(timeout_millis=500) is False
        assert time.monotonic() - started < 0.5 + _SLACK
        # The export's deadline was the flush's: it is counted as the flush returns.
        assert _wait_for(lambda: reader.stats().exports_failed + reader.stats().exports_timed_out)
        assert reader.stats().exports_ok == 0
        if mode is Mode.HANG:
            assert reader.stats().exports_timed_out == 1
        started = time.monotonic()
        provider.shutdown(timeout_millis=500)
        assert time.monotonic() - started < 0.5 + _SLACK
    finally:
        backend.stop()


def test_a_healthy_collector_receives_the_counter() -> None:
    with FakeOTLPBackend(Mode.OK, path="/v1/metrics") as backend:
        exporter = OTLPMetricExporter(endpoint=backend.endpoint, timeout=3)
        reader = NonBlockingMetricReader(exporter, export_interval_millis=60_000)
        provider = _provider(reader)
        provider.get_meter("app").create_counter("requests").add(7)
        assert reader.force_flush(timeout_millis=3000)
        provider.shutdown(timeout_millis=1000)
        names = []
        for record in backend.requests:
            request = ExportMetricsServiceRequest.FromString(record.body)
            names += [
                m.name
                for rm in request.resource_metrics
                for sm in rm.scope_metrics
                for m in sm.metrics
            ]
        assert "requests" in names
        assert reader.stats().exports_ok >= 1


# --- exit and fork ---------------------------------------------------------------------------

_EXIT_PROGRAM = """
import sys, time
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from otel_nonblocking import NonBlockingMetricReader

# The SDK's exporter with a 30 s timeout, on a MeterProvider left at shutdown_on_exit=True:
# the provider's own exit callback asks the reader for a 30 s shutdown.
reader = NonBlockingMetricReader(OTLPMetricExporter(endpoint=sys.argv[1], timeout=30))
provider = MeterProvider(metric_readers=[reader])
provider.get_meter("exit-test").create_counter("requests").add(1)
print("RETURNED-AT", repr(time.time()), flush=True)
"""


def test_exit_keeps_the_exit_budget_against_a_collector_that_never_answers(
    tmp_path: Any,
) -> None:
    """The SDK's reader in the same program (OTLPMetricExporter's default 10 s timeout)
    exits 10.05 s after main returns, measured on this machine; this one in about 2 s."""
    import os
    import sys

    from tests.conftest import run_bounded

    script = tmp_path / "program.py"
    script.write_text(_EXIT_PROGRAM, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["OTEL_NONBLOCKING_EXIT_TIMEOUT"] = "1000"
    with FakeOTLPBackend(Mode.HANG, path="/v1/metrics") as backend:
        stdout, _, exited_at = run_bounded([sys.executable, str(script), backend.endpoint], env)
        assert backend.request_count == 1  # the last collection did go out
    [line] = [x for x in stdout.splitlines() if x.startswith("RETURNED-AT ")]
    assert exited_at - float(line.split()[1]) < 1.0 + 1.0  # budget + interpreter teardown


def test_a_forked_child_collects_and_exports_on_its_own_thread() -> None:
    import os

    from tests.conftest import wait_for_child

    exporter = RecordingMetricExporter()
    reader = NonBlockingMetricReader(exporter, export_interval_millis=60_000)
    provider = _provider(reader)
    counter = provider.get_meter("app").create_counter("requests")
    counter.add(1)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        code = 1
        try:
            counter.add(1)
            code = 0 if reader.force_flush(2000) and exporter.sums()[-1] == 2 else 3
        finally:
            os._exit(code)
    assert wait_for_child(pid) == 0
    assert reader.force_flush(2000)  # the parent's worker is untouched
    provider.shutdown(timeout_millis=1000)


def test_shutdown_cuts_an_export_that_was_running_and_the_worker_ends_in_time() -> None:
    from otel_nonblocking._deadline import Deadline

    exporter = ScriptedMetricExporter("hang")
    # A 30 s export deadline: only the shutdown's budget can end the running export.
    reader = NonBlockingMetricReader(exporter, export_interval_millis=50)
    provider = _provider(reader)
    provider.get_meter("app").create_counter("requests").add(1)
    assert _wait_for(lambda: reader.exporter.busy)  # the periodic export is stuck
    started = time.monotonic()
    counts = reader.shutdown_within(Deadline.after(0.5))
    assert time.monotonic() - started < 0.5 + _SLACK
    assert counts.complete  # the reader's thread ended within the budget
    assert reader.stats().exports_timed_out >= 1
    exporter.release.set()
