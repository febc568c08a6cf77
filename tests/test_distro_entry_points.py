"""Any exporter name the stock configurator accepts: loaded from the
``opentelemetry_{traces,metrics,logs}_exporter`` entry points, behind our bounded pipelines.

The exporters come from a test-only distribution written into a tmp dir (a ``*.dist-info``
with ``entry_points.txt`` and its module), put on ``sys.path`` in process and on
``PYTHONPATH`` under the real ``opentelemetry-instrument``. They write what they receive
to the file ``FAKE_EXPORTERS_OUT`` names, one JSON line per item.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import metrics as metrics_api
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

import otel_nonblocking as nb
from otel_nonblocking import _distro, _state
from otel_nonblocking._distro import OtelNonblockingConfigurator
from otel_nonblocking.testing import FakeOTLPBackend, refused_endpoint
from tests.conftest import run_bounded

INSTRUMENT = Path(sys.executable).parent / "opentelemetry-instrument"
EXIT_MARGIN = 2.0  # as tests/test_distro.py: interpreter teardown under CI load
BUDGET_MARGIN = 0.5

MODULE = '''
import json, os, threading
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.metrics.export import (
    InMemoryMetricReader, MetricExporter, MetricExportResult,
)
try:
    from opentelemetry.sdk._logs.export import LogRecordExporter as _LogBase
except ImportError:  # SDK 1.33
    from opentelemetry.sdk._logs.export import LogExporter as _LogBase
try:
    from opentelemetry.sdk._logs.export import LogRecordExportResult as _LogResult
except ImportError:
    from opentelemetry.sdk._logs.export import LogExportResult as _LogResult


def _write(kind, value):
    path = os.environ.get("FAKE_EXPORTERS_OUT")
    if path:  # (unset once a test has ended and undone its variables)
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"kind": kind, "value": value}) + "\\n")


class FileSpanExporter(SpanExporter):
    def export(self, spans):
        for span in spans:
            _write("span", span.name)
            _write("trace-id", format(span.context.trace_id, "032x"))
        return SpanExportResult.SUCCESS

    def shutdown(self):
        _write("span-exporter-shutdown", None)


class HangingSpanExporter(SpanExporter):
    def export(self, spans):
        threading.Event().wait()  # never returns

    def shutdown(self):
        threading.Event().wait()


class FileLogExporter(_LogBase):
    def export(self, batch):
        for item in batch:
            record = getattr(item, "log_record", item)
            _write("log", str(record.body))
        return _LogResult.SUCCESS

    def force_flush(self, timeout_millis=30_000):
        return True

    def shutdown(self):
        pass


class FileMetricExporter(MetricExporter):
    def export(self, metrics_data, timeout_millis=10_000, **kwargs):
        for rm in metrics_data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    points = [p for p in metric.data.data_points if hasattr(p, "value")]
                    if points:  # sums and gauges (the package's self-metrics may add others)
                        _write("metric", [metric.name, sum(p.value for p in points)])
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis=10_000):
        return True

    def shutdown(self, timeout_millis=30_000, **kwargs):
        pass


class PullReader(InMemoryMetricReader):
    """A pull exporter: nothing is pushed; whoever scrapes it collects."""

    instances = []

    def __init__(self):
        super().__init__()
        PullReader.instances.append(self)

    def shutdown(self, timeout_millis=30_000, **kwargs):
        _write("pull-reader-shutdown", None)
        super().shutdown(timeout_millis=timeout_millis)


class HangingPullReader(InMemoryMetricReader):
    def shutdown(self, timeout_millis=30_000, **kwargs):
        threading.Event().wait()  # ignores its timeout: never returns


class Broken(SpanExporter):
    def __init__(self):
        raise RuntimeError("cannot build")


class ArgSampler(Sampler):
    """Samples every span and marks it with the OTEL_TRACES_SAMPLER_ARG it was made with."""

    def __init__(self, arg):
        self.arg = arg

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None,
                      links=None, trace_state=None):
        return SamplingResult(Decision.RECORD_AND_SAMPLE, {"sampler.arg": str(self.arg)})

    def get_description(self):
        return "ArgSampler"


def not_a_sampler(arg):
    return object()


FIXED_TRACE_ID = 0x0123456789ABCDEF0123456789ABCDEF


class FixedIdGenerator(RandomIdGenerator):
    def generate_trace_id(self):
        return FIXED_TRACE_ID
'''

ENTRY_POINTS = """
[opentelemetry_traces_exporter]
file = fake_exporters:FileSpanExporter
hanging = fake_exporters:HangingSpanExporter
not_a_span_exporter = fake_exporters:FileLogExporter
unimportable = fake_exporters_gone:Nothing
unbuildable = fake_exporters:Broken

[opentelemetry_metrics_exporter]
file = fake_exporters:FileMetricExporter
pull = fake_exporters:PullReader
hanging_pull = fake_exporters:HangingPullReader

[opentelemetry_logs_exporter]
file = fake_exporters:FileLogExporter

[opentelemetry_traces_sampler]
by_arg = fake_exporters:ArgSampler
not_a_sampler = fake_exporters:not_a_sampler

[opentelemetry_id_generator]
fixed = fake_exporters:FixedIdGenerator
not_a_generator = fake_exporters:ArgSampler
"""
FIXED_TRACE_ID = "0123456789abcdef0123456789abcdef"


def write_distribution(root: Path) -> Path:
    """A test-only distribution in ``root``: its module and its ``*.dist-info``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "fake_exporters.py").write_text(MODULE, encoding="utf-8")
    info = root / "fake_exporters-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fake-exporters\nVersion: 1.0\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(ENTRY_POINTS, encoding="utf-8")
    return root


def received(out: Path) -> list[dict[str, Any]]:
    if not out.exists():
        return []
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def values(out: Path, kind: str) -> list[Any]:
    return [item["value"] for item in received(out) if item["kind"] == kind]


@pytest.fixture
def out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The distribution on sys.path (in process), and the file its exporters write to."""
    monkeypatch.syspath_prepend(str(write_distribution(tmp_path / "site")))
    monkeypatch.delitem(sys.modules, "fake_exporters", raising=False)
    path = tmp_path / "received.jsonl"
    monkeypatch.setenv("FAKE_EXPORTERS_OUT", str(path))
    for var in _distro.EXPORTER_VARS.values():
        monkeypatch.setenv(var, "none")
    yield path
    sys.modules.pop("fake_exporters", None)


def _handle() -> nb.TelemetryHandle:
    [handle] = [h for h in _state.installed_handles() if isinstance(h, nb.TelemetryHandle)]
    return handle


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "otel_nonblocking"]


# -- in process ------------------------------------------------------------------------------


@pytest.mark.usefixtures("clean_globals")
def test_a_span_exporter_named_by_its_entry_point_runs_behind_our_processor(
    out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "file")
    OtelNonblockingConfigurator().configure()
    [processor] = _handle().span_processors
    assert isinstance(processor, nb.NonBlockingSpanProcessor)
    assert isinstance(processor.exporter, nb.DeadlineSpanExporter)
    assert type(processor.exporter.inner).__name__ == "FileSpanExporter"
    with trace.get_tracer("tests").start_as_current_span("checkout"):
        pass
    assert nb.flush(2).ok
    assert values(out, "span") == ["checkout"]


@pytest.mark.usefixtures("clean_globals")
def test_log_and_metric_exporters_and_a_pull_reader_named_by_entry_points(
    out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_LOGS_EXPORTER", "file")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "file,pull")
    monkeypatch.setenv("OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED", "true")
    OtelNonblockingConfigurator().configure(auto_instrumentation_version="0.0")
    handle = _handle()
    [log_processor] = handle.log_processors
    assert type(log_processor.exporter.inner).__name__ == "FileLogExporter"
    [reader] = handle.metric_readers  # the push exporter, behind our reader
    assert isinstance(reader, nb.NonBlockingMetricReader)
    assert type(reader.exporter.inner).__name__ == "FileMetricExporter"
    [pull] = handle.other_metric_readers  # the pull exporter, added as it is
    assert type(pull).__name__ == "PullReader"
    assert metrics_api.get_meter_provider() is handle.meter_provider

    logging.getLogger("tests.app").warning("hello")
    metrics_api.get_meter("tests").create_counter("orders").add(3)
    result = nb.flush(2)
    assert result.ok, result
    assert values(out, "log") == ["hello"]
    assert ["orders", 3] in values(out, "metric")
    scraped = pull.get_metrics_data()  # type: ignore[attr-defined]
    names = [
        m.name for rm in scraped.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
    ]
    assert "orders" in names
    assert nb.shutdown(2).ok
    assert values(out, "pull-reader-shutdown") == [None]  # shut down within the budget


@pytest.mark.parametrize(
    ("value", "entry"),
    [
        ("zipkin_json", 1),  # not installed
        ("otlp,no_such_exporter", 2),
        ("unimportable", 1),  # its module is gone
        ("not_a_span_exporter", 1),  # a log exporter under the traces group
        ("unbuildable", 1),  # raises when made
    ],
)
@pytest.mark.usefixtures("clean_globals")
def test_a_name_that_cannot_be_loaded_warns_once_naming_the_variable_and_is_skipped(
    out: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    value: str,
    entry: int,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", value)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", refused_endpoint())
    OtelNonblockingConfigurator().configure()
    OtelNonblockingConfigurator().configure()
    warnings = [m for m in _messages(caplog) if "OTEL_TRACES_EXPORTER" in m]
    assert len(warnings) == 1
    assert f"entry {entry}" in warnings[0]
    assert "skipped" in warnings[0]
    named = value.split(",")[entry - 1]
    assert named not in caplog.text  # the variable's value is never shown
    inner = [p.exporter.inner for h in nb.installed() for p in h._processors()]
    # Skipped, not replaced: OTLP only where the variable asked for it.
    if value.startswith("otlp,"):
        [otlp] = inner
        assert isinstance(otlp, OTLPSpanExporter)
    else:
        assert nb.installed() == []


@pytest.mark.usefixtures("clean_globals")
def test_every_name_of_a_signal_skipped_leaves_the_other_signals_configured(
    out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "prometheus_not_installed")
    monkeypatch.setenv("OTEL_LOGS_EXPORTER", "file")
    OtelNonblockingConfigurator().configure()
    handle = _handle()
    assert handle.metric_readers == []
    assert handle.other_metric_readers == []
    assert handle.meter_provider is None  # nothing asked for could be built: not OTLP
    assert len(handle.log_processors) == 1


@pytest.mark.usefixtures("clean_globals")
def test_a_hanging_foreign_reader_keeps_shutdown_within_its_budget(
    out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "hanging_pull")
    OtelNonblockingConfigurator().configure()
    [reader] = _handle().other_metric_readers
    assert type(reader).__name__ == "HangingPullReader"
    started = time.monotonic()
    result = nb.shutdown(0.5)
    assert time.monotonic() - started < 0.5 + BUDGET_MARGIN
    assert not result.ok  # the reader's shutdown did not end in time
    assert not result.signals["metrics"].complete


def test_configure_telemetry_refuses_metric_readers_that_are_not_readers() -> None:
    with pytest.raises(nb.ConfigurationError, match="metric_readers"):
        nb.configure_telemetry(metric_readers=[object()])  # type: ignore[list-item]


# -- under the real opentelemetry-instrument ------------------------------------------------

APP = """
import json, logging, time
from opentelemetry import metrics, trace
import fake_exporters

tracer = trace.get_tracer("app")
log = logging.getLogger("app")
counter = metrics.get_meter("app").create_counter("orders")
for i in range(200):
    with tracer.start_as_current_span("handle-request"):
        log.warning("order %d", i)
        counter.add(1)
scraped = [
    [m.name, sum(getattr(p, "value", 0) for p in m.data.data_points)]
    for reader in fake_exporters.PullReader.instances
    for rm in reader.get_metrics_data().resource_metrics
    for sm in rm.scope_metrics
    for m in sm.metrics
]
print("APP-REPORT " + json.dumps({"scraped": scraped, "ended_at": time.time()}), flush=True)
"""


def _run(tmp_path: Path, **env_vars: str) -> tuple[dict[str, Any], float, str]:
    site = write_distribution(tmp_path / "site")
    app = tmp_path / "app.py"
    app.write_text(APP, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(
        PYTHONPATH=str(site),
        FAKE_EXPORTERS_OUT=str(tmp_path / "received.jsonl"),
        OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED="true",
        **env_vars,
    )
    stdout, stderr, exited_at = run_bounded([str(INSTRUMENT), sys.executable, str(app)], env)
    [line] = [x for x in stdout.splitlines() if x.startswith("APP-REPORT ")]
    report = json.loads(line.removeprefix("APP-REPORT "))
    return report, exited_at - report["ended_at"], stderr


def test_instrumented_app_sends_every_signal_to_exporters_named_by_entry_points(
    tmp_path: Path,
) -> None:
    with FakeOTLPBackend() as backend:  # where OTLP would go, were a name replaced by it
        report, _, _ = _run(
            tmp_path,
            OTEL_TRACES_EXPORTER="file",
            OTEL_LOGS_EXPORTER="file",
            OTEL_METRICS_EXPORTER="file,pull",
            OTEL_EXPORTER_OTLP_ENDPOINT=backend.base_url,
        )
        assert backend.request_count == 0
    out = tmp_path / "received.jsonl"
    assert values(out, "span") == ["handle-request"] * 200  # delivered by the exit hook
    assert sorted(values(out, "log")) == sorted(f"order {i}" for i in range(200))
    assert ["orders", 200] in values(out, "metric")  # the last collection, at exit
    assert ["orders", 200] in report["scraped"]  # the pull reader, as it is
    assert values(out, "pull-reader-shutdown") == [None]
    assert values(out, "span-exporter-shutdown") == [None]


def test_instrumented_app_with_hanging_entry_point_exporters_exits_within_the_budget(
    tmp_path: Path,
) -> None:
    _, exit_seconds, _ = _run(
        tmp_path,
        OTEL_TRACES_EXPORTER="hanging",
        OTEL_LOGS_EXPORTER="none",
        OTEL_METRICS_EXPORTER="hanging_pull",
        OTEL_NONBLOCKING_EXIT_TIMEOUT="1000",
    )
    print(f"hanging span exporter and pull reader: exited {exit_seconds:.2f} s after main")
    assert exit_seconds < 1.0 + EXIT_MARGIN


def test_instrumented_app_skips_a_name_with_no_entry_point_and_says_so(tmp_path: Path) -> None:
    with FakeOTLPBackend() as backend:
        _, _, stderr = _run(
            tmp_path,
            OTEL_TRACES_EXPORTER="zipkin_json,file",
            OTEL_LOGS_EXPORTER="none",
            OTEL_METRICS_EXPORTER="none",
            OTEL_EXPORTER_OTLP_ENDPOINT=backend.base_url,
        )
        assert backend.request_count == 0  # not replaced by OTLP
    assert values(tmp_path / "received.jsonl", "span") == ["handle-request"] * 200
    assert "OTEL_TRACES_EXPORTER: entry 1" in stderr
    assert "zipkin_json" not in stderr
    assert "Traceback" not in stderr


@pytest.mark.usefixtures("clean_globals")
def test_a_name_listed_twice_makes_one_pipeline(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "file, console,file,Console")
    exporters = _distro.exporters_from_env("traces")
    assert exporters is not None
    assert [type(e).__name__ for e in exporters] == ["FileSpanExporter", "ConsoleSpanExporter"]


# -- the sampler and the id generator, from their entry points ------------------------------


@pytest.mark.usefixtures("clean_globals")
def test_sampler_and_id_generator_come_from_their_entry_points(
    out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "file")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "by_arg")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "given")
    monkeypatch.setenv("OTEL_PYTHON_ID_GENERATOR", "fixed")
    OtelNonblockingConfigurator().configure(auto_instrumentation_version="0.66b2")
    [handle] = nb.installed()
    provider = handle.provider
    assert provider is trace.get_tracer_provider()
    assert provider is not None
    assert provider.resource.attributes["telemetry.auto.version"] == "0.66b2"
    with trace.get_tracer("tests").start_as_current_span("checkout") as span:
        assert format(span.get_span_context().trace_id, "032x") == FIXED_TRACE_ID
        assert span.attributes is not None
        assert span.attributes["sampler.arg"] == "given"
    assert nb.flush(2).ok
    assert values(out, "trace-id") == [FIXED_TRACE_ID]


@pytest.mark.usefixtures("clean_globals")
def test_the_sdks_own_sampler_names_are_loaded_too(
    out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "file")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "TraceIdRatio")  # the SDK reads it in any case
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0")
    OtelNonblockingConfigurator().configure()
    with trace.get_tracer("tests").start_as_current_span("checkout") as span:
        assert not span.get_span_context().trace_flags.sampled
    assert nb.flush(2).ok
    assert values(out, "span") == []


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("OTEL_TRACES_SAMPLER", "xray_not_installed"),
        ("OTEL_TRACES_SAMPLER", "not_a_sampler"),
        ("OTEL_PYTHON_ID_GENERATOR", "xray_not_installed"),
        ("OTEL_PYTHON_ID_GENERATOR", "not_a_generator"),
    ],
)
@pytest.mark.usefixtures("clean_globals")
def test_a_sampler_or_id_generator_that_cannot_be_loaded_warns_and_the_default_applies(
    out: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    var: str,
    value: str,
) -> None:
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "file")
    monkeypatch.setenv(var, value)
    OtelNonblockingConfigurator().configure()
    [handle] = nb.installed()  # traces are still configured
    provider = handle.provider
    assert provider is not None
    assert provider.sampler.get_description().startswith("ParentBased{root:AlwaysOnSampler")
    assert type(provider.id_generator) is RandomIdGenerator
    warnings = [m for m in _messages(caplog) if var in m]
    assert len(warnings) == 1
    assert "default" in warnings[0]
    assert value not in caplog.text


def test_instrumented_app_uses_the_id_generator_of_its_entry_point(tmp_path: Path) -> None:
    _run(
        tmp_path,
        OTEL_TRACES_EXPORTER="file",
        OTEL_LOGS_EXPORTER="none",
        OTEL_METRICS_EXPORTER="none",
        OTEL_PYTHON_ID_GENERATOR="fixed",
    )
    assert values(tmp_path / "received.jsonl", "trace-id") == [FIXED_TRACE_ID] * 200


@pytest.mark.usefixtures("clean_globals")
def test_a_declarative_configuration_file_is_not_silently_ignored(
    out: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_CONFIG_FILE", "/etc/otel/secret-name.yaml")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "file")
    OtelNonblockingConfigurator().configure()
    warnings = [m for m in _messages(caplog) if "OTEL_CONFIG_FILE" in m]
    assert len(warnings) == 1
    assert "secret-name" not in caplog.text
    assert len(nb.installed()) == 1  # configured from the variables
