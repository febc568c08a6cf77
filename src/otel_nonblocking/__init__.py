"""otel_nonblocking: OpenTelemetry tracing that never blocks the code it observes.

``NonBlockingSpanProcessor`` makes ``span.end()`` a queue append; ``DeadlineSpanExporter``
puts a real wall-clock deadline around every export; ``otlp_span_exporter()`` builds the
OTLP/HTTP exporter with both. See the README and ``docs/``.

Importing the package is a cold start (an AWS Lambda pays it on every new instance), so it
imports nothing: each name below loads the module it lives in on first use.
"""

# Every module-level name here is either public (in __all__) or starts with "_":
# tests/test_exported_members.py keeps it so.
import importlib as _importlib
import sys as _sys
import typing as _typing
import warnings as _warnings

from ._version import __version__

if _typing.TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ loads
    from ._breaker import BreakerState
    from ._config import UNSET, UnsetType
    from ._errors import ConfigurationError
    from ._exporter import DeadlineSpanExporter, ExporterStats, ExportOutcome, ExportReport
    from ._exporter_logs import DeadlineLogExporter
    from ._exporter_metrics import DeadlineMetricExporter
    from ._log_processor import NonBlockingLogRecordProcessor
    from ._metric_reader import MetricReaderStats, NonBlockingMetricReader
    from ._otlp import otlp_log_exporter, otlp_metric_exporter, otlp_span_exporter
    from ._processor import NonBlockingSpanProcessor, ProcessorStats
    from ._serverless import FlushAfter, InvocationContext, flush_after
    from ._setup import (
        FlushResult,
        SignalResult,
        TracingHandle,
        aflush,
        configure_tracing,
        flush,
        installed,
        shutdown,
    )
    from ._telemetry import TelemetryHandle, configure_telemetry

__all__ = [
    "UNSET",
    "BreakerState",
    "ConfigurationError",
    "DeadlineLogExporter",
    "DeadlineMetricExporter",
    "DeadlineSpanExporter",
    "ExportOutcome",
    "ExportReport",
    "ExporterStats",
    "FlushAfter",
    "FlushResult",
    "InvocationContext",
    "MetricReaderStats",
    "NonBlockingLogRecordProcessor",
    "NonBlockingMetricReader",
    "NonBlockingSpanProcessor",
    "ProcessorStats",
    "SignalResult",
    "TelemetryHandle",
    "TracingHandle",
    "UnsetType",
    "__version__",
    "aflush",
    "configure_telemetry",
    "configure_tracing",
    "flush",
    "flush_after",
    "installed",
    "otlp_log_exporter",
    "otlp_metric_exporter",
    "otlp_span_exporter",
    "shutdown",
]

# Where each public name lives. The owning module is imported on first access only.
_HOMES: dict[str, str] = {
    "UNSET": "_config",
    "BreakerState": "_breaker",
    "ConfigurationError": "_errors",
    "DeadlineLogExporter": "_exporter_logs",
    "DeadlineMetricExporter": "_exporter_metrics",
    "DeadlineSpanExporter": "_exporter",
    "ExportOutcome": "_exporter",
    "ExportReport": "_exporter",
    "ExporterStats": "_exporter",
    "FlushAfter": "_serverless",
    "FlushResult": "_setup",
    "InvocationContext": "_serverless",
    "MetricReaderStats": "_metric_reader",
    "NonBlockingLogRecordProcessor": "_log_processor",
    "NonBlockingMetricReader": "_metric_reader",
    "NonBlockingSpanProcessor": "_processor",
    "ProcessorStats": "_processor",
    "SignalResult": "_setup",
    "TelemetryHandle": "_telemetry",
    "TracingHandle": "_setup",
    "UnsetType": "_config",
    "aflush": "_setup",
    "configure_telemetry": "_telemetry",
    "configure_tracing": "_setup",
    "flush": "_setup",
    "flush_after": "_serverless",
    "installed": "_setup",
    "otlp_log_exporter": "_otlp",
    "otlp_metric_exporter": "_otlp",
    "otlp_span_exporter": "_otlp",
    "shutdown": "_setup",
}

# Names this package exported before 0.1 that are internals: still importable for one
# release, with a DeprecationWarning that says what to use instead.
_DEPRECATED: dict[str, tuple[str, str]] = {
    "AttemptAbandoned": (
        "_errors",
        "it is raised only inside an export attempt the deadline gave up on, and "
        "DeadlineSpanExporter handles it",
    ),
    "InterruptibleSession": (
        "_session",
        "otlp_span_exporter() builds the OTLP exporter with it; use that",
    ),
    "SETTINGS": ("_config", "the settings are listed in docs/configuration.md"),
    "Setting": ("_config", "the settings are listed in docs/configuration.md"),
}


def _publish(name: str, value: object) -> None:
    """Cache ``value`` as a module attribute; classes and functions report this module."""
    from ._public import publish

    publish(value, __name__)
    globals()[name] = value


def __getattr__(name: str) -> _typing.Any:
    home = _HOMES.get(name)
    if home is not None:
        module = _importlib.import_module(f"{__name__}.{home}")
        _publish(name, getattr(module, name))
        # Names whose module the import above loaded too: publish them now, so that
        # e.g. the processor a handle holds reports `otel_nonblocking` like its class.
        for other, other_home in _HOMES.items():
            if other not in globals():
                loaded = _sys.modules.get(f"{__name__}.{other_home}")
                if loaded is not None and hasattr(loaded, other):
                    _publish(other, getattr(loaded, other))
        return globals()[name]
    if name in _DEPRECATED:
        home, why = _DEPRECATED[name]
        _warnings.warn(
            f"otel_nonblocking.{name} is deprecated and will be removed in the next release: {why}",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(_importlib.import_module(f"{__name__}.{home}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
