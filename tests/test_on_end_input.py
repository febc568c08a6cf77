"""``on_end`` never raises into the application, whatever it is handed, and stays accounted."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.trace import SpanContext, TraceFlags

from otel_nonblocking import NonBlockingSpanProcessor, ProcessorStats
from tests.conftest import RecordingExporter

SAMPLED = SpanContext(trace_id=1, span_id=2, is_remote=False, trace_flags=TraceFlags(1))


class _NotASpan:
    """Something handed to on_end that is not an SDK span at all."""


class _BrokenContext(ReadableSpan):
    """A span whose ``_context`` is not a SpanContext and whose ``context`` raises."""

    def __init__(self, raw: object) -> None:
        super().__init__(name="broken")
        self._context = raw  # type: ignore[assignment]

    @property
    def context(self) -> Any:
        raise RuntimeError("no context today")


class _ForeignSpan:
    """A span-like object from elsewhere: a public ``context`` and no ``_context``."""

    name = "foreign"
    context = SAMPLED


def _accounted(stats: ProcessorStats) -> bool:
    return stats.enqueued == stats.exported + stats.dropped_total + stats.pending + stats.spooled


@pytest.fixture
def processor() -> Iterator[NonBlockingSpanProcessor]:
    exporter = RecordingExporter()
    processor = NonBlockingSpanProcessor(exporter, schedule_delay_millis=10)
    yield processor
    processor.shutdown(timeout_millis=1000)


@pytest.mark.parametrize(
    "span",
    [
        ReadableSpan(name="no-context", context=None),  # the SDK allows it
        None,
        _NotASpan(),
        _BrokenContext(("too", "short")),  # IndexError
        _BrokenContext((1, 2, False, "flags")),  # TypeError
        _BrokenContext(None),  # TypeError, and the context property raises too
    ],
    ids=["context-None", "None", "not-a-span", "short-tuple", "str-flags", "raising-context"],
)
def test_on_end_never_raises_and_treats_a_span_without_context_as_unsampled(
    processor: NonBlockingSpanProcessor, span: Any
) -> None:
    processor.on_end(span)  # raised TypeError into the application for a context-None span
    assert processor.force_flush(3000)
    stats = processor.stats()
    # As the SDK's own processors do: no context, no sampled flag, so never enqueued.
    assert stats.enqueued == 0
    assert _accounted(stats)


def test_a_span_like_object_with_a_public_sampled_context_is_exported(
    processor: NonBlockingSpanProcessor,
) -> None:
    span = _ForeignSpan()
    processor.on_end(span)  # type: ignore[arg-type]
    assert processor.force_flush(3000)
    exporter = processor.exporter.inner
    assert isinstance(exporter, RecordingExporter)
    assert exporter.spans == [span]
    stats = processor.stats()
    assert (stats.enqueued, stats.exported) == (1, 1)
    assert _accounted(stats)


def test_a_context_none_span_among_real_ones_leaves_them_alone(
    processor: NonBlockingSpanProcessor,
) -> None:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    tracer.start_span("before").end()
    processor.on_end(ReadableSpan(name="no-context", context=None))
    tracer.start_span("after").end()
    assert processor.force_flush(3000)
    exporter = processor.exporter.inner
    assert isinstance(exporter, RecordingExporter)
    assert [s.name for s in exporter.spans] == ["before", "after"]
    stats = processor.stats()
    assert (stats.enqueued, stats.exported, stats.dropped_total) == (2, 2, 0)
