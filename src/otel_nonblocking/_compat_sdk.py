"""Every read of OpenTelemetry SDK and OTLP exporter internals, in one place, each probed.

The package reaches into objects it does not own only through the functions here. Each
looks where the supported releases keep a thing, falls back to a public path where one
exists, and :func:`probe` reports what the installed releases have (a test fails loudly
when a release moves something). Nothing heavy is imported until a function needs it.
The two reads on hot paths (the encoder's span fields, ``on_end``'s ``span._context``)
stay inline for speed; :func:`check_sdk_layout` is their probe.
"""

from __future__ import annotations

import inspect
import logging
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from . import _state

if TYPE_CHECKING:
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._configuration import _BaseConfigurator as BaseConfigurator
    from opentelemetry.sdk._logs import LogRecordProcessor
    from opentelemetry.sdk._logs.export import LogRecordExporter as LogExporterBase
    from opentelemetry.sdk._logs.export import LogRecordExportResult as LogExportResult
    from opentelemetry.sdk.trace import ReadableSpan

__all__ = [
    "BaseConfigurator",
    "LogExportResult",
    "LogExporterBase",
    "LogRecordProcessor",
    "LogsSdk",
    "ProbeResult",
    "adopt_grpc_client",
    "adopted_grpc_client",
    "batch_exporter",
    "batch_exporter_slot",
    "batch_processor",
    "batch_processor_queue",
    "batch_queue",
    "batch_settings",
    "check_sdk_layout",
    "client_headers",
    "client_sender",
    "console_log_exporter_class",
    "encode_log_records",
    "exporter_endpoint",
    "exporter_session",
    "has_session",
    "has_shutdown_flag",
    "is_otlp_http_exporter",
    "is_shut_down",
    "log_body_sender",
    "log_export_result_types",
    "logs_sdk",
    "max_request_size",
    "metric_preferences",
    "otlp_http_log_exporter_class",
    "probe",
    "provider_span_processors",
    "readable_log_records",
    "replace_batch_processor",
    "serialized_sender",
    "serializes_spans",
    "set_max_request_size",
    "warn_session_missing",
]

_log = logging.getLogger(__name__)

_OTLP_HTTP_MODULE = "opentelemetry.exporter.otlp.proto.http.trace_exporter"


# --- span layout (read inline by the encoder and by on_end) ------------------------------


def _sample() -> ReadableSpan:
    from opentelemetry.attributes import BoundedAttributes
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.sdk.util import BoundedList
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
    from opentelemetry.trace.span import TraceState

    context = SpanContext(
        0x1234,
        0x56,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([("k", "v")]),
    )
    attributes = BoundedAttributes(maxlen=4, attributes={"a": 1, "b": "x"}, immutable=False)
    attributes["c"] = 2.5
    attributes.dropped = 1  # as if one had been evicted (evicting would log a warning)
    events: Any = BoundedList(1)
    events.append(Event("e1", timestamp=1))
    events.append(Event("e2", {"k": 1}, timestamp=2))
    links: Any = BoundedList(1)
    links.append(Link(context))
    links.append(Link(SpanContext(0x1234, 0x57, is_remote=False), {"k": "v"}))
    return ReadableSpan(
        name="sample",
        context=context,
        parent=SpanContext(0x1234, 0x78, is_remote=False),
        resource=Resource({"r": 1}),
        attributes=attributes,
        events=events,
        links=links,
        kind=SpanKind.CLIENT,
        status=Status(StatusCode.ERROR, "bad"),
        start_time=5,
        end_time=6,
        instrumentation_scope=InstrumentationScope("scope", "1"),
    )


def _check_layout() -> bool:
    from opentelemetry.attributes import BoundedAttributes
    from opentelemetry.sdk.util import BoundedList
    from opentelemetry.trace import SpanContext

    span = _sample()
    context = span.get_span_context()
    parent = span.parent
    assert context is not None
    assert parent is not None
    fields = (
        span._context is context,
        span._parent is parent,
        span._name == span.name,
        span._kind is span.kind,
        span._start_time == span.start_time,
        span._end_time == span.end_time,
        span._status is span.status,
        span._resource is span.resource,
        span._instrumentation_scope is span.instrumentation_scope,
    )
    attributes: Any = span._attributes
    events: Any = span._events
    links: Any = span._links
    containers = (
        type(attributes) is BoundedAttributes,
        list(attributes._dict.items()) == list((span.attributes or {}).items()),
        attributes.dropped == span.dropped_attributes == 1,
        type(events) is BoundedList,
        tuple(events._dq) == span.events,
        events.dropped == span.dropped_events == 1,
        type(links) is BoundedList,
        tuple(links._dq) == span.links,
        links.dropped == span.dropped_links == 1,
    )
    context_tuple = (
        type(context) is SpanContext,
        (context[0], context[1], context[2]) == (context.trace_id, context.span_id, True),
        context[3] == context.trace_flags and context[3] & 1 == 1,  # on_end reads the flag
        context[4] is context.trace_state,
        parent[2] is parent.is_remote is False,
    )
    return all(fields) and all(containers) and all(context_tuple)


def check_sdk_layout() -> bool:
    """True when the installed SDK stores span fields where the fast encoder reads them.

    Also the probe of ``NonBlockingSpanProcessor.on_end``, which reads the sampled flag as
    ``span._context[3] & 1`` (and falls back to the public properties if that raises).
    """
    try:
        return _check_layout()
    except Exception:  # noqa: BLE001 - a different layout only means the public properties are used
        _log.debug("unexpected SDK span layout; the encoder reads public properties", exc_info=True)
        return False


# --- the configurator base class (opentelemetry-instrument) ------------------------------


def _base_configurator() -> type[Any]:
    try:  # the configurator base class lives in the SDK's private module
        from opentelemetry.sdk._configuration import _BaseConfigurator
    except ImportError:  # the interface opentelemetry-instrument calls, as the SDK defines it

        class _BaseConfigurator:  # type: ignore[no-redef]
            def configure(self, **kwargs: Any) -> None:
                self._configure(**kwargs)

            def _configure(self, **kwargs: Any) -> None:
                raise NotImplementedError

    return _BaseConfigurator


# --- the logs SDK (a private module: ``opentelemetry.sdk._logs``) -------------------------

# Where the releases keep the log exporter interface: a public module once logs are
# stable, the private one until then.
_LOG_EXPORT_MODULES = ("opentelemetry.sdk.logs.export", "opentelemetry.sdk._logs.export")


def _log_export_types() -> tuple[type[Any], type[Any], str | None]:
    """``(exporter base, result enum, where)``: ``LogRecordExporter`` and
    ``LogRecordExportResult`` where the SDK has them (newer releases, whose ``LogExporter``
    and ``LogExportResult`` are deprecated aliases), else ``LogExporter`` and
    ``LogExportResult`` (SDK 1.33); a stand-in pair (``where`` None) if neither is found."""
    import importlib

    for module_name in _LOG_EXPORT_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        for base_name, result_name in (
            ("LogRecordExporter", "LogRecordExportResult"),
            ("LogExporter", "LogExportResult"),
        ):
            base, result = getattr(module, base_name, None), getattr(module, result_name, None)
            if isinstance(base, type) and isinstance(result, type):
                return base, result, f"{module_name}.{base_name}"
    import abc
    import enum

    class LogExporterStandIn(abc.ABC):  # the interface as SDK 1.33 defines it
        @abc.abstractmethod
        def export(self, batch: Any) -> Any: ...

        @abc.abstractmethod
        def shutdown(self) -> None: ...

    class LogExportResultStandIn(enum.Enum):
        SUCCESS = 0
        FAILURE = 1

    return LogExporterStandIn, LogExportResultStandIn, None


def log_export_result_types() -> tuple[type[Any], ...]:
    """Every log export result enum of the installed SDK: ``LogRecordExportResult`` and its
    deprecated alias ``LogExportResult`` where both exist (an exporter may return either)."""
    import importlib

    found: list[type[Any]] = [_log_export_types()[1]]
    for module_name in _LOG_EXPORT_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        for name in ("LogRecordExportResult", "LogExportResult"):
            result = getattr(module, name, None)
            if isinstance(result, type) and result not in found:
                found.append(result)
    return tuple(found)


def __getattr__(name: str) -> Any:
    lazy = {"BaseConfigurator": _base_configurator, "LogRecordProcessor": _log_processor_base}
    if name in lazy:  # imported only by the module that needs it (the distro, the logs door)
        value = lazy[name]()
        globals()[name] = value
        return value
    if name in ("LogExporterBase", "LogExportResult"):  # only the log modules import them
        base, result, _ = _log_export_types()
        globals().update(LogExporterBase=base, LogExportResult=result)
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def otlp_http_log_exporter_class() -> type[OTLPLogExporter]:
    """The SDK's OTLP/HTTP log exporter (its module is private in every release so far)."""
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

    return OTLPLogExporter


def encode_log_records(records: Sequence[Any]) -> bytes:
    """``records`` (as a log record processor holds them) as one ``ExportLogsServiceRequest``
    body, by the SDK's own encoder (its module is private in every release so far)."""
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs

    data: bytes = encode_logs(readable_log_records(records)).SerializeToString()
    return data


# --- metric exporters ---------------------------------------------------------------------


def metric_preferences(exporter: object) -> tuple[dict[Any, Any] | None, dict[Any, Any] | None]:
    """The temporality and aggregation a ``MetricExporter`` asked for at construction
    (``_preferred_temporality`` / ``_preferred_aggregation``, which the SDK's readers read);
    None for one it does not have."""
    found = (
        getattr(exporter, "_preferred_temporality", None),
        getattr(exporter, "_preferred_aggregation", None),
    )
    return found[0] if isinstance(found[0], dict) else None, (
        found[1] if isinstance(found[1], dict) else None
    )


# --- the OTLP/HTTP span exporter ----------------------------------------------------------


def is_otlp_http_exporter(exporter: object) -> bool:
    """True for the SDK's ``OTLPSpanExporter`` (HTTP/protobuf) or a subclass of it, without
    importing the exporter module when nothing has yet."""
    module = sys.modules.get(_OTLP_HTTP_MODULE)
    cls = getattr(module, "OTLPSpanExporter", None)
    return isinstance(cls, type) and isinstance(exporter, cls)


def _session_candidates(exporter: object) -> list[object]:
    # SDK 1.33-1.38 keep the session on the exporter; later releases inside the HTTP
    # transport of the exporter's client. Another exporter may expose ``_session`` itself
    # (the Langfuse integration's borrowed exporter does).
    transport = getattr(getattr(exporter, "_client", None), "_transport", None)
    return [getattr(exporter, "_session", None), getattr(transport, "_session", None)]


def exporter_session(exporter: object, kind: type[Any]) -> Any | None:
    """The HTTP session of ``kind`` inside ``exporter``, or None."""
    for candidate in _session_candidates(exporter):
        if isinstance(candidate, kind):
            return candidate
    return None


def has_session(exporter: object) -> bool:
    """True when ``exporter`` has some session where the supported releases keep one."""
    return any(candidate is not None for candidate in _session_candidates(exporter))


def warn_session_missing(exporter: object) -> None:
    """Say once per exporter class that an OTLP/HTTP exporter's session was not found
    where the supported SDK releases keep it (a newer release moved it)."""
    name = type(exporter).__name__
    _state.warn_once(
        ("session_missing", name),
        "otel_nonblocking: abandoned exports cannot cut their connection: no HTTP session "
        "found in %s; an upgrade of the OTLP exporter?",
        name,
    )


def client_headers(exporter: object) -> dict[str, str] | None:
    """The headers dict the exporter's HTTP client sends (newer SDKs), or None."""
    headers = getattr(getattr(exporter, "_client", None), "_headers", None)
    return headers if isinstance(headers, dict) else None


def max_request_size(exporter: object) -> int:
    """The exporter's request size limit in bytes (``max_request_size``; 0: none)."""
    limit = getattr(exporter, "_max_request_size", 0)
    return limit if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 else 0


def set_max_request_size(exporter: object, limit: int) -> None:
    """Record a limit on an exporter whose SDK has none (read back by :func:`max_request_size`)."""
    exporter._max_request_size = limit  # type: ignore[attr-defined]


def has_shutdown_flag(exporter: object) -> bool:
    """True when the exporter keeps its shut-down state where :func:`is_shut_down` reads it."""
    return isinstance(getattr(exporter, "_shutdown", None), bool)


def is_shut_down(exporter: object) -> bool:
    return getattr(exporter, "_shutdown", False) is True


def serializes_spans(exporter_class: type[Any]) -> bool:
    """True for releases whose ``export`` encodes through ``self._serialize_spans``."""
    return hasattr(exporter_class, "_serialize_spans")


def serialized_sender(exporter: object) -> Callable[[bytes], Any] | None:
    """SDK 1.33-1.38: ``_export_serialized_spans(data)`` (compression, session, retries)."""
    send = getattr(exporter, "_export_serialized_spans", None)
    return send if callable(send) else None


def client_sender(exporter: object) -> Callable[[bytes], Any] | None:
    """Newer SDKs: the HTTP client's ``export(data)`` (its result has ``.success``)."""
    send = getattr(getattr(exporter, "_client", None), "export", None)
    return send if callable(send) else None


def log_body_sender(exporter: object) -> Callable[[bytes, float | None], bool] | None:
    """How an SDK OTLP/HTTP log exporter sends an encoded request body once (the disk
    spool's path): ``send(data, seconds_left)``, True when the backend took it. Newer SDKs:
    the HTTP client's ``export(data)``; 1.33-1.38: ``_export(data[, timeout])``, one POST
    whose ``requests.Response`` says ``ok``. None when neither shape is there."""
    client_send = client_sender(exporter)
    if client_send is not None:
        return lambda data, _left: bool(getattr(client_send(data), "success", False))
    post = getattr(exporter, "_export", None)
    if not callable(post):
        return None
    try:
        takes_timeout = len(inspect.signature(post).parameters) >= 2
    except (TypeError, ValueError):  # pragma: no cover - a bound method always has one
        return None
    if takes_timeout:
        default = getattr(exporter, "_timeout", 10.0)
        return lambda data, left: bool(
            getattr(post(data, default if left is None else left), "ok", False)
        )
    return lambda data, _left: bool(getattr(post(data), "ok", False))


def adopt_grpc_client(exporter: object, client: object) -> bool:
    """Put ``client`` (``Export`` and ``close``) where an SDK OTLP/gRPC exporter keeps its
    stub and channel (``_client``, ``_channel``: 1.33 through 1.45), closing the channel it
    made; False, with one warning, where a release keeps them elsewhere."""
    slots = vars(exporter) if hasattr(exporter, "__dict__") else {}
    if "_client" not in slots or "_channel" not in slots:
        name = type(exporter).__name__
        _state.warn_once(
            ("grpc_channel_missing", name),
            "otel_nonblocking: OTLP/gRPC exports abandoned at their deadline cannot be "
            "cancelled: no gRPC channel found in %s; an upgrade of the OTLP exporter?",
            name,
        )
        return False
    channel = slots["_channel"]
    close = getattr(channel, "close", None)
    if callable(close):
        close()
    exporter._channel = client  # type: ignore[attr-defined]
    exporter._client = client  # type: ignore[attr-defined]
    return True


def adopted_grpc_client(exporter: object) -> object | None:
    """What :func:`adopt_grpc_client` put in ``exporter`` (the SDK's own stub where it put
    nothing), or None."""
    return vars(exporter).get("_client") if hasattr(exporter, "__dict__") else None


def exporter_endpoint(exporter: object) -> str | None:
    endpoint = getattr(exporter, "_endpoint", None)
    return endpoint if isinstance(endpoint, str) else None


# --- BatchSpanProcessor and TracerProvider ------------------------------------------------


def batch_processor(processor: object) -> Any | None:
    """OTel 1.35+: the shared ``BatchProcessor`` inside a ``BatchSpanProcessor``."""
    batch = getattr(processor, "_batch_processor", None)
    if batch is not None and hasattr(batch, "_exporter"):
        return batch
    return None


def replace_batch_processor(processor: object, batch: object) -> None:
    """Put ``batch`` where :func:`batch_processor` finds it."""
    processor._batch_processor = batch  # type: ignore[attr-defined]


def batch_exporter_slot(processor: object) -> tuple[Any, str] | None:
    """Where a ``BatchSpanProcessor`` keeps the exporter it exports through, as
    ``(holder, attribute)``: 1.35+ its batch processor's ``_exporter``, 1.33/1.34 its own
    ``span_exporter``; None for anything else."""
    batch = batch_processor(processor)
    if batch is not None:
        return batch, "_exporter"
    if "span_exporter" in getattr(processor, "__dict__", {}):  # OTel 1.33/1.34
        return processor, "span_exporter"
    return None


def batch_exporter(batch: object) -> Any:
    """The exporter of an OTel 1.35+ ``BatchProcessor`` (see :func:`batch_processor`)."""
    return getattr(batch, "_exporter", None)


def batch_processor_queue(batch: object) -> Any | None:
    """The span queue of an OTel 1.35+ ``BatchProcessor``, or None."""
    return getattr(batch, "_queue", None)


def batch_queue(processor: object) -> Any | None:
    """The queue of spans a ``BatchSpanProcessor`` holds (1.35+ inside its batch processor,
    1.33/1.34 its own ``queue``), or None."""
    batch = batch_processor(processor)
    if batch is not None:
        return batch_processor_queue(batch)
    return getattr(processor, "queue", None)


def batch_settings(batch: object) -> tuple[int, int, int]:
    """``(max_queue_size, max_export_batch_size, schedule_delay_millis)`` of a batch
    processor (2048, 512 and 1000 where one cannot be read)."""
    return (
        int(getattr(batch, "_max_queue_size", 2048)),
        int(getattr(batch, "_max_export_batch_size", 512)),
        int(getattr(batch, "_schedule_delay_millis", 1000)),
    )


def provider_span_processors(provider: object) -> tuple[Any, ...]:
    """The span processors added to an SDK ``TracerProvider`` (none if unreadable)."""
    multi = getattr(provider, "_active_span_processor", None)
    processors = getattr(multi, "_span_processors", ())
    return tuple(processors) if isinstance(processors, (tuple, list)) else ()


def meter_provider_readers(provider: object) -> tuple[Any, ...]:
    """The metric readers an SDK ``MeterProvider`` was built with (none if unreadable):
    the ``metric_readers`` of its configuration, else its own copy."""
    config = getattr(provider, "_sdk_config", None)
    readers = getattr(config, "metric_readers", None)
    if not isinstance(readers, (tuple, list)):
        readers = getattr(provider, "_metric_readers", ())
    return tuple(readers) if isinstance(readers, (tuple, list)) else ()


# --- the probe ---------------------------------------------------------------------------


class ProbeResult(NamedTuple):
    """One internal: where it was found on the installed releases (None: nowhere)."""

    name: str
    found: str | None
    required: bool = True
    #: When ``required`` is False: which releases lack it, and why that is fine.
    lacking: str = ""


def _where(pairs: list[tuple[str, bool]]) -> str | None:
    return next((where for where, ok in pairs if ok), None)


def probe() -> list[ProbeResult]:
    """Look for every internal above on real objects of the installed releases.

    Builds an OTLP exporter, a batch processor and a tracer provider (nothing is sent), so
    it is for tests and diagnostics, never for an import. ``required`` is False for an
    internal the installed release need not have (its public API says it lacks the feature).
    """
    import inspect

    import requests
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    session = requests.Session()  # where the exporter keeps the session it was given
    exporter = OTLPSpanExporter(endpoint="http://127.0.0.1:9/v1/traces", session=session)
    takes_limit = "max_request_size" in inspect.signature(OTLPSpanExporter).parameters
    processor = BatchSpanProcessor(exporter)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    candidates = _session_candidates(exporter)
    batch = batch_processor(processor)
    queued = batch_queue(processor) is not None
    try:
        return [
            _grpc_probe(),
            ProbeResult("span layout", "ReadableSpan fields" if check_sdk_layout() else None),
            ProbeResult("configurator base", _where([("_BaseConfigurator", _has_configurator())])),
            ProbeResult(
                "exporter session",
                _where(
                    [
                        ("exporter._session", candidates[0] is session),
                        ("exporter._client._transport._session", candidates[1] is session),
                    ]
                ),
            ),
            ProbeResult(
                "send encoded bytes",
                _where(
                    [
                        (
                            "exporter._export_serialized_spans",
                            serialized_sender(exporter) is not None,
                        ),
                        ("exporter._client.export", client_sender(exporter) is not None),
                    ]
                ),
            ),
            ProbeResult(
                "encode hook",
                _where(
                    [
                        ("OTLPSpanExporter._serialize_spans", serializes_spans(OTLPSpanExporter)),
                        ("exporter._client.export", client_sender(exporter) is not None),
                    ]
                ),
            ),
            ProbeResult(
                "shutdown flag", _where([("exporter._shutdown", has_shutdown_flag(exporter))])
            ),
            ProbeResult(
                "endpoint",
                _where([("exporter._endpoint", exporter_endpoint(exporter) is not None)]),
            ),
            ProbeResult(
                "client headers",
                _where([("exporter._client._headers", client_headers(exporter) is not None)]),
                required=client_sender(exporter) is not None,
                lacking="SDK 1.33-1.38 (no HTTP client; the exporter sends itself)",
            ),
            ProbeResult(
                "max request size",
                _where([("exporter._max_request_size", max_request_size(exporter) > 0)]),
                required=takes_limit,
                lacking="SDKs whose OTLPSpanExporter takes no max_request_size (1.33.1)",
            ),
            ProbeResult(
                "batch processor",
                _where(
                    [
                        ("processor._batch_processor", batch_processor(processor) is not None),
                        ("processor.span_exporter", "span_exporter" in vars(processor)),
                    ]
                ),
            ),
            ProbeResult(
                "batch queue",
                _where(
                    [
                        ("processor._batch_processor._queue", batch is not None and queued),
                        ("processor.queue", batch is None and queued),
                    ]
                ),
            ),
            ProbeResult(
                "batch settings",
                _where([("processor._batch_processor._max_*", _settings_found(batch))]),
                required=batch is not None,
                lacking="SDK 1.33/1.34 (no BatchProcessor inside BatchSpanProcessor)",
            ),
            *_log_probes(),
            ProbeResult("log exporter base", _log_export_types()[2]),
            ProbeResult(
                "metric exporter preferences",
                _where([("exporter._preferred_*", _metric_preferences_found())]),
            ),
            ProbeResult(
                "meter provider readers",
                _where(_meter_readers_places()),
            ),
            ProbeResult(
                "provider processors",
                _where(
                    [
                        (
                            "provider._active_span_processor._span_processors",
                            processor in provider_span_processors(provider),
                        )
                    ]
                ),
            ),
        ]
    finally:
        provider.shutdown()
        session.close()


def _grpc_probe() -> ProbeResult:
    """Where an SDK OTLP/gRPC exporter keeps its stub and channel (with the grpc extra)."""
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpanExporter,
        )
    except ImportError:
        return ProbeResult(
            "grpc channel", None, required=False, lacking="SDK installs without the grpc extra"
        )
    exporter = GrpcSpanExporter(endpoint="http://127.0.0.1:9", insecure=True, headers={"a": "b"})
    try:
        slots = vars(exporter)
        found = "_client" in slots and "_channel" in slots
        return ProbeResult("grpc channel", _where([("exporter._client/_channel", found)]))
    finally:
        exporter.shutdown()


def _meter_readers_places() -> list[tuple[str, bool]]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    try:
        config = getattr(provider, "_sdk_config", None)
        found = meter_provider_readers(provider) == (reader,)
        return [
            ("provider._sdk_config.metric_readers", found and hasattr(config, "metric_readers")),
            ("provider._metric_readers", found and hasattr(provider, "_metric_readers")),
        ]
    finally:
        provider.shutdown()


def _has_configurator() -> bool:
    try:
        from opentelemetry.sdk._configuration import _BaseConfigurator
    except ImportError:
        return False
    return callable(getattr(_BaseConfigurator, "configure", None))


def _metric_preferences_found() -> bool:
    from opentelemetry.sdk.metrics import Counter
    from opentelemetry.sdk.metrics.export import AggregationTemporality, ConsoleMetricExporter
    from opentelemetry.sdk.metrics.view import SumAggregation

    temporality: dict[type, AggregationTemporality] = {Counter: AggregationTemporality.DELTA}
    aggregation: dict[type, Any] = {Counter: SumAggregation()}
    exporter = ConsoleMetricExporter(
        preferred_temporality=temporality, preferred_aggregation=aggregation
    )
    found = metric_preferences(exporter)
    return (
        found[0] is not None
        and found[0].get(Counter) is AggregationTemporality.DELTA
        and found[1] is not None
        and found[1].get(Counter) is aggregation[Counter]
    )


def _settings_found(batch: object) -> bool:
    holder = batch
    names = ("_max_queue_size", "_max_export_batch_size", "_schedule_delay_millis")
    return all(isinstance(getattr(holder, n, None), int) for n in names)


# --- the logs SDK (opentelemetry.sdk._logs: a private package in every supported release) ---


def _log_processor_base() -> type[Any]:
    try:
        from opentelemetry.sdk._logs import LogRecordProcessor
    except ImportError:  # the interface a LoggerProvider calls, as the SDK defines it

        class LogRecordProcessor:  # type: ignore[no-redef]
            def on_emit(self, log_record: Any) -> None:  # SDK 1.35 and later
                raise NotImplementedError

            def emit(self, log_data: Any) -> None:  # SDK 1.33 and 1.34
                raise NotImplementedError

            def shutdown(self) -> None:
                raise NotImplementedError

            def force_flush(self, timeout_millis: int = 30000) -> bool:
                raise NotImplementedError

    return LogRecordProcessor


def _readable_converter() -> Callable[[Any], Any] | None:
    """How the installed SDK's batch processor turns the record a processor is handed
    into the one its exporters take (None: they take it as it is, as SDK 1.33's LogData)."""
    try:
        from opentelemetry.sdk._logs import ReadableLogRecord, ReadWriteLogRecord
    except ImportError:
        return None
    import copy

    from opentelemetry.context import Context
    from opentelemetry.sdk.resources import Resource

    def readable(record: Any) -> Any:
        if not isinstance(record, ReadWriteLogRecord):
            return record
        # As BatchLogRecordProcessor.on_emit does: a shallow copy of the API record
        # without the context it was emitted in (the ids stay: they were read from it).
        api_record = copy.copy(record.log_record)
        api_record.context = Context()
        return ReadableLogRecord(
            log_record=api_record,
            resource=record.resource if record.resource is not None else Resource.create({}),
            instrumentation_scope=record.instrumentation_scope,
            limits=record.limits,
        )

    return readable


_NOT_LOOKED_UP: Any = object()
_readable: Any = _NOT_LOOKED_UP


def readable_log_records(records: Sequence[Any]) -> Sequence[Any]:
    """``records`` as the installed SDK's log exporters take them: a processor is handed
    a ``ReadWriteLogRecord`` (SDK 1.35+) and exporters take ``ReadableLogRecord``s; SDK
    1.33's ``LogData`` goes to the exporter as it is. Runs on the worker, not on emit."""
    global _readable  # looked up once: the SDK does not change while the process runs
    if _readable is _NOT_LOOKED_UP:
        _readable = _readable_converter()
    convert = _readable
    return records if convert is None else [convert(r) for r in records]


def _log_probes() -> list[ProbeResult]:
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

    log_exporter = OTLPLogExporter(endpoint="http://127.0.0.1:9/v1/logs")
    base = _log_processor_base()
    emits = [n for n in ("on_emit", "emit") if getattr(base, n, None) is not None]
    try:
        from opentelemetry.sdk._logs import ReadWriteLogRecord  # noqa: F401
    except ImportError:
        read_write = False
    else:
        read_write = True
    return [
        ProbeResult(
            "log record processor",
            _where([(f"opentelemetry.sdk._logs.LogRecordProcessor.{n}", True) for n in emits]),
        ),
        ProbeResult(
            "readable log record",
            _where(
                [("opentelemetry.sdk._logs.ReadableLogRecord", _readable_converter() is not None)]
            ),
            required=read_write,
            lacking="SDK 1.33.1 and the others whose processors and exporters both take LogData",
        ),
        ProbeResult(
            "send encoded log bytes",
            _where(
                [
                    ("log exporter._client.export", client_sender(log_exporter) is not None),
                    ("log exporter._export", callable(getattr(log_exporter, "_export", None))),
                ]
            )
            if log_body_sender(log_exporter) is not None
            else None,
        ),
    ]


class LogsSdk(NamedTuple):
    """The logs SDK's and API's entry points the doors install a LoggerProvider with."""

    logger_provider: type[Any]
    logging_handler: type[Any]
    get_logger_provider: Callable[[], Any]
    set_logger_provider: Callable[[Any], None]


def logs_sdk() -> LogsSdk | None:
    """The logs SDK (``opentelemetry.sdk._logs``) and API (``opentelemetry._logs``), or
    None when the installed release has neither where every supported one keeps them."""
    try:
        from opentelemetry._logs import get_logger_provider, set_logger_provider
        from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    except ImportError:
        return None
    return LogsSdk(LoggerProvider, LoggingHandler, get_logger_provider, set_logger_provider)


def console_log_exporter_class() -> type[Any] | None:
    """The SDK's ``ConsoleLogRecordExporter`` (``ConsoleLogExporter`` before it was renamed),
    or None when the installed release has neither."""
    import importlib

    for module_name in _LOG_EXPORT_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        for name in ("ConsoleLogRecordExporter", "ConsoleLogExporter"):
            found = getattr(module, name, None)
            if isinstance(found, type):
                return found
    return None
