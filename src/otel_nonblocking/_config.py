"""One registry of every setting: argument > environment variable > package default.

Each :class:`Setting` names its environment variables, type, unit and default; the
docs' configuration table is generated from :data:`SETTINGS` (see ``docs/configuration.md``).
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from ._errors import ConfigurationError

_logger = logging.getLogger("otel_nonblocking")

T = TypeVar("T")


class _Unset:
    """Sentinel type: "the caller did not give this argument" (``None`` may mean more)."""

    _instance: _Unset | None = None

    def __new__(cls) -> _Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Final = _Unset()


def _parse_int(raw: str) -> int:
    return int(raw.strip(), 10)


def _parse_float(raw: str) -> float:
    value = float(raw.strip())
    if not math.isfinite(value):
        raise ValueError("not a finite number")
    return value


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ValueError("not a boolean (use true or false)")


def _parse_str(raw: str) -> str:
    return raw.strip()


_KINDS: Final[Mapping[type, str]] = {
    int: "an integer",
    float: "a finite number",
    bool: "a boolean (true or false)",
    str: "a string",
}

_PARSERS: Final[Mapping[type, Callable[[str], Any]]] = {
    int: _parse_int,
    float: _parse_float,
    bool: _parse_bool,
    str: _parse_str,
}


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One configuration parameter.

    ``check`` returns an error message for an invalid value, or ``None`` when it is fine.
    """

    name: str
    env_vars: tuple[str, ...]
    type: type[T]
    default: T
    unit: str
    doc: str
    check: Callable[[T], str | None] | None = None
    parse: Callable[[str], T] | None = None

    def validate(self, value: object) -> T:
        """Return ``value`` if valid for this setting, else raise :class:`ConfigurationError`."""
        expected = self.type
        ok = isinstance(value, expected) and not (expected is not bool and isinstance(value, bool))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise ConfigurationError(
                f"{self.name} must be {expected.__name__}, got {type(value).__name__}"
            )
        if expected is float and not math.isfinite(value):  # type: ignore[arg-type]
            raise ConfigurationError(f"{self.name} must be a finite number, got {value!r}")
        if self.check is not None:
            problem = self.check(value)  # type: ignore[arg-type]
            if problem is not None:
                raise ConfigurationError(f"{self.name} {problem}, got {value!r}")
        return value  # type: ignore[return-value]

    def from_env(self, environ: Mapping[str, str] | None = None) -> T | _Unset:
        """The value of the first set environment variable, or UNSET.

        An empty string counts as unset; a malformed value warns once and is ignored.
        """
        env = os.environ if environ is None else environ
        for index, var in enumerate(self.env_vars):
            raw = env.get(var)
            if raw is None or not raw.strip():
                continue
            # The message never quotes the value (nor a parser error, which would):
            # a variable might hold something private.
            try:
                value = self.validate((self.parse or _PARSERS[self.type])(raw))
            except ValueError:  # includes ConfigurationError
                later = " or ".join(self.env_vars[index + 1 :])
                fallback = f"{later}, else {self.default!r}" if later else f"{self.default!r}"
                _warn_once(var, raw, f"{self._env_problem(raw)}; using {fallback}")
                continue  # as if unset: a later variable, else the default, applies
            return value
        return UNSET

    def _env_problem(self, raw: str) -> str:
        """Why ``raw`` was rejected, in words that do not contain it."""
        try:
            value = (self.parse or _PARSERS[self.type])(raw)
        except ValueError:
            return f"not {_KINDS.get(self.type, 'valid')}"
        problem = None if self.check is None else self.check(value)
        return problem or f"not {_KINDS.get(self.type, 'valid')}"

    def resolve(self, explicit: T | _Unset = UNSET, environ: Mapping[str, str] | None = None) -> T:
        """Argument > environment variable > default."""
        if not isinstance(explicit, _Unset):
            return self.validate(explicit)
        from_env = self.from_env(environ)
        if not isinstance(from_env, _Unset):
            return from_env
        return self.default


_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def _fresh_warned_lock() -> None:
    global _warned_lock  # a lock held by another thread at fork time stays held in the child
    _warned_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh_warned_lock)


def _warn_once(var: str, raw: str, why: str) -> None:
    key = (var, raw)
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    # The raw value is not echoed: a variable might hold something private.
    _logger.warning("Ignoring invalid %s (%s)", var, why)


def reset_warnings() -> None:
    """Forget which bad environment values were already warned about (for tests)."""
    with _warned_lock:
        _warned.clear()


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be greater than 0"


# The longest duration any setting accepts: a day. Longer ones are typos, and thread
# waits and socket timeouts overflow on values like 1e23.
_MAX_MILLIS: Final = 86_400_000


def _positive_millis(value: float) -> str | None:
    if value <= 0:
        return "must be greater than 0"
    return None if value <= _MAX_MILLIS else f"must be at most {_MAX_MILLIS} (a day)"


def _non_negative_millis(value: float) -> str | None:
    if value < 0:
        return "must be 0 or greater"
    return None if value <= _MAX_MILLIS else f"must be at most {_MAX_MILLIS} (a day)"


def _positive_seconds(value: float) -> str | None:
    return _positive_millis(value * 1000)


def _non_negative(value: float) -> str | None:
    return None if value >= 0 else "must be 0 or greater"


MAX_QUEUE_SIZE: Final = Setting(
    "max_queue_size",
    ("OTEL_BSP_MAX_QUEUE_SIZE",),
    int,
    16384,
    "spans",
    "Spans held in memory waiting for export; beyond it (or beyond max_queue_bytes) "
    "the newest span is dropped (queue_full). The specification's default is 2048; "
    "a burst of 10,000 spans must fit.",
    _positive,
)
MAX_QUEUE_BYTES: Final = Setting(
    "max_queue_bytes",
    ("OTEL_NONBLOCKING_MAX_QUEUE_BYTES",),
    int,
    64 * 1024 * 1024,
    "bytes",
    "Approximate memory budget of the queue: about 3 KiB per span plus its encoded "
    "size, learnt from the exports; the queue holds the smaller of this and max_queue_size.",
    _positive,
)
RETRY_BUFFER_SIZE: Final = Setting(
    "retry_buffer_size",
    ("OTEL_NONBLOCKING_RETRY_BUFFER_SIZE",),
    int,
    8192,
    "spans",
    "Spans of batches that failed for a transient reason, kept to be sent again; when "
    "full, the oldest batch is dropped (retry_buffer_full). 0 turns retries off.",
    _non_negative,
)
MAX_EXPORT_ATTEMPTS: Final = Setting(
    "max_export_attempts",
    ("OTEL_NONBLOCKING_MAX_ATTEMPTS",),
    int,
    6,
    "attempts",
    "Times one batch is sent before a transient failure drops it; attempts the "
    "breaker or a Retry-After held back do not count.",
    _positive,
)
SPOOL_DIR: Final = Setting(
    "spool_dir",
    ("OTEL_NONBLOCKING_SPOOL_DIR",),
    str,
    "",
    "path",
    "Directory of the disk spool (created owner-only): batches that could not be delivered "
    "before the retry buffer or the shutdown budget ran out are written there, encoded, and "
    "sent once the backend takes spans again, by this process or the next one that starts "
    "with the same directory. Empty: no spool. Needs an OTLP/HTTP exporter.",
)
SPOOL_MAX_BYTES: Final = Setting(
    "spool_max_bytes",
    ("OTEL_NONBLOCKING_SPOOL_MAX_BYTES",),
    int,
    256 * 1024 * 1024,
    "bytes",
    "Size cap of the disk spool, which OTEL_NONBLOCKING_SPOOL_DIR (or the spool_dir "
    "argument) turns on: batches that could not be delivered are written there and sent "
    "later. When a new batch does not fit, the oldest files are deleted and "
    "their spans counted (spool_full).",
    _positive,
)
MAX_EXPORT_BATCH_SIZE: Final = Setting(
    "max_export_batch_size",
    ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE",),
    int,
    512,
    "spans",
    "Most spans sent in one export call; a batch this size wakes the worker at once.",
    _positive,
)
SCHEDULE_DELAY_MILLIS: Final = Setting(
    "schedule_delay_millis",
    ("OTEL_BSP_SCHEDULE_DELAY",),
    int,
    1000,
    "ms",
    "Longest wait between two exports while spans are pending.",
    _positive_millis,
)
EXPORT_TIMEOUT_MILLIS: Final = Setting(
    "export_timeout_millis",
    ("OTEL_BSP_EXPORT_TIMEOUT",),
    int,
    30000,
    "ms",
    "Wall-clock deadline around each export call, enforced whatever the exporter does.",
    _positive_millis,
)
SHUTDOWN_TIMEOUT_MILLIS: Final = Setting(
    "shutdown_timeout_millis",
    ("OTEL_NONBLOCKING_SHUTDOWN_TIMEOUT",),
    int,
    2000,
    "ms",
    "Budget of NonBlockingSpanProcessor.shutdown() called without a timeout, as the "
    "processor's own exit hook and TracerProvider.shutdown() do.",
    _non_negative_millis,
)


# Above this, an OTLP timeout from the environment is read as milliseconds (the
# specification's unit); at or below it as seconds, which is how the Python SDK reads
# it (1.33 through 1.45). Nobody means a 120 ms network deadline, or a 2-minute-plus one.
OTLP_TIMEOUT_SECONDS_CUTOFF: Final = 120.0


def _parse_otlp_timeout_millis(raw: str) -> float:
    value = _parse_float(raw)
    return value * 1000.0 if value <= OTLP_TIMEOUT_SECONDS_CUTOFF else value


EXPORTER_TIMEOUT_MILLIS: Final = Setting(
    "timeout",
    ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"),
    float,
    2000.0,
    "ms",
    "Real wall-clock deadline of one OTLP export, DNS to response body. The argument "
    "is in seconds; environment values up to 120 are read as seconds (as the Python SDK "
    "does), larger ones as milliseconds (as the specification says).",
    _positive_millis,
    _parse_otlp_timeout_millis,
)


def _one_of(*choices: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        return None if value.lower() in choices else f"must be one of {', '.join(choices)}"

    return check


def _parse_lower(raw: str) -> str:
    return raw.strip().lower()


COMPRESSION: Final = Setting(
    "compression",
    ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION"),
    str,
    "none",
    "",
    "OTLP request body compression: gzip, deflate or none. A bad value in the environment "
    "warns and means none (SDK 1.33 would raise while building the exporter).",
    _one_of("gzip", "deflate", "none"),
    _parse_lower,
)
ENCODER: Final = Setting(
    "encoder",
    ("OTEL_NONBLOCKING_ENCODER",),
    str,
    "fast",
    "",
    "How otlp_span_exporter() encodes spans: fast (the package's own encoder, 5-10x "
    "faster, same bytes on the wire once decoded) or stock (the SDK's).",
    _one_of("fast", "stock"),
    _parse_lower,
)
BREAKER_FAILURE_THRESHOLD: Final = Setting(
    "failure_threshold",
    ("OTEL_NONBLOCKING_BREAKER_FAILURES",),
    int,
    3,
    "exports",
    "Failed or timed-out exports in a row that open the circuit breaker.",
    _positive,
)
BREAKER_BACKOFF_MILLIS: Final = Setting(
    "breaker_backoff_millis",
    ("OTEL_NONBLOCKING_BREAKER_BACKOFF",),
    int,
    1000,
    "ms",
    "How long an open breaker fails exports fast before one probe is let through "
    "(drawn between half and all of it, the same after every failed probe); a flush "
    "or shutdown sends its probe at once.",
    _positive_millis,
)

DISABLED: Final = Setting(
    "disabled",
    ("OTEL_NONBLOCKING_DISABLED",),
    bool,
    False,
    "bool",
    "Kill switch: configure_tracing() and the configurator install nothing "
    "(OTEL_SDK_DISABLED=true does the same).",
)
SDK_DISABLED: Final = Setting(
    "sdk_disabled",
    ("OTEL_SDK_DISABLED",),
    bool,
    False,
    "bool",
    "The specification's switch: no SDK, so nothing is installed.",
)
FLUSH_TIMEOUT: Final = Setting(
    "timeout",
    ("OTEL_NONBLOCKING_TIMEOUT",),
    float,
    2.0,
    "s",
    "Default budget of flush() and shutdown() on the handle configure_tracing() returns. "
    "The timeout argument of configure_tracing() also sets the export deadline.",
    _positive_seconds,
)
EXIT_TIMEOUT_MILLIS: Final = Setting(
    "exit_timeout_millis",
    ("OTEL_NONBLOCKING_EXIT_TIMEOUT",),
    int,
    2000,
    "ms",
    "Budget of the exit hook that shuts down everything configure_tracing() installed.",
    _non_negative_millis,
)

SELF_METRICS: Final = Setting(
    "self_metrics",
    ("OTEL_NONBLOCKING_SELF_METRICS", "OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED"),
    bool,
    True,
    "bool",
    "Publish the processor's and exporter's counters through the OpenTelemetry metrics "
    "API (configure_tracing() and the configurator); see docs/observability.md.",
)

SETTINGS: Final[tuple[Setting[Any], ...]] = (
    MAX_QUEUE_SIZE,
    MAX_QUEUE_BYTES,
    RETRY_BUFFER_SIZE,
    MAX_EXPORT_ATTEMPTS,
    SPOOL_DIR,
    SPOOL_MAX_BYTES,
    MAX_EXPORT_BATCH_SIZE,
    SCHEDULE_DELAY_MILLIS,
    EXPORT_TIMEOUT_MILLIS,
    SHUTDOWN_TIMEOUT_MILLIS,
    EXPORTER_TIMEOUT_MILLIS,
    COMPRESSION,
    ENCODER,
    BREAKER_FAILURE_THRESHOLD,
    BREAKER_BACKOFF_MILLIS,
    FLUSH_TIMEOUT,
    EXIT_TIMEOUT_MILLIS,
    SELF_METRICS,
    DISABLED,
    SDK_DISABLED,
)


def tracing_disabled(environ: Mapping[str, str] | None = None) -> bool:
    """True when ``OTEL_SDK_DISABLED`` or ``OTEL_NONBLOCKING_DISABLED`` is true."""
    return SDK_DISABLED.resolve(environ=environ) or DISABLED.resolve(environ=environ)
