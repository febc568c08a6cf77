"""DeadlineMetricExporter: a real wall-clock deadline around any MetricExporter's export.

A thin door onto :class:`DeadlineExporter`. A batch is one or more ``MetricsData`` (a
reader's collections), merged into one export; the inner exporter is told the time left
as its ``timeout_millis``. The inner exporter's preferred temporality and aggregation are
the wrapper's, so a reader over the wrapper collects what the inner exporter asked for.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

from opentelemetry.sdk.metrics.export import (
    Metric,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    ResourceMetrics,
    ScopeMetrics,
)

from . import _compat_sdk, _config
from ._config import UNSET, _Unset
from ._deadline import Clock, Deadline, millis_to_seconds
from ._export_core import (
    DeadlineExporter,
    ExportOutcome,
    find_witness,
    require_exporter,
    told_too_large,
)

__all__ = [
    "DeadlineMetricExporter",
    "count_data_points",
    "merge_metrics_data",
    "split_metrics_data",
]

# An HTTP collector's answer to a body over its limit.
_TOO_LARGE_STATUS = 413


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


def _points(metric: Metric) -> list[Any] | None:
    """The data points of ``metric``, or None when its data cannot be rebuilt with fewer."""
    data = metric.data
    if not dataclasses.is_dataclass(data) or not hasattr(data, "data_points"):
        return None
    return list(data.data_points)


def split_metrics_data(data: MetricsData) -> tuple[MetricsData, MetricsData] | None:
    """``data`` in two parts of about half its data points each, resources, scopes and
    metrics kept (a metric's points may be shared out between both); None when it holds
    fewer than two data points."""
    total = count_data_points([data])
    if total < 2:
        return None
    left = total // 2  # data points the first part still takes
    halves: tuple[list[ResourceMetrics], list[ResourceMetrics]] = ([], [])
    for resource_metrics in data.resource_metrics:
        scopes: tuple[list[ScopeMetrics], list[ScopeMetrics]] = ([], [])
        for scope_metrics in resource_metrics.scope_metrics:
            metrics: tuple[list[Metric], list[Metric]] = ([], [])
            for metric in scope_metrics.metrics:
                points = _points(metric)
                if not points:  # None (not rebuilt) or none at all
                    # Kept whole: to the first part while it takes points, else the second.
                    metrics[0 if left > 0 else 1].append(metric)
                    left -= len(getattr(metric.data, "data_points", ()))
                    continue
                head, tail = points[: max(left, 0)], points[max(left, 0) :]
                left -= len(head)
                for part, taken in ((0, head), (1, tail)):
                    if taken:
                        new_data = dataclasses.replace(cast(Any, metric.data), data_points=taken)
                        metrics[part].append(dataclasses.replace(metric, data=new_data))
            for part in (0, 1):
                if metrics[part]:
                    scopes[part].append(dataclasses.replace(scope_metrics, metrics=metrics[part]))
        for part in (0, 1):
            if scopes[part]:
                halves[part].append(
                    dataclasses.replace(resource_metrics, scope_metrics=scopes[part])
                )
    first, second = MetricsData(halves[0]), MetricsData(halves[1])
    if not count_data_points([first]) or not count_data_points([second]):
        return None  # the points are in metrics that cannot be rebuilt: no smaller part
    return first, second


def _export_metrics(exporter: MetricExporter) -> Callable[[list[MetricsData], Deadline], object]:
    witness = find_witness(exporter)

    def refused_as_too_large() -> bool:  # an HTTP collector's body limit: 413
        return witness is not None and witness.last_status == _TOO_LARGE_STATUS

    def call(batch: list[MetricsData], deadline: Deadline) -> object:
        # A request over the message size limit (the OTLP/gRPC client's, refused before it
        # is sent, or the collector's: RESOURCE_EXHAUSTED, HTTP 413) goes out as parts
        # under it, each within what is left of this one export's deadline. A part that
        # fails ends the export as failed: the parts after it are not sent.
        parts = collections.deque([merge_metrics_data(batch)])
        result: object = MetricExportResult.SUCCESS
        while parts:
            part = parts.popleft()
            if deadline.expired():
                return MetricExportResult.FAILURE
            try:
                result = exporter.export(part, timeout_millis=deadline.remaining() * 1000)
            except Exception as error:
                halves = split_metrics_data(part) if told_too_large(error) else None
                if halves is None:
                    raise
            else:
                if result is MetricExportResult.SUCCESS:
                    continue
                halves = split_metrics_data(part) if refused_as_too_large() else None
                if halves is None:
                    return result
            parts.extendleft(reversed(halves))
        return result

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
        require_exporter(exporter, "MetricExporter")
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
