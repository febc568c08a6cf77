"""Load: many threads ending spans while the backend goes down and up; nothing unaccounted."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from opentelemetry.sdk.trace import TracerProvider

from otel_nonblocking import NonBlockingSpanProcessor, otlp_span_exporter
from otel_nonblocking.testing import Mode, ProcessBackend
from tests.conftest import end_spans

pytestmark = pytest.mark.slow

THREADS = 8
SPANS_PER_THREAD = 50_000


@pytest.mark.timeout(180)
def test_accounting_is_exact_and_nothing_is_duplicated_through_outages() -> None:
    backend = ProcessBackend(hang_limit=30, retry_after=1)
    try:
        exporter = otlp_span_exporter(backend.endpoint, timeout=0.5)
        exporter._breaker._base_backoff = exporter._breaker._backoff = 0.2
        processor = NonBlockingSpanProcessor(
            exporter, max_queue_size=20_000, max_export_batch_size=512, schedule_delay_millis=50
        )
        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(processor)
        stop = threading.Event()

        def chaos() -> None:  # down and up a few times, bounded
            for mode in (Mode.HANG, Mode.OK, Mode.RESET, Mode.OK, Mode.UNAVAILABLE, Mode.OK):
                if stop.wait(0.4):
                    return
                backend.set_mode(mode.value)

        def produce() -> None:
            end_spans(provider, SPANS_PER_THREAD)

        flipper = threading.Thread(target=chaos)
        producers = [threading.Thread(target=produce) for _ in range(THREADS)]
        started = time.monotonic()
        flipper.start()
        for thread in producers:
            thread.start()
        for thread in producers:
            thread.join(120)
        produce_seconds = time.monotonic() - started
        stop.set()
        flipper.join(5)
        backend.set_mode(Mode.OK.value)
        time.sleep(1.1)  # past Retry-After and the breaker's back-off
        flush_started = time.monotonic()
        # After recovery, everything still pending is delivered.
        assert processor.force_flush(10_000)
        assert time.monotonic() - flush_started < 10 + 0.5
        processor.shutdown(timeout_millis=2000)

        stats = processor.stats()
        total = THREADS * SPANS_PER_THREAD
        assert stats.enqueued == total
        assert stats.exported + stats.dropped_total + stats.pending == total
        assert stats.exported > 0
        ids = Counter(backend.accepted_span_ids())
        duplicated = sum(n - 1 for n in ids.values() if n > 1)
        assert duplicated == 0
        # Every span counted as exported reached the backend, and no other did.
        assert sum(ids.values()) == stats.exported
        print(f"produced {total} spans in {produce_seconds:.1f}s; {stats}")
    finally:
        backend.stop()
