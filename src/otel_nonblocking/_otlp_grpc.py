"""OTLP/gRPC for traces, logs and metrics: the SDK's gRPC exporters behind a real deadline.

The SDK's exporter encodes (and, for metrics, batches and picks temporality); the RPC goes
through :class:`GrpcClient`, which stands in for the SDK's channel and stub: one RPC per
export, its deadline what is left of ours (0.1 s more), no in-process retries (the pipeline retries,
honouring the backend's RetryInfo), cancelled when the deadline exporter abandons it, on a
channel made lazily and made anew after an abandoned call, an UNAVAILABLE or a fork
(grpc#22624: a channel made before ``fork`` must not be used in the child). Needs the
``grpc`` extra.
"""

from __future__ import annotations

import importlib
import os
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from . import _compat_sdk, _config, _state
from ._config import UNSET, _Unset
from ._errors import AttemptAbandoned, ConfigurationError
from ._export_core import attempt_seconds_left
from ._state import after_fork_in_child
from ._urls import check_headers, redact_url, url_problem

if TYPE_CHECKING:
    import grpc  # type: ignore[import-untyped,unused-ignore]

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
# one to give up; an abandoned RPC that ends by itself within _SPARE_SECONDS is left to
# end (a late OK counts, and the batch is not sent twice), a longer one is cancelled.
_DEADLINE_MARGIN_SECONDS: Final = 0.1
_SPARE_SECONDS: Final = 0.25


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
    it does not retry in-process; the pipeline decides when to send the batch again."""

    transient = False

    def __init__(self, code: str, retry_after: float | None = None) -> None:
        super().__init__(f"gRPC export failed: {code}")
        self.code = code
        self.retry_after = retry_after


class GrpcTransientError(GrpcExportError, ConnectionError):
    """A failure after which the same batch may be sent again (the spec's retryable codes).
    A ``ConnectionError``, so the deadline exporter reports it as transient."""

    transient = True


def _error_from(error: Any) -> GrpcExportError:
    code_obj = error.code() if callable(getattr(error, "code", None)) else None
    code = getattr(code_obj, "name", "UNKNOWN")
    retry_after = _retry_after(error)
    if code in _TRANSIENT_CODES or (code == "RESOURCE_EXHAUSTED" and retry_after is not None):
        return GrpcTransientError(code, retry_after)
    return GrpcExportError(code, retry_after)


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
    """Stands in for an SDK gRPC exporter's channel and stub (``Export`` and ``close``).

    ``Export`` makes one RPC whose deadline is what is left of the export's deadline (never
    more than the SDK's ``timeout`` or ``timeout_seconds``); :meth:`abandon` (the deadline
    exporter's ``on_abandon``) cancels it from another thread. The channel is made on
    first use, and made anew after an abandoned call, an UNAVAILABLE, or in a forked
    child (the parent's is never touched there). At most one call is in flight: the
    deadline exporter's runner sends one at a time.
    """

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
    ) -> None:
        self._target = target
        self._method = method
        self._credentials = credentials
        self._compression = compression
        self._metadata = metadata
        self._timeout = timeout_seconds
        self._options = options
        self._closed = False
        self._init_state()
        after_fork_in_child(self._init_state)

    def _init_state(self) -> None:
        """No channel yet (at start, and in a forked child: the parent's is left alone)."""
        self._lock = threading.Lock()
        self._channel: Any = None
        self._export: Any = None
        self._call: Any = None
        self._call_ends = float("-inf")
        self._stale = False
        self.channels_made = 0

    @property
    def target(self) -> str:
        return self._target

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
            return self._export

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
        # What is left of the export's deadline (a flush may have cut it short), never
        # more than the SDK's timeout or ours.
        limits = [self._timeout, timeout, attempt_seconds_left()]
        seconds = max(min(x for x in limits if x is not None), 0.0) + _DEADLINE_MARGIN_SECONDS
        export = self._channel_for_call()
        self._call_ends = time.monotonic() + seconds
        call = export.future(request, timeout=seconds, metadata=self._metadata)
        self._call = call
        try:
            return call.result()  # type: ignore[no-any-return]
        except grpc.FutureCancelledError:
            with self._lock:
                self._stale = True  # a channel stuck once is not trusted again
            raise AttemptAbandoned("gRPC export abandoned at its deadline") from None
        except grpc.RpcError as error:
            failure = _error_from(error)
            if failure.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
                with self._lock:
                    self._stale = True  # reconnect now, not after the channel's back-off
            raise failure from None
        finally:
            self._call = None

    def abandon(self) -> None:
        """The deadline exporter gave up on the call in flight: cancel it, unless it ends
        by itself within moments (then its answer says whether the collector took the
        batch, which is not sent twice). Thread-safe; never blocks."""
        call = self._call
        if call is not None and self._call_ends - time.monotonic() > _SPARE_SECONDS:
            call.cancel()

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
    return message.SerializeToString()  # type: ignore[no-any-return]


# -- configuration, per signal, as the SDK reads it ---------------------------------------


def _signal_vars(signal: str, suffix: str) -> tuple[str, str]:
    return f"OTEL_EXPORTER_OTLP_{signal.upper()}_{suffix}", f"OTEL_EXPORTER_OTLP_{suffix}"


def endpoint_problem(endpoint: str) -> str | None:
    """Why ``endpoint`` is no gRPC target (an http(s) URL, or host:port), or None."""
    return url_problem(endpoint if "://" in endpoint else f"http://{endpoint}")


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
    else ``insecure``, else ``OTEL_EXPORTER_OTLP_[SIGNAL_]INSECURE``, else http is insecure."""
    parts = urlsplit(endpoint) if "://" in endpoint else None
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
    **sdk_kwargs: Any,
) -> Any:
    """The SDK's OTLP/gRPC exporter for ``signal`` (traces, logs, metrics) with a
    :class:`GrpcClient` in place of its channel, wrapped in the signal's deadline exporter.

    ``timeout`` (seconds, else ``OTEL_EXPORTER_OTLP_[SIGNAL_]TIMEOUT``, else 2) bounds each
    export from DNS to answer; ``endpoint`` (else ``OTEL_EXPORTER_OTLP_[SIGNAL_]ENDPOINT``,
    else ``http://localhost:4317``), ``insecure``, headers and compression are read as the
    SDK reads them. ``sdk_kwargs`` go to the SDK exporter (``preferred_temporality``, ...).
    """
    inner, client, timeout_millis = grpc_exporter_parts(
        signal,
        endpoint,
        headers,
        timeout,
        compression,
        insecure=insecure,
        credentials=credentials,
        **sdk_kwargs,
    )
    return _wrap(signal, inner, timeout_millis, client)


def grpc_exporter_parts(
    signal: str,
    endpoint: str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float | _Unset = UNSET,
    compression: str | None = None,
    *,
    insecure: bool | None = None,
    credentials: grpc.ChannelCredentials | None = None,
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
        endpoint=f"{'http' if is_insecure else 'https'}://{target}",
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


def _wrap(signal: str, inner: Any, timeout_millis: float, client: GrpcClient | None) -> Any:
    """``inner`` behind the signal's deadline exporter, which cancels the RPC it abandons."""
    on_abandon = client.abandon if client is not None else None
    if signal == "logs":
        from ._exporter_logs import DeadlineLogExporter

        return DeadlineLogExporter(inner, timeout_millis=timeout_millis, on_abandon=on_abandon)
    if signal == "metrics":
        from ._exporter_metrics import DeadlineMetricExporter

        return DeadlineMetricExporter(inner, timeout_millis=timeout_millis, on_abandon=on_abandon)
    from ._exporter import DeadlineSpanExporter

    return DeadlineSpanExporter(inner, timeout_millis=timeout_millis, on_abandon=on_abandon)
