"""One registry of every setting: argument > environment variable > package default.

Each :class:`Setting` names its environment variables, type, unit and default; the
docs' configuration table is generated from :data:`SETTINGS` (see ``docs/configuration.md``).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final, Generic, TypeVar

from . import _state
from ._errors import ConfigurationError
from ._urls import parse_headers_variable, url_problem

T = TypeVar("T")


class UnsetType:
    """The type of :data:`UNSET`: "the caller did not give this argument".

    A default of ``UNSET`` lets the environment variable decide; ``None`` may mean
    something else (``spool_dir=None``: no spool, whatever ``OTEL_NONBLOCKING_SPOOL_DIR``
    says). A wrapper that forwards an optional argument passes ``UNSET`` through::

        def setup(timeout: float | UnsetType = UNSET) -> TracingHandle:
            return otel_nonblocking.configure_tracing(timeout, service_name="checkout")
    """

    _instance: UnsetType | None = None

    def __new__(cls) -> UnsetType:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Final = UnsetType()
_Unset = UnsetType  # the name the modules of this package use


# ASCII digits only: Python's int() and float() also read other scripts' digits ("٣" is
# 3) and underscores, which nobody means in an environment variable.
_INT = re.compile(r"[+-]?[0-9]+", re.ASCII)
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?", re.ASCII)


def _parse_int(raw: str) -> int:
    text = raw.strip()
    if not _INT.fullmatch(text):
        raise ValueError("not an integer")
    return int(text, 10)


def _parse_float(raw: str) -> float:
    text = raw.strip()
    if not _FLOAT.fullmatch(text):
        raise ValueError("not a number")
    value = float(text)
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

    ``name`` is unique in the registry and carries the unit unless it is seconds
    (``otlp_timeout_millis``, ``flush_timeout``); ``arg`` is the argument that sets it in
    code, which an error names (default: ``name``). A millisecond setting whose argument
    may also be given in seconds (:meth:`resolve_seconds`) names that argument without
    ``_millis``: ``timeout_millis=`` on the SDK-shaped classes, ``timeout=`` on the façade.
    ``check`` returns an error message for an invalid value, or ``None`` when it is fine;
    its words must not depend on the unit (the value is shown in the caller's unit).
    ``arg_scale`` converts an explicit argument to the setting's unit (1000: the argument
    is in seconds, the setting in milliseconds); errors still quote the argument as given.
    ``convert`` turns a valid value into the one used (e.g. a path made absolute).
    ``fallback_vars`` are read after ``env_vars``: variables another setting owns that
    this one falls back to (``OTEL_EXPORTER_OTLP_TIMEOUT`` for the log and metric timeouts).
    """

    name: str
    env_vars: tuple[str, ...]
    type: type[T]
    default: T
    unit: str
    doc: str
    check: Callable[[T], str | None] | None = None
    parse: Callable[[str], T] | None = None
    arg_scale: float = 1.0
    convert: Callable[[T, str], T] | None = None
    arg: str = ""
    fallback_vars: tuple[str, ...] = ()

    @property
    def argument(self) -> str:
        """The argument an error names: ``arg``, else ``name``; in seconds, without
        ``_millis`` (``timeout_millis`` given as seconds is ``timeout``)."""
        arg = self.arg or self.name
        return arg.removesuffix("_millis") if self.arg_scale == 1000.0 else arg

    def _kind(self) -> str:
        """What an argument must be, in the argument's unit: "a number of seconds"."""
        unit = "s" if self.arg_scale == 1000.0 else self.unit
        if self.type in (int, float) and unit in ("ms", "s"):
            number = "a whole number" if self.type is int else "a finite number"
            return f"{number} of {'milliseconds' if unit == 'ms' else 'seconds'}"
        return _KINDS.get(self.type, "valid")

    def _typed(self, value: object) -> T:
        """``value`` if it has this setting's type (an int passes as a float), else raise."""
        expected = self.type
        ok = isinstance(value, expected) and not (expected is not bool and isinstance(value, bool))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            try:
                value, ok = float(value), True
            except OverflowError:  # an int too large for a float: not finite either
                raise ConfigurationError(
                    f"{self.argument} must be {self._kind()}, got {value!r}"
                ) from None
        if not ok:
            raise ConfigurationError(
                f"{self.argument} must be {self._kind()}, got {type(value).__name__}"
            )
        if expected is float and not math.isfinite(value):  # type: ignore[arg-type]
            raise ConfigurationError(f"{self.argument} must be {self._kind()}, got {value!r}")
        return value  # type: ignore[return-value]

    def _checked(self, value: T, shown: object) -> T:
        if self.check is not None:
            problem = self.check(value)
            if problem is not None:
                raise ConfigurationError(f"{self.argument} {problem}, got {shown!r}")
        return value

    def validate(self, value: object) -> T:
        """``value`` (an explicit argument) in this setting's unit, else raise
        :class:`ConfigurationError` quoting the argument as given."""
        typed = self._typed(value)
        scaled: Any = typed * self.arg_scale if self.arg_scale != 1.0 else typed  # type: ignore[operator]
        return self._checked(scaled, value)

    def from_env(self, environ: Mapping[str, str] | None = None) -> T | _Unset:
        """The value of the first set environment variable, or UNSET.

        An empty string counts as unset; a malformed value warns once and is ignored.
        """
        env = os.environ if environ is None else environ
        variables = self.env_vars + self.fallback_vars
        for index, var in enumerate(variables):
            raw = env.get(var)
            if raw is None or not raw.strip():
                continue
            # The message never quotes the value (nor a parser error, which would):
            # a variable might hold something private.
            try:
                parsed = (self.parse or _PARSERS[self.type])(raw)
                value = self._checked(self._typed(parsed), parsed)
            except ValueError:  # includes ConfigurationError
                later = " or ".join(variables[index + 1 :])
                fallback = f"{later}, else {self.default!r}" if later else f"{self.default!r}"
                _warn_once(var, raw, f"{self._env_problem(raw)}; using {fallback}")
                continue  # as if unset: a later variable, else the default, applies
            return value if self.convert is None else self.convert(value, var)
        return UNSET

    def _env_problem(self, raw: str) -> str:
        """Why ``raw`` was rejected, in words that do not contain it."""
        try:
            value = (self.parse or _PARSERS[self.type])(raw)
        except ValueError:
            return f"not {_KINDS.get(self.type, 'valid')}"
        problem = None if self.check is None else self.check(value)
        return problem or f"not {_KINDS.get(self.type, 'valid')}"

    def resolve_seconds(
        self, explicit: float | _Unset = UNSET, environ: Mapping[str, str] | None = None
    ) -> T:
        """:meth:`resolve` for a millisecond setting whose argument is given in seconds
        (``timeout=``): errors quote the argument in seconds, as the caller wrote it, and
        name it without ``_millis``; a whole-millisecond setting takes any number of
        seconds, rounded up to the millisecond (never to 0 from above it)."""
        if self.unit != "ms":
            raise TypeError(f"{self.name} is not kept in milliseconds")
        if isinstance(explicit, _Unset):
            return self.resolve(environ=environ)
        seconds_form: Setting[Any] = replace(self, type=float, arg_scale=1000.0)  # type: ignore[arg-type]
        millis: float = seconds_form.validate(explicit)
        return math.ceil(millis) if self.type is int else millis  # type: ignore[return-value]

    def resolve(self, explicit: T | _Unset = UNSET, environ: Mapping[str, str] | None = None) -> T:
        """Argument > environment variable > default."""
        if not isinstance(explicit, _Unset):
            value = self.validate(explicit)
            return value if self.convert is None else self.convert(value, self.argument)
        from_env = self.from_env(environ)
        if not isinstance(from_env, _Unset):
            return from_env
        return self.default


def _warn_once(var: str, raw: str, why: str) -> None:
    # The raw value is not echoed: a variable might hold something private.
    _state.warn_once(("env", var, raw), "Ignoring invalid %s (%s)", var, why)


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be greater than 0"


# The longest duration any setting or argument accepts: a day. Longer ones are typos,
# and thread waits and socket timeouts overflow on values like 1e23.
MAX_SECONDS: Final = 86_400.0

# Duration checks word their limits without a unit, so that an error quotes the value
# in the unit the caller used (seconds for a ``timeout=`` argument) and stays true.
_AT_MOST_A_DAY: Final = "must be at most a day (86400 seconds)"


def _duration_problem(seconds: float, *, allow_zero: bool) -> str | None:
    """What is wrong with a duration of ``seconds``, in words without a unit, or None.

    The one range check of every duration, setting or argument, in seconds or not.
    """
    if seconds < 0 or (seconds == 0 and not allow_zero):
        return "must be 0 or greater" if allow_zero else "must be greater than 0"
    return None if seconds <= MAX_SECONDS else _AT_MOST_A_DAY


def _millis_problem(value: float, *, allow_zero: bool) -> str | None:
    try:
        seconds = value / 1000
    except OverflowError:  # an int too large for a float
        seconds = math.inf
    return _duration_problem(seconds, allow_zero=allow_zero)


def _positive_millis(value: float) -> str | None:
    return _millis_problem(value, allow_zero=False)


def _non_negative_millis(value: float) -> str | None:
    return _millis_problem(value, allow_zero=True)


def _positive_seconds(value: float) -> str | None:
    return _duration_problem(value, allow_zero=False)


def _non_negative_seconds(value: float) -> str | None:
    return _duration_problem(value, allow_zero=True)


def seconds(name: str, value: object, *, allow_zero: bool = False) -> float:
    """``value``, an explicit ``name=`` argument in seconds, as a float; else
    :class:`ConfigurationError` quoting it as given (never converted to milliseconds).

    The check of every seconds argument outside the registry (a flush budget, a
    ``flush_after`` margin, a Langfuse timeout), made by the registry's own
    :meth:`Setting.validate`: an int or float (not a bool, not a string), finite,
    greater than 0 (or at least 0), at most a day.

    >>> seconds("timeout", 2)
    2.0
    """
    return _seconds_setting(name, allow_zero).validate(value)


def seconds_from_text(name: str, text: str, *, allow_zero: bool = False) -> float:
    """``text`` (a command-line value) as seconds, read in ASCII digits and checked as
    :func:`seconds` checks an argument; else :class:`ConfigurationError` quoting it as
    written."""
    try:
        value = _parse_float(text)
    except ValueError:
        raise ConfigurationError(
            f"{name} must be a finite number of seconds, got {text!r}"
        ) from None
    return _seconds_setting(name, allow_zero)._checked(value, text)


def _seconds_setting(name: str, allow_zero: bool) -> Setting[float]:
    check = _non_negative_seconds if allow_zero else _positive_seconds
    return Setting(name, (), float, 0.0, "s", "", check)


def _non_negative(value: float) -> str | None:
    return None if value >= 0 else "must be 0 or greater"


def _absolute_path(value: str, source: str) -> str:
    """``value`` as an absolute path (``~`` expanded); a relative one is logged once.

    Resolved once, here: a relative directory would otherwise follow the working
    directory, and be created silently under whatever it is when the spool opens.
    """
    if not value:
        return value
    path = os.path.abspath(os.path.expanduser(value))
    if path != value:
        _state.warn_once(
            ("path", source, value, path),
            "otel_nonblocking: %s is a relative path; using %s",
            source,
            path,
        )
    return path


MAX_QUEUE_SIZE: Final = Setting(
    "max_queue_size",
    ("OTEL_BSP_MAX_QUEUE_SIZE",),
    int,
    16384,
    "spans",
    "Spans held in memory waiting for export as span objects; beyond it (or beyond "
    "max_queue_bytes) the newest span is dropped (queue_full). The specification's "
    "default is 2048; a burst of 10,000 spans must fit. With the package's OTLP "
    "span exporter (http/protobuf or gRPC) the worker encodes waiting spans at once: "
    "only max_queue_bytes bounds those (and with a disk spool, half of this many sends "
    "them to disk in an outage).",
    _positive,
)
MAX_QUEUE_BYTES: Final = Setting(
    "max_queue_bytes",
    ("OTEL_NONBLOCKING_MAX_QUEUE_BYTES",),
    int,
    64 * 1024 * 1024,
    "bytes",
    "Memory budget of the queue. With the package's OTLP span exporter, waiting spans "
    "are kept encoded (a span with four attributes: 216 bytes; past 1,024 waiting while "
    "exports fail or are held back, past 16,384 while they go through, compressed in "
    "blocks, about 53 bytes: a 60 s outage at 2,000 spans/s needs about 7 MiB, and the "
    "default holds about 10 minutes of it); beyond it the newest span is "
    "dropped (queue_full). Spans kept as objects (any other exporter) count about 3 KiB "
    "each plus their encoded size, learnt from the exports.",
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
    "Times one batch is sent before a transient failure drops it. Only attempts the "
    "backend could judge count (it answered, or the request went out and then hung or "
    "was reset): not those the breaker or a Retry-After held back, nor those that never "
    "reached it (refused, DNS failure, connect timeout), nor the open breaker's probes: "
    "a collector that is down costs no span while the queue and the retry buffer have "
    "room.",
    _positive,
)
SPOOL_DIR: Final = Setting(
    "spool_dir",
    ("OTEL_NONBLOCKING_SPOOL_DIR",),
    str,
    "",
    "path",
    "Directory of the disk spool (created owner-only; a symlink, or a directory another "
    "user owns or that group or others can write to, turns the spool off with a warning): "
    "batches that could not be delivered "
    "before the retry buffer or the shutdown budget ran out are written there, encoded, and "
    "sent once the backend takes spans again, by this process or the next one that starts "
    "with the same directory. Log records spool in its logs subdirectory. Empty: no "
    "spool. Needs an OTLP/HTTP exporter (for spans, the package's OTLP/gRPC one too). "
    "A relative path is resolved once, against the "
    "working directory, and the absolute path logged.",
    convert=_absolute_path,
)
SPOOL_MAX_BYTES: Final = Setting(
    "spool_max_bytes",
    ("OTEL_NONBLOCKING_SPOOL_MAX_BYTES",),
    int,
    256 * 1024 * 1024,
    "bytes",
    "Size cap of the disk spool, which OTEL_NONBLOCKING_SPOOL_DIR (or the spool_dir "
    "argument) turns on: batches that could not be delivered are written there and sent "
    "later. Spans and log records each have a cap of this size. When a new batch does "
    "not fit, the oldest files are deleted and their items counted (spool_full).",
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
    "NonBlockingSpanProcessor's wall-clock deadline around each export call, enforced "
    "whatever the exporter does; behind otlp_span_exporter() the smaller of it and "
    "otlp_timeout_millis applies.",
    _positive_millis,
)
SHUTDOWN_TIMEOUT_MILLIS: Final = Setting(
    "shutdown_timeout_millis",
    ("OTEL_NONBLOCKING_SHUTDOWN_TIMEOUT",),
    int,
    2000,
    "ms",
    "Budget of NonBlockingSpanProcessor.shutdown() called without a timeout, as "
    "TracerProvider.shutdown() does; at exit, at most the time left of "
    "OTEL_NONBLOCKING_EXIT_TIMEOUT.",
    _non_negative_millis,
)

# The log record processor's batch settings: the specification's OTEL_BLRP_* variables,
# the same package defaults as the span processor's (argument names without "log_").
LOG_MAX_QUEUE_SIZE: Final = Setting(
    "log_max_queue_size",
    ("OTEL_BLRP_MAX_QUEUE_SIZE",),
    int,
    16384,
    "records",
    "NonBlockingLogRecordProcessor: log records held in memory waiting for export; beyond "
    "it (or beyond max_queue_bytes) the newest record is dropped (queue_full). The "
    "specification's default is 2048.",
    _positive,
    arg="max_queue_size",
)
LOG_MAX_EXPORT_BATCH_SIZE: Final = Setting(
    "log_max_export_batch_size",
    ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE",),
    int,
    512,
    "records",
    "NonBlockingLogRecordProcessor: most log records sent in one export call; a batch "
    "this size wakes the worker at once.",
    _positive,
    arg="max_export_batch_size",
)
LOG_SCHEDULE_DELAY_MILLIS: Final = Setting(
    "log_schedule_delay_millis",
    ("OTEL_BLRP_SCHEDULE_DELAY",),
    int,
    1000,
    "ms",
    "NonBlockingLogRecordProcessor: longest wait between two exports while log records "
    "are pending.",
    _positive_millis,
    arg="schedule_delay_millis",
)
LOG_EXPORT_TIMEOUT_MILLIS: Final = Setting(
    "log_export_timeout_millis",
    ("OTEL_BLRP_EXPORT_TIMEOUT",),
    int,
    30000,
    "ms",
    "NonBlockingLogRecordProcessor's wall-clock deadline around each export call, "
    "enforced whatever the exporter does; the exporter's own deadline, when smaller, wins.",
    _positive_millis,
    arg="export_timeout_millis",
)


# Above this, an OTLP timeout from the environment is read as milliseconds (the
# specification's unit); at or below it as seconds, which is how the Python SDK reads
# it (1.33 through 1.45). Nobody means a 120 ms network deadline, or a 2-minute-plus one.
OTLP_TIMEOUT_SECONDS_CUTOFF: Final = 120.0


def _parse_otlp_timeout_millis(raw: str) -> float:
    value = _parse_float(raw)
    return value * 1000.0 if value <= OTLP_TIMEOUT_SECONDS_CUTOFF else value


OTLP_TIMEOUT_MILLIS: Final = Setting(
    "otlp_timeout_millis",
    ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"),
    float,
    2000.0,
    "ms",
    "Real wall-clock deadline of one export by DeadlineSpanExporter (otlp_span_exporter() "
    "builds one), DNS to response body. Set in code by timeout= of otlp_span_exporter() "
    "and configure_tracing() in seconds, or timeout_millis= of DeadlineSpanExporter. "
    "Environment values up to 120 are read as seconds (as the Python SDK does), larger "
    "ones as milliseconds (as the specification says).",
    _positive_millis,
    _parse_otlp_timeout_millis,
    arg="timeout_millis",
)


def _signal_timeout(signal: str, factory: str) -> Setting[float]:
    """The OTLP deadline of the ``signal`` exporter: its own variable, then the shared one."""
    var = f"OTEL_EXPORTER_OTLP_{signal.upper()}_TIMEOUT"
    return replace(
        OTLP_TIMEOUT_MILLIS,
        name=f"otlp_{signal}_timeout_millis",
        env_vars=(var,),
        fallback_vars=("OTEL_EXPORTER_OTLP_TIMEOUT",),
        doc=f"Real wall-clock deadline of one export by {factory}(), DNS to response "
        f"body; {var}, then OTEL_EXPORTER_OTLP_TIMEOUT. Set in code by timeout= in seconds. "
        "Environment values up to 120 are read as seconds, larger ones as milliseconds "
        "(as for otlp_timeout_millis).",
    )


OTLP_LOGS_TIMEOUT_MILLIS: Final = _signal_timeout("logs", "otlp_log_exporter")
OTLP_METRICS_TIMEOUT_MILLIS: Final = _signal_timeout("metrics", "otlp_metric_exporter")


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


def _signal_compression(signal: str) -> Setting[str]:
    var = f"OTEL_EXPORTER_OTLP_{signal.upper()}_COMPRESSION"
    return replace(
        COMPRESSION,
        name=f"{signal}_compression",
        env_vars=(var,),
        fallback_vars=("OTEL_EXPORTER_OTLP_COMPRESSION",),
        doc=f"OTLP {signal} request body compression: gzip, deflate or none; {var}, then "
        "OTEL_EXPORTER_OTLP_COMPRESSION. A bad value in the environment warns and means none.",
    )


LOGS_COMPRESSION: Final = _signal_compression("logs")
METRICS_COMPRESSION: Final = _signal_compression("metrics")
ENCODER: Final = Setting(
    "encoder",
    ("OTEL_NONBLOCKING_ENCODER",),
    str,
    "fast",
    "",
    "How otlp_span_exporter() encodes spans: fast (the package's own encoder, 5-10x "
    "faster, same bytes on the wire once decoded; spans waiting for export are kept "
    "encoded) or stock (the SDK's; waiting spans are kept as span objects).",
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
    "Kill switch: configure_tracing(), configure_telemetry() and the configurator "
    "install nothing "
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
    "flush_timeout",
    ("OTEL_NONBLOCKING_TIMEOUT",),
    float,
    2.0,
    "s",
    "Default budget of flush() and shutdown() on the handle configure_tracing() or "
    "configure_telemetry() returns (and of flush_after()). Set in code by timeout= of "
    "either, which also sets the export deadlines of every signal they install.",
    _positive_seconds,
    arg="timeout",
)
EXIT_TIMEOUT_MILLIS: Final = Setting(
    "exit_timeout_millis",
    ("OTEL_NONBLOCKING_EXIT_TIMEOUT",),
    int,
    2000,
    "ms",
    "Budget of the package's one exit hook, shared by everything it installed (every "
    "span and log record processor, metric reader, handle and integration, each part "
    "an equal share of what is left), also in multiprocessing children made by fork. "
    "Set in code by exit_timeout= of configure_tracing() or configure_telemetry(), in "
    "seconds.",
    _non_negative_millis,
)
_state.set_exit_budget_source(lambda: EXIT_TIMEOUT_MILLIS.resolve() / 1000)

SELF_METRICS: Final = Setting(
    "self_metrics",
    ("OTEL_NONBLOCKING_SELF_METRICS", "OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED"),
    bool,
    True,
    "bool",
    "Publish the counters of every span and log record processor, metric reader and "
    "their exporters through the OpenTelemetry metrics API (configure_tracing(), "
    "configure_telemetry() and the configurator); see docs/observability.md.",
)

METRIC_EXPORT_INTERVAL_MILLIS: Final = Setting(
    "metric_export_interval_millis",
    ("OTEL_METRIC_EXPORT_INTERVAL",),
    float,
    60000.0,
    "ms",
    "Time between two collections of NonBlockingMetricReader (the specification's "
    "variable and default). A collection due while the previous export still runs is "
    "skipped and counted, never queued.",
    _positive_millis,
    arg="export_interval_millis",
)
METRIC_EXPORT_TIMEOUT_MILLIS: Final = Setting(
    "metric_export_timeout_millis",
    ("OTEL_METRIC_EXPORT_TIMEOUT",),
    float,
    30000.0,
    "ms",
    "NonBlockingMetricReader's wall-clock deadline around one metric export, enforced "
    "whatever the exporter does; behind a deadline-wrapped OTLP exporter the smaller of "
    "it and the exporter's own timeout applies.",
    _positive_millis,
    arg="export_timeout_millis",
)

#: The OTLP transports the exporters speak (``grpc`` needs the ``grpc`` extra).
PROTOCOLS: Final = ("http/protobuf", "grpc")
_PROTOCOL_DOC: Final = (
    "http/protobuf or grpc (needs the grpc extra: pip install 'otel-nonblocking[grpc]'; "
    "without it, grpc from the environment warns once and http/protobuf is used)"
)


OTLP_PROTOCOL_VAR: Final = "OTEL_EXPORTER_OTLP_PROTOCOL"
TRACES_PROTOCOL: Final = Setting(
    "traces_protocol",
    ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", OTLP_PROTOCOL_VAR),
    str,
    "http/protobuf",
    "",
    f"OTLP transport of traces: {_PROTOCOL_DOC}. Set in code by protocol= of otlp_span_exporter().",
    _one_of(*PROTOCOLS),
    _parse_lower,
    arg="protocol",
)


def _signal_protocol(signal: str, factory: str) -> Setting[str]:
    var = f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL"
    return replace(
        TRACES_PROTOCOL,
        name=f"{signal}_protocol",
        env_vars=(var,),
        fallback_vars=(OTLP_PROTOCOL_VAR,),
        doc=f"OTLP transport of {signal}: {_PROTOCOL_DOC}; {var}, then {OTLP_PROTOCOL_VAR}. "
        f"Set in code by protocol= of {factory}().",
    )


LOGS_PROTOCOL: Final = _signal_protocol("logs", "otlp_log_exporter")
METRICS_PROTOCOL: Final = _signal_protocol("metrics", "otlp_metric_exporter")

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
    OTLP_TIMEOUT_MILLIS,
    OTLP_LOGS_TIMEOUT_MILLIS,
    OTLP_METRICS_TIMEOUT_MILLIS,
    COMPRESSION,
    LOGS_COMPRESSION,
    METRICS_COMPRESSION,
    ENCODER,
    BREAKER_FAILURE_THRESHOLD,
    BREAKER_BACKOFF_MILLIS,
    FLUSH_TIMEOUT,
    EXIT_TIMEOUT_MILLIS,
    SELF_METRICS,
    METRIC_EXPORT_INTERVAL_MILLIS,
    METRIC_EXPORT_TIMEOUT_MILLIS,
    DISABLED,
    SDK_DISABLED,
    LOG_MAX_QUEUE_SIZE,
    LOG_MAX_EXPORT_BATCH_SIZE,
    LOG_SCHEDULE_DELAY_MILLIS,
    LOG_EXPORT_TIMEOUT_MILLIS,
    TRACES_PROTOCOL,
    LOGS_PROTOCOL,
    METRICS_PROTOCOL,
)


def tracing_disabled(environ: Mapping[str, str] | None = None) -> bool:
    """True when ``OTEL_SDK_DISABLED`` or ``OTEL_NONBLOCKING_DISABLED`` is true."""
    return SDK_DISABLED.resolve(environ=environ) or DISABLED.resolve(environ=environ)


# -- the OTLP endpoint and headers variables ---------------------------------------------------
# The SDK reads these itself, and quotes a malformed one in full in its log lines (or uses
# it, and then quotes it on every export). They are read here instead, checked, and handed
# to the SDK as explicit arguments.

OTLP_TRACES_ENDPOINT_VAR: Final = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
OTLP_ENDPOINT_VAR: Final = "OTEL_EXPORTER_OTLP_ENDPOINT"
OTLP_DEFAULT_ENDPOINT: Final = "http://localhost:4318/v1/traces"
OTLP_HEADERS_VARS: Final = ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS")


def otlp_endpoint_from_env(
    environ: Mapping[str, str] | None = None, *, signal: str = "traces"
) -> str:
    """The ``signal``'s endpoint (traces, logs, metrics) the variables name, as the SDK
    reads them, checked.

    ``OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT`` is used as given; else
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` plus ``/v1/<signal>``; else the SDK's default. A
    malformed one (no http(s) scheme, no host, a bad port, control characters) warns
    once, naming the variable, and the next one applies.
    """
    env = os.environ if environ is None else environ
    own_var = f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT"
    default = f"http://localhost:4318/v1/{signal}"
    own = env.get(own_var, "").strip()
    if own:
        problem = url_problem(own)
        if problem is None:
            return own
        fallback = f"{OTLP_ENDPOINT_VAR}, else {default}"
        _warn_once(own_var, own, f"{problem}; using {fallback}")
    base = env.get(OTLP_ENDPOINT_VAR, "").strip()
    if base:
        problem = url_problem(base)
        if problem is None:
            return f"{base.rstrip('/')}/v1/{signal}"
        _warn_once(OTLP_ENDPOINT_VAR, base, f"{problem}; using {default}")
    return default


def otlp_headers_from_env(
    environ: Mapping[str, str] | None = None, *, signal: str = "traces"
) -> dict[str, str]:
    """The headers of the first set ``OTEL_EXPORTER_OTLP_<SIGNAL>_HEADERS`` /
    ``OTEL_EXPORTER_OTLP_HEADERS``; malformed entries are left out, with one warning
    that names the variable (never an entry: it may hold a key)."""
    env = os.environ if environ is None else environ
    for var in (f"OTEL_EXPORTER_OTLP_{signal.upper()}_HEADERS", OTLP_HEADERS_VARS[1]):
        raw = env.get(var)
        if raw is None or not raw.strip():
            continue
        headers, bad = parse_headers_variable(raw)
        if bad:
            entries = "entry" if bad == 1 else "entries"
            _warn_once(
                var,
                raw,
                f"{bad} malformed {entries} left out; entries are name=value, separated by "
                "commas, values URL-encoded, without control characters",
            )
        return headers
    return {}
