"""OTLP/gRPC for traces, logs and metrics: the SDK's gRPC exporters behind a real deadline.

The SDK's exporter encodes (and, for metrics, batches and picks temporality); the RPC goes
through :class:`GrpcClient`, which stands in for the SDK's channel and stub: one RPC per
export, its deadline what is left of ours (0.1 s more), no in-process retries (the pipeline retries,
honouring the backend's RetryInfo), no request over the message size limit (4 MiB), on a
channel made lazily and made anew after a cancelled call, an UNAVAILABLE or a fork
(grpc#22624: a channel made before ``fork`` must not be used in the child). It tells the
deadline exporter whether an attempt reached the collector (a connection formed), and
when given up on, an RPC that never connected is cancelled, one that did is left to
answer. Needs the ``grpc`` extra.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from . import _compat_sdk, _config, _state
from ._compat_grpc import channel_ready
from ._config import UNSET, _Unset
from ._errors import AttemptAbandoned, ConfigurationError
from ._export_core import attempt_seconds_left
from ._state import after_fork_in_child
from ._urls import check_headers, redact_url, url_problem

if TYPE_CHECKING:
    import grpc  # type: ignore[import-untyped,unused-ignore]

    from ._otlp_codec import OTLPCodec

#: What to install for OTLP/gRPC; every message about a missing one names it.
EXTRA_HINT: Final = "pip install 'otel-nonblocking[grpc]'"
DEFAULT_ENDPOINT: Final = "http://localhost:4317"

# signal: (SDK module, exporter class, gRPC method of the collector's service)
_SIGNALS: Final[Mapping[str, tuple[str, str, str]]] = {
    "traces": (
        "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
        "OTLPSpanExporter",
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    ),
    "logs": (
        "opentelemetry.exporter.otlp.proto.grpc._log_exporter",
        "OTLPLogExporter",
        "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    ),
    "metrics": (
        "opentelemetry.exporter.otlp.proto.grpc.metric_exporter",
        "OTLPMetricExporter",
        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    ),
}
# The OTLP specification's retryable gRPC codes; RESOURCE_EXHAUSTED only with RetryInfo.
_TRANSIENT_CODES: Final = frozenset(
    {"CANCELLED", "DEADLINE_EXCEEDED", "ABORTED", "OUT_OF_RANGE", "UNAVAILABLE", "DATA_LOSS"}
)
_RETRY_INFO_KEY: Final = "google.rpc.retryinfo-bin"
# A channel that failed to connect tries again after at most this long (gRPC's default
# grows to two minutes: a collector back up would wait that long for its spans).
_MAX_RECONNECT_BACKOFF_MS: Final = 5000
# An RPC's gRPC deadline is this much past its export's, so the deadline exporter is the
# one to give up; an abandoned RPC on a connection that formed is left to end (a late OK
# counts, and the batch is not sent twice).
_DEADLINE_MARGIN_SECONDS: Final = 0.1
#: gRPC's default largest message a server accepts (a collector's too): 4 MiB.
DEFAULT_MAX_REQUEST_BYTES: Final = 4 * 1024 * 1024
# The server's words for a message over its limit ("Received message larger than max").
_TOO_LARGE_WORDS: Final = "larger than max"
# gRPC's words for an RPC that found no connection: every address refused or unreachable,
# or the name not resolved (grpcio 1.50+: "failed to connect to all addresses", "errors
# resolving", "DNS resolution failed", "empty address list").
_CONNECT_FAILURE_WORDS: Final = (
    "failed to connect",
    "errors resolving",
    "dns resolution failed",
    "empty address list",
    "name resolution",
)


def grpc_available() -> bool:
    """True when the ``grpc`` extra (the SDK's OTLP/gRPC exporter and grpcio) is installed."""
    try:
        importlib.import_module("opentelemetry.exporter.otlp.proto.grpc")
        importlib.import_module("grpc")
    except ImportError:
        return False
    return True


def missing_extra_message(asked_by: str) -> str:
    """The one line said when gRPC is asked for (``asked_by``) but not installed."""
    return f"{asked_by} needs the grpc extra, which is not installed: {EXTRA_HINT}"


_PROTOCOL_SETTINGS: Final = {
    "traces": _config.TRACES_PROTOCOL,
    "logs": _config.LOGS_PROTOCOL,
    "metrics": _config.METRICS_PROTOCOL,
}


def protocol_for(signal: str, protocol: str | None = None) -> tuple[str, str | None]:
    """The protocol of ``signal`` and the variable that chose it (None: the argument or
    the default): ``protocol``, else ``OTEL_EXPORTER_OTLP_<SIGNAL>_PROTOCOL``, else
    ``OTEL_EXPORTER_OTLP_PROTOCOL``, else http/protobuf. A bad variable warns once,
    naming it, and the next source applies; a bad argument raises."""
    setting = _PROTOCOL_SETTINGS[signal]
    if protocol is not None:
        return setting.resolve(protocol).lower(), None
    chosen = setting.resolve()
    for var in setting.env_vars + setting.fallback_vars:  # the one from_env took
        raw = os.environ.get(var, "").strip().lower()
        if raw and setting.check is not None and setting.check(raw) is None:
            return chosen, var
    return chosen, None


def wants_grpc(signal: str, protocol: str | None) -> bool:
    """Whether ``signal`` goes over gRPC (see :func:`protocol_for`). gRPC without the
    extra: an argument raises, a variable warns once (naming it and the extra) and
    http/protobuf is used."""
    chosen, var = protocol_for(signal, protocol)
    if chosen != "grpc" or grpc_available():
        return chosen == "grpc"
    if var is None:
        raise ConfigurationError(missing_extra_message("protocol='grpc'"))
    _state.warn_once(
        ("grpc-extra", var), "%s; sending http/protobuf", missing_extra_message(f"{var}=grpc")
    )
    return False


class GrpcExportError(Exception):
    """An Export RPC failed: ``code`` is the gRPC status name, ``retry_after`` the seconds
    the backend's RetryInfo asked for (or None). Raised out of the SDK's exporter, so that
    it does not retry in-process; the pipeline decides when to send the batch again.
    ``too_large``: the request was over the message size limit (ours, checked before
    sending, or the collector's ``RESOURCE_EXHAUSTED`` "larger than max"), like HTTP 413."""

    transient = False

    def __init__(
        self, code: str, retry_after: float | None = None, *, too_large: bool = False
    ) -> None:
        super().__init__(f"gRPC export failed: {code}")
        self.code = code
        self.retry_after = retry_after
        self.too_large = too_large


class GrpcTransientError(GrpcExportError, ConnectionError):
    """A failure after which the same batch may be sent again (the spec's retryable codes).
    A ``ConnectionError``, so the deadline exporter reports it as transient."""

    transient = True


def _error_from(error: Any) -> GrpcExportError:
    code_obj = error.code() if callable(getattr(error, "code", None)) else None
    code = getattr(code_obj, "name", "UNKNOWN")
    retry_after = _retry_after(error)
    if code == "RESOURCE_EXHAUSTED" and _TOO_LARGE_WORDS in _details(error).lower():
        return GrpcExportError(code, too_large=True)
    if code in _TRANSIENT_CODES or (code == "RESOURCE_EXHAUSTED" and retry_after is not None):
        return GrpcTransientError(code, retry_after)
    return GrpcExportError(code, retry_after)


def _details(error: Any) -> str:
    try:
        details = error.details()
    except Exception:  # noqa: BLE001 - an error without details says nothing more
        return ""
    return details if isinstance(details, str) else ""


def _never_connected(error: Any, ready: bool | None) -> bool:
    """Whether a failed RPC never had a connection to go out on: nothing of the batch
    reached the collector. UNAVAILABLE when gRPC says it failed to connect or to resolve
    the name (not one the collector sent, nor a connection lost mid-call); DEADLINE_EXCEEDED
    (DNS or the handshake stalled) when the channel is not READY at the end."""
    code = getattr(error.code(), "name", "") if callable(getattr(error, "code", None)) else ""
    if ready:
        return False
    if code == "UNAVAILABLE":
        details = _details(error).lower()
        return any(words in details for words in _CONNECT_FAILURE_WORDS)
    return code == "DEADLINE_EXCEEDED" and ready is False


def _retry_after(error: Any) -> float | None:
    try:
        trailing = error.trailing_metadata() or ()
        raw = dict(trailing).get(_RETRY_INFO_KEY)
        if raw is None:
            return None
        from google.rpc.error_details_pb2 import RetryInfo  # type: ignore[import-untyped,unused-ignore]

        info = RetryInfo.FromString(raw)
        seconds = float(info.retry_delay.seconds + info.retry_delay.nanos / 1e9)
    except Exception:  # noqa: BLE001 - a malformed RetryInfo is no RetryInfo
        return None
    return seconds if seconds >= 0 else None


class GrpcClient:
    """Stands in for an SDK gRPC exporter's channel and stub (``Export`` and ``close``), and
    tells the deadline exporter about the current attempt as an HTTP exporter's
    :class:`InterruptibleSession` does (``begin_attempt``, ``abort``, ``reached``, ``may_deliver``).

    ``Export`` makes one RPC whose deadline is what is left of the export's deadline (never
    more than the SDK's ``timeout`` or ``timeout_seconds``), for a request of at most
    ``max_request_bytes`` (0: no limit; a larger one is refused before it is sent). The
    channel is made on first use, and made anew after a cancelled call, an UNAVAILABLE,
    a DEADLINE_EXCEEDED or in a forked child (the parent's is never touched there). At
    most one call is in flight: the deadline exporter's runner sends one at a time.
    """

    #: gRPC has no HTTP status; the RPC's failure is the exporter's error.
    last_status: int | None = None

    def __init__(
        self,
        target: str,
        method: str,
        *,
        credentials: grpc.ChannelCredentials | None,
        compression: Any,
        metadata: tuple[tuple[str, str], ...],
        timeout_seconds: float,
        options: tuple[tuple[str, Any], ...] = (),
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    ) -> None:
        self._target = target
        self._method = method
        self._credentials = credentials
        self._compression = compression
        self._metadata = metadata
        self._timeout = timeout_seconds
        self._options = options
        self._max_request_bytes = max_request_bytes
        self._closed = False
        self._init_state()
        after_fork_in_child(self._init_state)

    def _init_state(self) -> None:
        """No channel yet (at start, and in a forked child: the parent's is left alone)."""
        self._lock = threading.Lock()
        self._channel: Any = None
        self._export: Any = None
        self._call: Any = None
        self._call_channel: Any = None
        self._stale = False
        self._reached: bool | None = None
        self._spared = False
        self.last_retry_after: float | None = None
        self.last_request_bytes: int | None = None
        self.last_connection_error = False
        self.channels_made = 0

    @property
    def target(self) -> str:
        return self._target

    @property
    def max_request_bytes(self) -> int:
        """The largest request sent (0: no limit); a larger one is refused unsent."""
        return self._max_request_bytes

    def span_codec(self, exporter: object) -> OTLPCodec | None:
        """The codec that puts ``exporter`` (the SDK's gRPC span exporter holding this
        client) on the encoded path, or None (see :mod:`._otlp_grpc_codec`)."""
        from ._otlp_grpc_codec import otlp_grpc_codec

        return otlp_grpc_codec(exporter, self)

    # -- what the deadline exporter asks of the current attempt ----------------------------

    def begin_attempt(self) -> None:
        """A new attempt starts (on the runner thread, before ``Export``)."""
        self._reached = None
        self._spared = False
        self.last_retry_after = None
        self.last_request_bytes = None
        self.last_connection_error = False

    @property
    def reached(self) -> bool:
        """Whether the collector could have judged the batch: an answer came, or the call
        went out on a connection that formed. False when the RPC failed (or was given up
        on) before any connection formed: refused, DNS, a stalled handshake, or a request
        refused here as too large. While a call still runs: whether its channel is READY."""
        if self._reached is not None:
            return self._reached
        channel = self._call_channel
        return channel is None or channel_ready(channel) is not False

    def may_deliver(self) -> bool:
        """After :meth:`abort`: whether the call it spared may still deliver the batch (it
        still runs on a connection that formed); its future's answer then decides."""
        return self._call is not None and self._spared

    def abort(self, *, spare_sent: bool = False) -> int:
        """The deadline exporter gave up on the call in flight. With ``spare_sent``, a call
        on a READY channel is left to end by itself (at its own deadline, 0.1 s past ours,
        or when the collector answers: an OK then counts, and the batch is not sent twice);
        any other is cancelled. Returns the calls cancelled. Thread-safe; never blocks."""
        call, channel = self._call, self._call_channel
        if call is None or call.done():
            return 0
        ready = channel_ready(channel) if channel is not None else None
        if spare_sent and ready is not False:
            self._spared = True
            return 0
        self._spared = False
        if self._reached is None:
            self._reached = bool(ready)
        return 1 if call.cancel() else 0

    # -- the stub -------------------------------------------------------------------------

    def _channel_for_call(self) -> Any:
        import grpc

        with self._lock:
            if self._stale and self._channel is not None:
                self._channel.close()
                self._channel = None
            self._stale = False
            if self._channel is None:
                if self._credentials is None:
                    channel = grpc.insecure_channel(
                        self._target, options=self._options, compression=self._compression
                    )
                else:
                    channel = grpc.secure_channel(
                        self._target,
                        self._credentials,
                        options=self._options,
                        compression=self._compression,
                    )
                self._channel = channel
                self._export = channel.unary_unary(
                    self._method,
                    request_serializer=_serialize,
                    response_deserializer=None,
                )
                self.channels_made += 1
            return self._channel, self._export

    def Export(  # noqa: N802 - the name of the stub's method the SDK calls
        self,
        request: Any,
        metadata: object = None,
        timeout: float | None = None,
        **_: object,
    ) -> bytes:
        import grpc

        if self._closed:
            raise GrpcExportError("SHUTDOWN")
        # A request message (the SDK's), or its bytes already serialised (our codec's).
        size = len(request) if isinstance(request, bytes) else request.ByteSize()
        self.last_request_bytes = size
        if 0 < self._max_request_bytes < size:
            self._reached = False  # nothing went out: the batch is split, not charged
            raise GrpcExportError("RESOURCE_EXHAUSTED", too_large=True)
        # What is left of the export's deadline (a flush may have cut it short), never
        # more than the SDK's timeout or ours.
        limits = [self._timeout, timeout, attempt_seconds_left()]
        seconds = max(min(x for x in limits if x is not None), 0.0) + _DEADLINE_MARGIN_SECONDS
        channel, export = self._channel_for_call()
        self._call_channel = channel
        call = export.future(request, timeout=seconds, metadata=self._metadata)
        self._call = call
        try:
            result = call.result()
        except grpc.FutureCancelledError:
            with self._lock:
                self._stale = True  # a channel stuck once is not trusted again
            raise AttemptAbandoned("gRPC export abandoned at its deadline") from None
        except grpc.RpcError as error:
            failure = _error_from(error)
            never = _never_connected(error, channel_ready(channel))
            self._reached = not never
            self.last_connection_error = never
            self.last_retry_after = failure.retry_after
            if failure.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
                with self._lock:
                    self._stale = True  # reconnect now, not after the channel's back-off
            raise failure from None
        finally:
            self._call = None
            self._call_channel = None
        self._reached = True
        return result  # type: ignore[no-any-return]

    def close(self) -> None:
        """Cancel any call and close the channel; later exports fail (the SDK's shutdown)."""
        self._closed = True
        call = self._call
        if call is not None:
            call.cancel()
        with self._lock:
            channel, self._channel = self._channel, None
        if channel is not None:
            channel.close()


def _serialize(message: Any) -> bytes:
    if isinstance(message, bytes):  # already serialised (the span codec's requests)
        return message
    return message.SerializeToString()  # type: ignore[no-any-return]


# -- configuration, per signal, as the SDK reads it ---------------------------------------


def _signal_vars(signal: str, suffix: str) -> tuple[str, str]:
    return f"OTEL_EXPORTER_OTLP_{signal.upper()}_{suffix}", f"OTEL_EXPORTER_OTLP_{suffix}"


def _dns_parts(endpoint: str) -> tuple[str, str] | None:
    """gRPC's ``dns:[//dns-server/]host[:port]`` target as (its DNS server or "", its
    host[:port]); None for any other endpoint."""
    if endpoint[:4].lower() != "dns:":
        return None
    rest = endpoint[4:]
    if not rest.startswith("//"):
        return "", rest
    server, _, name = rest[2:].partition("/")
    return server, name


def endpoint_problem(endpoint: str) -> str | None:
    """Why ``endpoint`` is no gRPC target (an http(s) URL, host:port, or gRPC's
    ``dns:[//dns-server/]host:port``), or None."""
    dns = _dns_parts(endpoint)
    if dns is None:
        return url_problem(endpoint if "://" in endpoint else f"http://{endpoint}")
    server, name = dns
    problem = url_problem(f"http://{name}") if name else "has no host"
    if problem is None and server:
        problem = url_problem(f"http://{server}")
        problem = None if problem is None else f"has a DNS server that {problem}"
    return problem


def _endpoint(signal: str, endpoint: str | None) -> str:
    if endpoint is not None:
        if not isinstance(endpoint, str):
            raise ConfigurationError(f"endpoint must be a string, got {type(endpoint).__name__}")
        problem = endpoint_problem(endpoint.strip())
        if problem is not None:
            raise ConfigurationError(f"endpoint {problem}, got {redact_url(endpoint)!r}")
        return endpoint.strip()
    for var in _signal_vars(signal, "ENDPOINT"):
        raw = os.environ.get(var, "").strip()
        if not raw:
            continue
        problem = endpoint_problem(raw)
        if problem is None:
            return raw
        _state.warn_once(("env", var, raw), "Ignoring invalid %s (%s)", var, problem)
    return DEFAULT_ENDPOINT


def target_and_insecure(endpoint: str, signal: str, insecure: bool | None) -> tuple[str, bool]:
    """The channel target and whether it is insecure, as the SDK decides: https is secure;
    else ``insecure``, else ``OTEL_EXPORTER_OTLP_[SIGNAL_]INSECURE``, else http is insecure.
    A ``dns:`` target is the channel's as it is (secure unless ``insecure`` or the variable
    says otherwise, as a bare host:port)."""
    dns = _dns_parts(endpoint) is not None
    parts = urlsplit(endpoint) if "://" in endpoint and not dns else None
    scheme = parts.scheme.lower() if parts is not None else ""
    target = parts.netloc if parts is not None and parts.netloc else endpoint
    if scheme == "https":
        return target, False
    if insecure is None:
        for var in _signal_vars(signal, "INSECURE"):
            raw = os.environ.get(var, "").strip()
            if raw:
                return target, raw.lower() == "true"
        return target, scheme == "http"
    return target, bool(insecure)


def _credentials(signal: str) -> Any:
    import grpc

    files: dict[str, bytes | None] = {}
    for suffix, key in (
        ("CERTIFICATE", "root_certificates"),
        ("CLIENT_KEY", "private_key"),
        ("CLIENT_CERTIFICATE", "certificate_chain"),
    ):
        files[key] = None
        for var in _signal_vars(signal, suffix):
            path = os.environ.get(var, "").strip()
            if not path:
                continue
            try:
                with open(path, "rb") as file:
                    files[key] = file.read()
            except OSError:
                _state.warn_once(("env", var, path), "Ignoring %s (file not readable)", var)
            break
    return grpc.ssl_channel_credentials(**files)


_TIMEOUTS: Final = {
    "traces": _config.OTLP_TIMEOUT_MILLIS,
    "logs": _config.OTLP_LOGS_TIMEOUT_MILLIS,
    "metrics": _config.OTLP_METRICS_TIMEOUT_MILLIS,
}
_COMPRESSIONS: Final = {
    "traces": _config.COMPRESSION,
    "logs": _config.LOGS_COMPRESSION,
    "metrics": _config.METRICS_COMPRESSION,
}


def _compression(signal: str, value: str | None) -> Any:
    import grpc

    name = _COMPRESSIONS[signal].resolve(UNSET if value is None else value).lower()
    return {"gzip": grpc.Compression.Gzip, "deflate": grpc.Compression.Deflate}.get(
        name, grpc.Compression.NoCompression
    )


def _timeout_millis(signal: str, timeout: float | _Unset) -> float:
    return _TIMEOUTS[signal].resolve_seconds(timeout)


def _headers(signal: str, headers: object) -> dict[str, str]:
    if headers is not None:
        if not isinstance(headers, Mapping):
            raise ConfigurationError(f"headers must be a mapping, got {type(headers).__name__}")
        good, problems = check_headers(headers)
        if problems:
            raise ConfigurationError(f"headers: {problems[0]}")
        return good
    return _config.otlp_headers_from_env(signal=signal)


def _user_agent() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        release = version("opentelemetry-exporter-otlp-proto-grpc")
    except PackageNotFoundError:  # pragma: no cover - installed as a copy, not a distribution
        release = "unknown"
    return f"OTel-OTLP-Exporter-Python/{release}"


def otlp_grpc_exporter(
    signal: str,
    endpoint: str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float | _Unset = UNSET,
    compression: str | None = None,
    *,
    insecure: bool | None = None,
    credentials: grpc.ChannelCredentials | None = None,
    max_request_bytes: int | None = None,
    **sdk_kwargs: Any,
) -> Any:
    """The SDK's OTLP/gRPC exporter for ``signal`` (traces, logs, metrics) with a
    :class:`GrpcClient` in place of its channel, wrapped in the signal's deadline exporter.

    ``timeout`` (seconds, else ``OTEL_EXPORTER_OTLP_[SIGNAL_]TIMEOUT``, else 2) bounds each
    export from DNS to answer; ``endpoint`` (else ``OTEL_EXPORTER_OTLP_[SIGNAL_]ENDPOINT``,
    else ``http://localhost:4317``), ``insecure``, headers and compression are read as the
    SDK reads them. A request over ``max_request_bytes`` (None: gRPC's default 4 MiB; 0:
    no limit) is not sent: the pipeline splits its batch. ``sdk_kwargs`` go to the SDK
    exporter (``preferred_temporality``, ...).
    """
    inner, _client, timeout_millis = grpc_exporter_parts(
        signal,
        endpoint,
        headers,
        timeout,
        compression,
        insecure=insecure,
        credentials=credentials,
        max_request_bytes=max_request_bytes,
        **sdk_kwargs,
    )
    return _wrap(signal, inner, timeout_millis)


def grpc_exporter_parts(
    signal: str,
    endpoint: str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float | _Unset = UNSET,
    compression: str | None = None,
    *,
    insecure: bool | None = None,
    credentials: grpc.ChannelCredentials | None = None,
    max_request_bytes: int | None = None,
    **sdk_kwargs: Any,
) -> tuple[Any, GrpcClient | None, float]:
    """:func:`otlp_grpc_exporter`'s parts, unwrapped: the SDK exporter, the client in its
    channel's place (None where the release keeps its channel elsewhere: then each export
    is still bound by the deadline exporter, but an abandoned one is not cancelled), and
    the deadline in milliseconds."""
    if signal not in _SIGNALS:
        raise ConfigurationError(f"signal must be traces, logs or metrics, got {signal!r}")
    if not grpc_available():
        raise ConfigurationError(missing_extra_message("protocol='grpc'"))
    module, class_name, method = _SIGNALS[signal]
    timeout_millis = _timeout_millis(signal, timeout)
    seconds = timeout_millis / 1000
    url = _endpoint(signal, endpoint)
    target, is_insecure = target_and_insecure(url, signal, insecure)
    creds = None if is_insecure else (credentials or _credentials(signal))
    sent = _headers(signal, headers)
    grpc_compression = _compression(signal, compression)
    client = GrpcClient(
        target,
        method,
        credentials=creds,
        compression=grpc_compression,
        metadata=tuple((k.lower(), v) for k, v in sent.items()),
        timeout_seconds=seconds,
        max_request_bytes=DEFAULT_MAX_REQUEST_BYTES
        if max_request_bytes is None
        else max_request_bytes,
        options=(
            ("grpc.primary_user_agent", _user_agent()),
            ("grpc.max_reconnect_backoff_ms", _MAX_RECONNECT_BACKOFF_MS),
            ("grpc.dns_ares_query_timeout", max(int(timeout_millis), 1)),
        ),
    )
    exporter_class = getattr(importlib.import_module(module), class_name)
    inner = _construct(
        exporter_class,
        f"OTEL_EXPORTER_OTLP_{signal.upper()}_TIMEOUT",
        endpoint=f"{'http' if is_insecure else 'https'}://{_sdk_host(target)}",
        insecure=is_insecure,
        credentials=creds,
        # Never empty: an SDK given no headers reads (and may log) the variables itself.
        headers={"user-agent": _user_agent(), **sent},
        timeout=seconds,
        compression=grpc_compression,
        **sdk_kwargs,
    )
    adopted = _compat_sdk.adopt_grpc_client(inner, client)
    return inner, client if adopted else None, timeout_millis


def _sdk_host(target: str) -> str:
    """host:port of ``target`` for the SDK exporter (whose channel is closed unused)."""
    dns = _dns_parts(target)
    return target if dns is None else dns[1]


_environ_lock = threading.Lock()


def _construct(exporter_class: Any, timeout_var: str, **kwargs: Any) -> Any:
    """``exporter_class(**kwargs)``. The SDK's gRPC exporters parse their signal's timeout
    variable even when given a timeout (1.33 with ``int()``, so ``2.5`` fails too) and
    raise on a value this package has already warned about and replaced: they are then
    built once more with that variable hidden for the moment of the call."""
    try:
        return exporter_class(**kwargs)
    except ValueError:
        if timeout_var not in os.environ:
            raise
    with _environ_lock:
        saved = os.environ.pop(timeout_var, None)
        try:
            return exporter_class(**kwargs)
        finally:
            if saved is not None:
                os.environ[timeout_var] = saved


def _wrap(signal: str, inner: Any, timeout_millis: float) -> Any:
    """``inner`` behind the signal's deadline exporter, which finds the :class:`GrpcClient`
    in it (:func:`._export_core.find_witness`): it asks the client whether an attempt reached the
    collector, and cancels or spares the RPC it gives up on."""
    if signal == "logs":
        from ._exporter_logs import DeadlineLogExporter

        return DeadlineLogExporter(inner, timeout_millis=timeout_millis)
    if signal == "metrics":
        from ._exporter_metrics import DeadlineMetricExporter

        return DeadlineMetricExporter(inner, timeout_millis=timeout_millis)
    from ._exporter import DeadlineSpanExporter

    return DeadlineSpanExporter(inner, timeout_millis=timeout_millis)
