"""configure_telemetry(): every signal through one call, one budget; module flush() and
shutdown() cover logs and metrics too, and say so when log records were lost."""

from __future__ import annotations

import io
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import metrics as metrics_api
from opentelemetry import trace

import otel_nonblocking as nb
from otel_nonblocking import _state
from otel_nonblocking.testing import FakeGrpcBackend, FakeOTLPBackend, Mode, refused_endpoint
from tests.conftest import run_bounded

BUDGET_MARGIN = 0.5  # seconds a bounded call may take over its budget (thread hand-offs)
# The exit budget of the tests where three signals share it against a never-answering
# collector: a third of it is time enough for each to send its request on a loaded machine.
EXIT_BUDGET = 3.0


def _emit(spans: int = 3, records: int = 3) -> None:
    tracer = trace.get_tracer("tests")
    for _ in range(spans):
        with tracer.start_as_current_span("work"):
            pass
    app_logger = logging.getLogger("tests.app")
    for i in range(records):
        app_logger.warning("record %d", i)
    metrics_api.get_meter("tests").create_counter("orders").add(3)


@pytest.mark.usefixtures("clean_globals")
def test_configure_telemetry_sends_every_signal_to_a_healthy_collector() -> None:
    with FakeOTLPBackend() as backend:
        handle = nb.configure_telemetry(
            timeout=2, endpoint=backend.base_url, service_name="shop", log_handler=True
        )
        assert handle.enabled
        assert handle.tracing is not None
        assert handle.tracing.provider is trace.get_tracer_provider()
        assert metrics_api.get_meter_provider() is handle.meter_provider
        assert handle.log_handler in logging.getLogger().handlers
        _emit()
        result = handle.flush(5)
        assert result.ok, result
        assert result.exported == 3
        assert result.signals["logs"].exported == 3
        assert result.signals["metrics"].exported >= 1
        assert backend.span_names(accepted=True) == ["work"] * 3
        assert backend.log_bodies(accepted=True) == [f"record {i}" for i in range(3)]
        assert "orders" in backend.metric_names(accepted=True)
        assert nb.configure_telemetry() is handle  # a second call keeps the first


@pytest.mark.usefixtures("clean_globals")
def test_configure_telemetry_sends_every_signal_over_grpc() -> None:
    with FakeGrpcBackend() as backend:
        handle = nb.configure_telemetry(
            timeout=2, endpoint=backend.endpoint, protocol="grpc", log_handler=True
        )
        _emit()
        result = handle.flush(5)
        assert result.ok, result
        assert backend.span_names(accepted=True) == ["work"] * 3
        assert backend.log_bodies(accepted=True) == [f"record {i}" for i in range(3)]
        assert "orders" in backend.metric_names(accepted=True)


@pytest.mark.usefixtures("clean_globals")
def test_module_flush_covers_logs_and_metrics_and_is_not_ok_when_records_are_stuck() -> None:
    with FakeOTLPBackend(Mode.HANG) as backend:
        nb.configure_telemetry(
            timeout=30, endpoint=backend.base_url, traces=False, log_handler=True
        )
        _emit(spans=0, records=5)
        started = time.monotonic()
        result = nb.flush(0.5)
        assert time.monotonic() - started < 0.5 + BUDGET_MARGIN
        assert not result.ok
        assert result.timed_out
        assert result.signals["logs"].pending + result.signals["logs"].dropped == 5
        assert not result.signals["metrics"].ok
        backend.mode = Mode.OK
        result = nb.flush(5)
        assert result.signals["logs"].exported == 5, result
        assert [r for r in backend.log_bodies(accepted=True) if r.startswith("record")]


@pytest.mark.parametrize("shutdown", [False, True])
@pytest.mark.usefixtures("clean_globals")
def test_a_never_answering_span_collector_leaves_the_logs_their_share(
    monkeypatch: pytest.MonkeyPatch, shutdown: bool
) -> None:
    monkeypatch.setenv("OTEL_BLRP_SCHEDULE_DELAY", "30000")  # records go out when asked
    with FakeOTLPBackend(Mode.HANG) as hanging, FakeOTLPBackend() as healthy:
        handle = nb.configure_telemetry(
            endpoint=healthy.base_url,
            span_exporter=nb.otlp_span_exporter(hanging.endpoint, timeout=30),
            metrics=False,
            log_handler=True,
        )
        _emit(spans=3, records=3)
        started = time.monotonic()
        result = nb.shutdown(1.5) if shutdown else nb.flush(1.5)
        assert time.monotonic() - started < 1.5 + BUDGET_MARGIN
        assert not result.ok  # the spans were not delivered
        assert result.signals["logs"].exported == 3, result
        assert healthy.log_bodies(accepted=True) == [f"record {i}" for i in range(3)]
        assert handle.log_processors[0].stats().pending == 0


@pytest.mark.usefixtures("clean_globals")
def test_module_shutdown_shares_one_deadline_across_every_signal() -> None:
    with FakeOTLPBackend(Mode.HANG) as backend:
        handle = nb.configure_telemetry(timeout=30, endpoint=backend.base_url, log_handler=True)
        _emit()
        started = time.monotonic()
        result = nb.shutdown(1.0)
        assert time.monotonic() - started < 1.0 + BUDGET_MARGIN
        assert not result.ok
        assert set(result.signals) == {"logs", "metrics"}
        assert not result.signals["logs"].ok
        logs = result.signals["logs"]
        assert logs.pending + logs.dropped == 3  # none of the 3 records is counted as sent
        assert all(r.stats().shut_down for r in handle.metric_readers)
        assert _state.installed_handles() == []


@pytest.mark.usefixtures("clean_globals")
def test_configure_telemetry_publishes_self_metrics_of_every_signal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_NONBLOCKING_SELF_METRICS", raising=False)
    monkeypatch.delenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", raising=False)
    with FakeOTLPBackend() as backend:
        handle = nb.configure_telemetry(timeout=2, endpoint=backend.base_url, log_handler=True)
        _emit()
        assert handle.flush(5).ok
        assert handle.flush(5).ok  # the second collection sees the first one's export
        names = set(backend.metric_names(accepted=True))
    assert {
        "otel.sdk.processor.span.processed",
        "otel.sdk.processor.log.processed",
        "otel.sdk.exporter.log.exported",
        "otel.sdk.exporter.metric_data_point.exported",
        "otel.sdk.metric_reader.collection.duration",
    } <= names


@pytest.mark.parametrize("how", ["module_shutdown", "exit_hook"])
@pytest.mark.usefixtures("clean_globals")
def test_module_shutdown_and_the_exit_hook_take_our_log_handler_off_the_root_logger(
    how: str,
) -> None:
    root = logging.getLogger()
    theirs = logging.StreamHandler()  # the application's own handler: not ours to remove
    root.addHandler(theirs)
    try:
        handle = nb.configure_telemetry(
            timeout=1, endpoint=refused_endpoint(), metrics=False, log_handler=True
        )
        ours = handle.log_handler
        assert ours is not None
        assert ours in root.handlers
        if how == "module_shutdown":
            nb.shutdown(1.0)
        else:
            _state.run_exit_hooks(1.0)
        assert ours not in root.handlers
        assert theirs in root.handlers
    finally:
        root.removeHandler(theirs)


@pytest.mark.usefixtures("clean_globals")
def test_switched_off_signals_install_nothing() -> None:
    handle = nb.configure_telemetry(
        endpoint=refused_endpoint(), traces=False, logs=False, metrics=True
    )
    assert handle.tracing is None
    assert handle.log_processors == []
    assert len(handle.metric_readers) == 1
    assert handle.meter_provider is metrics_api.get_meter_provider()


@pytest.mark.parametrize("env", ["true", "false", None])
@pytest.mark.usefixtures("clean_globals")
def test_log_handler_follows_the_sdks_variable_unless_given(
    monkeypatch: pytest.MonkeyPatch, env: str | None
) -> None:
    if env is None:
        monkeypatch.delenv("OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED", raising=False)
    else:
        monkeypatch.setenv("OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED", env)
    handle = nb.configure_telemetry(endpoint=refused_endpoint(), traces=False, metrics=False)
    assert (handle.log_handler is not None) == (env == "true")


@pytest.mark.usefixtures("clean_globals")
def test_disabled_sdk_installs_no_signal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    handle = nb.configure_telemetry(endpoint=refused_endpoint(), log_handler=True)
    assert not handle.enabled
    assert handle.log_handler is None
    assert handle.meter_provider is None
    assert _state.installed_handles() == []


@pytest.mark.usefixtures("clean_globals")
def test_bad_arguments_raise_configuration_error() -> None:
    with pytest.raises(nb.ConfigurationError):
        nb.configure_telemetry(endpoint=refused_endpoint(), log_handler="yes")  # type: ignore[arg-type]
    with pytest.raises(nb.ConfigurationError):
        nb.configure_telemetry(endpoint=refused_endpoint(), metric_export_interval=-1)


# -- the exit: every signal in one budget ----------------------------------------------

PROGRAM = """
import logging, sys, time
import otel_nonblocking
from opentelemetry import metrics, trace

def main():
    otel_nonblocking.configure_telemetry(
        30, endpoint=sys.argv[1], service_name="exit-test", log_handler=True
    )
    tracer = trace.get_tracer("exit-test")
    log = logging.getLogger("exit-test")
    counter = metrics.get_meter("exit-test").create_counter("orders")
    for i in range(200):
        with tracer.start_as_current_span("exit-span"):
            log.warning("record %d", i)
            counter.add(1)
    print("RETURNED-AT", repr(time.time()), flush=True)

main()
"""


def _env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(overrides)
    return env


@pytest.mark.parametrize("budget", [1.0, 2.0])
def test_exit_with_every_signal_keeps_one_budget(tmp_path: Path, budget: float) -> None:
    script = tmp_path / "program.py"
    script.write_text(PROGRAM, encoding="utf-8")
    env = _env(OTEL_NONBLOCKING_EXIT_TIMEOUT=str(int(budget * 1000)))
    with FakeOTLPBackend(Mode.HANG) as backend:
        stdout, _, exited_at = run_bounded([sys.executable, str(script), backend.base_url], env)
        paths = {r.path for r in backend.requests}
    [line] = [line for line in stdout.splitlines() if line.startswith("RETURNED-AT ")]
    seconds = exited_at - float(line.split()[1])
    print(f"all three signals, budget {budget} s: exited {seconds:.2f} s after main returned")
    assert {"/v1/traces", "/v1/logs", "/v1/metrics"} <= paths  # each signal had its turn
    assert seconds < budget + BUDGET_MARGIN


@pytest.mark.usefixtures("clean_globals")
def test_a_bare_metric_reader_joins_the_one_exit_hook_and_leaves_it_at_shutdown() -> None:
    import io
    import math

    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

    before = len(_state.exit_hooks())
    reader = nb.NonBlockingMetricReader(
        ConsoleMetricExporter(out=io.StringIO()), export_interval_millis=math.inf
    )
    hooks = _state.exit_hooks()
    assert len(hooks) == before + 1
    hooks[-1](0.5)  # the exit hook's turn
    assert reader.stats().shut_down
    assert len(_state.exit_hooks()) == before


# -- a MeterProvider of the application's, installed before ------------------------------


def _own_meter_provider(reader: object) -> Any:
    from opentelemetry.sdk.metrics import MeterProvider

    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)  # type: ignore[list-item]
    metrics_api.set_meter_provider(provider)
    return provider


@pytest.mark.usefixtures("clean_globals")
def test_a_meter_provider_built_with_our_reader_joins_the_handle(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with FakeOTLPBackend() as backend:
        reader = nb.NonBlockingMetricReader(
            nb.otlp_metric_exporter(backend.metrics_endpoint, timeout=2),
            export_interval_millis=60_000,
        )
        provider = _own_meter_provider(reader)
        handle = nb.configure_telemetry(timeout=2, endpoint=backend.base_url, traces=False)
        assert handle.meter_provider is provider
        assert handle.metric_readers == [reader]
        assert not [r for r in caplog.records if "MeterProvider" in r.getMessage()]
        metrics_api.get_meter("tests").create_counter("orders").add(3)
        result = nb.flush(5)  # the module's flush covers the application's provider too
        assert result.signals["metrics"].exported == 1, result
        assert "orders" in backend.metric_names(accepted=True)
        assert nb.shutdown(2).signals["metrics"].ok
        assert reader.stats().shut_down


@pytest.mark.usefixtures("clean_globals")
def test_a_meter_provider_without_our_reader_is_left_alone_and_warned_about_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    provider = _own_meter_provider(InMemoryMetricReader())
    handle = nb.configure_telemetry(endpoint=refused_endpoint(), traces=False, logs=False)
    assert handle.meter_provider is None
    assert handle.metric_readers == []
    assert metrics_api.get_meter_provider() is provider
    warnings = [r.getMessage() for r in caplog.records if "MeterProvider" in r.getMessage()]
    assert len(warnings) == 1
    assert "docs/metrics.md" in warnings[0]


OWN_PROVIDER_PROGRAM = """
import logging, sys, time
import otel_nonblocking
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider

def main():
    base = sys.argv[1]
    reader = otel_nonblocking.NonBlockingMetricReader(
        otel_nonblocking.otlp_metric_exporter(base + "/v1/metrics", timeout=30)
    )
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))  # exits on its own too
    otel_nonblocking.configure_telemetry(30, endpoint=base, log_handler=True)
    tracer = trace.get_tracer("exit-test")
    log = logging.getLogger("exit-test")
    counter = metrics.get_meter("exit-test").create_counter("orders")
    for i in range(200):
        with tracer.start_as_current_span("exit-span"):
            log.warning("record %d", i)
            counter.add(1)
    print("RETURNED-AT", repr(time.time()), flush=True)

main()
"""


def test_exit_with_the_applications_meter_provider_keeps_the_one_budget(tmp_path: Path) -> None:
    script = tmp_path / "program.py"
    script.write_text(OWN_PROVIDER_PROGRAM, encoding="utf-8")
    env = _env(OTEL_NONBLOCKING_EXIT_TIMEOUT=str(int(EXIT_BUDGET * 1000)))
    with FakeOTLPBackend(Mode.HANG) as backend:
        stdout, _, exited_at = run_bounded([sys.executable, str(script), backend.base_url], env)
        paths = {r.path for r in backend.requests}
    [line] = [line for line in stdout.splitlines() if line.startswith("RETURNED-AT ")]
    seconds = exited_at - float(line.split()[1])
    print(f"the application's MeterProvider with our reader: exited {seconds:.2f} s after main")
    assert {"/v1/traces", "/v1/logs", "/v1/metrics"} <= paths  # its reader had its turn too
    assert seconds < EXIT_BUDGET + BUDGET_MARGIN


@pytest.mark.usefixtures("clean_globals")
def test_metric_readers_join_the_provider_as_they_are_and_replace_otlp() -> None:
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    with FakeOTLPBackend() as backend:
        pull = InMemoryMetricReader()
        ours = nb.NonBlockingMetricReader(
            nb.otlp_metric_exporter(backend.metrics_endpoint, timeout=2),
            export_interval_millis=60_000,
        )
        handle = nb.configure_telemetry(
            endpoint=refused_endpoint(), traces=False, logs=False, metric_readers=[pull, ours]
        )
        assert handle.other_metric_readers == [pull]
        assert handle.metric_readers == [ours]  # no OTLP reader of its own: replaced
        metrics_api.get_meter("tests").create_counter("orders").add(2)
        result = handle.flush(5)
        assert result.signals["metrics"].exported == 1, result
        assert "orders" in backend.metric_names(accepted=True)
        scraped = pull.get_metrics_data()
        assert scraped is not None
        names = [
            m.name for rm in scraped.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
        ]
        assert "orders" in names  # (with the package's self-metrics beside it, if on)
        assert handle.shutdown(2).ok


@pytest.mark.usefixtures("clean_globals")
def test_the_exit_gives_every_part_of_the_handle_its_share() -> None:
    from otel_nonblocking import _setup

    with FakeOTLPBackend(Mode.HANG) as backend:
        nb.configure_telemetry(timeout=30, endpoint=backend.base_url, log_handler=True)
        # The handles' hook comes first: the log processor's and metric reader's own exit
        # hooks (made before the handle) would otherwise take the budget one after another.
        assert _state.exit_hooks()[-1] is _setup._exit_hook
        _emit()
        started = time.monotonic()
        _state.run_exit_hooks(EXIT_BUDGET)
        assert time.monotonic() - started < EXIT_BUDGET + BUDGET_MARGIN
        paths = {r.path for r in backend.requests}
    assert {"/v1/traces", "/v1/logs", "/v1/metrics"} <= paths  # each signal had its turn


@pytest.mark.usefixtures("clean_globals")
def test_the_applications_meter_provider_exit_callback_runs_the_one_fair_exit_first() -> None:
    with FakeOTLPBackend(Mode.HANG) as backend:
        reader = nb.NonBlockingMetricReader(
            nb.otlp_metric_exporter(backend.metrics_endpoint, timeout=30)
        )
        provider = _own_meter_provider(reader)
        nb.configure_telemetry(
            timeout=30, endpoint=backend.base_url, log_handler=True, exit_timeout=EXIT_BUDGET
        )
        _emit()
        _state.exit_deadline()  # the interpreter's exit has begun
        started = time.monotonic()
        provider.shutdown()  # the provider's own exit callback, before the package's
        assert time.monotonic() - started < EXIT_BUDGET + BUDGET_MARGIN
        # The package's exit ran first, every part its share; not this reader most of it.
        paths = {r.path for r in backend.requests}
        assert {"/v1/traces", "/v1/logs", "/v1/metrics"} <= paths
        assert reader.stats().shut_down


@pytest.mark.usefixtures("clean_globals")
def test_exporters_given_with_a_meter_provider_installed_before_are_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

    reader = nb.NonBlockingMetricReader(ConsoleMetricExporter(out=io.StringIO()))
    _own_meter_provider(reader)
    handle = nb.configure_telemetry(
        endpoint=refused_endpoint(),
        traces=False,
        logs=False,
        metric_exporter=ConsoleMetricExporter(out=io.StringIO()),
    )
    assert handle.metric_readers == [reader]  # the provider's own; the exporter is not used
    warnings = [r.getMessage() for r in caplog.records if "not used" in r.getMessage()]
    assert len(warnings) == 1
