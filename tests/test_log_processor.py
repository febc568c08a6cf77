"""NonBlockingLogRecordProcessor: the log door to the pipeline core, through a real
DeadlineLogExporter, on every supported SDK release."""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import structlog
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs import export as _logs_export
from opentelemetry.sdk.trace import TracerProvider

from otel_nonblocking import ConfigurationError, DeadlineLogExporter, otlp_log_exporter
from otel_nonblocking._log_processor import NonBlockingLogRecordProcessor
from otel_nonblocking.testing import FakeOTLPBackend, Mode

SLACK = 0.5  # what a bounded call may take beyond its budget on a loaded machine

# The exporter names of the installed release (newer SDKs deprecate the older names).
LogExporter: Any = getattr(_logs_export, "LogRecordExporter", None) or _logs_export.LogExporter
LogExportResult: Any = (
    getattr(_logs_export, "LogRecordExportResult", None) or _logs_export.LogExportResult
)
InMemoryLogExporter: Any = (
    getattr(_logs_export, "InMemoryLogRecordExporter", None) or _logs_export.InMemoryLogExporter
)


class BlockedExporter(LogExporter):
    """Holds every export until ``release`` is set; counts what it was handed."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.records: list[Any] = []

    def export(self, batch: Sequence[Any]) -> LogExportResult:
        self.release.wait(10)
        self.records.extend(batch)
        return LogExportResult.SUCCESS

    def shutdown(self) -> None:
        self.release.set()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class FailingExporter(LogExporter):
    """Fails every export, and logs a warning about it as the SDK's exporters do."""

    def __init__(self) -> None:
        self.records: list[Any] = []

    def export(self, batch: Sequence[Any]) -> LogExportResult:
        self.records.extend(batch)
        logging.getLogger("tests.failing_exporter").warning("export failed, %d records", 1)
        return LogExportResult.FAILURE

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _handler(provider: LoggerProvider) -> logging.Handler:
    with warnings.catch_warnings():  # deprecated in newer SDKs in favour of the contrib one
        warnings.simplefilter("ignore", DeprecationWarning)
        return LoggingHandler(level=logging.NOTSET, logger_provider=provider)


@pytest.fixture
def provider() -> Iterator[LoggerProvider]:
    provider = LoggerProvider(shutdown_on_exit=False)
    yield provider
    provider.shutdown()


def _body(record: Any) -> Any:
    return record.log_record.body


def _emit(provider: LoggerProvider, n: int, name: str = "tests.logs") -> None:
    """``n`` records through the stdlib and the SDK's handler (the same on every release)."""
    handler = _handler(provider)
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        for i in range(n):
            logger.info("record %d", i)
    finally:
        logger.removeHandler(handler)


def _balanced(processor: NonBlockingLogRecordProcessor) -> None:
    s = processor.stats()
    assert s.enqueued == s.exported + s.dropped_total + s.pending + s.spooled, s


# -- the hot path -----------------------------------------------------------------------


def test_on_emit_never_waits_on_a_blocked_exporter(provider: LoggerProvider) -> None:
    exporter = BlockedExporter()
    processor = NonBlockingLogRecordProcessor(
        DeadlineLogExporter(exporter, timeout_millis=30000),
        max_export_batch_size=10,
        max_queue_size=100,
    )
    provider.add_log_record_processor(processor)
    began = time.perf_counter()
    _emit(provider, 500)  # the first batch is stuck in export; the queue fills, then drops
    took = time.perf_counter() - began
    assert took < 1.0, f"500 emits took {took:.2f} s with the exporter blocked"
    assert not exporter.records
    s = processor.stats()
    assert s.enqueued == 500
    assert s.dropped.get("queue_full", 0) >= 500 - 100 - 10
    exporter.release.set()
    assert processor.force_flush(5000)
    assert len(exporter.records) == s.enqueued - s.dropped_total
    _balanced(processor)


def test_records_reach_the_exporter_in_the_sdks_readable_form(provider: LoggerProvider) -> None:
    exporter = InMemoryLogExporter()
    processor = NonBlockingLogRecordProcessor(DeadlineLogExporter(exporter))
    provider.add_log_record_processor(processor)
    _emit(provider, 3)
    assert processor.force_flush(5000)
    finished = exporter.get_finished_logs()
    assert [_body(r) for r in finished] == ["record 0", "record 1", "record 2"]
    # Every release's exporters read the record the way the SDK's batch processor hands it.
    assert all(r.instrumentation_scope.name == "tests.logs" for r in finished)
    assert "ReadWrite" not in type(finished[0]).__name__
    s = processor.stats()
    assert (s.enqueued, s.exported) == (3, 3)


# -- settings ---------------------------------------------------------------------------


def test_blrp_variables_set_the_log_processor_and_not_the_span_ones(monkeypatch) -> None:
    monkeypatch.setenv("OTEL_BLRP_MAX_QUEUE_SIZE", "300")
    monkeypatch.setenv("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "30")
    monkeypatch.setenv("OTEL_BLRP_SCHEDULE_DELAY", "250")
    monkeypatch.setenv("OTEL_BLRP_EXPORT_TIMEOUT", "4000")
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "7")
    processor = NonBlockingLogRecordProcessor(DeadlineLogExporter(InMemoryLogExporter()))
    try:
        settings = processor._settings
        assert settings.max_queue_size == 300
        assert settings.max_export_batch_size == 30
        assert settings.schedule_delay == 0.25
        assert settings.export_timeout == 4.0
        assert settings.spool_dir == ""  # no spool for log records
        given = NonBlockingLogRecordProcessor(
            DeadlineLogExporter(InMemoryLogExporter()), 100, 20, 3000, 400
        )
        assert (given._settings.schedule_delay, given._settings.max_export_batch_size) == (
            0.1,
            20,
        )
        assert (given._settings.export_timeout, given._settings.max_queue_size) == (3.0, 400)
        given.shutdown()
    finally:
        processor.shutdown()


def test_a_plain_exporter_is_wrapped_in_a_deadline_of_export_timeout_millis() -> None:
    inner = InMemoryLogExporter()
    processor = NonBlockingLogRecordProcessor(inner, export_timeout_millis=1500)
    try:
        assert isinstance(processor.exporter, DeadlineLogExporter)
        assert processor.exporter.inner is inner
        assert processor.exporter.timeout_seconds == 1.5
        given = DeadlineLogExporter(InMemoryLogExporter(), timeout_millis=700)
        assert NonBlockingLogRecordProcessor(given).exporter is given
    finally:
        processor.shutdown()
    with pytest.raises(ConfigurationError, match="log exporter"):
        NonBlockingLogRecordProcessor(object())


# -- our own warnings never feed the log pipeline ---------------------------------------


class _Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_our_warnings_and_the_exporters_never_feed_the_log_pipeline(provider) -> None:
    exporter = FailingExporter()
    processor = NonBlockingLogRecordProcessor(
        DeadlineLogExporter(exporter, failure_threshold=1000),  # every batch reaches it
        schedule_delay_millis=20,
        max_export_batch_size=5,
        retry_buffer_size=0,  # each failure is a drop, and the worker warns about it
    )
    provider.add_log_record_processor(processor)
    root = logging.getLogger()
    handler, kept = _handler(provider), _Kept()
    old_level = root.level
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    root.addHandler(kept)
    try:
        app = logging.getLogger("tests.app")
        for i in range(20):
            app.info("app record %d", i)
            time.sleep(0.01)
        processor.force_flush(2000)
        processor.shutdown(timeout_millis=2000)  # its final warning runs on this thread
    finally:
        root.removeHandler(handler)
        root.removeHandler(kept)
        root.setLevel(old_level)
    names = {r.name for r in kept.records}
    # The test means something: both kinds of warning were logged ...
    assert "otel_nonblocking" in names
    assert "tests.failing_exporter" in names
    # ... and the pipeline received none of them: only the application's 20 records.
    bodies = [_body(r) for r in exporter.records]
    assert sorted(bodies) == sorted(f"app record {i}" for i in range(20))
    s = processor.stats()
    assert s.enqueued == 20
    assert processor.turned_away >= 2  # counted, never enqueued
    _balanced(processor)


# -- trace ids, and the ways in ---------------------------------------------------------


def test_a_record_emitted_in_a_span_carries_its_ids_on_the_wire(provider) -> None:
    tracer_provider = TracerProvider(shutdown_on_exit=False)
    tracer = tracer_provider.get_tracer("tests.logs")
    with FakeOTLPBackend() as backend:
        processor = NonBlockingLogRecordProcessor(otlp_log_exporter(backend.logs_endpoint))
        provider.add_log_record_processor(processor)
        handler = _handler(provider)
        logger = logging.getLogger("tests.logs.wire")
        logger.propagate = False
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        try:
            with tracer.start_as_current_span("work") as span:
                logger.info("inside")
            logger.info("outside")
            assert processor.force_flush(5000)
        finally:
            logger.removeHandler(handler)
        records = {r.body.string_value: r for r in backend.log_records()}
    tracer_provider.shutdown()
    context = span.get_span_context()
    inside, outside = records["inside"], records["outside"]
    assert int.from_bytes(inside.trace_id, "big") == context.trace_id
    assert int.from_bytes(inside.span_id, "big") == context.span_id
    assert not outside.trace_id


def test_structlog_through_stdlib_logging_reaches_the_exporter_with_ids(provider) -> None:
    exporter = InMemoryLogExporter()
    processor = NonBlockingLogRecordProcessor(DeadlineLogExporter(exporter))
    provider.add_log_record_processor(processor)
    handler = _handler(provider)
    std = logging.getLogger("tests.logs.structlog")
    std.propagate = False
    std.setLevel(logging.INFO)
    std.addHandler(handler)
    structlog.configure(
        processors=[structlog.processors.KeyValueRenderer(key_order=["event"])],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    tracer_provider = TracerProvider(shutdown_on_exit=False)
    try:
        with tracer_provider.get_tracer("t").start_as_current_span("s") as span:
            structlog.get_logger("tests.logs.structlog").info("checkout", order=7)
        assert processor.force_flush(5000)
    finally:
        structlog.reset_defaults()
        std.removeHandler(handler)
        tracer_provider.shutdown()
    (record,) = exporter.get_finished_logs()
    assert "event='checkout'" in str(_body(record))
    assert "order=7" in str(_body(record))
    assert record.log_record.trace_id == span.get_span_context().trace_id
    assert record.log_record.span_id == span.get_span_context().span_id


# -- bounded flush and shutdown against a backend that never answers --------------------


@pytest.mark.parametrize("mode", [Mode.HANG, Mode.DRIP])
def test_flush_and_shutdown_return_within_budget(provider, mode: Mode) -> None:
    with FakeOTLPBackend(mode) as backend:
        processor = NonBlockingLogRecordProcessor(
            otlp_log_exporter(backend.logs_endpoint, timeout=0.5), export_timeout_millis=500
        )
        provider.add_log_record_processor(processor)
        _emit(provider, 50)
        began = time.monotonic()
        ok = processor.force_flush(1000)
        took = time.monotonic() - began
        assert not ok
        assert took < 1.0 + SLACK, f"force_flush took {took:.2f} s"
        began = time.monotonic()
        processor.shutdown(timeout_millis=1000)
        took = time.monotonic() - began
        assert took < 1.0 + SLACK, f"shutdown took {took:.2f} s"
        s = processor.stats()
        assert s.enqueued == 50
        assert s.exported == 0
        assert s.pending == 0
        _balanced(processor)


def test_records_of_the_package_logger_are_turned_away_on_any_thread(provider) -> None:
    exporter = InMemoryLogExporter()
    processor = NonBlockingLogRecordProcessor(DeadlineLogExporter(exporter))
    provider.add_log_record_processor(processor)
    for name in ("otel_nonblocking", "otel_nonblocking.integrations", "otel_nonblocking_app"):
        provider.get_logger(name).emit(LogRecord(body=name, severity_number=SeverityNumber.WARN))
    assert processor.force_flush(5000)
    assert [_body(r) for r in exporter.get_finished_logs()] == ["otel_nonblocking_app"]
    assert processor.stats().enqueued == 1
    assert processor.turned_away == 2


class FlakyExporter(LogExporter):
    """Fails its first ``failures`` exports (as a refused connection does), then succeeds."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.records: list[Any] = []

    def export(self, batch: Sequence[Any]) -> LogExportResult:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionRefusedError("refused")
        self.records.extend(batch)
        return LogExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def test_a_batch_that_failed_for_a_transient_reason_is_sent_again_once(provider) -> None:
    exporter = FlakyExporter(failures=2)
    processor = NonBlockingLogRecordProcessor(
        DeadlineLogExporter(exporter, failure_threshold=100), max_export_batch_size=10
    )
    provider.add_log_record_processor(processor)
    _emit(provider, 10)
    assert processor.force_flush(5000)
    assert sorted(_body(r) for r in exporter.records) == sorted(f"record {i}" for i in range(10))
    s = processor.stats()
    assert (s.enqueued, s.exported, s.dropped_total) == (10, 10, 0)
    assert s.retried == 20  # the batch of 10 went out again twice
    _balanced(processor)


# -- process exit: the package's one exit budget, whatever the collector does -----------

EXIT_PROGRAM = """
import logging, sys, time, warnings
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from otel_nonblocking import NonBlockingLogRecordProcessor

provider = LoggerProvider()  # shutdown_on_exit=True: the SDK's own exit hook as well
provider.add_log_record_processor(
    NonBlockingLogRecordProcessor(OTLPLogExporter(endpoint=sys.argv[1], timeout=30))
)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    logging.getLogger().addHandler(LoggingHandler(logger_provider=provider))
logging.getLogger().setLevel(logging.INFO)
for i in range(25):
    logging.getLogger("exit-test").info("record %d", i)
print("RETURNED-AT", repr(time.time()), flush=True)
"""


@pytest.mark.parametrize(
    ("env", "budget"), [({}, 2.0), ({"OTEL_NONBLOCKING_EXIT_TIMEOUT": "500"}, 0.5)]
)
def test_exit_keeps_the_budget_against_a_collector_that_never_answers(
    tmp_path, env: dict[str, str], budget: float
) -> None:
    import os
    import sys

    from tests.conftest import run_bounded

    script = tmp_path / "program.py"
    script.write_text(EXIT_PROGRAM, encoding="utf-8")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    environ.update(env)
    with FakeOTLPBackend(Mode.HANG) as backend:
        stdout, _, exited_at = run_bounded(
            [sys.executable, str(script), backend.logs_endpoint], environ
        )
        assert backend.request_count >= 1  # the exit did try to export
    [line] = [x for x in stdout.splitlines() if x.startswith("RETURNED-AT ")]
    seconds = exited_at - float(line.split()[1])
    assert seconds < budget + 1.0, f"exited {seconds:.2f} s after main returned"


def test_force_flush_after_shutdown_returns_at_once(provider) -> None:
    # SDK 1.33's LoggingHandler.flush() calls it at exit, after the exit hook shut the
    # processor down, while holding the handler's lock that the worker's warning may need.
    exporter = BlockedExporter()
    processor = NonBlockingLogRecordProcessor(
        DeadlineLogExporter(exporter, timeout_millis=30000), max_export_batch_size=5
    )
    provider.add_log_record_processor(processor)
    _emit(provider, 20)
    processor.shutdown(timeout_millis=200)  # the export is stuck: the budget runs out
    began = time.monotonic()
    assert not processor.force_flush(5000)
    took = time.monotonic() - began
    exporter.release.set()
    assert took < SLACK, f"force_flush after shutdown took {took:.2f} s"


def test_after_a_503_with_retry_after_every_record_goes_out_once(provider) -> None:
    with FakeOTLPBackend(Mode.UNAVAILABLE, retry_after=1) as backend:
        processor = NonBlockingLogRecordProcessor(
            otlp_log_exporter(backend.logs_endpoint, timeout=2), max_export_batch_size=10
        )
        provider.add_log_record_processor(processor)
        _emit(provider, 10)
        assert backend.wait_for_requests(1)
        began = time.monotonic()
        backend.mode = Mode.OK
        assert processor.force_flush(5000)
        waited = time.monotonic() - began
        bodies = backend.log_bodies(accepted=True)
        refused = backend.request_count - 1
    assert sorted(bodies) == sorted(f"record {i}" for i in range(10))  # each exactly once
    assert refused >= 1
    s = processor.stats()
    assert (s.enqueued, s.exported, s.dropped_total) == (10, 10, 0)
    assert waited < 5.0, f"the flush took {waited:.2f} s"


def test_records_after_shutdown_are_counted_as_shutdown_drops(provider) -> None:
    from otel_nonblocking import _state

    before = _state.exit_registered_count()
    processor = NonBlockingLogRecordProcessor(InMemoryLogExporter())
    provider.add_log_record_processor(processor)
    assert _state.exit_registered_count() == before + 1  # the exit hook will close it
    processor.shutdown()
    processor.shutdown()  # idempotent
    assert _state.exit_registered_count() == before  # and lets go of it once shut down
    _emit(provider, 3)
    s = processor.stats()
    assert (s.enqueued, s.dropped.get("shutdown")) == (3, 3)
    _balanced(processor)


@pytest.mark.filterwarnings("ignore:.*multi-threaded.*:DeprecationWarning")
def test_a_forked_child_gets_a_fresh_queue_and_worker(provider) -> None:
    import os

    from tests.conftest import wait_for_child

    exporter = BlockedExporter()
    processor = NonBlockingLogRecordProcessor(
        DeadlineLogExporter(exporter, timeout_millis=30000), max_export_batch_size=5
    )
    provider.add_log_record_processor(processor)
    _emit(provider, 20)  # the parent's worker is stuck in an export, records queued
    pid = os.fork()
    if pid == 0:  # the child: must not hang, must not send the parent's records
        code = 1
        try:
            exporter.release.set()
            before = processor.stats()
            _emit(provider, 7, name="tests.logs.child")
            flushed = processor.force_flush(5000)
            after = processor.stats()
            if (before.enqueued, flushed, after.exported, len(exporter.records)) == (0, True, 7, 7):
                code = 0
        finally:
            os._exit(code)
    code = wait_for_child(pid)
    exporter.release.set()
    assert code == 0
