"""DeadlineSpanExporter: a real wall-clock deadline around any SpanExporter's export.

A thin door onto the signal-agnostic :class:`DeadlineExporter` (see :mod:`._export_core`);
``DeadlineLogExporter`` and ``DeadlineMetricExporter`` are its siblings for logs and
metrics, loaded from here on first use only (their SDK modules cost a cold start).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from . import _compat_sdk
from ._config import UNSET, _Unset
from ._deadline import Clock, Deadline
from ._export_core import (
    RETRYABLE_STATUSES,
    Cutoff,
    DeadlineExporter,
    ExporterStats,
    ExportListener,
    ExportOutcome,
    ExportReport,
    peek_attempt,
    require_exporter,
)
from ._runner import Attempt

if TYPE_CHECKING:
    from ._exporter_logs import DeadlineLogExporter
    from ._exporter_metrics import DeadlineMetricExporter
    from ._otlp_codec import OTLPCodec

__all__ = [
    "RETRYABLE_STATUSES",
    "Cutoff",
    "DeadlineExporter",
    "DeadlineLogExporter",
    "DeadlineMetricExporter",
    "DeadlineSpanExporter",
    "ExportListener",
    "ExportOutcome",
    "ExportReport",
    "ExporterStats",
]


def _span_success(result: object) -> bool:
    return result is SpanExportResult.SUCCESS


def _export_spans(exporter: SpanExporter) -> Callable[[list[ReadableSpan], Deadline], object]:
    def call(batch: list[ReadableSpan], _deadline: Deadline) -> object:
        return exporter.export(batch)

    return call


class DeadlineSpanExporter(DeadlineExporter[ReadableSpan], SpanExporter):
    """Wraps ``exporter`` so that ``export`` returns within ``timeout_millis``.

    >>> from opentelemetry.sdk.trace.export import ConsoleSpanExporter
    >>> exporter = DeadlineSpanExporter(ConsoleSpanExporter(), timeout_millis=2000)
    """

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        timeout_millis: float | _Unset = UNSET,
        failure_threshold: int | _Unset = UNSET,
        breaker_backoff_millis: int | _Unset = UNSET,
        on_abandon: Callable[[], object] | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        require_exporter(exporter, "SpanExporter")
        super().__init__(
            exporter,
            _export_spans(exporter),
            (SpanExportResult,),
            noun="span",
            timeout_millis=timeout_millis,
            failure_threshold=failure_threshold,
            breaker_backoff_millis=breaker_backoff_millis,
            on_abandon=on_abandon,
            clock=clock,
        )

    @property
    def inner(self) -> SpanExporter:
        """The wrapped exporter."""
        return self._inner  # type: ignore[return-value]

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.export_outcome(spans) is ExportOutcome.SUCCESS:
            return SpanExportResult.SUCCESS
        return SpanExportResult.FAILURE

    @staticmethod
    def peek(attempt: Attempt[object]) -> bool | None:
        """What became of ``attempt`` so far, without waiting, cutting or counting: True
        if it delivered the batch, False if it failed, None while it still runs (a static
        method here, as it always was)."""
        return peek_attempt(attempt, _span_success)

    def _find_codec(self) -> OTLPCodec | None:
        """The codec of an SDK OTLP/HTTP span exporter (the disk spool needs it), or of
        the SDK's OTLP/gRPC one with the package's :class:`GrpcClient` in it."""
        from ._otlp_codec import OTLPCodec, otlp_codec

        codec = otlp_codec(self._inner)
        if codec is None:  # our GrpcClient makes its own (it is in the SDK exporter)
            span_codec = getattr(_compat_sdk.adopted_grpc_client(self._inner), "span_codec", None)
            if callable(span_codec):
                found = span_codec(self._inner)
                codec = found if isinstance(found, OTLPCodec) else None
        return codec


def __getattr__(name: str) -> Any:
    # The log and metric doors import their SDK modules: loaded when first asked for.
    if name == "DeadlineLogExporter":
        from ._exporter_logs import DeadlineLogExporter

        globals()[name] = DeadlineLogExporter
        return DeadlineLogExporter
    if name == "DeadlineMetricExporter":
        from ._exporter_metrics import DeadlineMetricExporter

        globals()[name] = DeadlineMetricExporter
        return DeadlineMetricExporter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
