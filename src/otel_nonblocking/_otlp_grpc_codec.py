"""The codec of the package's OTLP/gRPC span exporter: spans on the encoded path over gRPC.

Where :func:`._otlp_grpc.otlp_grpc_exporter` put a :class:`GrpcClient` in the SDK's gRPC
span exporter, the package owns both ends: it encodes an ``ExportTraceServiceRequest``
with its own :class:`SpanEncoder` (the same :class:`SpanPieces` as OTLP/HTTP, so the
worker's stage keeps waiting spans as encoded ``bytes``) and sends the bytes as they are
through the client's ``Export`` (its deadline, ``reached``, doubt, size limit, RetryInfo
and channel renewal unchanged). Needs the ``grpc`` extra.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from . import _assemble, _compat_sdk
from ._otlp_codec import OTLPCodec

if TYPE_CHECKING:
    from ._encoder import SpanEncoder


class RawClient(Protocol):
    """What the codec needs of :class:`._otlp_grpc.GrpcClient` (which calls
    :func:`otlp_grpc_codec` with itself: this module does not import it back)."""

    @property
    def max_request_bytes(self) -> int: ...

    def Export(self, request: bytes) -> object: ...  # noqa: N802 - the stub's name


def otlp_grpc_codec(exporter: object, client: RawClient) -> OTLPCodec | None:
    """The codec of an SDK OTLP/gRPC span exporter whose channel is ``client`` (our
    :class:`GrpcClient`), or None for any other exporter."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
        OTLPSpanExporter as GrpcSpanExporter,
    )

    if not isinstance(exporter, GrpcSpanExporter):
        return None
    encoder: list[SpanEncoder] = []

    def get_encoder() -> SpanEncoder:
        # Made at the first span, on the worker (its import probes the SDK's layout).
        if not encoder:
            from ._encoder import SpanEncoder

            encoder.append(SpanEncoder())
        return encoder[0]

    def encode(spans: Sequence[ReadableSpan]) -> bytes:
        return get_encoder().encode(spans)

    def send(data: bytes) -> SpanExportResult:
        # What the SDK's export does once it has its request, minus its retries: a
        # failed RPC raises the client's GrpcExportError, as out of the SDK's export.
        if _compat_sdk.is_shut_down(exporter):
            return SpanExportResult.FAILURE
        client.Export(data)
        return SpanExportResult.SUCCESS

    own = type(exporter).export is GrpcSpanExporter.export and "export" not in vars(exporter)
    return OTLPCodec(
        encode,
        send,
        max_request_bytes=client.max_request_bytes,
        exports=own,
        pieces=_assemble.SpanPieces(get_encoder),
    )
