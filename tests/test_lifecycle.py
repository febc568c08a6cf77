"""What lives in the process is bounded: hooks go with their objects, exit has one budget.

The package installs one exit hook and one at-fork hook (both in ``_state.py``);
the objects they visit are held weakly. Multiprocessing children made by fork, which end
in ``os._exit`` without exit hooks, still deliver their spans.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
import threading
from pathlib import Path

import pytest

from otel_nonblocking import DeadlineSpanExporter, NonBlockingSpanProcessor
from otel_nonblocking.testing import FakeOTLPBackend, Mode
from tests.conftest import RecordingExporter, end_spans, run_bounded, wait_for_child

EXIT_MARGIN = 1.0


def _env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(overrides)
    return env


def test_processors_leave_no_exit_or_fork_hooks_behind() -> None:
    gc.collect()
    exit_callbacks = atexit._ncallbacks()  # type: ignore[attr-defined]
    for _ in range(300):
        processor = NonBlockingSpanProcessor(RecordingExporter())
        processor.shutdown(1000)
        del processor
    gc.collect()
    # Before: one atexit callback per processor (8,000 cycles left 8,003), and three
    # os.register_at_fork hooks that slowed every later fork().
    assert atexit._ncallbacks() <= exit_callbacks + 1  # type: ignore[attr-defined]
    from otel_nonblocking import _state

    fork_methods = _state.fork_registered_count()
    exit_objects = _state.exit_registered_count()
    for _ in range(300):
        processor = NonBlockingSpanProcessor(RecordingExporter())
        processor.shutdown(1000)
        del processor
    gc.collect()
    assert _state.fork_registered_count() <= fork_methods + 5
    assert _state.exit_registered_count() <= exit_objects + 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
@pytest.mark.filterwarnings("ignore:.*multi-threaded.*:DeprecationWarning")
def test_a_processor_shut_down_before_fork_stays_shut_down_in_the_child(make_spans) -> None:
    processor = NonBlockingSpanProcessor(RecordingExporter())
    provider = make_spans(processor)
    processor.shutdown(1000)
    pid = os.fork()
    if pid == 0:  # the child: it used to get a fresh, open processor and worker thread
        code = 1
        try:
            end_spans(provider, 3)
            stats = processor.stats()
            if not processor._worker.is_alive() and stats.dropped.get("shutdown") == 3:
                code = 0
        finally:
            os._exit(code)
    assert wait_for_child(pid) == 0


def test_exporter_shutdown_without_time_starts_no_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[str] = []
    original = threading.Thread.start

    def record(self: threading.Thread) -> None:
        started.append(self.name)
        original(self)

    exporter = DeadlineSpanExporter(RecordingExporter(), timeout_millis=1000)
    monkeypatch.setattr(threading.Thread, "start", record)
    exporter.shutdown(timeout_millis=0)
    assert started == []  # it used to start its closer thread even with no time left


def test_processor_shutdown_without_time_starts_no_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    processor = NonBlockingSpanProcessor(RecordingExporter())
    started: list[str] = []
    original = threading.Thread.start

    def record(self: threading.Thread) -> None:
        started.append(self.name)
        original(self)

    monkeypatch.setattr(threading.Thread, "start", record)
    processor.shutdown(timeout_millis=0)
    assert started == []  # starting one costs time it does not have (0.35-0.55 s for 0.3 s)


def test_exporter_shutdown_hands_the_inner_shutdown_to_its_runner(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inner = RecordingExporter()
    exporter = DeadlineSpanExporter(inner, timeout_millis=1000)
    exporter.export([])  # the runner's thread now exists
    started: list[str] = []
    original = threading.Thread.start

    def record(self: threading.Thread) -> None:
        started.append(self.name)
        original(self)

    monkeypatch.setattr(threading.Thread, "start", record)
    exporter.shutdown(timeout_millis=1000)
    assert inner.shutdown_called
    assert started == []  # no thread to start (and wait for) at shutdown


# A hook registered with _state.on_exit (as an integration would) gets the time left
# of the one exit budget, before the processors (the providers leave exit to the
# package, as configure_tracing's does); argv: endpoint
ON_EXIT_PROGRAM = """
import sys, time
from opentelemetry.sdk.trace import TracerProvider
from otel_nonblocking import NonBlockingSpanProcessor, otlp_span_exporter, _state

providers = []
for _ in range(2):
    provider = TracerProvider(shutdown_on_exit=False)
    exporter = otlp_span_exporter(sys.argv[1], timeout=30)
    provider.add_span_processor(NonBlockingSpanProcessor(exporter))
    providers.append(provider)
    with provider.get_tracer("t").start_as_current_span("s"):
        pass

def integration(seconds_left):
    print("HOOK", repr(seconds_left), flush=True)
    time.sleep(0.3)

_state.on_exit(integration)
print("RETURNED-AT", repr(time.time()), flush=True)
"""


def test_an_integration_hook_shares_the_one_exit_budget(tmp_path: Path) -> None:
    script = tmp_path / "program.py"
    script.write_text(ON_EXIT_PROGRAM, encoding="utf-8")
    with FakeOTLPBackend(Mode.HANG) as backend:
        env = _env(OTEL_NONBLOCKING_EXIT_TIMEOUT="1000")
        stdout, _, exited_at = run_bounded([sys.executable, str(script), backend.endpoint], env)
    lines = dict(line.split(" ", 1) for line in stdout.splitlines())
    assert 0.5 < float(lines["HOOK"]) <= 1.0  # its turn came first, with the budget
    assert exited_at - float(lines["RETURNED-AT"]) < 1.0 + EXIT_MARGIN


# multiprocessing children made by fork end in os._exit: no atexit. argv: endpoint
MULTIPROCESSING_PROGRAM = """
import multiprocessing, sys
from opentelemetry.sdk.trace import TracerProvider
from otel_nonblocking import NonBlockingSpanProcessor, otlp_span_exporter

provider = TracerProvider()
provider.add_span_processor(NonBlockingSpanProcessor(otlp_span_exporter(sys.argv[1], timeout=2)))
tracer = provider.get_tracer("mp")

def child():
    for _ in range(200):
        with tracer.start_as_current_span("child-span"):
            pass

if __name__ == "__main__":
    process = multiprocessing.get_context("fork").Process(target=child)
    process.start()
    process.join(20)
    print("EXITCODE", process.exitcode, flush=True)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
def test_multiprocessing_fork_child_delivers_its_spans(tmp_path: Path) -> None:
    script = tmp_path / "program.py"
    script.write_text(MULTIPROCESSING_PROGRAM, encoding="utf-8")
    with FakeOTLPBackend() as backend:
        stdout, _, _ = run_bounded([sys.executable, str(script), backend.endpoint], _env())
        assert "EXITCODE 0" in stdout
        # Before: 0 of 200 delivered, counted nowhere.
        assert backend.wait_for_spans(200, timeout=5, accepted=True)
        assert backend.span_names(accepted=True) == ["child-span"] * 200
