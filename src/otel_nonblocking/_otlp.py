"""otlp_span_exporter(): the stock OTLP/HTTP exporter behind a real deadline.

It builds ``OTLPSpanExporter`` (which reads the usual ``OTEL_EXPORTER_OTLP_*``
variables for endpoint, headers, certificates and compression) with an
:class:`InterruptibleSession`, and wraps it in :class:`DeadlineSpanExporter`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from . import _config
from ._config import UNSET, _Unset
from ._encoder_stock import stock_encode_spans
from ._errors import ConfigurationError
from ._exporter import DeadlineSpanExporter
from ._log import AggregatedWarning
from ._session import InterruptibleSession
from ._urls import check_headers, header_problem, redact_url, url_problem

_INNER_TIMEOUT_MARGIN_SECONDS = 0.1
_logger = logging.getLogger("otel_nonblocking")

# The SDK's parser of OTEL_EXPORTER_OTLP_*HEADERS logs a malformed entry in full, key
# included. The package parses the variables itself and hands the SDK explicit headers,
# but SDK 1.45 parses the variables again whatever it is given; this filter on the
# parser's logger keeps its warning and drops the quoted entry.
_SDK_HEADER_PARSER_LOGGER: Final = "opentelemetry.util.re"
_HIDDEN_ENTRY: Final = "<entry not shown: it may hold a secret>"


class _HideHeaderEntries(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith("Header format invalid"):
            record.args = (_HIDDEN_ENTRY,)
        return True


def _hide_sdk_header_entries() -> None:
    sdk_logger = logging.getLogger(_SDK_HEADER_PARSER_LOGGER)
    if not any(isinstance(f, _HideHeaderEntries) for f in sdk_logger.filters):
        sdk_logger.addFilter(_HideHeaderEntries())


_hide_sdk_header_entries()

# Sent by the SDK with every request anyway; also makes explicit headers never empty, since
# SDK 1.33 parses the variables itself when the headers it is given are empty.
_CONTENT_TYPE: Final = {"content-type": "application/x-protobuf"}


def checked_endpoint(endpoint: object, name: str = "endpoint") -> str:
    """``endpoint`` if it is a usable http(s) URL, else :class:`ConfigurationError`
    (the URL shown without its user-info or query string)."""
    if not isinstance(endpoint, str):
        raise ConfigurationError(f"{name} must be a string URL, got {type(endpoint).__name__}")
    problem = url_problem(endpoint.strip())
    if problem is not None:
        raise ConfigurationError(f"{name} {problem}, got {redact_url(endpoint)!r}")
    return endpoint.strip()


def checked_headers(headers: object, name: str = "headers") -> dict[str, str]:
    """``headers`` as a dict if every one can be sent, else :class:`ConfigurationError`
    (which never quotes a value)."""
    if not isinstance(headers, Mapping):
        raise ConfigurationError(f"{name} must be a mapping, got {type(headers).__name__}")
    good, problems = check_headers(headers)
    if problems:
        raise ConfigurationError(f"{name}: {problems[0]}")
    return good


def _scrub_sdk_headers(exporter: OTLPSpanExporter) -> None:
    """Drop headers the SDK took from the environment that the HTTP client would refuse
    (SDK 1.45 merges the variables into explicit headers; 1.33 never reads them then)."""
    client = getattr(exporter, "_client", None)
    headers = getattr(client, "_headers", None)
    if isinstance(headers, dict):
        for key in [k for k, v in headers.items() if header_problem(k, v) is not None]:
            del headers[key]


def build_otlp_exporter(
    exporter_class: type[OTLPSpanExporter],
    endpoint: str,
    headers: Mapping[str, str],
    **kwargs: Any,
) -> OTLPSpanExporter:
    """``exporter_class`` with a checked endpoint and headers given explicitly, so that the
    SDK never reads (nor logs) the endpoint and headers variables."""
    exporter = exporter_class(endpoint=endpoint, headers={**_CONTENT_TYPE, **headers}, **kwargs)
    _scrub_sdk_headers(exporter)
    return exporter


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
        # One line per interval with counts, never one per batch (nor any span content).
        self._nb_warning = AggregatedWarning("spans left out of OTLP export batches")
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
        self._nb_warning.add("unencodable", self.nb_rejected)
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
            self._nb_warning.add(f"encoding_failed: {type(error).__name__}", len(spans))
            return SpanExportResult.FAILURE
        if self.nb_rejected == len(spans):
            return SpanExportResult.SUCCESS  # nothing left to send; all counted as rejected
        limit = getattr(self, "_max_request_size", 0) or 0
        if limit > 0 and len(data) > limit:
            self._nb_warning.add("request_above_max_request_size", len(spans))
            return SpanExportResult.FAILURE
        result = self._client.export(data)
        return SpanExportResult.SUCCESS if result.success else SpanExportResult.FAILURE


_SPOOLED_WARNING: Final = AggregatedWarning("encoded OTLP batches not sent")


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
        _SPOOLED_WARNING.add("request_above_max_request_size")
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

    ``endpoint`` (else ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, ``OTEL_EXPORTER_OTLP_ENDPOINT``
    plus ``/v1/traces``, then ``http://localhost:4318/v1/traces``) and ``headers`` (else
    ``OTEL_EXPORTER_OTLP_TRACES_HEADERS`` / ``OTEL_EXPORTER_OTLP_HEADERS``) are checked
    here and handed to the SDK explicitly: a bad argument raises
    :class:`ConfigurationError` (URL without user-info or query, header value never
    shown); a bad variable warns once, naming it, and is left out.

    >>> exporter = otlp_span_exporter("http://127.0.0.1:4318/v1/traces", timeout=2)
    """
    timeout_millis = _config.EXPORTER_TIMEOUT_MILLIS.resolve_seconds(timeout)
    url = _config.otlp_endpoint_from_env() if endpoint is None else checked_endpoint(endpoint)
    sent = _config.otlp_headers_from_env() if headers is None else checked_headers(headers)
    exporter_class = otlp_exporter_class(encoder)
    inner = build_otlp_exporter(
        exporter_class,
        url,
        sent,
        # The SDK's own timeout bounds each socket operation (and, in newer releases,
        # its retry loop); the wrapper bounds the whole. A little more than the deadline
        # ends the SDK's retries in time, while the wrapper is always the one to fire.
        timeout=timeout_millis / 1000 + _INNER_TIMEOUT_MARGIN_SECONDS,
        compression=_compression(compression),
        session=InterruptibleSession(),
    )
    return DeadlineSpanExporter(inner, timeout_millis=timeout_millis)
