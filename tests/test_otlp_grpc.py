"""OTLP/gRPC: the protocol choice per signal, real deadlines against a fake gRPC collector,
no thread pile-up, fork safety, and one clear line when the grpc extra is missing."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider

import otel_nonblocking as nb
from otel_nonblocking import (
    ConfigurationError,
    ExportOutcome,
    NonBlockingSpanProcessor,
    _compat_sdk,
    otlp_log_exporter,
    otlp_metric_exporter,
    otlp_span_exporter,
)
from otel_nonblocking import _otlp_grpc as grpc_module
from otel_nonblocking._distro import OtelNonblockingConfigurator
from otel_nonblocking._otlp_grpc import (
    GrpcExportError,
    GrpcTransientError,
    grpc_exporter_parts,
    protocol_for,
)
from otel_nonblocking.testing import FakeGrpcBackend, FakeTLSStallListener, Mode
from tests.conftest import end_spans

SLACK = 0.5  # the bound every timing assertion allows past its budget
_PROTOCOL_VARS = (
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
    "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
)


@pytest.fixture(autouse=True)
def _no_protocol_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in _PROTOCOL_VARS:
        monkeypatch.delenv(var, raising=False)
    # Every export is a real attempt (the breaker would fail the later ones fast).
    monkeypatch.setenv("OTEL_NONBLOCKING_BREAKER_FAILURES", "1000")


@pytest.fixture
def backend() -> Iterator[FakeGrpcBackend]:
    with FakeGrpcBackend(delay=30.0, hang_limit=30.0) as fake:
        yield fake


def _spans(count: int = 2) -> list[ReadableSpan]:
    provider = TracerProvider(resource=Resource.create({"service.name": "svc"}))
    spans = []
    for i in range(count):
        span = provider.get_tracer("grpc-test").start_span(f"span-{i}")
        span.end()
        spans.append(span)
    return spans  # type: ignore[return-value]


def _log_batch(body: str = "hello") -> Any:
    """What the installed SDK hands a log exporter (LogData or ReadableLogRecord)."""
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs import export as logs_export

    memory = (
        getattr(logs_export, "InMemoryLogRecordExporter", None) or logs_export.InMemoryLogExporter
    )
    exporter = memory()
    provider = LoggerProvider()
    provider.add_log_record_processor(logs_export.SimpleLogRecordProcessor(exporter))
    logger = logging.Logger("grpc-test")  # not registered: nothing else sees it
    with warnings.catch_warnings():  # deprecated in SDK 1.45 (moved to contrib), fine here
        warnings.simplefilter("ignore", DeprecationWarning)
        logger.addHandler(LoggingHandler(logger_provider=provider))
    logger.warning(body)
    provider.shutdown()
    return exporter.get_finished_logs()


def _metrics_data() -> Any:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    provider.get_meter("grpc-test").create_counter("requests").add(3)
    data = reader.get_metrics_data()
    provider.shutdown()
    return data


def _export(signal: str, inner: Any) -> object:
    """One export through the SDK exporter (the client makes its one RPC)."""
    if signal == "traces":
        return inner.export(_spans())
    if signal == "logs":
        return inner.export(_log_batch())
    return inner.export(_metrics_data(), timeout_millis=10_000)


_FACTORIES: dict[str, Any] = {
    "traces": otlp_span_exporter,
    "logs": otlp_log_exporter,
    "metrics": otlp_metric_exporter,
}


def _items(signal: str) -> list[Any]:
    """One batch for the signal's deadline exporter's ``export_report``."""
    if signal == "traces":
        return _spans()
    if signal == "logs":
        return list(_log_batch())
    return [_metrics_data()]


def _delivered(signal: str, fake: FakeGrpcBackend) -> list[str]:
    return {
        "traces": fake.span_names,
        "logs": fake.log_bodies,
        "metrics": fake.metric_names,
    }[signal](accepted=True)


# -- the protocol, per signal ------------------------------------------------------------


def test_protocol_argument_beats_signal_variable_beats_generic_variable_beats_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert protocol_for("traces") == ("http/protobuf", None)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    assert protocol_for("logs") == ("grpc", "OTEL_EXPORTER_OTLP_PROTOCOL")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "http/protobuf")
    assert protocol_for("logs") == ("http/protobuf", "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL")
    assert protocol_for("metrics") == ("grpc", "OTEL_EXPORTER_OTLP_PROTOCOL")
    assert protocol_for("logs", "grpc") == ("grpc", None)


def test_an_unsupported_protocol_variable_warns_once_naming_it_and_falls_back(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    with caplog.at_level(logging.WARNING, logger="otel_nonblocking"):
        assert protocol_for("traces") == ("grpc", "OTEL_EXPORTER_OTLP_PROTOCOL")
        assert protocol_for("traces") == ("grpc", "OTEL_EXPORTER_OTLP_PROTOCOL")
    lines = [r.getMessage() for r in caplog.records if "TRACES_PROTOCOL" in r.getMessage()]
    assert len(lines) == 1
    assert "http/json" not in lines[0]


def test_a_bad_protocol_argument_raises() -> None:
    with pytest.raises(ConfigurationError, match="protocol"):
        otlp_span_exporter("http://127.0.0.1:9", protocol="http/json")


def test_grpc_from_the_environment_builds_the_grpc_exporter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:9")
    exporter = otlp_span_exporter(timeout=1)
    try:
        assert isinstance(exporter.inner, GrpcSpanExporter)
    finally:
        exporter.shutdown(timeout_millis=500)
    # The signal's own variable wins over the generic one.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")
    exporter = otlp_span_exporter(timeout=1)
    try:
        assert isinstance(exporter.inner, OTLPSpanExporter)
    finally:
        exporter.shutdown(timeout_millis=500)


def test_without_the_extra_an_argument_raises_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(grpc_module, "grpc_available", lambda: False)
    with pytest.raises(ConfigurationError) as raised:
        otlp_span_exporter("http://127.0.0.1:9", protocol="grpc")
    message = str(raised.value)
    assert "pip install 'otel-nonblocking[grpc]'" in message
    assert "\n" not in message


def test_without_the_extra_a_variable_warns_once_and_sends_http(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(grpc_module, "grpc_available", lambda: False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    with caplog.at_level(logging.WARNING, logger="otel_nonblocking"):
        first = otlp_span_exporter("http://127.0.0.1:9/v1/traces", timeout=1)
        second = otlp_span_exporter("http://127.0.0.1:9/v1/traces", timeout=1)
    assert isinstance(first.inner, OTLPSpanExporter)
    lines = [r.getMessage() for r in caplog.records if "grpc extra" in r.getMessage()]
    assert len(lines) == 1
    assert "OTEL_EXPORTER_OTLP_PROTOCOL" in lines[0]
    assert "pip install 'otel-nonblocking[grpc]'" in lines[0]
    for exporter in (first, second):
        exporter.shutdown(timeout_millis=500)


def test_grpc_endpoint_and_insecure_follow_the_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    target_and_insecure = grpc_module.target_and_insecure
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_INSECURE", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_INSECURE", raising=False)
    assert target_and_insecure("http://collector:4317", "traces", None) == ("collector:4317", True)
    assert target_and_insecure("https://collector:4317", "traces", True) == (
        "collector:4317",
        False,
    )
    assert target_and_insecure("collector:4317", "traces", None) == ("collector:4317", False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    assert target_and_insecure("collector:4317", "traces", None) == ("collector:4317", True)
    with pytest.raises(ConfigurationError) as raised:
        otlp_span_exporter("http://user:pw@bad host:1", protocol="grpc")
    assert "pw" not in str(raised.value)


def test_a_dns_target_names_its_dns_server_and_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_INSECURE", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_INSECURE", raising=False)
    target = "dns://127.0.0.1:53/collector:4317"
    assert grpc_module.endpoint_problem(target) is None
    assert grpc_module.target_and_insecure(target, "traces", None) == (target, False)
    assert grpc_module.target_and_insecure(target, "traces", True) == (target, True)
    assert grpc_module.endpoint_problem("dns:collector:4317") is None
    assert grpc_module.endpoint_problem("dns://127.0.0.1:53/") == "has no host"
    with pytest.raises(ConfigurationError, match="DNS server") as raised:
        otlp_span_exporter("dns://user:pw@bad host/collector:4317", protocol="grpc")
    assert "pw" not in str(raised.value)


@pytest.mark.parametrize("signal", ["traces", "logs", "metrics"])
@pytest.mark.parametrize("raw", ["2.5", "soon"])
def test_a_timeout_variable_the_sdk_cannot_parse_does_not_break_the_exporter(
    signal: str, raw: str, backend: FakeGrpcBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SDK 1.33 reads these with int(), 1.45 with float(), even when given a timeout.
    var = f"OTEL_EXPORTER_OTLP_{signal.upper()}_TIMEOUT"
    monkeypatch.setenv(var, raw)
    exporter = _FACTORIES[signal](backend.endpoint, protocol="grpc")
    try:
        assert exporter.timeout_seconds == (2.5 if raw == "2.5" else 2.0)
        assert os.environ[var] == raw  # hidden from the SDK only while it was built
        assert exporter.export_report(_items(signal)).outcome is ExportOutcome.SUCCESS
    finally:
        exporter.shutdown(timeout_millis=1000)


@pytest.mark.usefixtures("clean_globals")
def test_the_configurator_sends_traces_over_grpc_when_the_environment_says_so(
    monkeypatch: pytest.MonkeyPatch, backend: FakeGrpcBackend, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", backend.endpoint)
    OtelNonblockingConfigurator().configure()
    [handle] = nb.installed()
    assert handle.processor is not None
    assert isinstance(handle.processor.exporter.inner, GrpcSpanExporter)
    with trace.get_tracer("grpc-door").start_as_current_span("through-the-door"):
        pass
    assert handle.flush(timeout=5).pending == 0
    assert backend.span_names(accepted=True) == ["through-the-door"]
    assert not [r for r in caplog.records if "PROTOCOL" in r.getMessage()]


# -- every signal over gRPC: delivery and deadlines -----------------------------------


@pytest.mark.parametrize("signal", ["traces", "logs", "metrics"])
def test_a_healthy_grpc_backend_receives_each_signal(signal: str, backend: FakeGrpcBackend) -> None:
    inner, client, _ = grpc_exporter_parts(signal, backend.endpoint, {"x-key": "k"}, timeout=2)
    try:
        assert client is not None
        _export(signal, inner)
        assert _delivered(signal, backend)
        assert backend.requests[0].metadata["x-key"] == "k"
    finally:
        inner.shutdown()


@pytest.mark.parametrize("signal", ["traces", "logs", "metrics"])
@pytest.mark.parametrize("mode", [Mode.HANG, Mode.SLOW, Mode.UNAVAILABLE, Mode.RESET])
def test_each_signal_returns_within_its_deadline_whatever_the_backend_does(
    signal: str, mode: Mode, backend: FakeGrpcBackend
) -> None:
    backend.mode = mode
    inner, _, _ = grpc_exporter_parts(signal, backend.endpoint, timeout=1)
    try:
        started = time.monotonic()
        with pytest.raises(GrpcExportError) as raised:
            _export(signal, inner)
        assert time.monotonic() - started < 1 + SLACK
        assert isinstance(raised.value, GrpcTransientError)  # all four may be sent again
        assert not _delivered(signal, backend)
    finally:
        inner.shutdown()


@pytest.mark.parametrize("signal", ["traces", "logs", "metrics"])
def test_each_factory_sends_its_signal_over_grpc_when_asked(
    signal: str, backend: FakeGrpcBackend
) -> None:
    exporter = _FACTORIES[signal](backend.endpoint, timeout=2, protocol="grpc")
    try:
        assert exporter.export_report(_items(signal)).outcome is ExportOutcome.SUCCESS
        assert _delivered(signal, backend)
    finally:
        exporter.shutdown(timeout_millis=1000)


@pytest.mark.parametrize("signal", ["traces", "logs", "metrics"])
def test_the_signal_variable_chooses_grpc_for_that_signal_only(
    signal: str, backend: FakeGrpcBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL", "grpc")
    exporter = _FACTORIES[signal](backend.endpoint, timeout=2)
    others = [_FACTORIES[other](timeout=1) for other in _FACTORIES if other != signal]
    try:
        assert exporter.inner.__module__.startswith("opentelemetry.exporter.otlp.proto.grpc")
        assert all(".grpc" not in other.inner.__module__ for other in others)
        assert exporter.export_report(_items(signal)).outcome is ExportOutcome.SUCCESS
    finally:
        for each in (exporter, *others):
            each.shutdown(timeout_millis=500)


@pytest.mark.parametrize("signal", ["traces", "logs", "metrics"])
@pytest.mark.parametrize("mode", [Mode.HANG, Mode.SLOW, Mode.UNAVAILABLE, Mode.RESET])
def test_each_deadline_exporter_and_its_flush_return_within_budget(
    signal: str, mode: Mode, backend: FakeGrpcBackend
) -> None:
    backend.mode = mode
    exporter = _FACTORIES[signal](backend.endpoint, timeout=1, protocol="grpc")
    try:
        started = time.monotonic()
        report = exporter.export_report(_items(signal))
        assert time.monotonic() - started < 1 + SLACK
        assert report.outcome in (ExportOutcome.TIMEOUT, ExportOutcome.FAILED)
        assert report.transient
        started = time.monotonic()
        exporter.force_flush(timeout_millis=1000)
        assert time.monotonic() - started < 1 + SLACK
    finally:
        started = time.monotonic()
        exporter.shutdown(timeout_millis=1000)
        assert time.monotonic() - started < 1 + SLACK


def test_unavailable_carries_the_backends_retry_info(backend: FakeGrpcBackend) -> None:
    backend.mode = Mode.UNAVAILABLE
    backend.retry_after = 7.5
    inner, _, _ = grpc_exporter_parts("traces", backend.endpoint, timeout=2)
    try:
        with pytest.raises(GrpcTransientError) as raised:
            inner.export(_spans())
        assert raised.value.code == "UNAVAILABLE"
        assert raised.value.retry_after == 7.5
        assert backend.call_count == 1  # no in-process retry: the pipeline decides
    finally:
        inner.shutdown()


def test_the_backends_retry_info_becomes_the_reports_retry_after_and_the_breakers_wait(
    backend: FakeGrpcBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_NONBLOCKING_BREAKER_FAILURES", "1")
    backend.mode = Mode.UNAVAILABLE
    backend.retry_after = 7.5
    exporter = otlp_span_exporter(backend.endpoint, protocol="grpc", timeout=2)
    try:
        report = exporter.export_report(_spans())
        assert report.outcome is ExportOutcome.FAILED
        assert report.transient
        assert report.retry_after == 7.5
        assert 5 < exporter.available_in() <= 7.5  # the breaker waits as the backend asked
    finally:
        exporter.shutdown(timeout_millis=1000)


@pytest.mark.parametrize("mode", [Mode.HANG, Mode.SLOW, Mode.UNAVAILABLE, Mode.RESET])
def test_the_span_exporter_and_a_flush_return_within_budget(
    mode: Mode, backend: FakeGrpcBackend
) -> None:
    backend.mode = mode
    exporter = otlp_span_exporter(backend.endpoint, protocol="grpc", timeout=1)
    processor = NonBlockingSpanProcessor(exporter, schedule_delay_millis=60_000)
    try:
        started = time.monotonic()
        report = exporter.export_report(_spans())
        assert time.monotonic() - started < 1 + SLACK
        assert report.outcome in (ExportOutcome.TIMEOUT, ExportOutcome.FAILED)
        assert report.transient
        for span in _spans(5):
            processor.on_end(span)
        started = time.monotonic()
        processor.force_flush(timeout_millis=1500)
        assert time.monotonic() - started < 1.5 + SLACK
    finally:
        processor.shutdown()


@pytest.mark.parametrize("signal", ["traces", "logs", "metrics"])
def test_the_rpc_deadline_is_what_is_left_of_the_exports(
    signal: str, backend: FakeGrpcBackend
) -> None:
    exporter = _FACTORIES[signal](backend.endpoint, timeout=10, protocol="grpc")
    try:
        report = exporter.export_report(_items(signal), timeout=2)  # a flush's budget, say
        assert report.outcome is ExportOutcome.SUCCESS
        [request] = backend.requests
        assert request.deadline_seconds is not None
        assert 0 < request.deadline_seconds <= 2.1  # 0.1 s past ours, not the exporter's 10 s
    finally:
        exporter.shutdown(timeout_millis=1000)


def test_an_rpc_cut_short_is_left_to_answer_and_the_next_export_gets_through(
    backend: FakeGrpcBackend,
) -> None:
    backend.mode = Mode.HANG
    exporter = otlp_span_exporter(backend.endpoint, protocol="grpc", timeout=5)
    try:
        started = time.monotonic()

        def cutoff() -> float:  # cut short after the RPC went out with its 5 s deadline
            return max(started + 0.5 - time.monotonic(), 0.0)

        report = exporter.export_report(_spans(), cutoff=cutoff)
        assert report.outcome is ExportOutcome.TIMEOUT
        assert time.monotonic() - started < 0.5 + SLACK
        # It went out on a connection that formed: in doubt until the collector answers.
        assert report.reached
        assert report.attempt is not None
        assert exporter.resolve(report.attempt, 0.2) is None
        backend.mode = Mode.OK  # the hang ends with UNAVAILABLE: the batch did not go out
        assert exporter.resolve(report.attempt, 2.0) is False
        assert exporter.export_report(_spans()).outcome is ExportOutcome.SUCCESS
        assert backend.span_names(accepted=True) == ["span-0", "span-1"]
    finally:
        exporter.shutdown(timeout_millis=1000)


def test_an_rpc_cut_short_that_the_collector_then_accepts_is_sent_once(
    backend: FakeGrpcBackend,
) -> None:
    # A cut (the spool's reserve at shutdown) comes after the RPC went out with a longer
    # deadline of its own. The collector answers OK after the cut: the RPC's future says
    # so, the batch counts as delivered late and is not sent again (before: the RPC was
    # cancelled, its batch counted as failed and sent again, while a collector that had
    # read it may keep it: a duplicate).
    backend.mode = Mode.SLOW
    backend.delay = 1.0
    exporter = otlp_span_exporter(backend.endpoint, protocol="grpc", timeout=5)
    try:
        started = time.monotonic()

        def cutoff() -> float:
            return max(started + 0.3 - time.monotonic(), 0.0)

        report = exporter.export_report(_spans(), cutoff=cutoff)
        assert report.outcome is ExportOutcome.TIMEOUT
        assert time.monotonic() - started < 0.3 + SLACK
        assert report.attempt is not None
        assert exporter.resolve(report.attempt, 5.0) is True
        assert exporter.stats().outcomes.get("late_success") == 1
        assert backend.span_names() == ["span-0", "span-1"]  # received once
        assert backend.span_names(accepted=True) == ["span-0", "span-1"]
    finally:
        exporter.shutdown(timeout_millis=1000)


def test_no_thread_pile_up_over_20_exports_against_a_hanging_backend(
    backend: FakeGrpcBackend,
) -> None:
    backend.mode = Mode.HANG
    exporter = otlp_span_exporter(backend.endpoint, protocol="grpc", timeout=0.2)
    try:
        exporter.export_report(_spans())  # the runner thread and the channel exist now
        before = threading.active_count()
        started = time.monotonic()
        reports = [exporter.export_report(_spans()) for _ in range(20)]
        assert time.monotonic() - started < 20 * (0.2 + 0.25) + SLACK
        # At the deadline, either ours fired first (TIMEOUT) or the RPC's own gRPC deadline,
        # the same instant, did (FAILED: DEADLINE_EXCEEDED); both may be sent again.
        assert {r.outcome for r in reports} <= {
            ExportOutcome.TIMEOUT,
            ExportOutcome.BUSY,
            ExportOutcome.FAILED,
        }
        assert all(r.transient for r in reports)
        assert threading.active_count() <= before + 2
        assert backend.call_count >= 10  # each abandoned call was cancelled, not left stuck
    finally:
        exporter.shutdown(timeout_millis=1000)


def test_a_forked_child_exports_on_a_channel_of_its_own(backend: FakeGrpcBackend) -> None:
    exporter = otlp_span_exporter(backend.endpoint, protocol="grpc", timeout=2)
    client = exporter.inner._client  # type: ignore[attr-defined]
    assert exporter.export_report(_spans(1)).outcome is ExportOutcome.SUCCESS
    assert client.channels_made == 1  # the parent's channel is in use before the fork
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        code = 1
        try:
            report = exporter.export_report(_spans(3))
            ok = report.outcome is ExportOutcome.SUCCESS and client.channels_made == 1
            code = 0 if ok else 2
        finally:
            os._exit(code)
    deadline = time.monotonic() + 15
    status = None
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung on gRPC")
    try:
        assert os.waitstatus_to_exitcode(status) == 0
        assert backend.wait_for(lambda: len(backend.span_names(accepted=True)) == 4)
        # The parent's channel still works after the fork.
        assert exporter.export_report(_spans(1)).outcome is ExportOutcome.SUCCESS
    finally:
        exporter.shutdown(timeout_millis=1000)


# -- the fake collector itself -----------------------------------------------------------


def test_the_fake_refuses_the_http_only_modes() -> None:
    with pytest.raises(ValueError, match="drip"):
        FakeGrpcBackend(Mode.DRIP)


def test_the_fake_records_what_it_received_and_what_it_accepted(
    backend: FakeGrpcBackend,
) -> None:
    inner, _, _ = grpc_exporter_parts("traces", backend.endpoint, timeout=0.3)
    try:
        backend.mode = Mode.HANG
        with pytest.raises(GrpcTransientError):
            inner.export(_spans(1))
        backend.mode = Mode.OK
        inner.export(_spans(2))
    finally:
        inner.shutdown()
    assert backend.wait_for(lambda: len(backend.requests) == 2)
    assert backend.span_names() == ["span-0", "span-0", "span-1"]
    assert backend.span_names(accepted=True) == ["span-0", "span-1"]
    assert backend.call_count == 2
    assert [r.mode for r in backend.requests] == [Mode.HANG, Mode.OK]


def test_stop_returns_in_time_with_a_call_hanging() -> None:
    fake = FakeGrpcBackend(Mode.HANG, hang_limit=60).start()
    inner, _, _ = grpc_exporter_parts("traces", fake.endpoint, timeout=10)
    result: list[object] = []
    caller = threading.Thread(target=lambda: result.append(_raises(inner)), daemon=True)
    caller.start()
    assert fake.wait_for(lambda: fake.call_count == 1)
    started = time.monotonic()
    fake.stop(timeout=2.0)
    assert time.monotonic() - started < 2.0 + SLACK
    caller.join(2.0)
    assert result  # the hanging call ended with the server
    inner.shutdown()


def _raises(inner: Any) -> object:
    try:
        return inner.export(_spans(1))
    except GrpcExportError as error:
        return error


def test_a_collector_that_accepts_and_never_speaks_costs_one_deadline() -> None:
    # The channel's connect (the HTTP/2 handshake) never completes: the RPC's deadline ends it.
    with FakeTLSStallListener() as stall:
        exporter = otlp_span_exporter(
            f"http://127.0.0.1:{stall.port}", protocol="grpc", timeout=0.5
        )
        try:
            for _ in range(2):
                started = time.monotonic()
                report = exporter.export_report(_spans())
                assert time.monotonic() - started < 0.5 + SLACK
                assert report.transient
        finally:
            exporter.shutdown(timeout_millis=500)


def test_a_release_that_moved_the_channel_is_told_once_and_keeps_the_sdks_channel(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Moved:
        """An SDK gRPC exporter of a future release, its channel kept somewhere new."""

    with caplog.at_level(logging.WARNING, logger="otel_nonblocking"):
        assert _compat_sdk.adopt_grpc_client(Moved(), object()) is False
        assert _compat_sdk.adopt_grpc_client(Moved(), object()) is False
    lines = [r.getMessage() for r in caplog.records if "gRPC channel" in r.getMessage()]
    assert len(lines) == 1
    assert "Moved" in lines[0]


# -- through the pipelines: the log processor and the metric reader over gRPC ------------


def _log_pipeline(endpoint: str) -> tuple[Any, Any, logging.Logger]:
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler

    from otel_nonblocking import NonBlockingLogRecordProcessor

    provider = LoggerProvider(shutdown_on_exit=False)
    processor = NonBlockingLogRecordProcessor(
        otlp_log_exporter(endpoint, timeout=1, protocol="grpc"), schedule_delay_millis=60_000
    )
    provider.add_log_record_processor(processor)
    logger = logging.Logger("grpc-pipeline")  # not registered: nothing else sees it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        logger.addHandler(LoggingHandler(logger_provider=provider))
    return provider, processor, logger


def _metric_pipeline(endpoint: str) -> tuple[Any, Any]:
    from otel_nonblocking import NonBlockingMetricReader

    reader = NonBlockingMetricReader(
        otlp_metric_exporter(endpoint, timeout=1, protocol="grpc"),
        export_interval_millis=60_000,
    )
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    provider.get_meter("grpc-pipeline").create_counter("requests").add(2)
    return provider, reader


def test_the_log_processor_delivers_over_grpc(backend: FakeGrpcBackend) -> None:
    provider, processor, logger = _log_pipeline(backend.endpoint)
    try:
        logger.warning("over grpc")
        assert processor.force_flush(timeout_millis=3000) is True
        assert backend.log_bodies(accepted=True) == ["over grpc"]
    finally:
        provider.shutdown()


def test_the_metric_reader_delivers_over_grpc(backend: FakeGrpcBackend) -> None:
    provider, reader = _metric_pipeline(backend.endpoint)
    try:
        assert reader.force_flush(timeout_millis=3000) is True
        assert backend.metric_names(accepted=True) == ["requests"]
    finally:
        provider.shutdown(timeout_millis=1000)


@pytest.mark.parametrize("mode", [Mode.HANG, Mode.UNAVAILABLE])
def test_the_log_processors_flush_and_shutdown_keep_their_budget_over_grpc(
    mode: Mode, backend: FakeGrpcBackend
) -> None:
    backend.mode = mode
    provider, processor, logger = _log_pipeline(backend.endpoint)
    for i in range(20):
        logger.warning("record %d", i)
    started = time.monotonic()
    processor.force_flush(timeout_millis=1500)
    assert time.monotonic() - started < 1.5 + SLACK
    started = time.monotonic()
    processor.shutdown(timeout_millis=1500)
    assert time.monotonic() - started < 1.5 + SLACK
    assert not backend.log_bodies(accepted=True)
    provider.shutdown()  # the processor is shut down already: returns at once


@pytest.mark.parametrize("mode", [Mode.HANG, Mode.UNAVAILABLE])
def test_the_metric_readers_flush_and_shutdown_keep_their_budget_over_grpc(
    mode: Mode, backend: FakeGrpcBackend
) -> None:
    backend.mode = mode
    provider, reader = _metric_pipeline(backend.endpoint)
    started = time.monotonic()
    reader.force_flush(timeout_millis=1500)
    assert time.monotonic() - started < 1.5 + SLACK
    started = time.monotonic()
    provider.shutdown(timeout_millis=1500)
    assert time.monotonic() - started < 1.5 + SLACK
    assert not backend.metric_names(accepted=True)


# -- outages: a restart, the message size limit, DNS, late answers -----------------------


def _grpc_pipeline(
    endpoint: str, timeout: float = 0.5, **options: object
) -> tuple[NonBlockingSpanProcessor, TracerProvider]:
    exporter = otlp_span_exporter(endpoint, protocol="grpc", timeout=timeout)
    settings: dict[str, object] = {"max_export_batch_size": 20, "schedule_delay_millis": 50}
    settings.update(options)
    processor = NonBlockingSpanProcessor(exporter, **settings)  # type: ignore[arg-type]
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    return processor, provider


def _until(condition: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def _span_ids(fake: FakeGrpcBackend) -> list[bytes]:
    return [
        span.span_id
        for request in fake.requests
        if request.accepted
        for resource in request.decoded.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]


def test_a_collector_restart_costs_no_span_however_many_probes_it_refuses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The gRPC twin of test_recovery's: every probe while the collector is down is refused
    # before a connection forms (UNAVAILABLE, "failed to connect"), which says nothing of
    # the batch, so it is not charged an attempt (before: dropped as backend_unavailable
    # after max_export_attempts refused probes).
    monkeypatch.delenv("OTEL_NONBLOCKING_BREAKER_FAILURES")
    monkeypatch.setenv("OTEL_NONBLOCKING_BREAKER_BACKOFF", "50")
    first = FakeGrpcBackend().start()
    second: FakeGrpcBackend | None = None
    processor, provider = _grpc_pipeline(first.endpoint, max_export_attempts=2)
    try:
        end_spans(provider, 10)
        assert processor.force_flush(timeout_millis=3000)
        first.stop()  # crashed: its connections are cut, its port refuses
        end_spans(provider, 30)

        def failed() -> int:
            outcomes = processor.exporter.stats().outcomes
            return outcomes.get("export_failed", 0) + outcomes.get("export_timeout", 0)

        assert _until(lambda: failed() >= 10 or processor.stats().dropped_total > 0, 10)
        assert dict(processor.stats().dropped) == {}
        second = FakeGrpcBackend(port=first.port).start()  # back on its port
        assert _until(lambda: processor.stats().pending == 0, 10), processor.stats()
        stats = processor.stats()
        assert (stats.exported, dict(stats.dropped)) == (40, {}), stats
        delivered = _span_ids(second)
        assert len(delivered) == len(set(delivered)) == 30  # each span once
    finally:
        processor.shutdown(timeout_millis=500)
        first.stop()
        if second is not None:
            second.stop()


def _end_padded(provider: TracerProvider, count: int, pad: int, name: str = "span") -> None:
    tracer = provider.get_tracer("tests")
    for _ in range(count):
        tracer.start_span(name, attributes={"pad": "x" * pad}).end()


@pytest.mark.parametrize("ours", [0, 20_000])
def test_a_batch_over_the_message_size_limit_goes_out_split_and_a_span_too_large_alone_is_dropped(
    ours: int,
) -> None:
    # The collector takes messages of up to 24 KB (gRPC's default: 4 MiB). ours=0: no limit
    # of ours, the collector refuses with RESOURCE_EXHAUSTED "larger than max", taken as
    # HTTP's 413 (before: the whole batch dropped as export_failed); ours=20 KB: split
    # as the request is assembled from the encoded spans, before anything is sent. Either
    # way every span arrives, once, in several requests.
    with FakeGrpcBackend(max_receive_bytes=24_000) as fake:
        exporter = otlp_span_exporter(
            fake.endpoint, protocol="grpc", timeout=2, max_request_bytes=ours
        )
        processor = NonBlockingSpanProcessor(
            exporter, max_export_batch_size=200, schedule_delay_millis=60_000
        )
        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(processor)
        try:
            assert processor._pipeline.worker.stage.active  # type: ignore[attr-defined]
            _end_padded(provider, 100, 500)  # ~55 KB in all
            _end_padded(provider, 1, 30_000, name="huge")  # too large alone
            processor.force_flush(timeout_millis=5000)
            stats = processor.stats()
            assert (stats.exported, dict(stats.dropped), stats.pending) == (
                100,
                {"too_large": 1},
                0,
            ), stats
            delivered = _span_ids(fake)
            assert len(delivered) == len(set(delivered)) == 100
            assert "huge" not in fake.span_names()
            accepted = [r for r in fake.requests if r.accepted]
            assert len(accepted) >= 3
            refused = exporter.stats().outcomes.get("export_failed", 0)
            if ours:  # split as it is assembled: nothing over our limit sent, no RPC failed
                assert all(r.decoded.ByteSize() <= ours for r in fake.requests)
                assert refused == 0
            else:  # the batch, then halves of it, then the huge span alone
                assert refused >= 2
        finally:
            processor.shutdown(timeout_millis=1000)


# A "DNS server" on 127.0.0.1 that reads each query and never answers, and an exporter
# whose gRPC target names it as the channel's DNS server (gRPC's c-ares resolver, the
# default, honours the authority). Run in a child process whose gRPC is told to use
# c-ares: under another resolver the name would go to the system's DNS servers instead.
_DNS_CHILD = r"""
import json, socket, sys, threading, time
from opentelemetry.sdk.trace import TracerProvider
from otel_nonblocking._otlp_grpc import otlp_grpc_exporter

udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("127.0.0.1", 0))
udp.settimeout(0.05)
queries, stop = [], threading.Event()

def serve():
    while not stop.is_set():
        try:
            queries.append(len(udp.recvfrom(4096)[0]))
        except TimeoutError:
            continue
        except OSError:
            return

server = threading.Thread(target=serve, daemon=True)
server.start()
span = TracerProvider().get_tracer("dns").start_span("s")
span.end()
target = f"dns://127.0.0.1:{udp.getsockname()[1]}/collector.invalid:4317"
before = threading.active_count()
exporter = otlp_grpc_exporter("traces", target, timeout=1.0, insecure=True)
exports = []
for _ in range(4):
    started = time.monotonic()
    report = exporter.export_report([span])
    seconds = time.monotonic() - started
    exports.append([seconds, report.outcome.value, report.transient, report.reached])
threads = threading.active_count() - before
started = time.monotonic()
exporter.shutdown(timeout_millis=1000)
closed = time.monotonic() - started
stop.set()
server.join(1)
udp.close()
state = exporter.stats().breaker_state
print(json.dumps({"exports": exports, "threads": threads, "queries": len(queries),
                  "breaker": state, "shutdown": closed}))
"""


def test_a_dns_server_that_never_answers_costs_one_deadline_per_export() -> None:
    import json
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "GRPC_"))}
    env.update(
        GRPC_DNS_RESOLVER="ares",
        OTEL_NONBLOCKING_BREAKER_FAILURES="3",
        OTEL_NONBLOCKING_BREAKER_BACKOFF="60000",
    )
    child = subprocess.run(
        [sys.executable, "-c", _DNS_CHILD], env=env, capture_output=True, text=True, timeout=60
    )
    assert child.returncode == 0, child.stderr[-2000:]
    result = json.loads(child.stdout.strip().splitlines()[-1])
    assert result["queries"] > 0  # the name was asked of our loopback server, no other
    *failed, fast = result["exports"]
    for seconds, outcome, transient, reached in failed:
        assert seconds < 1.0 + SLACK
        assert outcome in ("export_timeout", "export_failed")
        assert transient
        assert not reached  # nothing went out: the batch is not charged an attempt
    assert fast[1] == "circuit_open"  # the breaker counted the three
    assert fast[0] < SLACK
    assert result["breaker"] == "open"
    assert result["threads"] <= 2  # the export runner, and gRPC's spin thread at most
    assert result["shutdown"] < 1.0 + SLACK


def test_a_collector_answering_ok_just_after_our_deadline_gets_each_span_once() -> None:
    # Our deadline gives up 0.1 s before the RPC's own; the collector answers OK in between.
    # The RPC is left to end (it went out on a connection that formed), its OK counts the
    # batch as delivered late, and nothing is sent twice.
    with FakeGrpcBackend(Mode.SLOW, answer_before_deadline=0.06) as fake:
        processor, provider = _grpc_pipeline(
            fake.endpoint, timeout=0.5, max_export_batch_size=10, schedule_delay_millis=60_000
        )
        try:
            end_spans(provider, 30)
            processor.force_flush(timeout_millis=10_000)
            assert _until(lambda: processor.stats().pending == 0, 5)
            stats = processor.stats()
            assert (stats.exported, dict(stats.dropped)) == (30, {}), stats
            received = [span_id for r in fake.requests for span_id in _ids(r)]
            assert len(received) == len(set(received)) == 30  # each span received once
            assert len(_span_ids(fake)) == 30  # and accepted
        finally:
            processor.shutdown(timeout_millis=1000)


def _ids(request: Any) -> list[bytes]:
    return [
        span.span_id
        for resource in request.decoded.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]


def test_the_channel_state_is_read_from_this_grpcio(backend: FakeGrpcBackend) -> None:
    # _compat_grpc reads grpcio internals: this fails loudly when a release moves them.
    import grpc

    from otel_nonblocking._compat_grpc import channel_ready
    from otel_nonblocking.testing import refused_endpoint

    method = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
    good = grpc.insecure_channel(f"127.0.0.1:{backend.port}")
    refused = grpc.insecure_channel(refused_endpoint().split("://", 1)[1].split("/", 1)[0])
    try:
        assert channel_ready(good) is False  # made, never connected
        good.unary_unary(method)(b"", timeout=5)
        assert channel_ready(good) is True
        with pytest.raises(grpc.RpcError):
            refused.unary_unary(method)(b"", timeout=5)
        assert channel_ready(refused) is False
    finally:
        good.close()
        refused.close()
    assert channel_ready(good) is None  # closed: not known


def _refused_grpc_endpoint() -> str:
    from otel_nonblocking.testing import refused_endpoint

    return "http://" + refused_endpoint().split("://", 1)[1].split("/", 1)[0]


@pytest.mark.parametrize(
    ("fault", "outcome", "reached", "in_doubt"),
    [
        ("refused", ExportOutcome.FAILED, False, False),
        ("handshake stalls", ExportOutcome.TIMEOUT, False, False),
        # The fake resets as soon as the client sends; that races gRPC's READY (about 1 in
        # 20 runs the HTTP/2 preface is out first and the call is on a connection that
        # formed, "Stream removed"): either verdict is right, so only the rest is asserted.
        ("reset before the request", ExportOutcome.FAILED, None, False),
        ("answers UNAVAILABLE", ExportOutcome.FAILED, True, False),
        ("never answers", ExportOutcome.TIMEOUT, True, True),
    ],
)
def test_an_export_reached_the_collector_only_if_a_connection_formed(
    fault: str, outcome: ExportOutcome, reached: bool | None, in_doubt: bool
) -> None:
    with contextlib.ExitStack() as stack:
        if fault == "refused":
            endpoint = _refused_grpc_endpoint()
        elif fault == "handshake stalls":
            stall = stack.enter_context(FakeTLSStallListener())
            endpoint = f"http://127.0.0.1:{stall.port}"
        else:
            mode = {
                "reset before the request": Mode.RESET,
                "answers UNAVAILABLE": Mode.UNAVAILABLE,
                "never answers": Mode.HANG,
            }[fault]
            fake = stack.enter_context(FakeGrpcBackend(mode, retry_after=None, hang_limit=30))
            endpoint = fake.endpoint
        exporter = otlp_span_exporter(endpoint, protocol="grpc", timeout=0.5)
        try:
            started = time.monotonic()
            report = exporter.export_report(_spans())
            assert time.monotonic() - started < 0.5 + SLACK
            if reached is None:
                reached = report.reached
            assert (report.outcome, report.reached, report.transient) == (outcome, reached, True)
            # A call that never connected is cancelled: it cannot deliver the batch.
            assert (report.attempt is not None) is in_doubt
        finally:
            exporter.shutdown(timeout_millis=500)


def test_retries_exhausted_against_a_collector_answering_unavailable_drop_the_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The collector answered each attempt itself: each is charged, and a batch it keeps
    # refusing ends as backend_unavailable (not kept forever like a refused connection's).
    monkeypatch.setenv("OTEL_NONBLOCKING_BREAKER_BACKOFF", "50")
    with FakeGrpcBackend(Mode.UNAVAILABLE, retry_after=None) as fake:
        processor, provider = _grpc_pipeline(fake.endpoint, max_export_attempts=2)
        try:
            end_spans(provider, 10)
            assert _until(lambda: processor.stats().dropped_total == 10, 10), processor.stats()
            assert dict(processor.stats().dropped) == {"backend_unavailable": 10}
        finally:
            processor.shutdown(timeout_millis=200)
