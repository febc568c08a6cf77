"""Flush, shutdown and stats are safe to call from a signal handler, again and again.

A handler runs on the main thread between two bytecodes, possibly while that thread is
inside one of our calls and holds one of our locks. Each test runs a program in a
subprocess, bounded by a hard timeout, so that a hang fails the test instead of the suite.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from opentelemetry import trace

import otel_nonblocking as nb
from otel_nonblocking.testing import FakeOTLPBackend
from tests.conftest import RecordingExporter, run_bounded

pytestmark = pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="POSIX signals")

BUDGET = 0.2  # seconds each call in the handler may take
MARGIN = 0.5  # on top of a budget (CI noise)

# A timer signal every 2 ms lands all over the main loop's flush/stats/force_flush calls;
# the handler makes the same calls. argv: endpoint
PROGRAM = """
import json, signal, sys, time
import otel_nonblocking
from opentelemetry import trace

BUDGET = __BUDGET__
handle = otel_nonblocking.configure_tracing(
    5, endpoint=sys.argv[1], service_name="signal-test", schedule_delay_millis=20
)
processor = handle.processor
tracer = trace.get_tracer("signal-test")
calls = busy = depth = deepest = 0
worst = 0.0

def on_signal(signum, frame):
    global calls, busy, depth, deepest, worst
    depth += 1
    deepest = max(deepest, depth)
    started = time.monotonic()
    try:
        kind = calls % 5
        calls += 1
        if kind == 0:
            busy += getattr(otel_nonblocking.flush(BUDGET), "busy", False)
        elif kind == 1:
            handle.stats()
        elif kind == 2:
            processor.force_flush(int(BUDGET * 1000))
        elif kind == 3:
            busy += getattr(handle.flush(BUDGET), "busy", False)
        else:
            processor.stats()
    finally:
        worst = max(worst, time.monotonic() - started)
        depth -= 1

signal.signal(signal.SIGALRM, on_signal)
signal.setitimer(signal.ITIMER_REAL, 0.002, 0.002)
ended = loops = 0
until = time.monotonic() + 2.0
while time.monotonic() < until and loops < 100_000:
    loops += 1
    with tracer.start_as_current_span("signal-span"):
        pass
    ended += 1
    processor.stats()
    handle.stats()
    processor.force_flush(5)
    otel_nonblocking.flush(0.005)
signal.setitimer(signal.ITIMER_REAL, 0, 0)
final = otel_nonblocking.flush(10)
stats = handle.stats()
print(json.dumps({
    "calls": calls, "busy": busy, "deepest": deepest, "worst": worst, "ended": ended,
    "final_ok": final.ok, "exported": stats.exported, "enqueued": stats.enqueued,
}), flush=True)
""".replace("__BUDGET__", repr(BUDGET))


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}


def test_flush_and_stats_in_a_signal_handler_never_hang_or_nest(tmp_path: Path) -> None:
    script = tmp_path / "program.py"
    script.write_text(PROGRAM, encoding="utf-8")
    with FakeOTLPBackend() as backend:
        # Before the fix the handler waited forever for a lock its own thread held:
        # run_bounded kills the program at the timeout and the test fails.
        stdout, _, _ = run_bounded([sys.executable, str(script), backend.endpoint], _env())
        report = json.loads(stdout.strip().splitlines()[-1])
        assert report["calls"] >= 50  # the signals did land, many times
        assert report["worst"] < BUDGET + MARGIN
        assert report["deepest"] <= 3  # handlers do not pile up on one another
        # Exporting went on, and everything ended reached the collector.
        assert report["final_ok"], report
        assert report["exported"] == report["enqueued"] == report["ended"]
        assert backend.wait_for_spans(report["ended"], timeout=5, accepted=True)


# The recommended SIGTERM pattern (docs/serverless.md): flush within a small budget, then
# exit; the exit hook shuts down what is left within OTEL_NONBLOCKING_EXIT_TIMEOUT. The
# parent sends SIGTERM while the program loops on stats()/force_flush().
SIGTERM_PROGRAM = """
import signal, sys, time
import otel_nonblocking
from opentelemetry import trace

handle = otel_nonblocking.configure_tracing(5, endpoint=sys.argv[1], service_name="sigterm")
processor = handle.processor
tracer = trace.get_tracer("sigterm")

def on_sigterm(signum, frame):
    otel_nonblocking.flush(0.2)  # returns within 0.2 s, whatever it interrupted
    raise SystemExit(0)  # the exit hook shuts down the rest

signal.signal(signal.SIGTERM, on_sigterm)
for i in range(200):
    with tracer.start_as_current_span("sigterm-span"):
        pass
print("READY", flush=True)
while True:
    processor.stats()
    processor.force_flush(5)
"""


def test_the_recommended_sigterm_handler_exits_and_delivers(tmp_path: Path) -> None:
    import subprocess
    import time

    script = tmp_path / "sigterm.py"
    script.write_text(SIGTERM_PROGRAM, encoding="utf-8")
    with FakeOTLPBackend() as backend:
        proc = subprocess.Popen(
            [sys.executable, str(script), backend.endpoint],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "READY"
            time.sleep(0.2)
            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
            took = time.monotonic() - sent
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
        assert proc.returncode == 0
        assert took < 0.2 + 2.0 + MARGIN  # the handler's budget and the exit budget
        assert backend.wait_for_spans(200, timeout=5, accepted=True)


@pytest.mark.usefixtures("clean_globals")
def test_calls_that_interrupt_our_own_call_return_at_once_and_say_so() -> None:
    exporter = RecordingExporter()
    handle = nb.configure_tracing(timeout=2, exporter=exporter)
    processor = handle.processor
    assert processor is not None
    tracer = trace.get_tracer("tests")
    for _ in range(3):
        with tracer.start_as_current_span("before"):
            pass
    outcome: dict[str, object] = {}

    def interrupted() -> None:
        with processor._lock:  # where a signal may land: inside stats() or a flush
            started = time.monotonic()
            outcome["flush"] = nb.flush(1.0)
            outcome["force_flush"] = processor.force_flush(1000)
            outcome["stats"] = processor.stats()
            outcome["shutdown"] = nb.shutdown(1.0)
            outcome["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=interrupted, daemon=True)
    thread.start()
    thread.join(10)
    hung = thread.is_alive()
    if hung:  # it used to wait for its own lock forever: free it, so cleanup can run
        processor._lock.release()
        thread.join(10)
    assert not hung
    assert outcome["seconds"] < 0.5  # type: ignore[operator]
    flush, shutdown = outcome["flush"], outcome["shutdown"]
    assert isinstance(flush, nb.FlushResult)
    assert isinstance(shutdown, nb.FlushResult)
    assert flush.busy
    assert not flush.ok
    assert shutdown.busy
    assert outcome["force_flush"] is False
    assert outcome["stats"].enqueued == 3  # type: ignore[attr-defined]
    assert nb.installed() == [handle]  # a busy shutdown shut nothing down
    result = nb.flush(2.0)  # once the interrupted call is over, all works again
    assert result.ok
    assert len(exporter.spans) == 3
