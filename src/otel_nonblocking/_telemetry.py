"""configure_telemetry(): traces, logs and metrics in one call, under one budget.

The explicit door for all three signals (what users of ``logfire.configure`` or
``sentry_sdk.init`` expect): spans through :func:`configure_tracing`'s
``NonBlockingSpanProcessor``, log records through a ``LoggerProvider`` with
``NonBlockingLogRecordProcessor`` (and, if asked, a ``LoggingHandler`` on the root logger),
metrics through a ``MeterProvider`` with ``NonBlockingMetricReader``. The handle it returns
flushes and shuts down all three under one deadline; module-level ``flush()``,
``shutdown()`` and the one exit hook cover them too. The ``opentelemetry-instrument``
configurator (``_distro.py``) goes through here.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import metrics as metrics_api
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, MetricReader
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace.export import SpanExporter

from . import _compat_sdk, _config, _setup, _state
from ._config import UNSET, _Unset
from ._deadline import Deadline
from ._errors import ConfigurationError
from ._foreign_reader import ForeignReader
from ._log_processor import NonBlockingLogRecordProcessor
from ._metric_reader import NonBlockingMetricReader
from ._processor import NonBlockingSpanProcessor
from ._setup import FlushResult, TracingHandle

_logger = logging.getLogger("otel_nonblocking")

#: The variable the SDK's configurator reads to put a LoggingHandler on the root logger.
LOGGING_AUTO_INSTRUMENTATION_VAR = "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED"


class TelemetryHandle:
    """What :func:`configure_telemetry` installed, with bounded ``flush`` and ``shutdown``
    covering every signal under one deadline."""

    def __init__(
        self,
        *,
        timeout: float,
        tracing: TracingHandle | None = None,
        span_processors: Sequence[NonBlockingSpanProcessor] = (),
        logger_provider: Any = None,
        log_processors: Sequence[NonBlockingLogRecordProcessor] = (),
        log_handler: logging.Handler | None = None,
        meter_provider: MeterProvider | None = None,
        metric_readers: Sequence[NonBlockingMetricReader] = (),
        other_metric_readers: Sequence[MetricReader] = (),
    ) -> None:
        self._timeout = timeout
        self._tracing = tracing
        self._extra_span_processors = list(span_processors)
        self._logger_provider = logger_provider
        self._logs = list(log_processors)
        self._log_handler = log_handler
        self._meter_provider = meter_provider
        self._readers = list(metric_readers)
        self._others = [ForeignReader(r) for r in other_metric_readers]

    @property
    def enabled(self) -> bool:
        """False when nothing was installed (``OTEL_SDK_DISABLED``, the kill switch, or
        every signal switched off)."""
        return bool(self.span_processors or self._logs or self._readers or self._others)

    @property
    def tracing(self) -> TracingHandle | None:
        """The :func:`configure_tracing` handle of the traces, None without traces."""
        return self._tracing

    @property
    def span_processors(self) -> list[NonBlockingSpanProcessor]:
        """Every span processor of this handle (one per span exporter)."""
        first = [] if self._tracing is None else self._tracing._processors()
        return [*first, *self._extra_span_processors]

    @property
    def logger_provider(self) -> Any:
        """The SDK ``LoggerProvider`` the log record processors were added to, or None."""
        return self._logger_provider

    @property
    def log_processors(self) -> list[NonBlockingLogRecordProcessor]:
        return list(self._logs)

    @property
    def log_handler(self) -> logging.Handler | None:
        """The ``LoggingHandler`` put on the root logger, or None."""
        return self._log_handler

    @property
    def meter_provider(self) -> MeterProvider | None:
        return self._meter_provider

    @property
    def metric_readers(self) -> list[NonBlockingMetricReader]:
        return list(self._readers)

    @property
    def other_metric_readers(self) -> list[MetricReader]:
        """The readers added to the ``MeterProvider`` as they are (``metric_readers=``, a
        pull exporter such as prometheus): flushed and shut down with the rest, each call
        on a thread of the package and bounded by the one deadline."""
        return [o.reader for o in self._others]

    # What module-level flush()/shutdown() take from each installed handle. The tracing
    # handle is installed on its own: only the further span processors are here.
    def _processors(self) -> list[NonBlockingSpanProcessor]:
        return list(self._extra_span_processors)

    def _log_processors(self) -> list[NonBlockingLogRecordProcessor]:
        return list(self._logs)

    def _metric_readers(self) -> list[_setup.MetricPart]:
        return [*self._readers, *self._others]

    def flush(self, timeout: float | None = None) -> FlushResult:
        """Flush every signal within ``timeout`` seconds in total (default: the configured
        timeout). Spans count in the result's own fields, log records and metric exports
        in ``FlushResult.signals``."""
        return _setup._flush_within(
            self.span_processors,
            _setup._or(timeout, self._timeout),
            shutdown=False,
            log_processors=self._logs,
            metric_readers=self._metric_readers(),
        )

    def shutdown(self, timeout: float | None = None) -> FlushResult:
        """Export what fits in ``timeout`` seconds in total, then stop every signal;
        the ``LoggingHandler`` leaves the root logger. Idempotent."""
        result = _setup._flush_within(
            self.span_processors,
            _setup._or(timeout, self._timeout),
            shutdown=True,
            log_processors=self._logs,
            metric_readers=self._metric_readers(),
        )
        if not result.busy:
            self._release()
        return result

    def _release(self) -> None:
        """No longer installed: forgotten by module ``flush()``/``shutdown()``, and the
        ``LoggingHandler`` this call put on the root logger taken off it (only that one:
        handlers the application added stay)."""
        if self._tracing is not None:
            self._tracing._release()
        _setup._forget(self)
        if self._log_handler is not None:
            logging.getLogger().removeHandler(self._log_handler)


Exporters = Any  # one exporter, or a sequence of them


def configure_telemetry(
    timeout: float | _Unset = UNSET,
    *,
    traces: bool = True,
    logs: bool = True,
    metrics: bool = True,
    endpoint: str | None = None,
    headers: Mapping[str, str] | None = None,
    service_name: str | None = None,
    compression: str | None = None,
    protocol: str | None = None,
    span_exporter: SpanExporter | Sequence[SpanExporter] | None = None,
    log_exporter: Exporters = None,
    metric_exporter: MetricExporter | Sequence[MetricExporter] | None = None,
    metric_readers: Sequence[MetricReader] | None = None,
    log_handler: bool | None = None,
    metric_export_interval: float | _Unset = UNSET,
    exit_timeout: float | _Unset = UNSET,
) -> TelemetryHandle:
    """Send traces, logs and metrics through the package's bounded pipelines, with one
    budget for flush, shutdown and exit.

    ``timeout`` (seconds, default 2) is the real deadline of each export of every signal
    and the default budget of the handle's ``flush()`` and ``shutdown()``;
    ``exit_timeout`` (seconds, default ``OTEL_NONBLOCKING_EXIT_TIMEOUT``, 2) the budget
    of everything the package installed at interpreter exit, all signals together.
    ``endpoint`` is the collector's base URL, as ``OTEL_EXPORTER_OTLP_ENDPOINT``: over
    http/protobuf each signal's path (``/v1/traces``, ``/v1/logs``, ``/v1/metrics``) is
    appended; without it the ``OTEL_EXPORTER_OTLP_[SIGNAL_]*`` variables apply.
    ``protocol`` (``"http/protobuf"`` or ``"grpc"``, the ``grpc`` extra) applies to every
    signal; without it ``OTEL_EXPORTER_OTLP_[SIGNAL_]PROTOCOL``, else http/protobuf.
    ``span_exporter``/``log_exporter``/``metric_exporter`` (one, or a list: one
    pipeline each) replace the OTLP exporter of that signal. ``metric_readers`` go into
    the ``MeterProvider`` as they are (a pull exporter such as prometheus's reader;
    a ``NonBlockingMetricReader`` of yours), and replace the OTLP exporter too unless
    ``metric_exporter`` is given; the handle's and the module's flush and shutdown and
    the exit call theirs, each bounded by the one deadline. ``log_handler`` puts a
    ``LoggingHandler`` on the root logger, so that stdlib ``logging`` records are
    exported; None (default) leaves it to ``OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED``
    (false unless set), as the SDK's own configurator does. ``metric_export_interval``
    (seconds, default ``OTEL_METRIC_EXPORT_INTERVAL``, 60) is the time between two
    collections. Traces go as with :func:`configure_tracing` (an SDK provider already
    installed is reused); logs and metrics reuse an installed SDK provider where the SDK
    allows it (a ``LoggerProvider``); a ``MeterProvider`` installed before cannot take a
    reader: the ``NonBlockingMetricReader`` instances it was built with join the handle
    (its flush, shutdown and exit budget), and without one a warning says so once.
    Calling it again returns the same handle. With ``OTEL_SDK_DISABLED=true`` or
    ``OTEL_NONBLOCKING_DISABLED=true`` nothing is installed.

    >>> handle = configure_telemetry(timeout=2, service_name="checkout")  # doctest: +SKIP
    >>> handle.flush().ok  # doctest: +SKIP
    True
    """
    flush_timeout = _config.FLUSH_TIMEOUT.resolve(timeout)
    exit_millis = _setup._exit_millis(exit_timeout, UNSET)
    interval_millis: float | _Unset = UNSET
    if not isinstance(metric_export_interval, _Unset):
        interval_millis = _config.seconds("metric_export_interval", metric_export_interval) * 1000
    if log_handler is not None and not isinstance(log_handler, bool):
        raise ConfigurationError("log_handler must be True, False or None")
    given_readers = _checked_readers(metric_readers)
    if _config.tracing_disabled():
        return TelemetryHandle(timeout=flush_timeout)
    with _state.configure_lock:
        for handle in _state.installed_handles():
            if isinstance(handle, TelemetryHandle):
                _logger.debug("configure_telemetry() called again: keeping the first one")
                return handle
        export_millis: int | _Unset = (
            UNSET
            if isinstance(timeout, _Unset)
            else _config.EXPORT_TIMEOUT_MILLIS.resolve_seconds(timeout)
        )
        tracing: TracingHandle | None = None
        extra_spans: list[NonBlockingSpanProcessor] = []
        if traces:
            tracing, extra_spans = _traces(
                timeout, endpoint, headers, service_name, compression, protocol,
                span_exporter, exit_timeout,
            )  # fmt: skip
        resource = _resource(tracing, service_name)
        logger_provider: Any = None
        log_processors: list[NonBlockingLogRecordProcessor] = []
        handler: logging.Handler | None = None
        if logs:
            logger_provider, log_processors, handler = _logs(
                timeout, endpoint, headers, compression, protocol, log_exporter, log_handler,
                resource, export_millis,
            )  # fmt: skip
        meter_provider: MeterProvider | None = None
        readers: list[NonBlockingMetricReader] = []
        others: list[MetricReader] = []
        if metrics:
            meter_provider, readers, others = _metrics(
                timeout, endpoint, headers, compression, protocol, metric_exporter, resource,
                interval_millis, given_readers,
            )  # fmt: skip
        handle = TelemetryHandle(
            timeout=flush_timeout,
            tracing=tracing,
            span_processors=extra_spans,
            logger_provider=logger_provider,
            log_processors=log_processors,
            log_handler=handler,
            meter_provider=meter_provider,
            metric_readers=readers,
            other_metric_readers=others,
        )
        _setup._register(handle, exit_millis)
    if _config.SELF_METRICS.resolve():
        # Now, not at the first collection: the export listeners of the log processors
        # and metric readers made above count from their first export.
        _setup._enable_self_metrics()
    return handle


def _checked_readers(readers: Sequence[MetricReader] | None) -> list[MetricReader]:
    if readers is None:
        return []
    if isinstance(readers, MetricReader) or not isinstance(readers, (list, tuple)):
        raise ConfigurationError("metric_readers must be a list of MetricReader")
    for reader in readers:
        if not isinstance(reader, MetricReader):
            raise ConfigurationError(
                f"metric_readers must hold MetricReader instances, got {type(reader).__name__}"
            )
    return list(readers)


def _as_list(exporters: Any) -> list[Any]:
    if exporters is None:
        return []
    if isinstance(exporters, (list, tuple)):
        return list(exporters)
    return [exporters]


def _signal_endpoint(endpoint: str | None, signal: str, protocol: str | None) -> str | None:
    """The signal's URL under the collector's base URL ``endpoint`` (None: the variables);
    over gRPC the base URL itself."""
    if endpoint is None:
        return None
    if not isinstance(endpoint, str):
        raise ConfigurationError(f"endpoint must be a string URL, got {type(endpoint).__name__}")
    from . import _otlp_grpc

    if _otlp_grpc.wants_grpc(signal, protocol):
        return endpoint.strip()
    return f"{endpoint.strip().rstrip('/')}/v1/{signal}"


def _traces(
    timeout: float | _Unset,
    endpoint: str | None,
    headers: Mapping[str, str] | None,
    service_name: str | None,
    compression: str | None,
    protocol: str | None,
    exporters: Any,
    exit_timeout: float | _Unset,
) -> tuple[TracingHandle, list[NonBlockingSpanProcessor]]:
    given = _as_list(exporters)
    url = _signal_endpoint(endpoint, "traces", protocol)
    if not given and protocol is not None:  # configure_tracing() takes no protocol
        from ._otlp import otlp_span_exporter

        given = [otlp_span_exporter(url, headers, timeout, compression, protocol=protocol)]
    tracing = _setup.configure_tracing(
        timeout,
        endpoint=url,
        headers=headers,
        service_name=service_name,
        exporter=given[0] if given else None,
        compression=compression,
        exit_timeout=exit_timeout,
    )
    extra = []
    provider = tracing.provider
    for exporter in given[1:]:
        processor = NonBlockingSpanProcessor(exporter)
        if provider is not None:
            provider.add_span_processor(processor)
        extra.append(processor)
    return tracing, extra


def _resource(tracing: TracingHandle | None, service_name: str | None) -> Resource:
    """One resource for every signal: the tracer provider's when there is one."""
    provider = None if tracing is None else tracing.provider
    if provider is not None:
        return provider.resource
    return Resource.create({SERVICE_NAME: service_name} if service_name else {})


def _logs(
    timeout: float | _Unset,
    endpoint: str | None,
    headers: Mapping[str, str] | None,
    compression: str | None,
    protocol: str | None,
    exporters: Any,
    log_handler: bool | None,
    resource: Resource,
    export_millis: int | _Unset,
) -> tuple[Any, list[NonBlockingLogRecordProcessor], logging.Handler | None]:
    sdk = _compat_sdk.logs_sdk()
    if sdk is None:
        _state.warn_once(
            "logs-sdk-missing",
            "otel_nonblocking: this opentelemetry-sdk has no logs SDK; logs are not exported",
        )
        return None, [], None
    from ._otlp import otlp_log_exporter

    given = _as_list(exporters) or [
        otlp_log_exporter(
            _signal_endpoint(endpoint, "logs", protocol),
            headers,
            timeout=timeout,
            compression=compression,
            protocol=protocol,
        )
    ]
    processors = [
        NonBlockingLogRecordProcessor(e, export_timeout_millis=export_millis) for e in given
    ]
    provider = sdk.get_logger_provider()
    if not isinstance(provider, sdk.logger_provider):
        provider = sdk.logger_provider(resource=resource, shutdown_on_exit=False)
        sdk.set_logger_provider(provider)
        winner = sdk.get_logger_provider()
        if isinstance(winner, sdk.logger_provider):  # someone else may have won the race
            provider = winner
    for processor in processors:
        provider.add_log_record_processor(processor)
    handler = None
    if _wants_log_handler(log_handler):
        with warnings.catch_warnings():
            # SDK 1.39+ deprecates its LoggingHandler in favour of the handler of
            # opentelemetry-instrumentation-logging; it is still the one the SDK's own
            # configurator installs for OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED.
            warnings.simplefilter("ignore", DeprecationWarning)
            handler = sdk.logging_handler(level=logging.NOTSET, logger_provider=provider)
        logging.getLogger().addHandler(handler)
        # As the SDK's configurator: the application's logging.basicConfig() still sets up
        # its console, and its dictConfig()/fileConfig() do not take the handler away.
        from ._logging_config import keep_on_root

        keep_on_root(handler)
    return provider, processors, handler


def _wants_log_handler(log_handler: bool | None) -> bool:
    if log_handler is not None:
        return log_handler
    import os

    raw = os.environ.get(LOGGING_AUTO_INSTRUMENTATION_VAR, "").strip().lower()
    return raw == "true"  # as the SDK's configurator reads it


def _metrics(
    timeout: float | _Unset,
    endpoint: str | None,
    headers: Mapping[str, str] | None,
    compression: str | None,
    protocol: str | None,
    exporters: Any,
    resource: Resource,
    interval_millis: float | _Unset,
    given_readers: list[MetricReader],
) -> tuple[MeterProvider | None, list[NonBlockingMetricReader], list[MetricReader]]:
    current = metrics_api.get_meter_provider()
    if isinstance(current, MeterProvider):
        # The SDK cannot add a reader to it. The NonBlockingMetricReaders it was built with
        # join the handle (its flush, shutdown and exit share); else its readers are its own.
        theirs = [
            r
            for r in _compat_sdk.meter_provider_readers(current)
            if isinstance(r, NonBlockingMetricReader)
        ]
        if theirs:
            if _as_list(exporters) or given_readers:
                _state.warn_once(
                    "meter-provider-installed-exporters",
                    "otel_nonblocking: a MeterProvider was installed before "
                    "configure_telemetry(); the metric exporters and readers given to it "
                    "cannot be added there and are not used",
                )
            return current, theirs, []
        _state.warn_once(
            "meter-provider-installed",
            "otel_nonblocking: a MeterProvider was installed before configure_telemetry(); "
            "the SDK cannot add a reader to it, so metrics go through that provider's "
            "own readers (build it with a NonBlockingMetricReader: see docs/metrics.md)",
        )
        return None, [], []
    from ._otlp import otlp_metric_exporter

    given = _as_list(exporters)
    if not given and not given_readers:  # readers given replace the OTLP exporter too
        given = [
            otlp_metric_exporter(
                _signal_endpoint(endpoint, "metrics", protocol),
                headers,
                timeout=timeout,
                compression=compression,
                protocol=protocol,
            )
        ]
    export_millis: float | _Unset = (
        UNSET if isinstance(timeout, _Unset) else _config.seconds("timeout", timeout) * 1000
    )
    made = [
        NonBlockingMetricReader(
            e, export_interval_millis=interval_millis, export_timeout_millis=export_millis
        )
        for e in given
    ]
    # A NonBlockingMetricReader of the caller's counts as ours (its stats in the result).
    readers = made + [r for r in given_readers if isinstance(r, NonBlockingMetricReader)]
    others = [r for r in given_readers if not isinstance(r, NonBlockingMetricReader)]
    provider = MeterProvider(
        metric_readers=[*readers, *others], resource=resource, shutdown_on_exit=False
    )
    metrics_api.set_meter_provider(provider)
    if metrics_api.get_meter_provider() is not provider:  # someone else won the race
        deadline = Deadline.after(0.1)
        for reader in made:  # the caller's readers stay the caller's
            reader.shutdown_within(deadline)
        return None, [], []
    return provider, readers, others
