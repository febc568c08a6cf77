"""Exports never trace themselves: every thread of ours runs with instrumentation suppressed.

With ``opentelemetry-instrumentation-requests`` or ``-urllib3`` active (``opentelemetry-
bootstrap`` installs them whenever ``requests`` is there, and the OTLP exporter depends on
it), an export POST made without the suppress key becomes a span, exported by another
POST, for ever. The backend must receive exactly the application's spans.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from opentelemetry import context
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.instrumentation.utils import (
    is_http_instrumentation_enabled,
    is_instrumentation_enabled,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_nonblocking import NonBlockingSpanProcessor, otlp_span_exporter
from otel_nonblocking._exporter import DeadlineSpanExporter
from otel_nonblocking._suppress import SUPPRESS_KEYS, start_thread
from otel_nonblocking.testing import FakeOTLPBackend, Mode
from tests.conftest import run_bounded

INSTRUMENT = Path(sys.executable).parent / "opentelemetry-instrument"

# The urllib3 instrumentation's newest release (0.66b1) pins an older semantic-conventions
# package than the newest SDK needs, so the main environment (newest SDK) has only the
# requests instrumentation; CI's SDK 1.33.1 environment has both (.ci/run pins them) and
# asserts it. Where urllib3's is missing, the app's direct urllib3 call is simply not traced.
try:
    from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor
except ImportError:  # pragma: no cover - depends on the environment
    URLLib3Instrumentor = None  # type: ignore[assignment,misc]
HAVE_URLLIB3 = URLLib3Instrumentor is not None

# The application: one span around a call through requests and one through urllib3 (so the
# instrumentations are proven live), then it lingers while exports run, and exits.
APP = """
import json, os, sys, time
import requests, urllib3
from opentelemetry import trace

service = sys.argv[1]
tracer = trace.get_tracer("app")
with tracer.start_as_current_span("app-work") as span:
    requests.get(service + "/by-requests", timeout=5)
    urllib3.PoolManager().request("GET", service + "/by-urllib3", timeout=5)
    trace_id = format(span.get_span_context().trace_id, "032x")
print("APP-REPORT " + json.dumps({"trace_id": trace_id}), flush=True)
time.sleep(float(os.environ["APP_LINGER"]))  # each export in this time would be traced
"""


def _suppressed() -> dict[str, bool]:
    """What an instrumentation sees on this thread, by its own checks."""
    return {
        "instrumentation": not is_instrumentation_enabled(),
        "http": not is_http_instrumentation_enabled(),
    }


ALL_SUPPRESSED = {"instrumentation": True, "http": True}


def test_the_api_still_has_the_suppress_keys_we_probe() -> None:
    # If a release moves them, only the plain string key would be left: fail loudly.
    assert context._SUPPRESS_INSTRUMENTATION_KEY in SUPPRESS_KEYS  # type: ignore[attr-defined]
    assert context._SUPPRESS_HTTP_INSTRUMENTATION_KEY in SUPPRESS_KEYS  # type: ignore[attr-defined]
    assert "suppress_instrumentation" in SUPPRESS_KEYS


def test_start_thread_runs_its_target_suppressed_and_leaves_the_caller_alone() -> None:
    seen: list[dict[str, bool]] = []
    start_thread(lambda: seen.append(_suppressed()), "otel-nonblocking-test").join(5)
    assert seen == [ALL_SUPPRESSED]
    assert _suppressed() == {"instrumentation": False, "http": False}


class _SuppressionProbe(SpanExporter):
    """Records, for each call, whether instrumentation was suppressed on its thread."""

    def __init__(self) -> None:
        self.seen: dict[str, dict[str, bool]] = {}

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.seen["export"] = _suppressed()
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        self.seen["force_flush"] = _suppressed()
        return True

    def shutdown(self) -> None:
        self.seen["shutdown"] = _suppressed()


def test_every_call_into_the_inner_exporter_runs_suppressed(make_spans) -> None:  # type: ignore[no-untyped-def]
    probe = _SuppressionProbe()
    exporter = DeadlineSpanExporter(probe, timeout_millis=5000)
    on_worker: list[dict[str, bool]] = []
    exporter.add_listener(lambda *_: on_worker.append(_suppressed()))  # on the worker
    processor = NonBlockingSpanProcessor(exporter, schedule_delay_millis=10)
    provider = make_spans(processor)
    provider.get_tracer("t").start_span("s").end()
    assert processor.force_flush(5000)
    assert exporter.force_flush(5000)
    processor.shutdown()
    assert probe.seen == {
        "export": ALL_SUPPRESSED,
        "force_flush": ALL_SUPPRESSED,
        "shutdown": ALL_SUPPRESSED,
    }
    assert on_worker
    assert all(seen == ALL_SUPPRESSED for seen in on_worker)


@pytest.fixture
def instrumented_http() -> Iterator[TracerProvider]:
    """requests and urllib3 instrumented in this process, recording into a provider of ours."""
    provider = TracerProvider(shutdown_on_exit=False)
    RequestsInstrumentor().instrument(tracer_provider=provider)
    if HAVE_URLLIB3:
        URLLib3Instrumentor().instrument(tracer_provider=provider)
    try:
        yield provider
    finally:
        if HAVE_URLLIB3:
            URLLib3Instrumentor().uninstrument()
        RequestsInstrumentor().uninstrument()
        provider.shutdown()


def test_exports_and_spool_deliveries_are_not_traced_by_instrumented_http(
    instrumented_http: TracerProvider, tmp_path: Path
) -> None:
    with FakeOTLPBackend(Mode.UNAVAILABLE) as backend:
        processor = NonBlockingSpanProcessor(
            otlp_span_exporter(backend.endpoint, timeout=2),
            schedule_delay_millis=20,
            spool_dir=tmp_path / "spool",
        )
        instrumented_http.add_span_processor(processor)
        tracer = instrumented_http.get_tracer("app")
        with tracer.start_as_current_span("app-work") as span:
            app_trace = span.get_span_context().trace_id
        assert backend.wait_for_requests(1, timeout=5)
        processor.shutdown(timeout_millis=2000)  # what the backend refused goes to disk
        assert processor.stats().spooled == 1
        backend.mode = Mode.OK
        # The next processor delivers the spool on its worker, and exports on its runner.
        second = NonBlockingSpanProcessor(
            otlp_span_exporter(backend.endpoint, timeout=2),
            schedule_delay_millis=20,
            spool_dir=tmp_path / "spool",
        )
        instrumented_http.add_span_processor(second)
        assert backend.wait_for_spans(1, timeout=5, accepted=True)
        with tracer.start_as_current_span("app-work-2"):
            pass
        assert second.force_flush(5000)
        assert second.force_flush(5000)  # any span of the first flush's POST is out now
        second.shutdown()
        spans = backend.accepted_spans()
    assert sorted(s.name for s in spans) == ["app-work", "app-work-2"]
    assert spans[0].trace_id == app_trace.to_bytes(16, "big")


def test_under_opentelemetry_instrument_the_backend_gets_only_the_apps_spans(
    tmp_path: Path,
) -> None:
    app = tmp_path / "app.py"
    app.write_text(APP, encoding="utf-8")
    with FakeOTLPBackend() as collector, FakeOTLPBackend() as service:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env.update(
            OTEL_EXPORTER_OTLP_ENDPOINT=collector.base_url,
            OTEL_BSP_SCHEDULE_DELAY="50",  # many export rounds while the app lingers
            APP_LINGER="1.0",
        )
        stdout, stderr, _ = run_bounded(
            [str(INSTRUMENT), sys.executable, str(app), service.base_url], env, cwd=tmp_path
        )
        [line] = [x for x in stdout.splitlines() if x.startswith("APP-REPORT ")]
        app_trace = json.loads(line.removeprefix("APP-REPORT "))["trace_id"]
        spans = collector.accepted_spans()
        exports = collector.request_count
        service_paths = sorted(r.path for r in service.requests)
    assert service_paths == ["/by-requests", "/by-urllib3"]
    # The app's span and one client span per instrumented call: the instrumentations were live.
    names = sorted(s.name for s in spans)
    expected = ["GET", "GET", "app-work"] if HAVE_URLLIB3 else ["GET", "app-work"]
    assert names == expected, (names, stderr[-2000:])
    assert {s.trace_id.hex() for s in spans} == {app_trace}
    assert exports <= 3  # one or two batches, never a loop
