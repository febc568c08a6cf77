"""The Langfuse exporter is on the encoded path: its waiting spans are kept as bytes (issue 15).

Here rather than in tests/test_encoded_queue.py because it needs the ``langfuse`` extra,
which this directory's environments have (the oldest-SDK CI run leaves the directory out).
"""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider

from otel_nonblocking import NonBlockingSpanProcessor
from otel_nonblocking.integrations.langfuse import langfuse_span_exporter
from otel_nonblocking.testing import FakeLangfuse, Mode
from tests.integrations.conftest import PUBLIC_KEY, SECRET_KEY
from tests.test_encoded_queue import _all_let_go, _end, _stage_of, _wait_for, _Watch


def test_the_langfuse_exporter_keeps_waiting_spans_encoded_and_delivers_them() -> None:
    with FakeLangfuse(Mode.HANG, hang_limit=10) as fake:
        exporter = langfuse_span_exporter(
            timeout=0.5, public_key=PUBLIC_KEY, secret_key=SECRET_KEY, base_url=fake.base_url
        )
        processor = NonBlockingSpanProcessor(
            exporter, max_export_batch_size=20, schedule_delay_millis=50
        )
        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(_Watch())
        provider.add_span_processor(processor)
        try:
            refs = _end(provider, 60, "llm-call")
            assert _wait_for(lambda: _all_let_go(refs)), "Langfuse spans kept as objects"
            assert _stage_of(processor).active
            fake.mode = Mode.OK
            assert processor.force_flush(10_000)
            requests = fake.requests_to(FakeLangfuse.OTLP_PATH)
            names = [span.name for r in requests if r.accepted for span in r.spans]
            assert names == ["llm-call"] * 60  # each once
            assert processor.stats().exported == 60
        finally:
            processor.shutdown(timeout_millis=1000)
