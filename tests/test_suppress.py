"""Threads in one place: every thread of ours starts in ``_suppress.py``, and a caller waits
for one at most N seconds with ``run_within``."""

from __future__ import annotations

import re
import sys
import threading
import time
from pathlib import Path

from opentelemetry.instrumentation.utils import is_instrumentation_enabled

import otel_nonblocking
from otel_nonblocking._demo import capped_call
from otel_nonblocking._suppress import run_within, start_call

SLACK = 0.5  # seconds: the generous margin timing bounds allow on a shared machine
PACKAGE = Path(otel_nonblocking.__file__).parent


def test_run_within_waits_at_most_its_bound_and_the_call_goes_on() -> None:
    release = threading.Event()
    began = time.monotonic()
    call = run_within(lambda: release.wait(30) and 7, 0.2, "otel-nonblocking-test")
    elapsed = time.monotonic() - began
    assert not call.done
    assert 0.2 <= elapsed < 0.2 + SLACK
    assert call.thread.daemon  # an abandoned call cannot keep the process alive
    assert call.thread.name == "otel-nonblocking-test"
    release.set()
    assert call.wait(5.0)
    assert (call.value, call.error) == (7, None)


def test_a_call_runs_suppressed_and_keeps_what_it_raised() -> None:
    seen: list[bool] = []

    def boom() -> None:
        seen.append(is_instrumentation_enabled())
        raise RuntimeError("no")

    call = run_within(boom, 5.0, "otel-nonblocking-test")
    assert call.done
    assert seen == [False]  # no instrumentation traces what runs on our threads
    assert isinstance(call.error, RuntimeError)  # kept, not printed as a thread traceback
    assert call.value is None


def test_a_call_still_running_is_joined_not_doubled() -> None:
    release = threading.Event()
    calls: list[int] = []

    def flush() -> None:
        calls.append(1)
        release.wait(30)

    call = start_call(flush, "otel-nonblocking-test")
    assert not call.wait(0.05)
    assert not call.wait(-1)  # no time left: no wait at all
    release.set()
    assert call.wait(5.0)
    assert calls == [1]


def test_a_capped_call_that_exits_is_reported_at_once_not_at_the_cap() -> None:
    # The demo's watchdog used to catch Exception only: a SystemExit ended its thread
    # without a word, and the call was reported as still running after the whole cap.
    began = time.monotonic()
    call = capped_call(lambda: sys.exit(3), cap=5.0)
    assert time.monotonic() - began < SLACK
    assert call.finished
    assert call.error == "SystemExit"


def test_threads_are_started_in_one_place() -> None:
    # STYLE "Threads in one place": only _suppress.py makes a threading.Thread, so every
    # thread of ours runs suppressed and is waited for with a bound. (The test helpers in
    # otel_nonblocking.testing run servers, not ours.)
    starts = {
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if "testing" not in path.parts and re.search(r"\bThread\(", path.read_text("utf-8"))
    }
    assert starts == {"_suppress.py"}
