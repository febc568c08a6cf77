"""Concurrent first calls of configure_tracing() install exactly one processor."""

from __future__ import annotations

import threading
import time

import pytest
from opentelemetry.sdk.trace import TracerProvider

import otel_nonblocking as nb
import otel_nonblocking._setup as setup
from otel_nonblocking import NonBlockingSpanProcessor
from tests.conftest import RecordingExporter

pytestmark = pytest.mark.usefixtures("clean_globals")

THREADS = 8


def test_racing_first_calls_install_one_processor_and_export_each_span_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Widen the window between "is anything installed?" and the registration, so that
    # every racer is inside it at once unless the two are one atomic step.
    original = setup._provider

    def slow_provider(given: TracerProvider | None, service_name: str | None) -> TracerProvider:
        time.sleep(0.2)
        return original(given, service_name)

    monkeypatch.setattr(setup, "_provider", slow_provider)
    provider = TracerProvider(shutdown_on_exit=False)
    exporter = RecordingExporter()
    barrier = threading.Barrier(THREADS)
    handles: list[nb.TracingHandle] = []
    errors: list[BaseException] = []

    def racer() -> None:
        try:
            barrier.wait(5)
            handles.append(nb.configure_tracing(exporter=exporter, tracer_provider=provider))
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=racer) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not errors
    assert len(handles) == THREADS
    assert len({id(h) for h in handles}) == 1  # every caller got the one handle
    ours = [
        p
        for p in provider._active_span_processor._span_processors  # type: ignore[attr-defined]
        if isinstance(p, NonBlockingSpanProcessor)
    ]
    assert len(ours) == 1
    assert nb.installed() == [handles[0]]
    provider.get_tracer("t").start_span("once").end()
    assert handles[0].flush(3).ok
    assert [s.name for s in exporter.spans] == ["once"]
    provider.shutdown()
