"""otlp_span_exporter(): the stock OTLP/HTTP exporter behind a real deadline.

It builds ``OTLPSpanExporter`` (which reads the usual ``OTEL_EXPORTER_OTLP_*``
variables for endpoint, headers, certificates and compression) with an
:class:`InterruptibleSession`, and wraps it in :class:`DeadlineSpanExporter`.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

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
from ._requests import EncodedBatch, encode_batch
from ._session import InterruptibleSession
from ._urls import check_headers, header_problem, redact_url, url_problem

if TYPE_CHECKING:
    from ._encoder import SpanEncoder

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


def max_request_bytes(exporter: object) -> int:
    """The exporter's request size limit in bytes (``max_request_size``; 0: none)."""
    limit = getattr(exporter, "_max_request_size", 0)
    return limit if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 else 0


_left_out_warning = AggregatedWarning("spans left out of their batch")


def _warn_left_out(encoded: EncodedBatch) -> None:
    for reason, count in encoded.rejected.items():
        _left_out_warning.add(reason, count)


class _FastOTLPSpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP exporter, encoding with :class:`SpanEncoder`.

    SDK releases differ in where the encoding happens: older ones call
    ``self._serialize_spans(spans)``; newer ones encode inline in ``export`` and hand
    the bytes to ``self._client.export``. Both shapes are detected, never assumed from
    a version number; anything else keeps the stock encoder. Either way a span that
    cannot be encoded, or is too large alone, is left out of its batch (see
    :func:`encode_batch`), and a batch over ``max_request_size`` goes out as several requests.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._nb_encoder_instance: SpanEncoder | None = None
        client = getattr(self, "_client", None)
        self._nb_inline = (
            not hasattr(OTLPSpanExporter, "_serialize_spans")
            and callable(getattr(client, "export", None))
            and hasattr(self, "_shutdown")
        )

    @property
    def _nb_encoder(self) -> SpanEncoder:
        """The fast encoder, made at the first export: on the worker, not at a cold start.

        Importing it probes the SDK's encoder and span layout (see ``_encoder``).
        """
        encoder = self._nb_encoder_instance
        if encoder is None:
            from ._encoder import SpanEncoder

            encoder = self._nb_encoder_instance = SpanEncoder()
        return encoder

    def _nb_encode(self, spans: Sequence[ReadableSpan]) -> bytes:
        return self._nb_encoder.encode(spans)

    def _serialize_spans(self, spans: Sequence[ReadableSpan]) -> bytes:
        # Releases of this shape have no request size limit: one request, or none.
        encoded = encode_batch(spans, self._nb_encode, 0)
        _warn_left_out(encoded)
        return b"".join(request.data for request in encoded.requests)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not self._nb_inline:
            return super().export(spans)
        if self._shutdown:
            return SpanExportResult.FAILURE
        encoded = encode_batch(spans, self._nb_encode, max_request_bytes(self))
        _warn_left_out(encoded)
        return _send_requests(lambda data: _send_encoded(self, data), encoded)


def _send_encoded(exporter: OTLPSpanExporter, data: bytes) -> SpanExportResult:
    """Send already-encoded request bytes through the SDK exporter's own machinery."""
    if getattr(exporter, "_shutdown", False):
        return SpanExportResult.FAILURE
    send_serialized = getattr(exporter, "_export_serialized_spans", None)
    if callable(send_serialized):  # SDK 1.33-1.38: compression, session, retry loop
        result = send_serialized(data)
        return result if isinstance(result, SpanExportResult) else SpanExportResult.FAILURE
    limit = max_request_bytes(exporter)
    if limit and len(data) > limit:  # a spool file written under a larger limit
        _logger.warning("Dropping span batch: %d bytes exceeds max_request_size", len(data))
        return SpanExportResult.FAILURE
    result = exporter._client.export(data)  # newer SDKs: the HTTP client does the rest
    return SpanExportResult.SUCCESS if result.success else SpanExportResult.FAILURE


def _send_requests(
    send: Callable[[bytes], SpanExportResult], encoded: EncodedBatch
) -> SpanExportResult:
    """Send each request of ``encoded`` in turn; SUCCESS once all went out (or none was left)."""
    for request in encoded.requests:
        if send(request.data) is not SpanExportResult.SUCCESS:
            return SpanExportResult.FAILURE
    return SpanExportResult.SUCCESS


@dataclass(frozen=True)
class OTLPCodec:
    """How to encode a batch as OTLP request bodies, and send such a body later.

    ``encode`` is the raw encoder (it raises on a span it cannot write);
    :meth:`encode_batch` is what every path uses: bad spans left out, requests under
    ``max_request_bytes`` (0: no limit). ``exports`` is true when encoding and sending
    through the codec is all the exporter's own ``export`` would do (it is not overridden).
    """

    encode: Callable[[Sequence[ReadableSpan]], bytes]
    send: Callable[[bytes], SpanExportResult]
    max_request_bytes: int = 0
    exports: bool = False

    def encode_batch(self, spans: Sequence[ReadableSpan], *, single: bool = False) -> EncodedBatch:
        """``spans`` as requests under the size limit, and the spans left out by reason
        (with ``single``: one request, or ``split`` set; see :func:`encode_batch`)."""
        return encode_batch(spans, self.encode, self.max_request_bytes, single=single)

    def send_batch(self, encoded: EncodedBatch) -> SpanExportResult:
        """Send the requests of ``encoded`` in turn: SUCCESS once all went out."""
        return _send_requests(self.send, encoded)


_OWN_EXPORTS = (OTLPSpanExporter.export, _FastOTLPSpanExporter.export)


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
        exporter._nb_encode if isinstance(exporter, _FastOTLPSpanExporter) else stock_encode_spans
    )
    exports = type(exporter).export in _OWN_EXPORTS and "export" not in vars(exporter)
    return OTLPCodec(
        encode,
        lambda data: _send_encoded(exporter, data),
        max_request_bytes=max_request_bytes(exporter),
        exports=exports,
    )


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
    max_request_bytes: int | None = None,
) -> DeadlineSpanExporter:
    """An OTLP/HTTP span exporter whose ``timeout`` (seconds, default 2) is a real deadline.

    ``timeout`` falls back to ``OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`` /
    ``OTEL_EXPORTER_OTLP_TIMEOUT`` (see docs/configuration.md for their unit), then 2 s.
    Each export, from DNS lookup to the last byte of the response including the SDK's
    retries, returns within it. ``encoder`` is ``"fast"`` (the package's encoder, the
    default) or ``"stock"`` (the SDK's); ``OTEL_NONBLOCKING_ENCODER`` sets it too.
    ``max_request_bytes`` limits the size of one request before compression (None: the
    SDK's ``max_request_size`` default, 64 MiB where the SDK has one; 0: no limit): a
    larger batch goes out as several requests, a span too large alone is dropped.

    ``endpoint`` (else ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, ``OTEL_EXPORTER_OTLP_ENDPOINT``
    plus ``/v1/traces``, then ``http://localhost:4318/v1/traces``) and ``headers`` (else
    ``OTEL_EXPORTER_OTLP_TRACES_HEADERS`` / ``OTEL_EXPORTER_OTLP_HEADERS``) are checked
    here and handed to the SDK explicitly: a bad argument raises
    :class:`ConfigurationError` (URL without user-info or query, header value never
    shown); a bad variable warns once, naming it, and is left out.

    >>> exporter = otlp_span_exporter("http://127.0.0.1:4318/v1/traces", timeout=2)
    """
    timeout_millis = _config.OTLP_TIMEOUT_MILLIS.resolve_seconds(timeout)
    url = _config.otlp_endpoint_from_env() if endpoint is None else checked_endpoint(endpoint)
    sent = _config.otlp_headers_from_env() if headers is None else checked_headers(headers)
    if max_request_bytes is not None and (
        isinstance(max_request_bytes, bool)
        or not isinstance(max_request_bytes, int)
        or max_request_bytes < 0
    ):
        raise ConfigurationError(
            f"max_request_bytes must be an int >= 0 (0: no limit), got {max_request_bytes!r}"
        )
    exporter_class = otlp_exporter_class(encoder)
    limit: dict[str, Any] = {}
    if max_request_bytes is not None and sdk_takes_max_request_size():
        limit["max_request_size"] = max_request_bytes
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
        **limit,
    )
    if max_request_bytes is not None and not limit:
        inner._max_request_size = max_request_bytes  # older SDKs: read by the codec only
    return DeadlineSpanExporter(inner, timeout_millis=timeout_millis)


def sdk_takes_max_request_size() -> bool:
    try:
        return "max_request_size" in inspect.signature(OTLPSpanExporter).parameters
    except (TypeError, ValueError):  # pragma: no cover - signature always readable today
        return False
