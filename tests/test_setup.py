"""configure_tracing(), module flush/shutdown/aflush and flush_after keep their budgets."""

from __future__ import annotations

import asyncio
import math
import time

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

import otel_nonblocking as nb
import otel_nonblocking._setup
import otel_nonblocking.metrics
from tests.conftest import BlockingExporter, RecordingExporter

pytestmark = pytest.mark.usefixtures("clean_globals")


def _end(count: int, name: str = "work") -> None:
    tracer = trace.get_tracer("tests")
    for _ in range(count):
        with tracer.start_as_current_span(name):
            pass


def test_configure_tracing_installs_a_global_provider_that_exports() -> None:
    exporter = RecordingExporter()
    handle = nb.configure_tracing(timeout=2, exporter=exporter, service_name="svc")
    assert handle.enabled
    assert trace.get_tracer_provider() is handle.provider
    _end(5)
    result = handle.flush()
    assert result.ok
    assert result.exported == 5
    assert {s.resource.attributes["service.name"] for s in exporter.spans} == {"svc"}


def test_calling_configure_tracing_twice_does_not_double_export() -> None:
    exporter = RecordingExporter()
    first = nb.configure_tracing(exporter=exporter)
    second = nb.configure_tracing(exporter=RecordingExporter())
    assert first is second
    _end(3)
    nb.flush(2)
    assert len(exporter.spans) == 3


def test_configure_tracing_adds_to_an_existing_sdk_provider() -> None:
    provider = TracerProvider(shutdown_on_exit=False)
    trace.set_tracer_provider(provider)
    exporter = RecordingExporter()
    handle = nb.configure_tracing(exporter=exporter)
    assert handle.provider is provider
    _end(2)
    assert nb.flush(2).exported == 2


@pytest.mark.parametrize("var", ["OTEL_SDK_DISABLED", "OTEL_NONBLOCKING_DISABLED"])
def test_disabled_by_env_installs_nothing(monkeypatch, var) -> None:
    monkeypatch.setenv(var, "true")
    exporter = RecordingExporter()
    handle = nb.configure_tracing(exporter=exporter)
    assert not handle.enabled
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)
    _end(3)
    assert handle.flush(1).exported == 0
    assert nb.installed() == []


def test_module_flush_keeps_one_shared_budget_with_a_blocked_exporter() -> None:
    exporter = BlockingExporter()
    nb.configure_tracing(timeout=30, exporter=exporter)
    _end(10)
    started = time.monotonic()
    result = nb.flush(0.3)
    elapsed = time.monotonic() - started
    assert elapsed < 0.3 + 0.5
    assert result.timed_out
    assert result.pending == 10
    exporter.release.set()


def test_module_shutdown_is_bounded_and_reports_drops() -> None:
    exporter = BlockingExporter(block_shutdown=True)
    nb.configure_tracing(timeout=30, exporter=exporter, max_export_batch_size=5)
    _end(5)
    assert exporter.entered.wait(5)
    _end(20)
    started = time.monotonic()
    result = nb.shutdown(0.3)
    assert time.monotonic() - started < 0.3 + 0.5
    assert result.dropped == 20
    assert result.pending == 5
    assert nb.installed() == []
    exporter.release.set()


def test_aflush_never_blocks_the_event_loop() -> None:
    exporter = BlockingExporter()
    nb.configure_tracing(timeout=30, exporter=exporter)
    _end(3)

    async def main() -> tuple[int, float]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        started = time.monotonic()
        await nb.aflush(0.5)
        elapsed = time.monotonic() - started
        task.cancel()
        return ticks, elapsed

    ticks, elapsed = asyncio.run(main())
    assert elapsed < 0.5 + 0.5
    assert ticks >= 10  # the loop kept running while the flush waited
    exporter.release.set()


def test_aflush_keeps_its_budget_when_the_executor_is_busy() -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    nb.configure_tracing(timeout=2, exporter=RecordingExporter())
    _end(3)
    release = threading.Event()

    async def main() -> tuple[nb.FlushResult, float]:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=1))
        blocker = loop.run_in_executor(None, release.wait, 5.0)  # the only thread, taken
        started = time.monotonic()
        try:
            result = await nb.aflush(0.2)
            return result, time.monotonic() - started
        finally:
            release.set()
            await blocker

    result, elapsed = asyncio.run(main())
    # It used to wait for the executor: here until the blocker gave up after 5 s.
    assert elapsed < 0.2 + 0.5
    assert result.timed_out
    assert not result.ok


_DAY = "must be at most a day (86400 seconds)"
_FINITE = "must be a finite number of seconds"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: nb.flush(-1), "timeout must be 0 or greater, got -1"),
        (lambda: nb.flush(math.inf), f"timeout {_FINITE}, got inf"),
        (lambda: nb.flush(86_401), f"timeout {_DAY}, got 86401"),
        (lambda: nb.shutdown(math.nan), f"timeout {_FINITE}, got nan"),
        (lambda: nb.TracingHandle(None, None, 2.0).flush(1e9), f"timeout {_DAY}, got 1000000000.0"),
        (lambda: asyncio.run(nb.aflush(math.inf)), f"timeout {_FINITE}, got inf"),
        (lambda: nb.flush_after(timeout=-1), "timeout must be 0 or greater, got -1"),
        (lambda: nb.flush_after(timeout=10**400), f"timeout {_FINITE}, got {10**400}"),
        (lambda: nb.flush_after(margin=math.inf), f"margin {_FINITE}, got inf"),
        (lambda: nb.flush_after(margin="0.2"), f"margin {_FINITE}, got str"),
        (
            lambda: nb.configure_tracing(timeout="2", exporter=RecordingExporter()),
            f"timeout {_FINITE}, got str",
        ),
        (
            lambda: nb.configure_tracing(timeout=10**400, exporter=RecordingExporter()),
            f"timeout {_FINITE}, got {10**400}",
        ),
        (
            lambda: nb.otlp_span_exporter("http://127.0.0.1:9/v1/traces", timeout=10**400),
            f"timeout {_FINITE}, got {10**400}",
        ),
    ],
    ids=[
        "flush-neg",
        "flush-inf",
        "flush-day",
        "shutdown-nan",
        "handle-flush-day",
        "aflush-inf",
        "flush-after-neg",
        "flush-after-huge-int",
        "margin-inf",
        "margin-str",
        "configure-str",
        "configure-huge-int",
        "otlp-huge-int",
    ],
)
def test_every_seconds_argument_is_checked_alike(call, message) -> None:
    # One check for every seconds argument of the façade: an infinite, NaN or
    # day-plus budget used to be taken (a flush that may wait for ever), a huge int
    # raised OverflowError instead of ConfigurationError, and the words differed.
    with pytest.raises(nb.ConfigurationError) as caught:
        call()
    assert str(caught.value) == message
    assert nb.installed() == []


def test_exit_timeout_is_in_seconds_and_exit_timeout_millis_still_works() -> None:
    # Every budget of configure_tracing() is in seconds, as timeout= and Langfuse's
    # exit_timeout= are; the millisecond form keeps working, with a DeprecationWarning.
    assert otel_nonblocking._setup._exit_millis(0.25, nb.UNSET) == 250
    with pytest.warns(DeprecationWarning, match="exit_timeout= in seconds"):
        assert otel_nonblocking._setup._exit_millis(nb.UNSET, 1500) == 1500
    with pytest.raises(nb.ConfigurationError, match=r"^exit_timeout must be 0 or greater, got -1$"):
        nb.configure_tracing(exporter=RecordingExporter(), exit_timeout=-1)
    with pytest.raises(nb.ConfigurationError, match="not also exit_timeout_millis"):
        nb.configure_tracing(exporter=RecordingExporter(), exit_timeout=1, exit_timeout_millis=9)
    assert nb.installed() == []
    with pytest.warns(DeprecationWarning, match="exit_timeout= in seconds"):
        handle = nb.configure_tracing(exporter=RecordingExporter(), exit_timeout_millis=2000)
    assert handle.enabled


class FakeLambdaContext:
    def __init__(self, remaining_millis: int) -> None:
        self.remaining = remaining_millis

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining


def test_flush_after_decorator_is_bounded_by_the_lambda_time_left() -> None:
    exporter = BlockingExporter()
    nb.configure_tracing(timeout=30, exporter=exporter)
    wrapper = nb.flush_after(timeout=10, margin=0.2)

    @wrapper
    def handler(event: dict[str, int], context: FakeLambdaContext) -> int:
        _end(3)
        return event["n"] * 2

    started = time.monotonic()
    assert handler({"n": 21}, FakeLambdaContext(remaining_millis=500)) == 42
    elapsed = time.monotonic() - started
    assert elapsed < 0.3 + 0.5  # 500 ms left minus the 200 ms margin
    assert wrapper.result is not None
    assert wrapper.result.timed_out
    exporter.release.set()


def test_flush_after_flushes_when_the_handler_raises() -> None:
    exporter = RecordingExporter()
    nb.configure_tracing(exporter=exporter)

    @nb.flush_after(timeout=2)
    def handler() -> None:
        _end(2)
        raise KeyError("boom")

    with pytest.raises(KeyError):
        handler()
    assert len(exporter.spans) == 2


def test_flush_after_context_managers_sync_and_async() -> None:
    exporter = RecordingExporter()
    nb.configure_tracing(exporter=exporter)
    with nb.flush_after(timeout=2) as block:
        _end(1)
    assert block.result is not None
    assert block.result.exported == 1

    async def main() -> None:
        async with nb.flush_after(timeout=2) as ablock:
            _end(1)
        assert ablock.result is not None
        assert ablock.result.exported == 1

    asyncio.run(main())
    assert len(exporter.spans) == 2


def test_flush_after_async_handler() -> None:
    exporter = RecordingExporter()
    nb.configure_tracing(exporter=exporter)

    @nb.flush_after(timeout=2)
    async def handler(context: FakeLambdaContext) -> str:
        _end(4)
        return "done"

    assert asyncio.run(handler(FakeLambdaContext(10_000))) == "done"
    assert len(exporter.spans) == 4


@pytest.mark.parametrize(
    "call",
    [
        lambda: nb.configure_tracing(timeout="2"),  # type: ignore[arg-type]
        lambda: nb.configure_tracing(timeout=0),
        lambda: nb.flush_after(timeout=-1),
        lambda: nb.flush_after(margin=-0.1),
        lambda: nb.flush_after(context=object()),  # type: ignore[arg-type]
        lambda: nb.flush(-1),
    ],
    ids=[
        "timeout-str",
        "timeout-zero",
        "flush-after-neg",
        "margin-neg",
        "bad-context",
        "flush-neg",
    ],
)
def test_bad_explicit_arguments_raise_configuration_error(call) -> None:
    with pytest.raises(nb.ConfigurationError):
        call()


def test_configure_tracing_publishes_self_metrics_unless_switched_off(monkeypatch) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    def names(reader: InMemoryMetricReader) -> set[str]:
        data = reader.get_metrics_data()
        if data is None:
            return set()
        return {
            metric.name
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
        }

    reader = InMemoryMetricReader()
    handle = nb.configure_tracing(exporter=RecordingExporter())
    nb.metrics.enable_self_metrics(MeterProvider(metric_readers=[reader]))
    _end(3)
    handle.flush()
    assert "otel.sdk.processor.span.processed" in names(reader)
    handle.shutdown(1)

    called: list[bool] = []
    monkeypatch.setattr(nb._setup, "_enable_self_metrics", lambda: called.append(True))
    nb.configure_tracing(exporter=RecordingExporter()).shutdown(1)
    assert called == [True]  # on by default
    monkeypatch.setenv("OTEL_NONBLOCKING_SELF_METRICS", "false")
    nb.configure_tracing(exporter=RecordingExporter())
    assert called == [True]  # switched off: not called again
