"""otlp_span_exporter(): the stock OTLP/HTTP exporter behind a real deadline.

It builds ``OTLPSpanExporter`` (which reads the usual ``OTEL_EXPORTER_OTLP_*``
variables for endpoint, headers, certificates and compression) with an
:class:`InterruptibleSession`, and wraps it in :class:`DeadlineSpanExporter`.
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

from . import _config
from ._config import UNSET, _Unset
from ._errors import ConfigurationError
from ._exporter import DeadlineSpanExporter
from ._session import InterruptibleSession

_INNER_TIMEOUT_MARGIN_SECONDS = 0.1


def _compression(value: str | Compression | None) -> Compression:
    if isinstance(value, Compression):
        return value
    name = _config.COMPRESSION.resolve(UNSET if value is None else value).lower()
    return next(member for member in Compression if member.value == name)


def otlp_span_exporter(
    endpoint: str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float | _Unset = UNSET,
    compression: str | Compression | None = None,
) -> DeadlineSpanExporter:
    """An OTLP/HTTP span exporter whose ``timeout`` (seconds, default 2) is a real deadline.

    ``timeout`` falls back to ``OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`` /
    ``OTEL_EXPORTER_OTLP_TIMEOUT`` (see docs/configuration.md for their unit), then 2 s.
    Each export, from DNS lookup to the last byte of the response including the SDK's
    retries, returns within it.

    >>> exporter = otlp_span_exporter("http://127.0.0.1:4318/v1/traces", timeout=2)
    """
    if not isinstance(timeout, _Unset) and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float))
    ):
        raise ConfigurationError(f"timeout must be a number of seconds, got {timeout!r}")
    timeout_millis = _config.EXPORTER_TIMEOUT_MILLIS.resolve(
        UNSET if isinstance(timeout, _Unset) else float(timeout) * 1000
    )
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        raise ConfigurationError(f"endpoint must be an http:// or https:// URL, got {endpoint!r}")
    inner = OTLPSpanExporter(
        endpoint=endpoint,
        headers=dict(headers) if headers is not None else None,
        # The SDK's own timeout bounds each socket operation (and, in newer releases,
        # its retry loop); the wrapper bounds the whole. A little more than the deadline
        # ends the SDK's retries in time, while the wrapper is always the one to fire.
        timeout=timeout_millis / 1000 + _INNER_TIMEOUT_MARGIN_SECONDS,
        compression=_compression(compression),
        session=InterruptibleSession(),
    )
    return DeadlineSpanExporter(inner, timeout_millis=timeout_millis)
