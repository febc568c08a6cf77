"""What the package knows about the SDK's OTLP/HTTP span exporter: its codec.

:class:`OTLPCodec` encodes a batch into request bodies (bad spans left out, requests under
the size limit) and sends such bodies later through the exporter's own machinery (the disk
spool needs that). ``_FastOTLPSpanExporter`` is the exporter encoding with the package's
:class:`SpanEncoder`. The exporter's internals are read through :mod:`._compat_sdk`.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from . import _assemble, _compat_sdk, _config
from ._config import UNSET
from ._encoder_stock import stock_encode_spans
from ._log import AggregatedWarning
from ._requests import EncodedBatch, encode_batch

if TYPE_CHECKING:
    from ._assemble import SpanPieces
    from ._encoder import SpanEncoder

_logger = logging.getLogger("otel_nonblocking")


def max_request_bytes(exporter: object) -> int:
    """The exporter's request size limit in bytes (``max_request_size``; 0: none)."""
    return _compat_sdk.max_request_size(exporter)


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
        # One table of groups per exporter, made now (cheap: it gets the encoder at its
        # first span), so that every thread encodes and assembles with the same one.
        self._nb_pieces = _assemble.SpanPieces(lambda: self._nb_encoder)
        self._nb_inline = (
            not _compat_sdk.serializes_spans(OTLPSpanExporter)
            and _compat_sdk.client_sender(self) is not None
            and _compat_sdk.has_shutdown_flag(self)
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
        if _compat_sdk.is_shut_down(self):
            return SpanExportResult.FAILURE
        encoded = encode_batch(spans, self._nb_encode, max_request_bytes(self))
        _warn_left_out(encoded)
        return _send_requests(lambda data: _send_encoded(self, data), encoded)


def _send_encoded(exporter: OTLPSpanExporter, data: bytes) -> SpanExportResult:
    """Send already-encoded request bytes through the SDK exporter's own machinery."""
    if _compat_sdk.is_shut_down(exporter):
        return SpanExportResult.FAILURE
    send_serialized = _compat_sdk.serialized_sender(exporter)
    if send_serialized is not None:  # SDK 1.33-1.38: compression, session, retry loop
        result = send_serialized(data)
        return result if isinstance(result, SpanExportResult) else SpanExportResult.FAILURE
    limit = max_request_bytes(exporter)
    if limit and len(data) > limit:  # a spool file written under a larger limit
        _logger.warning("Dropping span batch: %d bytes exceeds max_request_size", len(data))
        return SpanExportResult.FAILURE
    send = _compat_sdk.client_sender(exporter)
    if send is None:  # neither known shape: nothing can send the bytes
        return SpanExportResult.FAILURE
    result = send(data)  # newer SDKs: the HTTP client does the rest
    return (
        SpanExportResult.SUCCESS if getattr(result, "success", False) else SpanExportResult.FAILURE
    )


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
    ``pieces`` (our exporter's): spans as encoded items, for the worker's stage; a batch of
    such items is assembled into requests instead of encoded.
    """

    encode: Callable[[Sequence[ReadableSpan]], bytes]
    send: Callable[[bytes], SpanExportResult]
    max_request_bytes: int = 0
    exports: bool = False
    pieces: SpanPieces | None = None

    def encode_batch(self, spans: Sequence[Any], *, single: bool = False) -> EncodedBatch:
        """``spans`` (span objects, or items the stage encoded) as requests under the size
        limit, and the spans left out by reason (with ``single``: one request, or ``split``
        set; see :func:`encode_batch`)."""
        pieces = self.pieces
        if pieces is not None and spans and type(spans[0]) is bytes:
            return encode_batch(spans, pieces.assemble, self.max_request_bytes, single=single)
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
    shaped = _compat_sdk.serialized_sender(exporter) or _compat_sdk.client_sender(exporter)
    if shaped is None:
        return None
    fast = exporter if isinstance(exporter, _FastOTLPSpanExporter) else None
    exports = type(exporter).export in _OWN_EXPORTS and "export" not in vars(exporter)
    return OTLPCodec(
        stock_encode_spans if fast is None else fast._nb_encode,
        lambda data: _send_encoded(exporter, data),
        max_request_bytes=max_request_bytes(exporter),
        exports=exports,
        pieces=None if fast is None else fast._nb_pieces,
    )


def otlp_exporter_class(encoder: str | None = None) -> type[OTLPSpanExporter]:
    """The SDK's OTLP/HTTP exporter class, or ours that encodes with :class:`SpanEncoder`.

    ``encoder`` is ``"fast"`` or ``"stock"``; None means ``OTEL_NONBLOCKING_ENCODER``, then
    fast. A bad value raises :class:`ConfigurationError` (from the environment: warns once).
    """
    use_fast = _config.ENCODER.resolve(UNSET if encoder is None else encoder).lower() == "fast"
    return _FastOTLPSpanExporter if use_fast else OTLPSpanExporter


def sdk_takes_max_request_size() -> bool:
    try:
        return "max_request_size" in inspect.signature(OTLPSpanExporter).parameters
    except (TypeError, ValueError):  # pragma: no cover - signature always readable today
        return False
