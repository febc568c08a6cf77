"""opentelemetry-instrument integration: the ``otel_nonblocking`` distro and configurator.

With the package installed, ``opentelemetry-instrument python app.py`` sends traces
through :class:`NonBlockingSpanProcessor` and the deadline OTLP exporter. The distro only
sets defaults (``os.environ.setdefault``), so the user's environment always wins. If
``opentelemetry-distro`` is installed as well, choose ours explicitly with
``OTEL_PYTHON_DISTRO=otel_nonblocking`` and ``OTEL_PYTHON_CONFIGURATOR=otel_nonblocking``.

Traces only: set ``OTEL_TRACES_EXPORTER`` to ``otlp`` (default), ``console`` or ``none``.
Metrics and logs are not configured here.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined,unused-ignore]
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter

from ._compat_sdk import BaseConfigurator
from ._config import tracing_disabled
from ._setup import configure_tracing

_logger = logging.getLogger("otel_nonblocking")


class OtelNonblockingDistro(BaseDistro):  # type: ignore[misc,unused-ignore]
    """Sets the defaults our configurator expects; never overrides the environment."""

    def _configure(self, **kwargs: Any) -> None:
        os.environ.setdefault("OTEL_TRACES_EXPORTER", "otlp")
        os.environ.setdefault("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        os.environ.setdefault("OTEL_METRICS_EXPORTER", "none")
        os.environ.setdefault("OTEL_LOGS_EXPORTER", "none")


def _exporter_from_env() -> SpanExporter | bool:
    """The exporter named by OTEL_TRACES_EXPORTER: True is our OTLP default, False none."""
    raw = os.environ.get("OTEL_TRACES_EXPORTER", "").strip() or "otlp"  # empty means unset
    names = [n.strip().lower() for n in raw.split(",")]
    names = [n for n in names if n]
    if not names or names == ["none"]:
        return False
    if "otlp" in names:
        return True
    if "console" in names:
        return ConsoleSpanExporter()
    _logger.warning(
        "OTEL_TRACES_EXPORTER names no exporter otel_nonblocking supports "
        "(otlp, console, none); using otlp"
    )
    return True


class OtelNonblockingConfigurator(BaseConfigurator):
    """Configures tracing from the standard ``OTEL_*`` variables via configure_tracing()."""

    def _configure(self, **kwargs: Any) -> None:
        if tracing_disabled():
            return
        try:
            # OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL (http/protobuf, grpc) is read by
            # otlp_span_exporter(), which warns about any other value, naming the variable.
            exporter = _exporter_from_env()
            if exporter is False:
                return
            configure_tracing(exporter=None if isinstance(exporter, bool) else exporter)
        except Exception:
            _logger.warning(
                "otel_nonblocking could not configure tracing; your code is fine, tracing is off",
                exc_info=True,
            )
