"""bounded_langfuse(): a Langfuse client whose every wait is bounded, in one call.

It binds :func:`bound_langfuse_flush` (flush, shutdown, exit hook, and a deadline
exporter inside Langfuse's span processor), then builds the client; with keys missing
it warns once and returns a client with tracing off, as stock Langfuse does.
"""

from __future__ import annotations

import logging
from typing import Any

from .._config import seconds as _seconds  # the one seconds check
from .._errors import ConfigurationError
from . import _compat_langfuse as sdk
from ._langfuse_exporter import (
    PUBLIC_KEY_VAR,
    SECRET_KEY_VAR,
    MissingKeys,
    _key,
    _warn_once,
)
from ._langfuse_flush import ProcessorMode, bound_langfuse_flush

_langfuse_logger = logging.getLogger("langfuse")


class _DropAuthenticationWarning(logging.Filter):
    """Hides Langfuse's own "initialized without public_key" line: ours already said it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Authentication error")


def _missing_keys(kwargs: dict[str, Any]) -> list[str]:
    public = _key("public_key", kwargs.get("public_key"), PUBLIC_KEY_VAR)
    secret = _key("secret_key", kwargs.get("secret_key"), SECRET_KEY_VAR)
    return [
        f"{var} (or {name}=)"
        for value, var, name in (
            (public, PUBLIC_KEY_VAR, "public_key"),
            (secret, SECRET_KEY_VAR, "secret_key"),
        )
        if value is None
    ]


def bounded_langfuse(
    timeout: float = 2.0,
    *,
    missing_keys: MissingKeys = "disable",
    processor: ProcessorMode = "langfuse",
    exit_timeout: float | None = None,
    **langfuse_kwargs: Any,
) -> Any:
    """A ``Langfuse`` client that never makes your code wait longer than ``timeout`` seconds.

    One call does what :func:`bound_langfuse_flush` and
    :func:`langfuse_span_exporter` do together, on every supported release (4.0.6 to
    5.x): every span export has a real ``timeout`` deadline; ``flush()``,
    ``shutdown()`` and the exit hook share one deadline across spans, scores and media
    uploads and return a :class:`LangfuseFlushResult`; ``otel_nonblocking.flush()`` and
    ``@otel_nonblocking.flush_after`` flush this client too, within the time they have.
    ``timeout`` is also passed to Langfuse as its own ``timeout=`` (each score and media
    HTTP call).

    Other keyword arguments go to ``Langfuse(...)`` unchanged; keys and host come from
    them or from the usual ``LANGFUSE_*`` variables. Langfuse's default exporter is
    rebuilt with the settings the client resolved (host, keys, headers, compression);
    a ``span_exporter=`` you pass (4.2.0+) is kept, behind a deadline.

    Keys missing (or empty): with ``missing_keys="disable"`` (the default) one warning
    names the variables and the client has tracing off (spans and scores are no-ops, as
    stock Langfuse does without keys); ``missing_keys="raise"`` raises
    :class:`~otel_nonblocking.ConfigurationError` instead.

    The binding is process-wide: a second call with other ``timeout``/``processor``/
    ``exit_timeout`` keeps the first settings and logs a warning.

    >>> langfuse = bounded_langfuse(timeout=2)  # doctest: +SKIP
    >>> langfuse.flush()  # doctest: +SKIP
    LangfuseFlushResult(spans_pending=0, scores_pending=0, media_pending=0, ...)
    """
    seconds = _seconds("timeout", timeout)
    if missing_keys not in ("raise", "disable"):
        raise ConfigurationError(f"missing_keys must be 'raise' or 'disable', got {missing_keys!r}")
    missing = _missing_keys(langfuse_kwargs)
    if missing:
        reason = "Langfuse keys missing: set " + " and ".join(missing)
        if missing_keys == "raise":
            raise ConfigurationError(reason)
    bound_langfuse_flush(seconds, processor=processor, exit_timeout=exit_timeout)
    if missing:
        _warn_once(
            "keys:" + ",".join(missing), "otel_nonblocking: %s; Langfuse tracing is off", reason
        )
        quiet = _DropAuthenticationWarning()
        _langfuse_logger.addFilter(quiet)
        try:
            return sdk.LANGFUSE_CLIENT(**{**langfuse_kwargs, "tracing_enabled": False})
        finally:
            _langfuse_logger.removeFilter(quiet)
    return sdk.LANGFUSE_CLIENT(timeout=seconds, **langfuse_kwargs)
