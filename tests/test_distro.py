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
from otel_nonblocking import _distro
from otel_nonblocking._distro import OtelNonblockingConfigurator, OtelNonblockingDistro
from otel_nonblocking.testing import FakeOTLPBackend, Mode, refused_endpoint
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


def _base_env(**overrides: str) -> dict[str, str]:
    """The test process's environment without any OTEL_* variable, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(overrides)
    return env


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
    request = backend.requests[0]
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


_DISTRO_DEFAULTS = {
    "OTEL_TRACES_EXPORTER": "otlp",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    "OTEL_METRICS_EXPORTER": "none",
    "OTEL_LOGS_EXPORTER": "none",
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
def test_configurator_warns_about_an_unsupported_exporter_and_uses_otlp(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", refused_endpoint())
    OtelNonblockingConfigurator().configure()
    [handle] = nb.installed()
    assert handle.processor is not None
    assert isinstance(handle.processor.exporter.inner, OTLPSpanExporter)
    messages = [r.getMessage() for r in caplog.records if r.name == "otel_nonblocking"]
    assert any("OTEL_TRACES_EXPORTER" in m for m in messages)
    assert any("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL" in m for m in messages)


@pytest.mark.usefixtures("clean_globals")
def test_configurator_never_raises_into_the_host(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(**kwargs: object) -> None:
        raise RuntimeError("configure bug")

    monkeypatch.setattr(_distro, "configure_tracing", broken)
    OtelNonblockingConfigurator().configure()
    assert nb.installed() == []
    assert any(
        r.levelno == logging.WARNING and "tracing is off" in r.getMessage() for r in caplog.records
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
