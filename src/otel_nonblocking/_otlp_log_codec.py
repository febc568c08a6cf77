"""The codec of the SDK's OTLP/HTTP log exporter: what the disk spool needs for log records.

Encode a batch of log records into ``ExportLogsServiceRequest`` bodies (the SDK's own
encoder; a record that cannot be encoded is left out, requests stay under the exporter's
size limit), and send such a body later through the exporter's own HTTP machinery. The
exporter's internals are read through :mod:`._compat_sdk`.
"""

from __future__ import annotations

from typing import Any

from . import _compat_sdk
from ._export_core import attempt_seconds_left
from ._otlp_codec import OTLPCodec


def otlp_log_codec(exporter: object) -> OTLPCodec | None:
    """The codec of an SDK ``OTLPLogExporter`` (HTTP/protobuf), or None for any other
    (gRPC, console, your own: the disk spool then stays off for that processor)."""
    if not isinstance(exporter, _compat_sdk.otlp_http_log_exporter_class()):
        return None
    send = _compat_sdk.log_body_sender(exporter)
    if send is None:
        return None
    results = _compat_sdk.log_export_result_types()[0]

    def send_body(data: bytes) -> Any:  # the SDK's log result enum, as export() returns
        if _compat_sdk.is_shut_down(exporter):
            return results["FAILURE"]
        return results["SUCCESS" if send(data, attempt_seconds_left()) else "FAILURE"]

    return OTLPCodec(
        _compat_sdk.encode_log_records,
        send_body,
        max_request_bytes=_compat_sdk.max_request_size(exporter),
        exports=False,  # export() stays the exporter's own; the codec serves the spool
    )
