"""otlp_span_exporter(): the stock OTLP/HTTP exporter behind a real deadline.

It builds ``OTLPSpanExporter`` (which reads the usual ``OTEL_EXPORTER_OTLP_*``
variables for endpoint, headers, certificates and compression) with an
:class:`InterruptibleSession`, and wraps it in :class:`DeadlineSpanExporter`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from . import _config
from ._config import UNSET, _Unset
from ._encoder_stock import stock_encode_spans
from ._errors import ConfigurationError
from ._exporter import DeadlineSpanExporter
from ._session import InterruptibleSession

_INNER_TIMEOUT_MARGIN_SECONDS = 0.1
_logger = logging.getLogger("otel_nonblocking")


def _compression(value: str | Compression | None) -> Compression:
    if isinstance(value, Compression):
        return value
    name = _config.COMPRESSION.resolve(UNSET if value is None else value).lower()
    return next(member for member in Compression if member.value == name)


class _FastOTLPSpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP exporter, encoding with :class:`SpanEncoder`.

    SDK releases differ in where the encoding happens: older ones call
    ``self._serialize_spans(spans)``; newer ones encode inline in ``export`` and hand
    the bytes to ``self._client.export``. Both shapes are detected, never assumed from
    a version number; anything else keeps the stock encoder.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from ._encoder import SpanEncoder

        super().__init__(*args, **kwargs)
        self._nb_encoder = SpanEncoder()
        client = getattr(self, "_client", None)
        self._nb_inline = (
            not hasattr(OTLPSpanExporter, "_serialize_spans")
            and callable(getattr(client, "export", None))
            and hasattr(self, "_shutdown")
        )

    #: Spans of the last batch that could not be encoded and were left out of it.
    nb_rejected = 0

    def _encode(self, spans: Sequence[ReadableSpan]) -> bytes:
        """The batch's bytes; a span no encoder can write is left out, not the batch."""
        self.nb_rejected = 0
        try:
            return self._nb_encoder.encode(spans)
        except Exception:  # noqa: BLE001, S110 - find the span(s) at fault below
            pass
        good = []
        for span in spans:
            try:
                self._nb_encoder.encode([span])
            except Exception:  # noqa: BLE001, S112 - counted as rejected just below
                continue
            good.append(span)
        self.nb_rejected = len(spans) - len(good)
        if self.nb_rejected:
            _logger.warning(
                "Left %d span(s) that cannot be encoded out of a batch", self.nb_rejected
            )
        return self._nb_encoder.encode(good)

    def _serialize_spans(self, spans: Sequence[ReadableSpan]) -> bytes:
        return self._encode(spans)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.nb_rejected = 0
        if not self._nb_inline:
            return super().export(spans)
        if self._shutdown:
            return SpanExportResult.FAILURE
        try:
            data = self._encode(spans)
        except Exception as error:  # noqa: BLE001 - reported like the SDK does, as FAILURE
            _logger.error("Failed to encode span batch: %s", type(error).__name__)
            return SpanExportResult.FAILURE
        if self.nb_rejected == len(spans):
            return SpanExportResult.SUCCESS  # nothing left to send; all counted as rejected
        limit = getattr(self, "_max_request_size", 0) or 0
        if limit > 0 and len(data) > limit:
            _logger.warning("Dropping span batch: %d bytes exceeds max_request_size", len(data))
            return SpanExportResult.FAILURE
        result = self._client.export(data)
        return SpanExportResult.SUCCESS if result.success else SpanExportResult.FAILURE


def _send_encoded(exporter: OTLPSpanExporter, data: bytes) -> SpanExportResult:
    """Send already-encoded request bytes through the SDK exporter's own machinery."""
    if getattr(exporter, "_shutdown", False):
        return SpanExportResult.FAILURE
    send_serialized = getattr(exporter, "_export_serialized_spans", None)
    if callable(send_serialized):  # SDK 1.33-1.38: compression, session, retry loop
        result = send_serialized(data)
        return result if isinstance(result, SpanExportResult) else SpanExportResult.FAILURE
    limit = getattr(exporter, "_max_request_size", 0) or 0
    if isinstance(limit, int) and limit > 0 and len(data) > limit:
        _logger.warning("Dropping span batch: %d bytes exceeds max_request_size", len(data))
        return SpanExportResult.FAILURE
    result = exporter._client.export(data)  # newer SDKs: the HTTP client does the rest
    return SpanExportResult.SUCCESS if result.success else SpanExportResult.FAILURE


@dataclass(frozen=True)
class OTLPCodec:
    """How to encode a batch as an OTLP request body, and send such a body later."""

    encode: Callable[[Sequence[ReadableSpan]], bytes]
    send: Callable[[bytes], SpanExportResult]


def otlp_codec(exporter: object) -> OTLPCodec | None:
    """The codec of an SDK ``OTLPSpanExporter`` (HTTP/protobuf), or None for any other.

    The disk spool stores encoded request bodies, so it needs one; the SDK's two known
    shapes (``_export_serialized_spans``, or ``_client.export``) are detected.
    """
    if not isinstance(exporter, OTLPSpanExporter):
        return None
    shaped = callable(getattr(exporter, "_export_serialized_spans", None)) or callable(
        getattr(getattr(exporter, "_client", None), "export", None)
    )
    if not shaped:
        return None
    encode = (
        exporter._nb_encoder.encode
        if isinstance(exporter, _FastOTLPSpanExporter)
        else stock_encode_spans
    )
    return OTLPCodec(encode, lambda data: _send_encoded(exporter, data))


def otlp_exporter_class(encoder: str | None = None) -> type[OTLPSpanExporter]:
    """The SDK's OTLP/HTTP exporter class, or ours that encodes with :class:`SpanEncoder`.

    ``encoder`` is ``"fast"`` or ``"stock"``; None means ``OTEL_NONBLOCKING_ENCODER``, then
    fast. A bad value raises :class:`ConfigurationError` (from the environment: warns once).
    """
    use_fast = _config.ENCODER.resolve(UNSET if encoder is None else encoder).lower() == "fast"
    return _FastOTLPSpanExporter if use_fast else OTLPSpanExporter


def otlp_span_exporter(
    endpoint: str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float | _Unset = UNSET,
    compression: str | Compression | None = None,
    *,
    encoder: str | None = None,
) -> DeadlineSpanExporter:
    """An OTLP/HTTP span exporter whose ``timeout`` (seconds, default 2) is a real deadline.

    ``timeout`` falls back to ``OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`` /
    ``OTEL_EXPORTER_OTLP_TIMEOUT`` (see docs/configuration.md for their unit), then 2 s.
    Each export, from DNS lookup to the last byte of the response including the SDK's
    retries, returns within it. ``encoder`` is ``"fast"`` (the package's encoder, the
    default) or ``"stock"`` (the SDK's); ``OTEL_NONBLOCKING_ENCODER`` sets it too.

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
    exporter_class = otlp_exporter_class(encoder)
    inner = exporter_class(
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
