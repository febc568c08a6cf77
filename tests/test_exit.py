"""Process exit keeps its budget whatever the collector does, and delivers what it can.

Each test runs a small program in a subprocess that ends spans and returns from main;
the program prints the time it returned, and the test measures how long the
interpreter then took to exit.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from otel_nonblocking.testing import FakeOTLPBackend, Mode, refused_endpoint
from tests.conftest import run_bounded

EXIT_MARGIN = 1.0  # seconds allowed on top of a budget (interpreter teardown, CI noise)
SPANS = 25

# argv: setup endpoint [export timeout in seconds]
#   setup "configure": configure_tracing(endpoint=...) and its exit hook.
#   setup "bare-stock": NonBlockingSpanProcessor(OTLPSpanExporter(...)) on a
#       TracerProvider() left at shutdown_on_exit=True: the SDK's and the processor's
#       own exit hooks are all there is.
#   setup "bare-deadline": the same with otlp_span_exporter(...).
#   setup "two-bare-deadline": two such providers and processors, spans to both.
#   setup "configure+bare": configure_tracing() and a "bare-deadline" processor.
PROGRAM = """
import sys, time

def main():
    setup, endpoint = sys.argv[1], sys.argv[2]
    export_timeout = float(sys.argv[3]) if len(sys.argv) > 3 else None
    tracers = []
    if setup.startswith("configure"):
        import otel_nonblocking
        from opentelemetry import trace
        if export_timeout is None:
            otel_nonblocking.configure_tracing(endpoint=endpoint, service_name="exit-test")
        else:
            otel_nonblocking.configure_tracing(
                export_timeout, endpoint=endpoint, service_name="exit-test"
            )
        tracers.append(trace.get_tracer("exit-test"))
    if "bare" in setup:
        from opentelemetry.sdk.trace import TracerProvider
        from otel_nonblocking import NonBlockingSpanProcessor, otlp_span_exporter
        for _ in range(2 if setup.startswith("two-") else 1):
            if setup == "bare-stock":
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                    OTLPSpanExporter,
                )
                exporter = OTLPSpanExporter(endpoint=endpoint, timeout=export_timeout or 10)
            else:
                exporter = otlp_span_exporter(endpoint, timeout=export_timeout or 2)
            provider = TracerProvider()
            provider.add_span_processor(NonBlockingSpanProcessor(exporter))
            tracers.append(provider.get_tracer("exit-test"))
    for tracer in tracers:
        for _ in range(__SPANS__):
            with tracer.start_as_current_span("exit-span"):
                pass
    print("RETURNED-AT", repr(time.time()), flush=True)

main()
""".replace("__SPANS__", str(SPANS))


def _env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(overrides)
    return env


def _exit_seconds(
    tmp_path: Path, env: dict[str, str], setup: str, endpoint: str, *args: str
) -> float:
    """Run the program; return the seconds between main() returning and the process exit."""
    script = tmp_path / "program.py"
    script.write_text(PROGRAM, encoding="utf-8")
    stdout, _, exited_at = run_bounded([sys.executable, str(script), setup, endpoint, *args], env)
    [line] = [line for line in stdout.splitlines() if line.startswith("RETURNED-AT ")]
    seconds = exited_at - float(line.split()[1])
    print(f"{setup}: exited {seconds:.2f} s after main returned")  # shown by pytest -rP
    return seconds


# -- a collector that never answers or answers a byte at a time ----------------------------


def test_configure_tracing_exit_keeps_the_default_budget(tmp_path: Path) -> None:
    with FakeOTLPBackend(Mode.HANG) as backend:
        # A 30 s export deadline: only the exit budget (default 2 s) can end the wait.
        seconds = _exit_seconds(tmp_path, _env(), "configure", backend.endpoint, "30")
        assert backend.request_count >= 1  # the exit hook did try to export
    assert seconds < 2.0 + EXIT_MARGIN


@pytest.mark.parametrize("mode", [Mode.HANG, Mode.DRIP])
def test_configure_tracing_exit_keeps_the_budget_from_the_environment(
    tmp_path: Path, mode: Mode
) -> None:
    with FakeOTLPBackend(mode, drip_interval=1.0) as backend:
        env = _env(OTEL_NONBLOCKING_EXIT_TIMEOUT="500")
        seconds = _exit_seconds(tmp_path, env, "configure", backend.endpoint, "30")
        assert backend.request_count >= 1
    assert seconds < 0.5 + EXIT_MARGIN


@pytest.mark.parametrize("setup", ["bare-stock", "bare-deadline"])
def test_bare_processor_exit_keeps_the_default_shutdown_budget(tmp_path: Path, setup: str) -> None:
    with FakeOTLPBackend(Mode.HANG) as backend:
        seconds = _exit_seconds(tmp_path, _env(), setup, backend.endpoint, "30")
        assert backend.request_count >= 1
    assert seconds < 2.0 + EXIT_MARGIN


@pytest.mark.parametrize("setup", ["bare-stock", "bare-deadline"])
def test_bare_processor_exit_keeps_the_shutdown_budget_from_the_environment(
    tmp_path: Path, setup: str
) -> None:
    with FakeOTLPBackend(Mode.HANG) as backend:
        env = _env(OTEL_NONBLOCKING_SHUTDOWN_TIMEOUT="500")
        seconds = _exit_seconds(tmp_path, env, setup, backend.endpoint, "30")
        assert backend.request_count >= 1
    assert seconds < 0.5 + EXIT_MARGIN


@pytest.mark.parametrize("setup", ["configure", "bare-stock", "bare-deadline"])
def test_refused_collector_does_not_delay_exit(tmp_path: Path, setup: str) -> None:
    # The SDK retries a refused connection with back-off; the budget still holds.
    env = _env(OTEL_NONBLOCKING_EXIT_TIMEOUT="500", OTEL_NONBLOCKING_SHUTDOWN_TIMEOUT="500")
    seconds = _exit_seconds(tmp_path, env, setup, refused_endpoint(), "30")
    assert seconds < 0.5 + EXIT_MARGIN


@pytest.mark.parametrize("setup", ["two-bare-deadline", "configure+bare"])
def test_one_exit_budget_covers_every_processor(tmp_path: Path, setup: str) -> None:
    # Each processor used to have its own exit hook and budget: two took 4 s.
    with FakeOTLPBackend(Mode.HANG) as backend:
        env = _env(OTEL_NONBLOCKING_EXIT_TIMEOUT="1000")
        seconds = _exit_seconds(tmp_path, env, setup, backend.endpoint, "30")
        assert backend.request_count >= 1
    assert seconds < 1.0 + EXIT_MARGIN


def test_exit_timeout_zero_exits_at_once(tmp_path: Path) -> None:
    with FakeOTLPBackend(Mode.HANG) as backend:
        env = _env(OTEL_NONBLOCKING_EXIT_TIMEOUT="0")
        seconds = _exit_seconds(tmp_path, env, "configure", backend.endpoint, "30")
    assert seconds < 0.0 + EXIT_MARGIN


# -- a healthy collector gets everything that was pending at exit ----------------------------


@pytest.mark.parametrize("setup", ["configure", "bare-stock", "bare-deadline"])
def test_exit_hook_delivers_pending_spans_to_a_healthy_collector(
    tmp_path: Path, setup: str
) -> None:
    with FakeOTLPBackend() as backend:
        # Spans end right before main returns, well inside the 1 s schedule delay:
        # only the exit hook can have sent them.
        seconds = _exit_seconds(tmp_path, _env(), setup, backend.endpoint)
        assert backend.wait_for_spans(SPANS, timeout=2, accepted=True)
        assert backend.span_names(accepted=True) == ["exit-span"] * SPANS
    assert seconds < 2.0 + EXIT_MARGIN


def test_exit_hook_delivers_to_a_slow_collector_within_the_budget(tmp_path: Path) -> None:
    with FakeOTLPBackend(Mode.SLOW, delay=0.3) as backend:
        seconds = _exit_seconds(tmp_path, _env(), "configure", backend.endpoint)
        assert backend.wait_for_spans(SPANS, timeout=2, accepted=True)
    assert 0.3 <= seconds < 2.0 + EXIT_MARGIN
