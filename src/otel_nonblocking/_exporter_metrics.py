"""DeadlineMetricExporter: a real wall-clock deadline around any MetricExporter's export.

A thin door onto :class:`DeadlineExporter`. A batch is one or more ``MetricsData`` (a
reader's collections), merged into one export; the inner exporter is told the time left
as its ``timeout_millis``. The inner exporter's preferred temporality and aggregation are
the wrapper's, so a reader over the wrapper collects what the inner exporter asked for.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData

from . import _compat_sdk, _config
from ._config import UNSET, _Unset
from ._deadline import Clock, Deadline, millis_to_seconds
from ._export_core import DeadlineExporter, ExportOutcome

__all__ = ["DeadlineMetricExporter", "count_data_points", "merge_metrics_data"]


def merge_metrics_data(batch: list[MetricsData]) -> MetricsData:
    """One ``MetricsData`` holding the resource metrics of every one in ``batch``."""
    if len(batch) == 1:
        return batch[0]
    return MetricsData(resource_metrics=[rm for data in batch for rm in data.resource_metrics])


def count_data_points(batch: Sequence[MetricsData]) -> int:
    """The data points of every metric in ``batch`` (what a metric export carries)."""
    return sum(
        len(getattr(metric.data, "data_points", ()))
        for data in batch
        for resource_metrics in data.resource_metrics
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
    )


def _export_metrics(exporter: MetricExporter) -> Callable[[list[MetricsData], Deadline], object]:
    def call(batch: list[MetricsData], deadline: Deadline) -> object:
        return exporter.export(
            merge_metrics_data(batch), timeout_millis=deadline.remaining() * 1000
        )

    return call


class DeadlineMetricExporter(DeadlineExporter[MetricsData], MetricExporter):
    """Wraps ``exporter`` so that ``export`` returns within the smaller of ``timeout_millis``
    (the wrapper's deadline) and the ``timeout_millis`` a reader passes to ``export``.

    >>> from opentelemetry.sdk.metrics.export import ConsoleMetricExporter
    >>> exporter = DeadlineMetricExporter(ConsoleMetricExporter(), timeout_millis=2000)
    """

    def __init__(
        self,
        exporter: MetricExporter,
        *,
        timeout_millis: float | _Unset = UNSET,
        failure_threshold: int | _Unset = UNSET,
        breaker_backoff_millis: int | _Unset = UNSET,
        on_abandon: Callable[[], object] | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        if not isinstance(exporter, MetricExporter) and not callable(
            getattr(exporter, "export", None)
        ):
            raise _config.ConfigurationError("exporter must be a MetricExporter")
        temporality, aggregation = _compat_sdk.metric_preferences(exporter)
        MetricExporter.__init__(
            self, preferred_temporality=temporality, preferred_aggregation=aggregation
        )
        DeadlineExporter.__init__(
            self,
            exporter,
            _export_metrics(exporter),
            (MetricExportResult,),
            noun="metric",
            timeout_setting=_config.OTLP_METRICS_TIMEOUT_MILLIS,
            timeout_millis=timeout_millis,
            failure_threshold=failure_threshold,
            breaker_backoff_millis=breaker_backoff_millis,
            on_abandon=on_abandon,
            clock=clock,
        )
        self._preferences = (temporality, aggregation)

    def count_items(self, batch: Sequence[MetricsData]) -> int:
        """Export listeners are told the data points a batch carries."""
        return count_data_points(batch)

    @property
    def inner(self) -> MetricExporter:
        """The wrapped exporter."""
        return self._inner  # type: ignore[return-value]

    @property
    def preferred_temporality(self) -> dict[Any, Any] | None:
        """The inner exporter's preferred temporality by instrument type (None: the SDK's)."""
        return self._preferences[0]

    @property
    def preferred_aggregation(self) -> dict[Any, Any] | None:
        """The inner exporter's preferred aggregation by instrument type (None: the SDK's)."""
        return self._preferences[1]

    def export(
        self, metrics_data: MetricsData, timeout_millis: float | None = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        """Export within the smaller of ``timeout_millis`` and the wrapper's deadline."""
        outcome = self.export_outcome([metrics_data], millis_to_seconds(timeout_millis))
        if outcome is ExportOutcome.SUCCESS:
            return MetricExportResult.SUCCESS
        return MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return super().force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float | None = None, **kwargs: Any) -> None:
        """Shut down within ``timeout_millis`` (the SDK's readers pass ``timeout=``, in
        milliseconds too; default: the export deadline)."""
        timeout = kwargs.get("timeout")
        if timeout_millis is None and isinstance(timeout, (int, float)):
            timeout_millis = max(float(timeout), 0.0)
        super().shutdown(timeout_millis)
