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
SDK's configurator takes for them: ``otlp`` (``otlp_proto_http``, ``otlp_proto_grpc``),
``console``, ``none``, or a comma list (one pipeline per exporter). Any other name warns
once, naming the variable, and OTLP takes its place: nothing asked for is silently off.
Endpoints, headers, timeouts, compression and protocol come from the
``OTEL_EXPORTER_OTLP_[SIGNAL_]*`` variables, read by the OTLP factories.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined,unused-ignore]

from . import _compat_sdk, _state
from ._compat_sdk import BaseConfigurator
from ._config import tracing_disabled

_logger = logging.getLogger("otel_nonblocking")

#: Each signal's exporter variable, as the SDK's configurator reads them.
EXPORTER_VARS = {
    "traces": "OTEL_TRACES_EXPORTER",
    "metrics": "OTEL_METRICS_EXPORTER",
    "logs": "OTEL_LOGS_EXPORTER",
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
    """The names ``signal``'s variable lists, lower-cased, ``none`` left out; None when the
    signal is switched off (``none``). Unset or empty: ``otlp``, the specification's default."""
    var = EXPORTER_VARS[signal]
    raw = os.environ.get(var, "").strip() or "otlp"  # empty means unset
    names = [n.strip().lower() for n in raw.split(",")]
    chosen = [n for n in names if n and n != "none"]
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
    """The exporters ``signal``'s variable names: None for ``none``; ``[]`` for OTLP alone
    (built by :func:`configure_telemetry` from the ``OTEL_EXPORTER_OTLP_*`` variables).
    An unsupported name warns once, naming the variable, and OTLP takes its place."""
    names = exporter_names(signal)
    if names is None:
        return None
    var = EXPORTER_VARS[signal]
    places: list[Any] = []
    for name in names:
        exporter = _Otlp(_OTLP_NAMES[name]) if name in _OTLP_NAMES else None
        if name == "console":
            exporter = _console(signal)
        if exporter is None:
            _state.warn_once(
                ("exporter-name", var),
                "%s names an exporter otel_nonblocking does not support (otlp, "
                "otlp_proto_http, otlp_proto_grpc, console, none); using otlp in its place",
                var,
            )
            exporter = _Otlp(None)
        if isinstance(exporter, _Otlp) and exporter in places:
            continue  # one pipeline per OTLP entry, as one entry point per name
        places.append(exporter)
    # OTLP first: the pipeline configure_tracing()'s handle holds.
    places.sort(key=lambda e: not isinstance(e, _Otlp))
    if places == [_Otlp(None)]:
        return []  # configure_telemetry() builds it
    return [_otlp(signal, e.protocol) if isinstance(e, _Otlp) else e for e in places]


class OtelNonblockingConfigurator(BaseConfigurator):
    """Configures every signal from the standard ``OTEL_*`` variables via
    ``configure_telemetry()``."""

    def _configure(self, **kwargs: Any) -> None:
        if tracing_disabled():
            return
        try:
            # OTEL_EXPORTER_OTLP_[SIGNAL_]PROTOCOL, endpoints, headers, timeouts and
            # compression are read by the OTLP factories, which warn about bad values.
            chosen = {signal: exporters_from_env(signal) for signal in EXPORTER_VARS}
            if all(exporters is None for exporters in chosen.values()):
                return
            from ._telemetry import configure_telemetry

            configure_telemetry(
                traces=chosen["traces"] is not None,
                logs=chosen["logs"] is not None,
                metrics=chosen["metrics"] is not None,
                span_exporter=chosen["traces"] or None,
                log_exporter=chosen["logs"] or None,
                metric_exporter=chosen["metrics"] or None,
            )
        except Exception:
            _logger.warning(
                "otel_nonblocking could not configure telemetry; your code is fine, "
                "telemetry is off",
                exc_info=True,
            )
