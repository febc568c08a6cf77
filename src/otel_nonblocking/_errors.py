"""Exceptions raised by otel_nonblocking.

Only a bad *explicit* argument raises; a bad environment value warns once and falls
back to its default, because telemetry must never crash the host application::

    ValueError
    └── ConfigurationError      an argument given in code is invalid
    Exception
    └── AttemptAbandoned        raised inside an export attempt the deadline gave up on
"""

from __future__ import annotations


class ConfigurationError(ValueError):
    """An explicit argument is invalid; the message names the argument."""


class AttemptAbandoned(Exception):  # noqa: N818 - it is an interruption, not an error
    """Raised inside an abandoned export attempt so that it ends without retrying.

    It deliberately does not derive from ``OSError`` or ``requests.ConnectionError``:
    the OTLP exporter retries those, and an abandoned attempt must stop instead.
    """
