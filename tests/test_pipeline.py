"""The pipeline core alone: it carries items it knows nothing about (not spans)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_nonblocking._exporter import DeadlineSpanExporter
from otel_nonblocking._pipeline import Pipeline
from otel_nonblocking._settings import PipelineSettings
from otel_nonblocking._spooler import NoSpool


class Collecting(SpanExporter):
    def __init__(self) -> None:
        self.received: list[object] = []

    def export(self, spans: Sequence[object]) -> SpanExportResult:  # type: ignore[override]
        self.received.extend(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def test_the_pipeline_carries_opaque_items_in_order_and_accounts_for_each() -> None:
    inner = Collecting()
    settings = PipelineSettings.resolve(
        max_queue_size=100, max_export_batch_size=10, schedule_delay_millis=20
    )
    pipeline = Pipeline(
        DeadlineSpanExporter(inner, timeout_millis=2000),
        settings,
        item_overhead=100,
        what="log records",
        clock=time.monotonic,
    )
    try:
        assert isinstance(pipeline.worker.spooler, NoSpool)  # no spool: the null object
        for number in range(25):
            pipeline.door.queue.append(("log record", number))
        pipeline.door.wake.set()
        report = pipeline.flush(5.0)
        assert (report.ok, report.done) == (True, True)
        assert inner.received == [("log record", number) for number in range(25)]
        stats = pipeline.stats_within(1.0)
        assert (stats.enqueued, stats.exported, stats.pending, stats.dropped_total) == (
            25,
            25,
            0,
            0,
        )
        assert stats.export_count == 3  # batches of 10, 10 and 5
    finally:
        pipeline.close(1.0)
    assert pipeline.door.closed
    assert pipeline.worker.thread is not None
    assert not pipeline.worker.thread.is_alive()
