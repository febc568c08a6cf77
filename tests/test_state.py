"""The package's process-wide state lives in ``_state.py``, and ``testing.reset()`` resets it.

One at-fork hook for the whole package, fresh locks in a forked child, and a reset that
leaves the next test as it would find a fresh process.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

import otel_nonblocking as nb
import otel_nonblocking._setup as setup
from otel_nonblocking import _config, _state
from otel_nonblocking.metrics import enable_self_metrics
from otel_nonblocking.testing import reset
from tests.conftest import RecordingExporter, end_spans, run_bounded, wait_for_child

# Counts the package's os.register_at_fork calls while all of it is imported.
COUNT_FORK_HOOKS = """
import os
calls = []
original = os.register_at_fork
def counting(**hooks):
    modules = {getattr(f, "__module__", "") for f in hooks.values()}
    if any(m.startswith("otel_nonblocking") for m in modules):
        calls.append(sorted(modules))
    original(**hooks)
os.register_at_fork = counting
import otel_nonblocking, otel_nonblocking.metrics, otel_nonblocking.logs, otel_nonblocking._spool
import importlib.util
if importlib.util.find_spec("langfuse"):  # the door, where the extra is installed
    import otel_nonblocking.integrations.langfuse
print("HOOKS", len(calls), calls)
"""


@pytest.mark.skipif(not hasattr(os, "register_at_fork"), reason="fork is POSIX-only")
def test_the_package_registers_one_at_fork_hook() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    stdout, _, _ = run_bounded([sys.executable, "-c", COUNT_FORK_HOOKS], env)
    # Before: five (_lifecycle, _fork, _config, metrics and _spool each had their own).
    assert "HOOKS 1 " in stdout, stdout


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
@pytest.mark.filterwarnings("ignore:.*multi-threaded.*:DeprecationWarning")
def test_a_child_forked_while_configure_tracing_runs_can_configure_tracing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parent = os.getpid()
    inside, release = threading.Event(), threading.Event()
    original = setup._provider

    def held_in_parent(given: TracerProvider | None, name: str | None) -> TracerProvider:
        if os.getpid() == parent:  # the parent's thread holds configure_tracing's lock
            inside.set()
            release.wait(10)
        return original(given, name)

    monkeypatch.setattr(setup, "_provider", held_in_parent)
    configuring = threading.Thread(
        target=nb.configure_tracing,
        kwargs={
            "exporter": RecordingExporter(),
            "tracer_provider": TracerProvider(shutdown_on_exit=False),
        },
    )
    configuring.start()
    try:
        assert inside.wait(5)
        pid = os.fork()
        if pid == 0:  # the child: its copy of the lock was held by a thread it does not have
            code = 1
            try:
                handle = nb.configure_tracing(
                    exporter=RecordingExporter(),
                    tracer_provider=TracerProvider(shutdown_on_exit=False),
                )
                code = 0 if handle.enabled and nb.installed() == [handle] else 2
            finally:
                os._exit(code)
        # Before: the child waited forever for the lock (killed after 10 s).
        assert wait_for_child(pid, timeout=10) == 0
    finally:
        release.set()
        configuring.join(5)


def _state_locks() -> list[object]:
    """Every lock of _state.py, read afresh (a forked child gets new ones)."""
    return [
        _state._exit_lock,
        _state._flushables_lock,
        _state._installed_lock,
        _state._warned_lock,
        _state.configure_lock,
        _state.bind_lock,
        _state.SELF_METRICS.lock,
    ]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
@pytest.mark.filterwarnings("ignore:.*multi-threaded.*:DeprecationWarning")
def test_a_forked_child_gets_every_lock_of_the_state_new() -> None:
    held, release = threading.Event(), threading.Event()

    def hold_them_all() -> None:
        locks = _state_locks()
        for lock in locks:
            lock.acquire()  # type: ignore[attr-defined]
        held.set()
        release.wait(10)
        for lock in reversed(locks):
            lock.release()  # type: ignore[attr-defined]

    holder = threading.Thread(target=hold_them_all)
    holder.start()
    try:
        assert held.wait(5)
        pid = os.fork()
        if pid == 0:  # the child: the thread holding them is not here
            code = 1
            try:
                locks = _state_locks()
                free = [lock.acquire(blocking=False) for lock in locks]  # type: ignore[attr-defined]
                if all(free):
                    for lock in locks:
                        lock.release()  # type: ignore[attr-defined]
                    _state.warn_once(("tests", "fork"), "otel_nonblocking: a test warning")
                    code = 0
                else:
                    code = 2
            finally:
                os._exit(code)
        assert wait_for_child(pid, timeout=10) == 0
    finally:
        release.set()
        holder.join(5)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
@pytest.mark.filterwarnings("ignore:.*multi-threaded.*:DeprecationWarning")
def test_module_level_counters_and_warnings_work_in_a_child_forked_while_held() -> None:
    from otel_nonblocking import _encoder_stock, _otlp_codec

    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with _encoder_stock._total.lock, _otlp_codec._left_out_warning._lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(5)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                started = time.monotonic()
                _encoder_stock.left_out_attributes()  # before: waited forever
                _otlp_codec._left_out_warning.add("tests")  # before: waited 1 s, lost its count
                code = 0 if time.monotonic() - started < 0.5 else 2
            finally:
                os._exit(code)
        assert wait_for_child(pid, timeout=10) == 0
    finally:
        release.set()
        holder.join(5)


def test_reset_shuts_down_what_was_installed_and_forgets_its_exit_budget() -> None:
    provider = TracerProvider(shutdown_on_exit=False)
    first = nb.configure_tracing(
        exporter=RecordingExporter(), tracer_provider=provider, exit_timeout=1.5
    )
    assert _state.exit_budget() == 1.5
    started = time.monotonic()
    reset()
    assert time.monotonic() - started < 0.5 + 0.5
    assert nb.installed() == []
    end_spans(provider, 1)
    assert first.stats().dropped == {"shutdown": 1}  # it was shut down
    second = nb.configure_tracing(
        exporter=RecordingExporter(),
        tracer_provider=TracerProvider(shutdown_on_exit=False),
        exit_timeout=0.7,
    )
    assert second is not first
    # Before (setup.reset_for_tests()): the first call's 1.5 s stayed the exit's budget.
    assert _state.exit_budget() == 0.7
    assert len(_state.exit_hooks()) == 1  # the handles' exit hook, joined once


def test_reset_forgets_which_warnings_were_given(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="otel_nonblocking")
    environ = {"OTEL_BSP_MAX_QUEUE_SIZE": "many"}
    for _ in range(2):
        _config.MAX_QUEUE_SIZE.resolve(environ=environ)
    assert len(caplog.records) == 1  # once
    reset()
    _config.MAX_QUEUE_SIZE.resolve(environ=environ)
    assert len(caplog.records) == 2
    assert "many" not in caplog.text  # the value is never echoed


def test_reset_disables_and_forgets_self_metrics_handles() -> None:
    provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    try:
        handle = enable_self_metrics(provider)
        assert handle.enabled
        reset()
        assert not handle.enabled
        assert _state.SELF_METRICS.by_provider == {}
    finally:
        provider.shutdown()


def test_reset_forgets_flushables_and_exit_hooks() -> None:
    class Nothing:
        def flush_within(self, deadline: object) -> _state.FlushCounts:
            return _state.FlushCounts()

        def shutdown_within(self, deadline: object) -> _state.FlushCounts:
            return _state.FlushCounts()

    _state.register_flushable(Nothing())  # type: ignore[arg-type]
    _state.on_exit(lambda seconds_left: None)
    reset()
    assert _state.flushables() == []
    assert _state.exit_hooks() == []


def test_live_processors_are_listed_oldest_first() -> None:
    first = nb.NonBlockingSpanProcessor(RecordingExporter())
    second = nb.NonBlockingSpanProcessor(RecordingExporter())
    try:
        live = _state.live_processors()
        assert live.index(first) < live.index(second)
    finally:
        first.shutdown(1000)
        second.shutdown(1000)
