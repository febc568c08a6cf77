"""opentelemetry-instrument uses our distro and configurator, against real fake collectors."""

from __future__ import annotations

import json
import logging
import os
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider

import otel_nonblocking as nb
from otel_nonblocking import _distro, _state, _telemetry
from otel_nonblocking._distro import OtelNonblockingConfigurator, OtelNonblockingDistro
from otel_nonblocking.testing import FakeGrpcBackend, FakeOTLPBackend, Mode, refused_endpoint
from tests.conftest import run_bounded

INSTRUMENT = Path(sys.executable).parent / "opentelemetry-instrument"
EXIT_MARGIN = 2.0  # seconds allowed on top of an exit budget (interpreter teardown under CI load;
# the stock distro takes 10 s or more against the same collector)

# The application: a request span with child spans around some work, then a report
# of what the global provider holds and how long the work itself took.
APP = """
import json, os, time
from opentelemetry import trace

def describe(processor):
    info = {"type": type(processor).__name__}
    if info["type"] == "NonBlockingSpanProcessor":
        exporter = processor.exporter
        info.update(
            batch_size=processor._batch_size,
            max_queue_size=processor._max_queue_size,
            schedule_delay=processor._schedule_delay,
            export_timeout=processor._export_timeout,
            deadline=exporter.timeout_seconds,
            exporter=type(exporter).__name__,
            inner=type(exporter.inner).__name__,
        )
    return info

def main():
    tracer = trace.get_tracer("app")
    requests = int(os.environ.get("APP_REQUESTS", "3"))
    queries = int(os.environ.get("APP_QUERIES", "4"))
    pause = float(os.environ.get("APP_PAUSE", "0"))
    started = time.perf_counter()
    for _ in range(requests):
        with tracer.start_as_current_span("handle-request"):
            for _ in range(queries):
                with tracer.start_as_current_span("query-db"):
                    time.sleep(pause)
    work = time.perf_counter() - started
    provider = trace.get_tracer_provider()
    active = getattr(provider, "_active_span_processor", None)
    processors = list(getattr(active, "_span_processors", ()))
    report = {
        "work_seconds": work,
        "provider": type(provider).__name__,
        "processors": [describe(p) for p in processors],
        "ended_at": time.time(),
    }
    print("APP-REPORT " + json.dumps(report), flush=True)

main()
"""


# The tests of one signal switch the others off (the distro's default is otlp for all
# three, to the default endpoint); the tests of all three set them.
_TRACES_ONLY = {"OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"}


def _base_env(**overrides: str) -> dict[str, str]:
    """The test process's environment without any OTEL_* variable, with metrics and logs
    off, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(_TRACES_ONLY)
    env.update(overrides)
    return env


@pytest.fixture(autouse=True)
def _traces_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """In process too: metrics and logs off unless a test sets them."""
    for var, value in _TRACES_ONLY.items():
        monkeypatch.setenv(var, value)


class AppRun:
    def __init__(self, report: dict[str, Any], exited_at: float, stdout: str, stderr: str):
        self.report = report
        self.stdout = stdout
        self.stderr = stderr
        self.exit_seconds = exited_at - report["ended_at"]

    @property
    def processors(self) -> list[dict[str, Any]]:
        return list(self.report["processors"])

    def ours(self) -> dict[str, Any]:
        [processor] = self.processors
        assert processor["type"] == "NonBlockingSpanProcessor"
        return processor


def _run_app(tmp_path: Path, env: dict[str, str], *, instrument: bool = True) -> AppRun:
    app = tmp_path / "app.py"
    app.write_text(APP, encoding="utf-8")
    command = [str(INSTRUMENT)] if instrument else []
    command += [sys.executable, str(app)]
    stdout, stderr, exited_at = run_bounded(command, env, cwd=tmp_path)
    reports = [line for line in stdout.splitlines() if line.startswith("APP-REPORT ")]
    assert len(reports) == 1, (stdout[-2000:], stderr[-2000:])
    return AppRun(json.loads(reports[0].removeprefix("APP-REPORT ")), exited_at, stdout, stderr)


def _resource_attributes(backend: FakeOTLPBackend) -> dict[str, str]:
    request = next(r for r in backend.requests if r.path.endswith("/v1/traces"))
    assert request.decoded is not None
    resource = request.decoded.resource_spans[0].resource
    return {kv.key: kv.value.string_value for kv in resource.attributes}


# -- entry points and the distro's defaults ------------------------------------------------


@pytest.mark.parametrize(
    ("group", "cls"),
    [
        ("opentelemetry_distro", OtelNonblockingDistro),
        ("opentelemetry_configurator", OtelNonblockingConfigurator),
    ],
)
def test_entry_points_named_otel_nonblocking_load_our_classes(group: str, cls: type) -> None:
    [entry_point] = [ep for ep in entry_points(group=group) if ep.name == "otel_nonblocking"]
    assert entry_point.load() is cls


def test_opentelemetry_instrument_is_installed_next_to_the_interpreter() -> None:
    assert INSTRUMENT.is_file()


_DISTRO_DEFAULTS = {  # opentelemetry-distro's, but http/protobuf (it sets grpc)
    "OTEL_TRACES_EXPORTER": "otlp",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    "OTEL_METRICS_EXPORTER": "otlp",
    "OTEL_LOGS_EXPORTER": "otlp",
}


def test_distro_sets_its_defaults_when_the_environment_has_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for var in _DISTRO_DEFAULTS:
        monkeypatch.setenv(var, "placeholder")  # so that monkeypatch restores the original
        monkeypatch.delenv(var)
    OtelNonblockingDistro()._configure()
    assert {var: os.environ[var] for var in _DISTRO_DEFAULTS} == _DISTRO_DEFAULTS


def test_user_environment_wins_over_the_distro_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    mine = {
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_LOGS_EXPORTER": "otlp",
    }
    for var, value in mine.items():
        monkeypatch.setenv(var, value)
    OtelNonblockingDistro().configure()  # the public entry opentelemetry-instrument calls
    assert {var: os.environ[var] for var in mine} == mine


# -- the configurator, in process (what _load_configurators does) ----------------------------


@pytest.mark.usefixtures("clean_globals")
def test_load_configurators_replaces_the_proxy_provider_with_ours(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from opentelemetry.instrumentation.auto_instrumentation._load import _load_configurators

    assert not isinstance(trace.get_tracer_provider(), TracerProvider)
    with FakeOTLPBackend() as backend:
        monkeypatch.setenv("OTEL_PYTHON_CONFIGURATOR", "otel_nonblocking")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", backend.endpoint)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "in-process")
        _load_configurators()
        provider = trace.get_tracer_provider()
        assert isinstance(provider, TracerProvider)
        [handle] = nb.installed()
        assert handle.provider is provider
        assert isinstance(handle.processor, nb.NonBlockingSpanProcessor)
        with trace.get_tracer("tests").start_as_current_span("configured"):
            pass
        assert nb.flush(2).ok
        assert backend.span_names(accepted=True) == ["configured"]
        assert _resource_attributes(backend)["service.name"] == "in-process"


@pytest.mark.usefixtures("clean_globals")
def test_configurator_adds_to_an_sdk_provider_installed_before_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    provider = TracerProvider(shutdown_on_exit=False)
    trace.set_tracer_provider(provider)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", refused_endpoint())
    OtelNonblockingConfigurator().configure(auto_instrumentation_version="0.0")
    [handle] = nb.installed()
    assert handle.provider is provider
    assert trace.get_tracer_provider() is provider


@pytest.mark.parametrize("value", ["none", " None ", "none,"])
@pytest.mark.usefixtures("clean_globals")
def test_configurator_with_exporter_none_installs_nothing(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", value)
    OtelNonblockingConfigurator().configure()
    assert nb.installed() == []
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)


@pytest.mark.parametrize("value", ["", "  ", "otlp", "OTLP", "console,otlp"])
@pytest.mark.usefixtures("clean_globals")
def test_configurator_uses_otlp_when_the_exporter_is_otlp_or_unset(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", value)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", refused_endpoint())
    OtelNonblockingConfigurator().configure()
    [handle] = nb.installed()
    assert handle.processor is not None
    assert isinstance(handle.processor.exporter.inner, OTLPSpanExporter)


@pytest.mark.usefixtures("clean_globals")
def test_traces_none_still_gives_log_records_trace_ids_as_the_stock_configurator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with FakeOTLPBackend() as backend:
        monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
        monkeypatch.setenv("OTEL_LOGS_EXPORTER", "otlp")
        monkeypatch.setenv("OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED", "true")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", backend.base_url)
        OtelNonblockingConfigurator().configure()
        assert isinstance(trace.get_tracer_provider(), TracerProvider)  # no processor on it
        with trace.get_tracer("tests").start_as_current_span("request") as span:
            logging.getLogger("tests.app").warning("inside")
        assert nb.flush(5).ok
        [record] = [r for r in backend.log_records(accepted=True) if r.body.string_value]
        assert record.trace_id == span.get_span_context().trace_id.to_bytes(16, "big")
        assert record.span_id == span.get_span_context().span_id.to_bytes(8, "big")
        assert backend.spans() == []  # traces are not exported


@pytest.mark.parametrize("var", ["OTEL_SDK_DISABLED", "OTEL_NONBLOCKING_DISABLED"])
@pytest.mark.usefixtures("clean_globals")
def test_configurator_installs_nothing_when_disabled(
    monkeypatch: pytest.MonkeyPatch, var: str
) -> None:
    monkeypatch.setenv(var, "true")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", refused_endpoint())
    OtelNonblockingConfigurator().configure()
    assert nb.installed() == []
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)


@pytest.mark.usefixtures("clean_globals")
def test_configurator_warns_about_an_exporter_it_cannot_load_and_skips_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin,otlp")  # zipkin is not installed
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", refused_endpoint())
    OtelNonblockingConfigurator().configure()
    [handle] = nb.installed()
    assert handle.processor is not None
    assert isinstance(handle.processor.exporter.inner, OTLPSpanExporter)
    assert len(handle._processors()) == 1  # the OTLP asked for; zipkin skipped, not replaced
    messages = [r.getMessage() for r in caplog.records if r.name == "otel_nonblocking"]
    assert any("OTEL_TRACES_EXPORTER" in m and "skipped" in m for m in messages)
    assert any("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL" in m for m in messages)


@pytest.mark.usefixtures("clean_globals")
def test_configurator_never_raises_into_the_host(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(**kwargs: object) -> None:
        raise RuntimeError("configure bug")

    monkeypatch.setattr(_telemetry, "configure_telemetry", broken)
    OtelNonblockingConfigurator().configure()
    assert nb.installed() == []
    assert any(
        r.levelno == logging.WARNING and "telemetry is off" in r.getMessage()
        for r in caplog.records
    )


# -- opentelemetry-instrument in a subprocess ------------------------------------------------


def test_instrumented_app_sends_spans_through_our_processor(tmp_path: Path) -> None:
    with FakeOTLPBackend() as backend:
        env = _base_env(
            OTEL_EXPORTER_OTLP_ENDPOINT=backend.base_url,  # the SDK appends /v1/traces
            OTEL_EXPORTER_OTLP_HEADERS="x-tenant=blue",
            OTEL_SERVICE_NAME="checkout",
            OTEL_RESOURCE_ATTRIBUTES="deployment.environment=test,team=payments",
        )
        run = _run_app(tmp_path, env)
        # Spans ended just before exit: the exit hook delivered them.
        assert backend.wait_for_spans(3 * 5, timeout=5, accepted=True)
        names = backend.span_names(accepted=True)
        assert sorted(set(names)) == ["handle-request", "query-db"]
        assert names.count("handle-request") == 3
        assert names.count("query-db") == 12
        attributes = _resource_attributes(backend)
        assert attributes["service.name"] == "checkout"
        assert attributes["deployment.environment"] == "test"
        assert attributes["team"] == "payments"
        assert backend.requests[0].headers["x-tenant"] == "blue"
    assert run.report["provider"] == "TracerProvider"
    processor = run.ours()
    assert processor["exporter"] == "DeadlineSpanExporter"
    assert processor["inner"] in ("OTLPSpanExporter", "_FastOTLPSpanExporter")


def test_never_answering_collector_neither_slows_the_app_nor_delays_its_exit(
    tmp_path: Path,
) -> None:
    workload = {"APP_REQUESTS": "10", "APP_QUERIES": "4", "APP_PAUSE": "0.01"}
    off = _run_app(tmp_path, _base_env(**workload), instrument=False)
    assert off.report["provider"] == "ProxyTracerProvider"
    with FakeOTLPBackend(Mode.HANG) as backend:
        env = _base_env(
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=backend.endpoint,
            OTEL_BSP_MAX_EXPORT_BATCH_SIZE="5",  # exports start (and hang) during the work
            OTEL_NONBLOCKING_EXIT_TIMEOUT="1000",
            **workload,
        )
        run = _run_app(tmp_path, env)
        assert backend.request_count >= 1  # the collector was reached, and never answered
    run.ours()
    assert run.report["work_seconds"] < off.report["work_seconds"] + 0.5
    assert run.exit_seconds < 1.0 + EXIT_MARGIN


def test_exporter_none_installs_nothing(tmp_path: Path) -> None:
    with FakeOTLPBackend() as backend:
        env = _base_env(
            OTEL_TRACES_EXPORTER="none", OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=backend.endpoint
        )
        run = _run_app(tmp_path, env)
        assert backend.request_count == 0
    assert run.report["provider"] == "ProxyTracerProvider"
    assert run.processors == []


def test_console_exporter_prints_spans_through_our_processor(tmp_path: Path) -> None:
    with FakeOTLPBackend() as backend:
        env = _base_env(
            OTEL_TRACES_EXPORTER="console", OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=backend.endpoint
        )
        run = _run_app(tmp_path, env)
        assert backend.request_count == 0
    processor = run.ours()
    assert processor["inner"] == "ConsoleSpanExporter"
    assert run.stdout.count('"name": "query-db"') == 12
    assert run.stdout.count('"name": "handle-request"') == 3


@pytest.mark.parametrize(
    ("timeout_vars", "deadline"),
    [
        ({"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "1.5"}, 1.5),  # seconds, as the SDK reads it
        ({"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "1500"}, 1.5),  # milliseconds, as the spec says
        ({"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "3", "OTEL_EXPORTER_OTLP_TIMEOUT": "9"}, 3.0),
        ({"OTEL_EXPORTER_OTLP_TIMEOUT": "9"}, 9.0),
    ],
)
def test_standard_variables_configure_the_processor_and_the_deadline(
    tmp_path: Path, timeout_vars: dict[str, str], deadline: float
) -> None:
    with FakeOTLPBackend() as backend:
        env = _base_env(
            OTEL_PYTHON_DISTRO="otel_nonblocking",  # as when opentelemetry-distro is installed
            OTEL_PYTHON_CONFIGURATOR="otel_nonblocking",
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=backend.endpoint,
            OTEL_BSP_MAX_QUEUE_SIZE="100",
            OTEL_BSP_MAX_EXPORT_BATCH_SIZE="4",
            OTEL_BSP_SCHEDULE_DELAY="250",
            OTEL_BSP_EXPORT_TIMEOUT="7000",
            **timeout_vars,
        )
        run = _run_app(tmp_path, env)
        assert backend.wait_for_spans(15, timeout=5, accepted=True)
        assert max(len(r.spans) for r in backend.requests) <= 4  # OTEL_BSP batch size used
    processor = run.ours()
    assert processor["max_queue_size"] == 100
    assert processor["batch_size"] == 4
    assert processor["schedule_delay"] == 0.25
    assert processor["export_timeout"] == 7.0
    assert processor["deadline"] == deadline


@pytest.mark.parametrize("var", ["OTEL_SDK_DISABLED", "OTEL_NONBLOCKING_DISABLED"])
def test_disabled_installs_nothing_under_opentelemetry_instrument(tmp_path: Path, var: str) -> None:
    with FakeOTLPBackend() as backend:
        env = _base_env(**{var: "true", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": backend.endpoint})
        run = _run_app(tmp_path, env)
        assert backend.request_count == 0
    assert run.report["provider"] == "ProxyTracerProvider"
    assert run.processors == []


# -- every signal: traces, logs and metrics ------------------------------------------------

# 200 spans, 200 log records (stdlib logging, through the LoggingHandler the SDK's variable
# asks for) and a counter.
APP_ALL_SIGNALS = """
import json, logging, time
from opentelemetry import metrics, trace

def main():
    tracer = trace.get_tracer("app")
    log = logging.getLogger("app")
    counter = metrics.get_meter("app").create_counter("orders")
    for i in range(200):
        with tracer.start_as_current_span("handle-request"):
            log.warning("order %d", i)
            counter.add(1)
    report = {
        "tracer_provider": type(trace.get_tracer_provider()).__name__,
        "meter_provider": type(metrics.get_meter_provider()).__name__,
        "ended_at": time.time(),
    }
    print("APP-REPORT " + json.dumps(report), flush=True)

main()
"""

_ALL_SIGNALS = {
    "OTEL_TRACES_EXPORTER": "otlp",
    "OTEL_METRICS_EXPORTER": "otlp",
    "OTEL_LOGS_EXPORTER": "otlp",
    "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED": "true",
}


def _run_all_signals(tmp_path: Path, env: dict[str, str]) -> AppRun:
    app = tmp_path / "app_all.py"
    app.write_text(APP_ALL_SIGNALS, encoding="utf-8")
    stdout, stderr, exited_at = run_bounded(
        [str(INSTRUMENT), sys.executable, str(app)], env, cwd=tmp_path
    )
    reports = [line for line in stdout.splitlines() if line.startswith("APP-REPORT ")]
    assert len(reports) == 1, (stdout[-2000:], stderr[-2000:])
    return AppRun(json.loads(reports[0].removeprefix("APP-REPORT ")), exited_at, stdout, stderr)


def _backend(protocol: str, mode: Mode = Mode.OK) -> FakeOTLPBackend | FakeGrpcBackend:
    return FakeGrpcBackend(mode) if protocol == "grpc" else FakeOTLPBackend(mode)


def _base_url(backend: FakeOTLPBackend | FakeGrpcBackend) -> str:
    return backend.endpoint if isinstance(backend, FakeGrpcBackend) else backend.base_url


def _received(backend: FakeOTLPBackend | FakeGrpcBackend) -> tuple[list[Any], list[Any]]:
    """The decoded spans and log records the backend accepted, over either protocol."""
    if isinstance(backend, FakeOTLPBackend):
        return backend.accepted_spans(), backend.log_records(accepted=True)
    spans, records = [], []
    for request in backend.requests:
        if not request.accepted:
            continue
        for resource in getattr(request.decoded, "resource_spans", ()):
            spans += [span for scope in resource.scope_spans for span in scope.spans]
        for resource in getattr(request.decoded, "resource_logs", ()):
            records += [r for scope in resource.scope_logs for r in scope.log_records]
    return spans, records


def _signals_seen(backend: FakeOTLPBackend | FakeGrpcBackend) -> set[str]:
    if isinstance(backend, FakeGrpcBackend):
        return {r.signal for r in backend.requests}
    return {r.path.rsplit("/", 1)[-1] for r in backend.requests}


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_instrumented_app_sends_every_signal_to_a_healthy_collector(
    tmp_path: Path, protocol: str
) -> None:
    with _backend(protocol) as backend:
        env = _base_env(
            **_ALL_SIGNALS,
            OTEL_EXPORTER_OTLP_ENDPOINT=_base_url(backend),
            OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
        )
        run = _run_all_signals(tmp_path, env)
        assert backend.span_names(accepted=True) == ["handle-request"] * 200
        bodies = [b for b in backend.log_bodies(accepted=True) if b.startswith("order ")]
        assert sorted(bodies) == sorted(f"order {i}" for i in range(200))
        assert "orders" in backend.metric_names(accepted=True)
        # Each log record carries the trace and span ids of the span it was logged in.
        spans, records = _received(backend)
        span_ids = {(s.trace_id, s.span_id) for s in spans}
        app_records = [r for r in records if r.body.string_value.startswith("order ")]
        record_ids = {(r.trace_id, r.span_id) for r in app_records}
        assert len(span_ids) == 200
        assert record_ids == span_ids
    assert run.report["tracer_provider"] == "TracerProvider"
    assert run.report["meter_provider"] == "MeterProvider"


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_never_answering_collector_for_every_signal_does_not_delay_exit(
    tmp_path: Path, protocol: str
) -> None:
    with _backend(protocol, Mode.HANG) as backend:
        env = _base_env(
            **_ALL_SIGNALS,
            OTEL_EXPORTER_OTLP_ENDPOINT=_base_url(backend),
            OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
            OTEL_NONBLOCKING_EXIT_TIMEOUT="1000",
        )
        run = _run_all_signals(tmp_path, env)
        seen = _signals_seen(backend)
    print(f"all three signals over {protocol}, never answering: exited {run.exit_seconds:.2f} s")
    assert {"traces", "logs", "metrics"} <= seen  # each signal did try
    assert run.exit_seconds < 1.0 + EXIT_MARGIN


@pytest.mark.usefixtures("clean_globals")
def test_configurator_installs_every_signal_with_one_pipeline_per_listed_exporter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from opentelemetry import metrics as metrics_api

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", refused_endpoint().rsplit("/v1/", 1)[0])
    monkeypatch.setenv("OTEL_LOGS_EXPORTER", "otlp,console")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "console, otlp")
    OtelNonblockingConfigurator().configure()
    [handle] = [h for h in _state.installed_handles() if isinstance(h, nb.TelemetryHandle)]
    inner = [type(p.exporter.inner).__name__ for p in handle.log_processors]
    assert inner[0] == "OTLPLogExporter"
    assert inner[1].startswith("ConsoleLog")  # ConsoleLogExporter before SDK 1.36
    assert [type(r.exporter.inner).__name__ for r in handle.metric_readers] == [
        "OTLPMetricExporter",
        "ConsoleMetricExporter",
    ]
    assert metrics_api.get_meter_provider() is handle.meter_provider


@pytest.mark.parametrize("var", ["OTEL_LOGS_EXPORTER", "OTEL_METRICS_EXPORTER"])
@pytest.mark.usefixtures("clean_globals")
def test_configurator_warns_about_an_exporter_of_any_signal_it_cannot_load_and_skips_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, var: str
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", refused_endpoint().rsplit("/v1/", 1)[0])
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv(var, "prometheus")  # not installed here
    OtelNonblockingConfigurator().configure()
    [handle] = [h for h in _state.installed_handles() if isinstance(h, nb.TelemetryHandle)]
    parts = handle.log_processors if var == "OTEL_LOGS_EXPORTER" else handle.metric_readers
    assert parts == []  # skipped: OTLP in its place would send data nobody asked for
    messages = [r.getMessage() for r in caplog.records if r.name == "otel_nonblocking"]
    assert [m for m in messages if var in m]


@pytest.mark.usefixtures("clean_globals")
def test_exporter_names_choose_the_protocol_per_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", refused_endpoint().rsplit("/v1/", 1)[0])
    monkeypatch.setenv("OTEL_LOGS_EXPORTER", "otlp_proto_grpc, otlp_proto_http, otlp_proto_grpc")
    exporters = _distro.exporters_from_env("logs")
    assert exporters is not None
    modules = [type(e.inner).__module__ for e in exporters]
    assert modules == [  # one pipeline per distinct entry, in the order given
        "opentelemetry.exporter.otlp.proto.grpc._log_exporter",
        "opentelemetry.exporter.otlp.proto.http._log_exporter",
    ]
