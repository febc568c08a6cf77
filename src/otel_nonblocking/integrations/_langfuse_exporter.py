"""langfuse_span_exporter(): Langfuse's OTLP trace endpoint, its auth and headers, a real deadline.

Keys and host come from the arguments or the ``LANGFUSE_*`` variables the SDK reads; the
headers and compression follow what the installed SDK's own exporter sends.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from .. import _config, _state
from .._errors import ConfigurationError
from .._exporter import DeadlineSpanExporter
from .._otlp import (
    _INNER_TIMEOUT_MARGIN_SECONDS,
    build_otlp_exporter,
    checked_endpoint,
    checked_headers,
)
from .._otlp_codec import otlp_exporter_class, sdk_takes_max_request_size
from .._session import InterruptibleSession
from .._tally import Tally
from .._urls import url_problem
from . import _compat_langfuse as sdk

_logger = logging.getLogger("otel_nonblocking")

PUBLIC_KEY_VAR = "LANGFUSE_PUBLIC_KEY"
SECRET_KEY_VAR = "LANGFUSE_SECRET_KEY"  # noqa: S105 - the name of a variable, not a secret
BASE_URL_VARS = sdk.HOST_VARIABLES  # ("LANGFUSE_BASE_URL", "LANGFUSE_HOST") on 4.x and 5.x
TRACES_PATH_VAR = "LANGFUSE_OTEL_TRACES_EXPORT_PATH"
MissingKeys = Literal["raise", "disable"]
_COMPRESSIONS = {"gzip": Compression.Gzip, "none": Compression.NoCompression}


def _warn_once(key: str, message: str, *args: object) -> None:
    _state.warn_once(("langfuse", key), message, *args)


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


def _key(name: str, given: str | None, var: str) -> str | None:
    if given is not None and not isinstance(given, str):
        raise ConfigurationError(f"{name} must be a string, got {type(given).__name__}")
    if given and given.strip():
        return given
    from_env = os.environ.get(var, "").strip()
    return from_env or None


def keys_missing(public_key: object, secret_key: object) -> bool:
    """True when either key is absent or blank: nothing sent with them can be accepted.

    Langfuse itself takes an empty ``LANGFUSE_PUBLIC_KEY`` as a key and goes on sending
    spans and scores with it; the exporter and the binding treat it as missing.
    """
    return any(not (isinstance(k, str) and k.strip()) for k in (public_key, secret_key))


def drop_scores_without_keys(rm: Any) -> bool:
    """Stop a keyless Langfuse project (``rm``) from sending scores; True if it was keyless.

    Its spans go nowhere already (:class:`DisabledSpanExporter`, or Langfuse's own no-op);
    its scores would be sent with empty credentials, refused, and waited for by every
    flush. :func:`~._compat_langfuse.keep_scores` undoes it.
    """
    if not keys_missing(getattr(rm, "public_key", None), getattr(rm, "secret_key", None)):
        return False
    sdk.drop_scores(rm)
    return True


@dataclass(frozen=True)
class LangfuseHost:
    """The one host spans and scores go to, resolved as Langfuse resolves it.

    ``url`` is None when the source that Langfuse would use is malformed: then nothing is
    sent anywhere (credentials never go to a host the user did not name). ``source``
    is ``"base_url"``, the variable's name, or ``"default"``.
    """

    url: str | None
    source: str
    problem: str | None = None


def resolve_host(base_url: str | None = None) -> LangfuseHost:
    """``base_url``, else the first non-empty ``LANGFUSE_BASE_URL``, ``LANGFUSE_HOST``, else
    Langfuse Cloud: Langfuse's own order (4.x and 5.x), so spans and scores share a host.

    A malformed argument raises :class:`ConfigurationError` (the URL shown without its
    user-info or query). A malformed variable is not skipped, since Langfuse would use
    it for scores: the result has no ``url`` and names the variable in ``source``.
    """
    if base_url is not None:
        return LangfuseHost(checked_endpoint(base_url, "base_url").rstrip("/"), "base_url")
    for var in BASE_URL_VARS:
        raw = os.environ.get(var)
        if not raw:  # Langfuse's `or`: only an unset or empty variable is skipped
            continue
        problem = url_problem(raw.strip()) if raw.strip() else "is blank"
        if problem is not None:
            return LangfuseHost(None, var, problem)
        return LangfuseHost(raw.strip().rstrip("/"), var)
    return LangfuseHost(sdk.DEFAULT_BASE_URL, "default")


def _host_off(source: str, problem: str) -> DisabledSpanExporter:
    reason = (
        f"{source} {problem}; Langfuse tracing is off (the keys are sent only to a host you named)"
    )
    _warn_once(f"host:{source}", "otel_nonblocking: %s", reason)
    return DisabledSpanExporter(reason)


def disabled_for_malformed_host(rm: Any) -> DisabledSpanExporter | None:
    """For a Langfuse project (``rm``) whose host is malformed: a :class:`DisabledSpanExporter`
    to use instead of its exporter, after one warning naming where the host came from;
    its scores are dropped too. None when the host is fine.

    Langfuse's own exporter would send the key pair to that URL and the SDK would log
    it, in full, on every attempt.
    """
    base_url = getattr(rm, "base_url", None)
    if not isinstance(base_url, str):
        return None
    problem = url_problem(base_url) if base_url.strip() else "is blank"
    if problem is None:
        return None
    source = next((var for var in BASE_URL_VARS if os.environ.get(var) == base_url), "base_url")
    sdk.drop_scores(rm)
    return _host_off(source, problem)


def resolve_base_url(base_url: str | None) -> str:
    """The host of :func:`resolve_host`; a malformed variable raises
    :class:`ConfigurationError` naming it (never quoting it)."""
    host = resolve_host(base_url)
    if host.url is None:
        raise ConfigurationError(f"{host.source} {host.problem}")
    return host.url


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
        headers.update(checked_headers(additional_headers, "additional_headers"))
    return headers


def _endpoint(base_url: str) -> str:
    path = os.environ.get(TRACES_PATH_VAR, "").strip().lstrip("/")
    return f"{base_url}/{path or sdk.OTLP_TRACES_PATH}"


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
    ``LANGFUSE_BASE_URL``, ``LANGFUSE_HOST``, then Langfuse's default cloud host, as
    Langfuse resolves it for its scores; when the variable Langfuse would use is
    malformed, the exporter warns once naming it and sends nothing (tracing off), rather
    than send the keys to another host.

    ``encoder`` is ``"fast"`` (the package's encoder, the default) or ``"stock"`` (the
    SDK's), as in :func:`~otel_nonblocking.otlp_span_exporter`.

    Missing keys warn once, naming the variables, and return a
    :class:`DisabledSpanExporter` (tracing off, spans counted and discarded), as stock
    Langfuse turns itself off without keys; ``missing_keys="raise"`` raises
    :class:`~otel_nonblocking.ConfigurationError` naming them instead.

    >>> from langfuse import Langfuse  # doctest: +SKIP
    >>> langfuse = Langfuse(span_exporter=langfuse_span_exporter(timeout=2))  # doctest: +SKIP
    """
    seconds = _config.seconds("timeout", timeout)
    exporter_class = otlp_exporter_class(encoder)  # a bad encoder raises before anything else
    if missing_keys not in ("raise", "disable"):
        raise ConfigurationError(f"missing_keys must be 'raise' or 'disable', got {missing_keys!r}")
    host = resolve_host(base_url)  # a bad base_url raises before anything is decided
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
    if host.url is None:
        return _host_off(host.source, host.problem or "is malformed")
    extra: dict[str, Any] = {}
    limit = sdk.max_request_size()
    if limit is not None and sdk_takes_max_request_size():
        extra["max_request_size"] = limit
    inner = build_otlp_exporter(
        exporter_class,
        _endpoint(host.url),
        langfuse_headers(public, secret, additional_headers),
        # As in otlp_span_exporter(): the SDK's own timeout a little past the deadline.
        timeout=seconds + _INNER_TIMEOUT_MARGIN_SECONDS,
        compression=_compression(compression),
        session=InterruptibleSession(),
        **extra,
    )
    return CountingDeadlineExporter(inner, timeout_millis=seconds * 1000)
