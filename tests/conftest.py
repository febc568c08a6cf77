"""Shared fixtures: in-memory exporters with controllable behaviour and a span factory."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_nonblocking.testing import reset


class RecordingExporter(SpanExporter):
    """Succeeds (or returns ``result``) and remembers every span it was given."""

    def __init__(self, result: object = SpanExportResult.SUCCESS) -> None:
        self.result = result
        self.spans: list[ReadableSpan] = []
        self.calls = 0
        self.shutdown_called = False
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock:
            self.calls += 1
            self.spans.extend(spans)
        return self.result  # type: ignore[return-value]

    def shutdown(self) -> None:
        self.shutdown_called = True


class BlockingExporter(RecordingExporter):
    """Blocks every export (and shutdown, if asked) until ``release`` is set."""

    def __init__(self, *, block_shutdown: bool = False) -> None:
        super().__init__()
        self.release = threading.Event()
        self.entered = threading.Event()
        self.block_shutdown = block_shutdown

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.entered.set()
        self.release.wait(30)
        return super().export(spans)

    def shutdown(self) -> None:
        super().shutdown()
        if self.block_shutdown:
            self.release.wait(30)


class RaisingExporter(RecordingExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        super().export(spans)
        raise RuntimeError("exporter bug")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    """Escape lone surrogates in captured output: property tests hand the SDK attribute keys
    with them, the SDK's own warnings quote those keys, and pytest-xdist cannot send a
    report whose text is not valid UTF-8 (the worker would crash)."""
    report = yield
    report.sections = [  # type: ignore[attr-defined]
        (title, text.encode("utf-8", "backslashreplace").decode("utf-8"))
        for title, text in report.sections  # type: ignore[attr-defined]
    ]
    return report


@pytest.fixture(autouse=True)
def _fresh_state() -> Iterator[None]:
    """The package's process-wide state as after import, before and after every test."""
    reset()
    yield
    reset()


@pytest.fixture
def make_spans() -> Iterator[Callable[..., TracerProvider]]:
    """``make_spans(processor, n)`` ends ``n`` spans through a provider with ``processor``."""
    providers: list[TracerProvider] = []

    def _provider(*processors: object) -> TracerProvider:
        provider = TracerProvider(shutdown_on_exit=False)
        for processor in processors:
            provider.add_span_processor(processor)  # type: ignore[arg-type]
        providers.append(provider)
        return provider

    yield _provider
    for provider in providers:
        provider.shutdown()


def end_spans(provider: TracerProvider, count: int, name: str = "span") -> None:
    tracer = provider.get_tracer("tests")
    for _ in range(count):
        tracer.start_span(name).end()


@pytest.fixture
def caplog_nb(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


@pytest.fixture
def clean_globals() -> Iterator[None]:
    """No global tracer, logger or meter provider, nothing installed and no handler of
    ours on the root logger, before and after the test."""
    from opentelemetry import trace
    from opentelemetry._logs import _internal as logs_api
    from opentelemetry.metrics import _internal as meters_api
    from opentelemetry.util._once import Once

    root = logging.getLogger()
    handlers = list(root.handlers)

    def forget_provider() -> None:
        reset()  # first: shuts down what is installed, while the provider is still set
        trace._TRACER_PROVIDER_SET_ONCE = Once()  # type: ignore[attr-defined]
        trace._TRACER_PROVIDER = None  # type: ignore[attr-defined]
        # What configure_telemetry() and the configurator install for logs and metrics.
        logs_api._LOGGER_PROVIDER_SET_ONCE = Once()  # type: ignore[attr-defined]
        logs_api._LOGGER_PROVIDER = None  # type: ignore[attr-defined]
        meters_api._METER_PROVIDER_SET_ONCE = Once()  # type: ignore[attr-defined]
        meters_api._METER_PROVIDER = None  # type: ignore[attr-defined]
        meters_api._PROXY_METER_PROVIDER = meters_api._ProxyMeterProvider()  # type: ignore[attr-defined]
        for handler in list(root.handlers):
            if handler not in handlers:  # a LoggingHandler the test's configuration added
                root.removeHandler(handler)

    forget_provider()
    yield
    forget_provider()


def run_bounded(
    command: list[str], env: dict[str, str], *, cwd: object = None, timeout: float = 30
) -> tuple[str, str, float]:
    """Run ``command`` to the end within ``timeout``; return stdout, stderr and the
    wall-clock time it exited. It fails the test on a non-zero exit, and never leaves
    the process behind."""
    import subprocess
    import time

    proc = subprocess.Popen(
        command,
        cwd=cwd,  # type: ignore[arg-type]
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
        exited_at = time.time()
    finally:
        if proc.poll() is None:  # overran: never leave it behind
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr[-3000:]
    return stdout, stderr, exited_at


def wait_for_child(pid: int, timeout: float = 20) -> int:
    """Wait for a forked child; its exit code. Kills it and fails the test if it hangs."""
    import os
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail("the forked child hung")
