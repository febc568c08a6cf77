"""otel_nonblocking: OpenTelemetry tracing that never blocks the code it observes.

``NonBlockingSpanProcessor`` makes ``span.end()`` a queue append; ``DeadlineSpanExporter``
puts a real wall-clock deadline around every export; ``otlp_span_exporter()`` builds the
OTLP/HTTP exporter with both. See the README and ``docs/``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from ._breaker import BreakerState
from ._config import SETTINGS, UNSET, Setting
from ._errors import AttemptAbandoned, ConfigurationError
from ._exporter import DeadlineSpanExporter, ExporterStats, ExportOutcome, ExportReport
from ._otlp import otlp_span_exporter
from ._processor import NonBlockingSpanProcessor, ProcessorStats
from ._serverless import FlushAfter, InvocationContext, flush_after
from ._session import InterruptibleSession
from ._setup import (
    FlushResult,
    TracingHandle,
    aflush,
    configure_tracing,
    flush,
    installed,
    shutdown,
)

try:
    __version__ = version("otel-nonblocking")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "SETTINGS",
    "UNSET",
    "AttemptAbandoned",
    "BreakerState",
    "ConfigurationError",
    "DeadlineSpanExporter",
    "ExportOutcome",
    "ExportReport",
    "ExporterStats",
    "FlushAfter",
    "FlushResult",
    "InterruptibleSession",
    "InvocationContext",
    "NonBlockingSpanProcessor",
    "ProcessorStats",
    "Setting",
    "TracingHandle",
    "__version__",
    "aflush",
    "configure_tracing",
    "flush",
    "flush_after",
    "installed",
    "otlp_span_exporter",
    "shutdown",
]
