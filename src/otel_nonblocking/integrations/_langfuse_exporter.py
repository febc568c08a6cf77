"""langfuse_span_exporter(): Langfuse's OTLP trace endpoint, its auth and headers, a real deadline.

Keys and host come from the arguments or the ``LANGFUSE_*`` variables the SDK reads; the
headers and compression follow what the installed SDK's own exporter sends.
"""

from __future__ import annotations

import base64
import inspect
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from .._errors import ConfigurationError
from .._exporter import DeadlineSpanExporter
from .._otlp import _INNER_TIMEOUT_MARGIN_SECONDS, otlp_exporter_class
from .._session import InterruptibleSession
from .._tally import Tally
from . import _langfuse_sdk as sdk

_logger = logging.getLogger("otel_nonblocking")

PUBLIC_KEY_VAR = "LANGFUSE_PUBLIC_KEY"
SECRET_KEY_VAR = "LANGFUSE_SECRET_KEY"  # noqa: S105 - the name of a variable, not a secret
BASE_URL_VARS = ("LANGFUSE_BASE_URL", "LANGFUSE_HOST")
TRACES_PATH_VAR = "LANGFUSE_OTEL_TRACES_EXPORT_PATH"
MissingKeys = Literal["raise", "disable"]
_COMPRESSIONS = {"gzip": Compression.Gzip, "none": Compression.NoCompression}

_warned: set[str] = set()
_warned_lock = threading.Lock()


def _warn_once(key: str, message: str, *args: object) -> None:
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    _logger.warning(message, *args)


def reset_warnings() -> None:
    """Forget which one-time warnings were given (for tests)."""
    with _warned_lock:
        _warned.clear()


class CountingDeadlineExporter(DeadlineSpanExporter):
    """A :class:`DeadlineSpanExporter` that counts spans: in an export now, exported, failed.

    A bounded flush reports spans in flight as still pending when it runs out of time,
    and the package's ``flush()`` counts the exported and failed ones in its result.
    """

    def __init__(self, exporter: SpanExporter, **kwargs: Any) -> None:
        super().__init__(exporter, **kwargs)
        self._flight_lock = threading.Lock()
        self._in_flight = 0
        self._exported = 0
        self._failed = 0

    @property
    def in_flight(self) -> int:
        """Spans handed to an export that has not returned yet."""
        return self._in_flight

    @property
    def exported(self) -> int:
        """Spans whose export succeeded."""
        return self._exported

    @property
    def failed(self) -> int:
        """Spans whose export failed or timed out (Langfuse's processor drops them)."""
        return self._failed

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        count = len(spans)
        with self._flight_lock:
            self._in_flight += count
        result = SpanExportResult.FAILURE
        try:
            result = super().export(spans)
            return result
        finally:
            with self._flight_lock:
                self._in_flight -= count
                if result is SpanExportResult.SUCCESS:
                    self._exported += count
                else:
                    self._failed += count


class DisabledSpanExporter(SpanExporter):
    """Stands in for the Langfuse exporter when keys are missing and ``missing_keys="disable"``.

    It sends nothing: every span is discarded and counted in :attr:`dropped`, after one
    warning that names the missing variables. Export always reports success, so no
    processor retries or logs about it; tracing is simply off.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self._dropped = Tally()

    @property
    def dropped(self) -> int:
        """Spans discarded so far."""
        return self._dropped.value()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for _ in spans:
            next(self._dropped.counter)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    def __repr__(self) -> str:
        return f"DisabledSpanExporter(dropped={self.dropped})"


def _timeout_seconds(timeout: object) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ConfigurationError(f"timeout must be a number of seconds > 0, got {timeout!r}")
    if timeout == float("inf"):
        raise ConfigurationError("timeout must be finite, got inf")
    return float(timeout)


def _key(name: str, given: str | None, var: str) -> str | None:
    if given is not None and not isinstance(given, str):
        raise ConfigurationError(f"{name} must be a string, got {type(given).__name__}")
    if given:
        return given
    from_env = os.environ.get(var, "").strip()
    return from_env or None


def _is_http_url(value: str) -> bool:
    return value.startswith(("http://", "https://")) and len(value) > len("https://")


def resolve_base_url(base_url: str | None) -> str:
    """``base_url``, else ``LANGFUSE_BASE_URL``, else ``LANGFUSE_HOST``, else Langfuse Cloud.

    A malformed variable warns once and the next source is used; a malformed argument
    raises :class:`ConfigurationError`.
    """
    if base_url is not None:
        if not isinstance(base_url, str) or not _is_http_url(base_url.strip()):
            raise ConfigurationError(
                f"base_url must be an http:// or https:// URL, got {base_url!r}"
            )
        return base_url.strip().rstrip("/")
    for var in BASE_URL_VARS:
        raw = os.environ.get(var, "").strip()
        if not raw:
            continue
        if _is_http_url(raw):
            return raw.rstrip("/")
        _warn_once(
            f"url:{var}", "otel_nonblocking: ignoring %s: not an http(s) URL; trying the next", var
        )
    return sdk.DEFAULT_BASE_URL


def _compression(compression: str | None) -> Any:
    if compression is not None:
        if not isinstance(compression, str) or compression.strip().lower() not in _COMPRESSIONS:
            raise ConfigurationError(f"compression must be 'gzip' or 'none', got {compression!r}")
        compression = compression.strip().lower()
    resolver = sdk.COMPRESSION_RESOLVER
    if resolver is not None:  # 4.18+: the SDK's own order (argument, env, then its default)
        return resolver(compression)
    return None if compression is None else _COMPRESSIONS[compression]


def langfuse_headers(
    public_key: str, secret_key: str, additional_headers: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The headers Langfuse's own OTLP exporter sends, for the installed SDK release."""
    token = base64.b64encode(f"{public_key}:{secret_key}".encode()).decode("ascii")
    headers = {
        "Authorization": f"Basic {token}",
        "x-langfuse-sdk-name": "python",
        "x-langfuse-sdk-version": sdk.sdk_version(),
        "x-langfuse-public-key": public_key,
    }
    if sdk.sdk_sends_ingestion_version():
        headers[sdk.INGESTION_VERSION_HEADER] = "4"
    if additional_headers:
        headers.update({str(k): str(v) for k, v in additional_headers.items()})
    return headers


def _endpoint(base_url: str) -> str:
    path = os.environ.get(TRACES_PATH_VAR, "").strip().lstrip("/")
    return f"{base_url}/{path or sdk.OTLP_TRACES_PATH}"


def _supports_max_request_size() -> bool:
    try:
        return "max_request_size" in inspect.signature(OTLPSpanExporter).parameters
    except (TypeError, ValueError):  # pragma: no cover - signature always readable today
        return False


def langfuse_span_exporter(
    timeout: float = 2.0,
    *,
    public_key: str | None = None,
    secret_key: str | None = None,
    base_url: str | None = None,
    additional_headers: Mapping[str, str] | None = None,
    compression: str | None = None,
    missing_keys: MissingKeys = "disable",
    encoder: str | None = None,
) -> DeadlineSpanExporter | DisabledSpanExporter:
    """An OTLP/HTTP exporter for Langfuse's trace endpoint whose ``timeout`` is a real deadline.

    It sends what Langfuse's own exporter sends: Basic auth from the key pair, the
    ``x-langfuse-sdk-name``/``-sdk-version``/``-public-key`` headers (and, where the
    installed SDK adds it, ``x-langfuse-ingestion-version: 4``), to
    ``<base_url>/api/public/otel/v1/traces`` (or ``LANGFUSE_OTEL_TRACES_EXPORT_PATH``),
    compressed as the SDK would. Keys come from the arguments, else
    ``LANGFUSE_PUBLIC_KEY`` / ``LANGFUSE_SECRET_KEY``; the host from ``base_url``, else
    ``LANGFUSE_BASE_URL``, ``LANGFUSE_HOST``, then ``https://cloud.langfuse.com``.

    ``encoder`` is ``"fast"`` (the package's encoder, the default) or ``"stock"`` (the
    SDK's), as in :func:`~otel_nonblocking.otlp_span_exporter`.

    Missing keys warn once, naming the variables, and return a
    :class:`DisabledSpanExporter` (tracing off, spans counted and discarded), as stock
    Langfuse turns itself off without keys; ``missing_keys="raise"`` raises
    :class:`~otel_nonblocking.ConfigurationError` naming them instead.

    >>> from langfuse import Langfuse  # doctest: +SKIP
    >>> langfuse = Langfuse(span_exporter=langfuse_span_exporter(timeout=2))  # doctest: +SKIP
    """
    seconds = _timeout_seconds(timeout)
    exporter_class = otlp_exporter_class(encoder)  # a bad encoder raises before anything else
    if missing_keys not in ("raise", "disable"):
        raise ConfigurationError(f"missing_keys must be 'raise' or 'disable', got {missing_keys!r}")
    public = _key("public_key", public_key, PUBLIC_KEY_VAR)
    secret = _key("secret_key", secret_key, SECRET_KEY_VAR)
    missing = [
        f"{var} (or {name}=)"
        for value, var, name in (
            (public, PUBLIC_KEY_VAR, "public_key"),
            (secret, SECRET_KEY_VAR, "secret_key"),
        )
        if value is None
    ]
    if public is None or secret is None:
        reason = "Langfuse keys missing: set " + " and ".join(missing)
        if missing_keys == "raise":
            raise ConfigurationError(reason)
        _warn_once(
            "keys:" + ",".join(missing), "otel_nonblocking: %s; Langfuse tracing is off", reason
        )
        return DisabledSpanExporter(reason)
    url = resolve_base_url(base_url)
    extra: dict[str, Any] = {}
    limit = sdk.max_request_size()
    if limit is not None and _supports_max_request_size():
        extra["max_request_size"] = limit
    inner = exporter_class(
        endpoint=_endpoint(url),
        headers=langfuse_headers(public, secret, additional_headers),
        # As in otlp_span_exporter(): the SDK's own timeout a little past the deadline.
        timeout=seconds + _INNER_TIMEOUT_MARGIN_SECONDS,
        compression=_compression(compression),
        session=InterruptibleSession(),
        **extra,
    )
    return CountingDeadlineExporter(inner, timeout_millis=seconds * 1000)
