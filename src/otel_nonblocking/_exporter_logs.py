"""DeadlineLogExporter: a real wall-clock deadline around any log exporter's export.

A thin door onto :class:`DeadlineExporter`: the SDK's log exporter interface (its base
class and result enum come through :mod:`._compat_sdk`, the logs SDK being private) over
the same deadline, breaker and abandon rules as spans.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from . import _compat_sdk, _config
from ._compat_sdk import LogExporterBase, LogExportResult
from ._config import UNSET, _Unset
from ._deadline import Clock, Deadline
from ._export_core import DeadlineExporter, ExportOutcome, require_exporter

if TYPE_CHECKING:
    from ._otlp_codec import OTLPCodec

__all__ = ["DeadlineLogExporter"]


def _export_records(exporter: Any) -> Callable[[list[Any], Deadline], object]:
    def call(batch: list[Any], _deadline: Deadline) -> object:
        return exporter.export(batch)

    return call


class DeadlineLogExporter(DeadlineExporter[Any], LogExporterBase):
    """Wraps a log exporter so that ``export`` returns within ``timeout_millis``.

    The batch holds what the SDK's log processors hand an exporter (``ReadableLogRecord``
    in newer releases, ``LogData`` in 1.33); ``export`` returns the SDK's result enum
    (``LogRecordExportResult``, or ``LogExportResult`` where that is the only one).

    >>> from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    >>> exporter = DeadlineLogExporter(OTLPLogExporter(), timeout_millis=2000)
    """

    def __init__(
        self,
        exporter: Any,
        *,
        timeout_millis: float | _Unset = UNSET,
        failure_threshold: int | _Unset = UNSET,
        breaker_backoff_millis: int | _Unset = UNSET,
        on_abandon: Callable[[], object] | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        require_exporter(exporter, "log exporter")
        super().__init__(
            exporter,
            _export_records(exporter),
            _compat_sdk.log_export_result_types(),
            noun="log record",
            timeout_setting=_config.OTLP_LOGS_TIMEOUT_MILLIS,
            timeout_millis=timeout_millis,
            failure_threshold=failure_threshold,
            breaker_backoff_millis=breaker_backoff_millis,
            on_abandon=on_abandon,
            clock=clock,
        )

    def _find_codec(self) -> OTLPCodec | None:
        """The codec of an SDK OTLP/HTTP log exporter (the disk spool needs it)."""
        from ._otlp_log_codec import otlp_log_codec

        return otlp_log_codec(self._inner)

    def export(self, batch: Sequence[Any]) -> LogExportResult:
        if self.export_outcome(batch) is ExportOutcome.SUCCESS:
            return LogExportResult.SUCCESS
        return LogExportResult.FAILURE
