"""opentelemetry-instrument integration: the ``otel_nonblocking`` distro and configurator.

With the package installed, ``opentelemetry-instrument python app.py`` sends traces, logs
and metrics through the package's bounded pipelines (``NonBlockingSpanProcessor``,
``NonBlockingLogRecordProcessor``, ``NonBlockingMetricReader``, each over the deadline
OTLP exporter), all under one exit budget: the configurator calls
:func:`~otel_nonblocking.configure_telemetry`. The distro only sets defaults
(``os.environ.setdefault``), so the user's environment always wins. If
``opentelemetry-distro`` is installed as well, choose ours explicitly with
``OTEL_PYTHON_DISTRO=otel_nonblocking`` and ``OTEL_PYTHON_CONFIGURATOR=otel_nonblocking``.

``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER`` / ``OTEL_LOGS_EXPORTER`` take what the
SDK's configurator takes for them, or a comma list (one pipeline per exporter): ``otlp``
(``otlp_proto_http``, ``otlp_proto_grpc``) and ``console`` are built here, ``none``
switches the signal off, and any other name is loaded as the SDK's configurator loads it,
from the entry points ``opentelemetry_{traces,metrics,logs}_exporter`` (zipkin, prometheus,
a vendor's exporter), then put behind the package's bounded pipelines: a span or log
exporter behind its deadline exporter and non-blocking processor, a metric exporter behind
``NonBlockingMetricReader``, a metric *reader* (a pull exporter such as prometheus) added to
the ``MeterProvider`` as it is. A name no installed package provides warns once, naming the
variable, and is skipped (the stock configurator fails the whole set-up instead; putting
OTLP in its place would send data where nobody asked). Endpoints, headers, timeouts,
compression and protocol come from the ``OTEL_EXPORTER_OTLP_[SIGNAL_]*`` variables, read
by the OTLP factories.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined,unused-ignore]

from . import _compat_sdk, _entry_points, _state
from ._compat_sdk import BaseConfigurator
from ._config import tracing_disabled

_logger = logging.getLogger("otel_nonblocking")

#: Each signal's exporter variable, as the SDK's configurator reads them.
EXPORTER_VARS = {
    "traces": "OTEL_TRACES_EXPORTER",
    "metrics": "OTEL_METRICS_EXPORTER",
    "logs": "OTEL_LOGS_EXPORTER",
}
#: The declarative configuration file the SDK's configurator (1.45+) reads instead.
CONFIG_FILE_VAR = "OTEL_CONFIG_FILE"
#: Each signal's entry point group, where the SDK's configurator looks a name up.
ENTRY_POINT_GROUPS = {
    "traces": "opentelemetry_traces_exporter",
    "metrics": "opentelemetry_metrics_exporter",
    "logs": "opentelemetry_logs_exporter",
}
# The SDK's OTLP exporter names, and the protocol each asks for (None: the
# OTEL_EXPORTER_OTLP_[SIGNAL_]PROTOCOL variables decide).
_OTLP_NAMES: dict[str, str | None] = {
    "otlp": None,
    "otlp_proto_http": "http/protobuf",
    "otlp_proto_grpc": "grpc",
}


class _Otlp:
    """A place in a list of exporters that the signal's OTLP factory fills."""

    def __init__(self, protocol: str | None) -> None:
        self.protocol = protocol

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Otlp) and other.protocol == self.protocol

    def __hash__(self) -> int:
        return hash(self.protocol)


class OtelNonblockingDistro(BaseDistro):  # type: ignore[misc,unused-ignore]
    """Sets the defaults our configurator expects; never overrides the environment.

    As ``opentelemetry-distro``: every signal to OTLP. Unlike it, over http/protobuf
    (it defaults to grpc): OTLP/HTTP needs no extra, gRPC the ``grpc`` extra.
    """

    def _configure(self, **kwargs: Any) -> None:
        for var in EXPORTER_VARS.values():
            os.environ.setdefault(var, "otlp")
        os.environ.setdefault("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")


def exporter_names(signal: str) -> list[str] | None:
    """The names ``signal``'s variable lists, stripped, ``none`` left out; None when the
    signal is switched off (``none``). Unset or empty: ``otlp``, the specification's
    default. The names built here match in any case; an entry point name as written."""
    var = EXPORTER_VARS[signal]
    raw = os.environ.get(var, "").strip() or "otlp"  # empty means unset
    names = [n.strip() for n in raw.split(",")]
    chosen = [n for n in names if n and n.lower() != "none"]
    return chosen or None


def _console(signal: str) -> Any:
    if signal == "traces":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if signal == "metrics":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

        return ConsoleMetricExporter()
    console_class = _compat_sdk.console_log_exporter_class()
    return None if console_class is None else console_class()


def _otlp(signal: str, protocol: str | None) -> Any:
    from . import _otlp

    if signal == "traces":
        return _otlp.otlp_span_exporter(protocol=protocol)
    if signal == "logs":
        return _otlp.otlp_log_exporter(protocol=protocol)
    return _otlp.otlp_metric_exporter(protocol=protocol)


def exporters_from_env(signal: str) -> list[Any] | None:
    """The exporters ``signal``'s variable names (for metrics, readers too): None when
    there is none (``none``, or no name could be loaded); ``[]`` for OTLP alone (built by
    :func:`configure_telemetry` from the ``OTEL_EXPORTER_OTLP_*`` variables). A name that
    cannot be loaded warns once, naming the variable and the entry's place in it, and is
    skipped."""
    names = exporter_names(signal)
    if names is None:
        return None
    places: list[Any] = []
    seen: set[str] = set()
    for position, name in enumerate(names, start=1):
        key = name.lower() if name.lower() in (*_OTLP_NAMES, "console") else name
        if key in seen:
            continue  # one pipeline per name, as the stock configurator: one per entry point
        seen.add(key)
        if key in _OTLP_NAMES:
            place: Any = _Otlp(_OTLP_NAMES[key])
        elif key == "console":
            place = _console(signal)
        else:
            place = _from_entry_point(signal, name, position)
        if place is not None:
            places.append(place)
    if not places:
        return None
    # OTLP first: the pipeline configure_tracing()'s handle holds.
    places.sort(key=lambda e: not isinstance(e, _Otlp))
    if places == [_Otlp(None)]:
        return []  # configure_telemetry() builds it
    return [_otlp(signal, e.protocol) if isinstance(e, _Otlp) else e for e in places]


def _from_entry_point(signal: str, name: str, position: int) -> Any:
    """An instance of what the entry point ``name`` of ``signal``'s group names, as the
    SDK's configurator makes it (no arguments), or None after one warning. The warning
    names the variable and the entry's place in it, never the value."""
    var, group = EXPORTER_VARS[signal], ENTRY_POINT_GROUPS[signal]
    made = _entry_points.load(group, name, var, position=position, then=_entry_points.SKIPPED)
    if made is None:
        return None
    if not _is_exporter(signal, made):
        why = f"its entry point in {group} is not a {signal} exporter"
        _entry_points.cannot_load(var, why, position=position, then=_entry_points.SKIPPED)
        return None
    try:
        return made()
    except Exception:
        _logger.debug("otel_nonblocking: an exporter raised when built", exc_info=True)
        why = f"the {signal} exporter of its entry point could not be built"
        _entry_points.cannot_load(var, why, position=position, then=_entry_points.SKIPPED)
        return None


def _is_exporter(signal: str, made: object) -> bool:
    """What the SDK's configurator accepts from ``signal``'s group: a span exporter class,
    a log exporter class, a metric exporter or metric reader class."""
    if not isinstance(made, type):
        return False
    if signal == "traces":
        from opentelemetry.sdk.trace.export import SpanExporter

        return issubclass(made, SpanExporter)
    if signal == "logs":
        return issubclass(made, _compat_sdk.LogExporterBase)
    from opentelemetry.sdk.metrics.export import MetricExporter, MetricReader

    return issubclass(made, (MetricExporter, MetricReader))


class OtelNonblockingConfigurator(BaseConfigurator):
    """Configures every signal from the standard ``OTEL_*`` variables via
    ``configure_telemetry()``."""

    def _configure(self, **kwargs: Any) -> None:
        if tracing_disabled():
            return
        if os.environ.get(CONFIG_FILE_VAR, "").strip():
            # The stock configurator hands the whole set-up to opentelemetry-configuration.
            _state.warn_once(
                ("unsupported", CONFIG_FILE_VAR),
                "%s is set, but otel_nonblocking configures from the OTEL_* variables and "
                "does not read the file",
                CONFIG_FILE_VAR,
            )
        try:
            # OTEL_EXPORTER_OTLP_[SIGNAL_]PROTOCOL, endpoints, headers, timeouts and
            # compression are read by the OTLP factories, which warn about bad values.
            chosen = {signal: exporters_from_env(signal) for signal in EXPORTER_VARS}
            if all(exporters is None for exporters in chosen.values()):
                return
            from opentelemetry.sdk.metrics.export import MetricReader

            from ._telemetry import configure_telemetry

            # With traces off too, as the stock configurator: spans are still made (not
            # exported), so log records carry trace ids and root spans start traces.
            _install_tracer_provider(kwargs.get("auto_instrumentation_version"))
            metrics = chosen["metrics"] or []
            configure_telemetry(
                traces=chosen["traces"] is not None,
                logs=chosen["logs"] is not None,
                metrics=chosen["metrics"] is not None,
                span_exporter=chosen["traces"] or None,
                log_exporter=chosen["logs"] or None,
                metric_exporter=[e for e in metrics if not isinstance(e, MetricReader)] or None,
                metric_readers=[e for e in metrics if isinstance(e, MetricReader)] or None,
            )
        except Exception:
            _logger.warning(
                "otel_nonblocking could not configure telemetry; your code is fine, "
                "telemetry is off",
                exc_info=True,
            )


def _install_tracer_provider(auto_instrumentation_version: object) -> None:
    """The ``TracerProvider`` the SDK's configurator would make, unless an SDK provider is
    installed already: the sampler (``OTEL_TRACES_SAMPLER``) and id generator
    (``OTEL_PYTHON_ID_GENERATOR``) loaded from their entry points, and the resource with
    ``telemetry.auto.version``. ``configure_telemetry()`` then adds its processors to it
    (none with ``OTEL_TRACES_EXPORTER=none``)."""
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return
    attributes = {}
    if isinstance(auto_instrumentation_version, str) and auto_instrumentation_version:
        attributes["telemetry.auto.version"] = auto_instrumentation_version
    provider = TracerProvider(
        sampler=_entry_points.sampler_from_env(),
        id_generator=_entry_points.id_generator_from_env(),
        resource=Resource.create(attributes),
        shutdown_on_exit=False,  # the package's exit hook shuts its processors down
    )
    trace.set_tracer_provider(provider)
