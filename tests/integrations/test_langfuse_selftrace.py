"""The Langfuse door's own threads run with instrumentation suppressed, like all of ours."""

from __future__ import annotations

import pytest

pytest.importorskip("langfuse", reason="the Langfuse integration needs otel-nonblocking[langfuse]")

from opentelemetry.instrumentation.utils import is_instrumentation_enabled

from otel_nonblocking._deadline import Deadline
from otel_nonblocking.integrations._langfuse_flush import _SpanFlusher


class _Processor:
    def __init__(self) -> None:
        self.suppressed: list[bool] = []

    def force_flush(self) -> bool:
        self.suppressed.append(not is_instrumentation_enabled())
        return True


def test_the_span_flusher_thread_flushes_with_instrumentation_suppressed() -> None:
    # Langfuse's BatchSpanProcessor may export on the thread that flushes it: ours.
    processor = _Processor()
    assert _SpanFlusher(processor).flush(Deadline.after(5.0))
    assert processor.suppressed == [True]
