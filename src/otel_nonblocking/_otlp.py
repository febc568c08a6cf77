"""otlp_span_exporter(), otlp_log_exporter(), otlp_metric_exporter(): the stock
OTLP/HTTP exporters behind a real deadline.

Each builds the SDK's exporter (which reads the usual ``OTEL_EXPORTER_OTLP_*`` variables
for certificates, and for metrics temporality and histogram aggregation) with an
:class:`InterruptibleSession`, endpoint and headers checked here, and wraps it in the
signal's deadline exporter. How a span batch is encoded and sent through its exporter
lives in :mod:`._otlp_codec`; the log and metric doors are imported on first use only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeVar

from opentelemetry.exporter.otlp.proto.http import Compression

from . import _compat_sdk, _config, _otlp_grpc
from ._config import UNSET, _Unset
from ._errors import ConfigurationError
from ._exporter import DeadlineSpanExporter
from ._otlp_codec import otlp_exporter_class, sdk_takes_max_request_size
from ._session import InterruptibleSession
from ._urls import check_headers, header_problem, redact_url, url_problem

if TYPE_CHECKING:
    from ._exporter_logs import DeadlineLogExporter
    from ._exporter_metrics import DeadlineMetricExporter

E = TypeVar("E")

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


def _scrub_sdk_headers(exporter: object) -> None:
    """Drop headers the SDK took from the environment that the HTTP client would refuse
    (SDK 1.45 merges the variables into explicit headers; 1.33 never reads them then)."""
    headers = _compat_sdk.client_headers(exporter)
    if headers is not None:
        for key in [k for k, v in headers.items() if header_problem(k, v) is not None]:
            del headers[key]


def build_otlp_exporter(
    exporter_class: Callable[..., E],
    endpoint: str,
    headers: Mapping[str, str],
    **kwargs: Any,
) -> E:
    """``exporter_class`` with a checked endpoint and headers given explicitly, so that the
    SDK never reads (nor logs) the endpoint and headers variables."""
    exporter = exporter_class(endpoint=endpoint, headers={**_CONTENT_TYPE, **headers}, **kwargs)
    _scrub_sdk_headers(exporter)
    return exporter


def _compression(
    value: str | Compression | None, setting: _config.Setting[str] = _config.COMPRESSION
) -> Compression:
    if isinstance(value, Compression):
        return value
    name = setting.resolve(UNSET if value is None else value).lower()
    return next(member for member in Compression if member.value == name)


def _inner_timeout(timeout_millis: float) -> float:
    """The SDK exporter's own timeout, in seconds: it bounds each socket operation (and,
    in newer releases, its retry loop); the wrapper bounds the whole. A little more than
    the deadline ends the SDK's retries in time, while the wrapper is always the one to fire."""
    return timeout_millis / 1000 + _INNER_TIMEOUT_MARGIN_SECONDS


def _build_signal(
    exporter_class: Callable[..., E],
    signal: str,
    endpoint: str | None,
    headers: Mapping[str, str] | None,
    timeout_millis: float,
    compression: Compression,
) -> E:
    """The SDK's OTLP/HTTP ``signal`` exporter: endpoint and headers from the arguments,
    else the signal's variables (checked here), our session, the deadline's inner timeout."""
    url = (
        _config.otlp_endpoint_from_env(signal=signal)
        if endpoint is None
        else checked_endpoint(endpoint)
    )
    sent = (
        _config.otlp_headers_from_env(signal=signal)
        if headers is None
        else checked_headers(headers)
    )
    return build_otlp_exporter(
        exporter_class,
        url,
        sent,
        timeout=_inner_timeout(timeout_millis),
        compression=compression,
        session=InterruptibleSession(),
    )


def otlp_span_exporter(
    endpoint: str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float | _Unset = UNSET,
    compression: str | Compression | None = None,
    *,
    encoder: str | None = None,
    max_request_bytes: int | None = None,
    protocol: str | None = None,
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

    ``protocol`` is ``"http/protobuf"`` or ``"grpc"`` (else ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL``
    / ``OTEL_EXPORTER_OTLP_PROTOCOL``, else http/protobuf). Over gRPC (the ``grpc`` extra)
    the endpoint is ``host:port`` or a URL without path (default ``http://localhost:4317``),
    spans are always encoded with the package's encoder (``encoder`` does not apply; the
    requests are sent as they were encoded), and ``max_request_bytes`` defaults to gRPC's 4 MiB (a
    larger batch is split, a span too large alone dropped): see docs/grpc.md.

    >>> exporter = otlp_span_exporter("http://127.0.0.1:4318/v1/traces", timeout=2)
    """
    if max_request_bytes is not None and (
        isinstance(max_request_bytes, bool)
        or not isinstance(max_request_bytes, int)
        or max_request_bytes < 0
    ):
        raise ConfigurationError(
            f"max_request_bytes must be an int >= 0 (0: no limit), got {max_request_bytes!r}"
        )
    if _otlp_grpc.wants_grpc("traces", protocol):
        named = compression.value if isinstance(compression, Compression) else compression
        exporter: DeadlineSpanExporter = _otlp_grpc.otlp_grpc_exporter(
            "traces", endpoint, headers, timeout, named, max_request_bytes=max_request_bytes
        )
        return exporter
    timeout_millis = _config.OTLP_TIMEOUT_MILLIS.resolve_seconds(timeout)
    url = _config.otlp_endpoint_from_env() if endpoint is None else checked_endpoint(endpoint)
    sent = _config.otlp_headers_from_env() if headers is None else checked_headers(headers)
    exporter_class = otlp_exporter_class(encoder)
    limit: dict[str, Any] = {}
    if max_request_bytes is not None and sdk_takes_max_request_size():
        limit["max_request_size"] = max_request_bytes
    inner = build_otlp_exporter(
        exporter_class,
        url,
        sent,
        timeout=_inner_timeout(timeout_millis),
        compression=_compression(compression),
        session=InterruptibleSession(),
        **limit,
    )
    if max_request_bytes is not None and not limit:
        _compat_sdk.set_max_request_size(inner, max_request_bytes)  # older SDKs: codec reads it
    return DeadlineSpanExporter(inner, timeout_millis=timeout_millis)


def otlp_log_exporter(
    endpoint: str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float | _Unset = UNSET,
    compression: str | Compression | None = None,
    *,
    protocol: str | None = None,
) -> DeadlineLogExporter:
    """An OTLP/HTTP log exporter whose ``timeout`` (seconds, default 2) is a real deadline.

    Like :func:`otlp_span_exporter`, for the SDK's ``OTLPLogExporter``: ``timeout`` falls
    back to ``OTEL_EXPORTER_OTLP_LOGS_TIMEOUT`` / ``OTEL_EXPORTER_OTLP_TIMEOUT``;
    ``endpoint`` to ``OTEL_EXPORTER_OTLP_LOGS_ENDPOINT``, ``OTEL_EXPORTER_OTLP_ENDPOINT`` plus
    ``/v1/logs``, then ``http://localhost:4318/v1/logs``; ``headers`` to
    ``OTEL_EXPORTER_OTLP_LOGS_HEADERS`` / ``OTEL_EXPORTER_OTLP_HEADERS``; ``compression`` to
    ``OTEL_EXPORTER_OTLP_LOGS_COMPRESSION`` / ``OTEL_EXPORTER_OTLP_COMPRESSION``.

    ``protocol``: ``"http/protobuf"`` or ``"grpc"`` (else ``OTEL_EXPORTER_OTLP_LOGS_PROTOCOL`` /
    ``OTEL_EXPORTER_OTLP_PROTOCOL``, else http/protobuf); see :func:`otlp_span_exporter`.

    >>> exporter = otlp_log_exporter("http://127.0.0.1:4318/v1/logs", timeout=2)
    """
    if _otlp_grpc.wants_grpc("logs", protocol):
        named = compression.value if isinstance(compression, Compression) else compression
        grpc_exporter: DeadlineLogExporter = _otlp_grpc.otlp_grpc_exporter(
            "logs", endpoint, headers, timeout, named
        )
        return grpc_exporter
    from ._exporter_logs import DeadlineLogExporter

    timeout_millis = _config.OTLP_LOGS_TIMEOUT_MILLIS.resolve_seconds(timeout)
    inner = _build_signal(
        _compat_sdk.otlp_http_log_exporter_class(),
        "logs",
        endpoint,
        headers,
        timeout_millis,
        _compression(compression, _config.LOGS_COMPRESSION),
    )
    return DeadlineLogExporter(inner, timeout_millis=timeout_millis)


def otlp_metric_exporter(
    endpoint: str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float | _Unset = UNSET,
    compression: str | Compression | None = None,
    *,
    protocol: str | None = None,
) -> DeadlineMetricExporter:
    """An OTLP/HTTP metric exporter whose ``timeout`` (seconds, default 2) is a real deadline.

    Like :func:`otlp_log_exporter`, for the SDK's ``OTLPMetricExporter`` and the
    ``OTEL_EXPORTER_OTLP_METRICS_*`` variables (endpoint path ``/v1/metrics``). The SDK
    exporter itself reads ``OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`` and
    ``OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION``; the wrapper hands its
    choice on to the metric reader.

    ``protocol``: ``"http/protobuf"`` or ``"grpc"`` (else ``OTEL_EXPORTER_OTLP_METRICS_PROTOCOL`` /
    ``OTEL_EXPORTER_OTLP_PROTOCOL``, else http/protobuf); see :func:`otlp_span_exporter`.

    >>> exporter = otlp_metric_exporter("http://127.0.0.1:4318/v1/metrics", timeout=2)
    """
    if _otlp_grpc.wants_grpc("metrics", protocol):
        named = compression.value if isinstance(compression, Compression) else compression
        grpc_exporter: DeadlineMetricExporter = _otlp_grpc.otlp_grpc_exporter(
            "metrics", endpoint, headers, timeout, named
        )
        return grpc_exporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    from ._exporter_metrics import DeadlineMetricExporter

    timeout_millis = _config.OTLP_METRICS_TIMEOUT_MILLIS.resolve_seconds(timeout)
    inner = _build_signal(
        OTLPMetricExporter,
        "metrics",
        endpoint,
        headers,
        timeout_millis,
        _compression(compression, _config.METRICS_COMPRESSION),
    )
    return DeadlineMetricExporter(inner, timeout_millis=timeout_millis)
