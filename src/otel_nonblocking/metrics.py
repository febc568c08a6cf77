"""Self-metrics: the pipelines' counters through the OpenTelemetry metrics API.

:func:`enable_self_metrics` publishes what ``stats()`` counts — of every span processor,
log record processor and metric reader of the package, and of the exporter each exports
through — under the ``otel.sdk.*`` names of the semantic conventions where they exist,
``otel_nonblocking.*`` otherwise.

Counters, gauges and queue sizes are observable instruments that read ``stats()`` when the
metric reader collects; the histograms are fed by the export, flush and collection
listeners on the worker (or flushing) thread. Nothing runs on ``span.end()`` or on a log
record's emit.

No export loop: publishing our own metric pipeline's numbers never starts a collection or
an export. Observable callbacks only read counters (the metric reader's without a lock)
when a collection runs anyway; the histograms record into the provider's aggregation,
which the next scheduled collection reads. So the package's metric reader exports exactly
as often with self-metrics as without, whatever those metrics say.
"""

from __future__ import annotations

import importlib
import itertools
import threading
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import metrics as otel_metrics
from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation

from ._breaker import BreakerState
from ._errors import ConfigurationError
from ._export_core import DeadlineExporter
from ._exporter import DeadlineSpanExporter, ExportOutcome
from ._processor import QUEUE_FULL, SHUTDOWN, NonBlockingSpanProcessor, ProcessorStats
from ._state import SELF_METRICS, after_fork_in_child, live_components
from ._state import live_processors as _live_processors

if TYPE_CHECKING:
    from ._metric_reader import MetricReaderStats, NonBlockingMetricReader

__all__ = [
    "ATTRIBUTES",
    "INSTRUMENTS",
    "InstrumentSpec",
    "SelfMetrics",
    "component_attributes",
    "enable_self_metrics",
]


def _semconv(module: str, name: str, fallback: str) -> str:
    """A constant of the installed semantic-conventions package, else the literal we know."""
    try:
        value = getattr(importlib.import_module(module), name, None)
    except ImportError:  # pragma: no cover - a semconv release without the module
        return fallback
    return value if isinstance(value, str) else fallback


_OTEL_METRICS = "opentelemetry.semconv._incubating.metrics.otel_metrics"
_OTEL_ATTRIBUTES = "opentelemetry.semconv._incubating.attributes.otel_attributes"
_ERROR_ATTRIBUTES = "opentelemetry.semconv.attributes.error_attributes"


def _sdk_metric(name: str) -> str:
    """``otel.sdk.a.b`` from the semconv constant ``OTEL_SDK_A_B`` (spelled out without it)."""
    return _semconv(_OTEL_METRICS, name, name.lower().replace("_", "."))


PROCESSOR_SPAN_PROCESSED: Final = _sdk_metric("OTEL_SDK_PROCESSOR_SPAN_PROCESSED")
PROCESSOR_SPAN_QUEUE_SIZE: Final = _sdk_metric("OTEL_SDK_PROCESSOR_SPAN_QUEUE_SIZE")
PROCESSOR_SPAN_QUEUE_CAPACITY: Final = _sdk_metric("OTEL_SDK_PROCESSOR_SPAN_QUEUE_CAPACITY")
EXPORTER_SPAN_EXPORTED: Final = _sdk_metric("OTEL_SDK_EXPORTER_SPAN_EXPORTED")
EXPORTER_SPAN_INFLIGHT: Final = _sdk_metric("OTEL_SDK_EXPORTER_SPAN_INFLIGHT")
EXPORTER_OPERATION_DURATION: Final = _sdk_metric("OTEL_SDK_EXPORTER_OPERATION_DURATION")
PROCESSOR_LOG_PROCESSED: Final = _sdk_metric("OTEL_SDK_PROCESSOR_LOG_PROCESSED")
PROCESSOR_LOG_QUEUE_SIZE: Final = _sdk_metric("OTEL_SDK_PROCESSOR_LOG_QUEUE_SIZE")
PROCESSOR_LOG_QUEUE_CAPACITY: Final = _sdk_metric("OTEL_SDK_PROCESSOR_LOG_QUEUE_CAPACITY")
EXPORTER_LOG_EXPORTED: Final = _sdk_metric("OTEL_SDK_EXPORTER_LOG_EXPORTED")
EXPORTER_LOG_INFLIGHT: Final = _sdk_metric("OTEL_SDK_EXPORTER_LOG_INFLIGHT")
# "metric_data_point" keeps its underscore: spelled out, not derived from the constant.
EXPORTER_METRIC_DATA_POINT_EXPORTED: Final = _semconv(
    _OTEL_METRICS,
    "OTEL_SDK_EXPORTER_METRIC_DATA_POINT_EXPORTED",
    "otel.sdk.exporter.metric_data_point.exported",
)
EXPORTER_METRIC_DATA_POINT_INFLIGHT: Final = _semconv(
    _OTEL_METRICS,
    "OTEL_SDK_EXPORTER_METRIC_DATA_POINT_INFLIGHT",
    "otel.sdk.exporter.metric_data_point.inflight",
)
METRIC_READER_COLLECTION_DURATION: Final = _semconv(
    _OTEL_METRICS,
    "OTEL_SDK_METRIC_READER_COLLECTION_DURATION",
    "otel.sdk.metric_reader.collection.duration",
)
PROCESSOR_SPAN_ENQUEUED: Final = "otel_nonblocking.processor.span.enqueued"
PROCESSOR_SPAN_DROPPED: Final = "otel_nonblocking.processor.span.dropped"
PROCESSOR_SPAN_RETRIED: Final = "otel_nonblocking.processor.span.retried"
PROCESSOR_RETRY_BUFFER_SIZE: Final = "otel_nonblocking.processor.span.retry_buffer.size"
PROCESSOR_LOG_ENQUEUED: Final = "otel_nonblocking.processor.log.enqueued"
PROCESSOR_LOG_DROPPED: Final = "otel_nonblocking.processor.log.dropped"
PROCESSOR_LOG_RETRIED: Final = "otel_nonblocking.processor.log.retried"
PROCESSOR_LOG_RETRY_BUFFER_SIZE: Final = "otel_nonblocking.processor.log.retry_buffer.size"
PROCESSOR_FLUSH_DURATION: Final = "otel_nonblocking.processor.flush.duration"
EXPORTER_BREAKER_STATE: Final = "otel_nonblocking.exporter.breaker.state"
EXPORTER_BREAKER_TRANSITIONS: Final = "otel_nonblocking.exporter.breaker.transitions"
EXPORTER_ATTEMPT_OUTSTANDING: Final = "otel_nonblocking.exporter.attempt.outstanding"
EXPORTER_CONNECTIONS_INTERRUPTED: Final = "otel_nonblocking.exporter.connection.interrupted"
METRIC_READER_COLLECTIONS: Final = "otel_nonblocking.metric_reader.collections"
METRIC_READER_COLLECTIONS_SKIPPED: Final = "otel_nonblocking.metric_reader.collections.skipped"
METRIC_READER_EXPORTS: Final = "otel_nonblocking.metric_reader.exports"

COMPONENT_TYPE: Final = _semconv(_OTEL_ATTRIBUTES, "OTEL_COMPONENT_TYPE", "otel.component.type")
COMPONENT_NAME: Final = _semconv(_OTEL_ATTRIBUTES, "OTEL_COMPONENT_NAME", "otel.component.name")
ERROR_TYPE: Final = _semconv(_ERROR_ATTRIBUTES, "ERROR_TYPE", "error.type")
BREAKER_STATE: Final = "otel_nonblocking.breaker.state"

#: ``otel.component.type`` values: no standard value applies, so (as the semantic
#: conventions ask) the language's name of the type.
PROCESSOR_COMPONENT_TYPE: Final = "otel_nonblocking.NonBlockingSpanProcessor"
EXPORTER_COMPONENT_TYPE: Final = "otel_nonblocking.DeadlineSpanExporter"
LOG_PROCESSOR_COMPONENT_TYPE: Final = "otel_nonblocking.NonBlockingLogRecordProcessor"
LOG_EXPORTER_COMPONENT_TYPE: Final = "otel_nonblocking.DeadlineLogExporter"
METRIC_READER_COMPONENT_TYPE: Final = "otel_nonblocking.NonBlockingMetricReader"
METRIC_EXPORTER_COMPONENT_TYPE: Final = "otel_nonblocking.DeadlineMetricExporter"

#: ``error.type`` of a flush that returned False (not everything exported in time).
FLUSH_INCOMPLETE: Final = "incomplete"
#: ``error.type`` of a collection the SDK could not finish (a callback raised, time ran out).
COLLECTION_FAILED: Final = "collection_failed"

#: Drop reasons that happen before an item is handed to the exporter, and the
#: ``error.type`` the conventions require for them on ``otel.sdk.processor.*.processed``.
#: Every other reason, including ones added later, happens after the hand-off.
_BEFORE_HANDOFF: Final[Mapping[str, str]] = {
    QUEUE_FULL: "queue_full",
    SHUTDOWN: "already_shutdown",
}

# Seconds; the semantic conventions' advice for durations, up to the 30 s export default.
_DURATION_BUCKETS: Final = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    30.0,
)


@dataclass(frozen=True)
class InstrumentSpec:
    """One published instrument: what :func:`enable_self_metrics` creates, and why."""

    name: str
    kind: str  # "observable_counter", "observable_up_down_counter" or "histogram"
    unit: str
    description: str
    attributes: tuple[str, ...]


@dataclass(frozen=True)
class _ProcessorSignal:
    """The instrument names of one signal's processor and exporter (spans, log records)."""

    noun: str  # "span", "log record"
    unit: str
    processed: str
    queue_size: str
    queue_capacity: str
    enqueued: str
    dropped: str
    retried: str
    retry_buffer: str
    exported: str
    inflight: str


_SPANS = _ProcessorSignal(
    "span",
    "{span}",
    PROCESSOR_SPAN_PROCESSED,
    PROCESSOR_SPAN_QUEUE_SIZE,
    PROCESSOR_SPAN_QUEUE_CAPACITY,
    PROCESSOR_SPAN_ENQUEUED,
    PROCESSOR_SPAN_DROPPED,
    PROCESSOR_SPAN_RETRIED,
    PROCESSOR_RETRY_BUFFER_SIZE,
    EXPORTER_SPAN_EXPORTED,
    EXPORTER_SPAN_INFLIGHT,
)
_LOGS = _ProcessorSignal(
    "log record",
    "{log_record}",
    PROCESSOR_LOG_PROCESSED,
    PROCESSOR_LOG_QUEUE_SIZE,
    PROCESSOR_LOG_QUEUE_CAPACITY,
    PROCESSOR_LOG_ENQUEUED,
    PROCESSOR_LOG_DROPPED,
    PROCESSOR_LOG_RETRIED,
    PROCESSOR_LOG_RETRY_BUFFER_SIZE,
    EXPORTER_LOG_EXPORTED,
    EXPORTER_LOG_INFLIGHT,
)

_COMPONENT = (COMPONENT_TYPE, COMPONENT_NAME)
_COUNTER, _GAUGE, _HISTOGRAM = "observable_counter", "observable_up_down_counter", "histogram"


def _processor_instruments(s: _ProcessorSignal) -> tuple[InstrumentSpec, ...]:
    n = s.noun
    return (
        InstrumentSpec(
            s.processed,
            _COUNTER,
            s.unit,
            f"{n.capitalize()}s the processor finished with: handed to the exporter (no "
            "error.type) or dropped before that (error.type queue_full or already_shutdown).",
            (*_COMPONENT, ERROR_TYPE),
        ),
        InstrumentSpec(
            s.queue_size, _GAUGE, s.unit, f"{n.capitalize()}s waiting in the queue.", _COMPONENT
        ),
        InstrumentSpec(
            s.queue_capacity,
            _GAUGE,
            s.unit,
            f"{n.capitalize()}s the processor's queue can hold (max_queue_size).",
            _COMPONENT,
        ),
        InstrumentSpec(
            s.enqueued,
            _COUNTER,
            s.unit,
            f"{n.capitalize()}s handed to the processor, including those turned away.",
            _COMPONENT,
        ),
        InstrumentSpec(
            s.dropped,
            _COUNTER,
            s.unit,
            f"{n.capitalize()}s lost, by reason (error.type): every key of stats().dropped.",
            (*_COMPONENT, ERROR_TYPE),
        ),
        InstrumentSpec(
            s.retried,
            _COUNTER,
            s.unit,
            f"{n.capitalize()}s sent again after a transient export failure.",
            _COMPONENT,
        ),
        InstrumentSpec(
            s.retry_buffer,
            _GAUGE,
            s.unit,
            f"{n.capitalize()}s waiting in the retry buffer to be sent again.",
            _COMPONENT,
        ),
    )


def _exporter_instruments(s: _ProcessorSignal) -> tuple[InstrumentSpec, ...]:
    n = s.noun
    return (
        InstrumentSpec(
            s.exported,
            _COUNTER,
            s.unit,
            f"{n.capitalize()}s whose export finished, each once (after its last attempt); "
            "error.type is the drop reason when it was not delivered.",
            (*_COMPONENT, ERROR_TYPE),
        ),
        InstrumentSpec(
            s.inflight,
            _GAUGE,
            s.unit,
            f"{n.capitalize()}s handed to the exporter and not yet finished with (in an "
            "export, or waiting to be sent again).",
            _COMPONENT,
        ),
    )


#: Every instrument, in the order of ``docs/observability.md``.
INSTRUMENTS: Final[tuple[InstrumentSpec, ...]] = (
    *_processor_instruments(_SPANS),
    InstrumentSpec(
        PROCESSOR_FLUSH_DURATION,
        _HISTOGRAM,
        "s",
        "Duration of each force_flush of a span or log record processor; error.type "
        "incomplete when it returned False.",
        (*_COMPONENT, ERROR_TYPE),
    ),
    *_exporter_instruments(_SPANS),
    InstrumentSpec(
        EXPORTER_OPERATION_DURATION,
        _HISTOGRAM,
        "s",
        "Duration of each export call of any exporter, deadline included; error.type as above.",
        (*_COMPONENT, ERROR_TYPE),
    ),
    InstrumentSpec(
        EXPORTER_BREAKER_STATE,
        _GAUGE,
        "1",
        "1 for the circuit breaker's current state, 0 for the others.",
        (*_COMPONENT, BREAKER_STATE),
    ),
    InstrumentSpec(
        EXPORTER_BREAKER_TRANSITIONS,
        _COUNTER,
        "{transition}",
        "Changes of the circuit breaker's state.",
        _COMPONENT,
    ),
    InstrumentSpec(
        EXPORTER_ATTEMPT_OUTSTANDING,
        _GAUGE,
        "{attempt}",
        "1 while an abandoned export attempt is still running, else 0.",
        _COMPONENT,
    ),
    InstrumentSpec(
        EXPORTER_CONNECTIONS_INTERRUPTED,
        _COUNTER,
        "{connection}",
        "Connections cut because their export passed its deadline.",
        _COMPONENT,
    ),
    *_processor_instruments(_LOGS),
    *_exporter_instruments(_LOGS),
    InstrumentSpec(
        EXPORTER_METRIC_DATA_POINT_EXPORTED,
        _COUNTER,
        "{data_point}",
        "Metric data points whose export finished; error.type is the outcome when it did "
        "not succeed.",
        (*_COMPONENT, ERROR_TYPE),
    ),
    InstrumentSpec(
        EXPORTER_METRIC_DATA_POINT_INFLIGHT,
        _GAUGE,
        "{data_point}",
        "Metric data points of the export running now.",
        _COMPONENT,
    ),
    InstrumentSpec(
        METRIC_READER_COLLECTION_DURATION,
        _HISTOGRAM,
        "s",
        "Duration of each collection of a metric reader; error.type names the exception "
        "when it failed.",
        (*_COMPONENT, ERROR_TYPE),
    ),
    InstrumentSpec(
        METRIC_READER_COLLECTIONS,
        _COUNTER,
        "{collection}",
        "Collections that produced data (no error.type) or failed (collection_failed).",
        (*_COMPONENT, ERROR_TYPE),
    ),
    InstrumentSpec(
        METRIC_READER_COLLECTIONS_SKIPPED,
        _COUNTER,
        "{collection}",
        "Collections not made because the previous export was still running.",
        _COMPONENT,
    ),
    InstrumentSpec(
        METRIC_READER_EXPORTS,
        _COUNTER,
        "{export}",
        "The reader's exports: succeeded (no error.type), export_failed or export_timeout.",
        (*_COMPONENT, ERROR_TYPE),
    ),
)

#: Attribute keys the instruments use.
ATTRIBUTES: Final = (COMPONENT_TYPE, COMPONENT_NAME, ERROR_TYPE, BREAKER_STATE)

_Attributes = Mapping[str, str]


class _ComponentNames:
    """``otel.component.name`` per object, ``<type>/<n>``, stable while the object lives."""

    def __init__(self, component_type: str) -> None:
        self._type = component_type
        self._numbers = itertools.count()
        self._fresh_lock()
        after_fork_in_child(self._fresh_lock)
        self._attributes: weakref.WeakKeyDictionary[object, _Attributes] = (
            weakref.WeakKeyDictionary()
        )

    def _fresh_lock(self) -> None:
        # A lock held by another thread at fork time would stay held in the child.
        self._lock = threading.Lock()

    def attributes(self, component: object) -> _Attributes:
        with self._lock:
            attributes = self._attributes.get(component)
            if attributes is None:
                name = f"{self._type}/{next(self._numbers)}"
                attributes = {COMPONENT_TYPE: self._type, COMPONENT_NAME: name}
                self._attributes[component] = attributes
            return attributes


# Process-wide, so that every meter provider sees the same name for the same component.
_PROCESSOR_NAMES = _ComponentNames(PROCESSOR_COMPONENT_TYPE)
_EXPORTER_NAMES = _ComponentNames(EXPORTER_COMPONENT_TYPE)
_LOG_PROCESSOR_NAMES = _ComponentNames(LOG_PROCESSOR_COMPONENT_TYPE)
_LOG_EXPORTER_NAMES = _ComponentNames(LOG_EXPORTER_COMPONENT_TYPE)
_METRIC_READER_NAMES = _ComponentNames(METRIC_READER_COMPONENT_TYPE)
_METRIC_EXPORTER_NAMES = _ComponentNames(METRIC_EXPORTER_COMPONENT_TYPE)


def _kinds() -> tuple[type[Any], type[Any], type[Any], type[Any]]:
    """The log and metric classes, imported only once such a part exists (they load the
    logs SDK: a process that only traces never pays for it)."""
    from ._exporter_logs import DeadlineLogExporter
    from ._exporter_metrics import DeadlineMetricExporter
    from ._log_processor import NonBlockingLogRecordProcessor
    from ._metric_reader import NonBlockingMetricReader

    return (
        NonBlockingLogRecordProcessor,
        NonBlockingMetricReader,
        DeadlineLogExporter,
        DeadlineMetricExporter,
    )


def _names_of(component: object) -> _ComponentNames | None:
    if isinstance(component, NonBlockingSpanProcessor):
        return _PROCESSOR_NAMES
    if isinstance(component, DeadlineSpanExporter):
        return _EXPORTER_NAMES
    log_processor, reader, log_exporter, metric_exporter = _kinds()
    if isinstance(component, log_processor):
        return _LOG_PROCESSOR_NAMES
    if isinstance(component, reader):
        return _METRIC_READER_NAMES
    if isinstance(component, log_exporter):
        return _LOG_EXPORTER_NAMES
    if isinstance(component, metric_exporter):
        return _METRIC_EXPORTER_NAMES
    return None


def component_attributes(component: object) -> Mapping[str, str]:
    """``otel.component.type`` and ``otel.component.name`` of a processor, reader or exporter.

    Any of ``NonBlockingSpanProcessor``, ``NonBlockingLogRecordProcessor``,
    ``NonBlockingMetricReader`` and their deadline exporters. The name (``<type>/<n>``) is
    fixed the first time it is asked for and stays the same while the object lives, for
    every meter provider.
    """
    names = _names_of(component)
    if names is None:
        raise ConfigurationError(
            "component must be a NonBlockingSpanProcessor, NonBlockingLogRecordProcessor, "
            "NonBlockingMetricReader or one of their deadline exporters, "
            f"got {type(component).__name__}"
        )
    return names.attributes(component)


def _stat(stats: ProcessorStats, name: str) -> int:
    """A counter of ``stats`` that older releases of the processor do not have (0 there)."""
    value = getattr(stats, name, 0)
    return value if isinstance(value, int) else 0


def _with_error(attributes: _Attributes, error_type: str) -> _Attributes:
    return {**attributes, ERROR_TYPE: error_type}


class _ExportTap:
    """The export listener: records each call's duration and counts its items by outcome.

    The counts feed ``otel.sdk.exporter.*.exported`` where the exporter's own ``stats()``
    does not count items by outcome; they start when the tap is attached.
    """

    __slots__ = ("_attributes", "_lock", "_metrics", "attached", "items")

    def __init__(self, metrics: SelfMetrics, attributes: _Attributes) -> None:
        self._metrics = metrics
        self._attributes: dict[str, _Attributes] = {ExportOutcome.SUCCESS.value: attributes}
        self._lock = threading.Lock()
        self.items: dict[str, int] = {}
        self.attached = False

    def attributes(self, outcome: str) -> _Attributes:
        found = self._attributes.get(outcome)
        if found is None:
            success = self._attributes[ExportOutcome.SUCCESS.value]
            found = self._attributes.setdefault(outcome, _with_error(success, outcome))
        return found

    def __call__(self, outcome: ExportOutcome, item_count: int, seconds: float) -> None:
        metrics = self._metrics
        if not metrics._active:
            return
        key = str(outcome.value)
        with self._lock:
            self.items[key] = self.items.get(key, 0) + item_count
        metrics._export_duration.record(seconds, self.attributes(key))


class _FlushTap:
    """The flush listener; it stays registered (a processor cannot remove one) but idles."""

    __slots__ = ("_incomplete", "_metrics", "_ok")

    def __init__(self, metrics: SelfMetrics, attributes: _Attributes) -> None:
        self._metrics = metrics
        self._ok = attributes
        self._incomplete = _with_error(attributes, FLUSH_INCOMPLETE)

    def __call__(self, ok: bool, seconds: float) -> None:
        metrics = self._metrics
        if metrics._active:
            metrics._flush_duration.record(seconds, self._ok if ok else self._incomplete)


class _CollectionTap:
    """A metric reader's collection listener; like :class:`_FlushTap`, it idles when off."""

    __slots__ = ("_attributes", "_metrics")

    def __init__(self, metrics: SelfMetrics, attributes: _Attributes) -> None:
        self._metrics = metrics
        self._attributes = attributes

    def __call__(self, seconds: float, error_type: str | None) -> None:
        metrics = self._metrics
        if metrics._active:
            attributes = (
                self._attributes
                if error_type is None
                else _with_error(self._attributes, error_type)
            )
            metrics._collection_duration.record(seconds, attributes)


_Callback = Callable[[CallbackOptions], Iterable[Observation]]
# A processor of either signal, as the callbacks read it (stats(), exporter, queue_capacity).
_Processor = Any


class SelfMetrics:
    """The self-metrics of one ``MeterProvider``, as :func:`enable_self_metrics` returns them.

    ``disable()`` stops publishing (the instruments stay registered but report nothing);
    ``enable_self_metrics()`` with the same provider turns them on again.
    """

    def __init__(self, meter: Meter) -> None:
        self._active = False
        self._lock = threading.Lock()
        after_fork_in_child(self._fresh_locks)
        self._export_taps: weakref.WeakKeyDictionary[DeadlineExporter[Any], _ExportTap] = (
            weakref.WeakKeyDictionary()
        )
        self._flush_taps: weakref.WeakKeyDictionary[_Processor, _FlushTap] = (
            weakref.WeakKeyDictionary()
        )
        self._collection_taps: weakref.WeakKeyDictionary[object, _CollectionTap] = (
            weakref.WeakKeyDictionary()
        )
        self._seen: weakref.WeakKeyDictionary[object, dict[object, int]] = (
            weakref.WeakKeyDictionary()
        )
        observables: dict[str, _Callback] = {}
        for signal in (_SPANS, _LOGS):
            observables.update(self._signal_callbacks(signal))
        observables.update(
            {
                EXPORTER_BREAKER_STATE: self._observe_breaker_state,
                EXPORTER_BREAKER_TRANSITIONS: self._observe_breaker_transitions,
                EXPORTER_ATTEMPT_OUTSTANDING: self._observe_attempt_outstanding,
                EXPORTER_CONNECTIONS_INTERRUPTED: self._observe_interrupted,
                EXPORTER_METRIC_DATA_POINT_EXPORTED: self._observe_data_points_exported,
                EXPORTER_METRIC_DATA_POINT_INFLIGHT: self._observe_data_points_inflight,
                METRIC_READER_COLLECTIONS: self._observe_collections,
                METRIC_READER_COLLECTIONS_SKIPPED: self._observe_collections_skipped,
                METRIC_READER_EXPORTS: self._observe_reader_exports,
            }
        )
        spec = {s.name: s for s in INSTRUMENTS}
        for s in INSTRUMENTS:  # in the documented order
            callback = observables.get(s.name)
            if callback is None:
                continue  # a histogram, made below
            create = (
                meter.create_observable_counter
                if s.kind == _COUNTER
                else meter.create_observable_up_down_counter
            )
            create(s.name, callbacks=[callback], unit=s.unit, description=s.description)
        self._export_duration = self._histogram(meter, spec[EXPORTER_OPERATION_DURATION])
        self._flush_duration = self._histogram(meter, spec[PROCESSOR_FLUSH_DURATION])
        self._collection_duration = self._histogram(meter, spec[METRIC_READER_COLLECTION_DURATION])

    def _signal_callbacks(self, s: _ProcessorSignal) -> dict[str, _Callback]:
        def bind(method: Callable[[_ProcessorSignal], list[Observation]]) -> _Callback:
            return lambda _options: method(s)

        return {
            s.processed: bind(self._observe_processed),
            s.queue_size: bind(self._observe_queue_size),
            s.queue_capacity: bind(self._observe_queue_capacity),
            s.enqueued: bind(self._observe_enqueued),
            s.dropped: bind(self._observe_dropped),
            s.retried: bind(self._observe_retried),
            s.retry_buffer: bind(self._observe_retry_buffer),
            s.exported: bind(self._observe_exported),
            s.inflight: bind(self._observe_inflight),
        }

    def _fresh_locks(self) -> None:
        """New locks in a forked child: one held at fork time would stay held there."""
        self._lock = threading.Lock()
        for tap in list(self._export_taps.values()):
            tap._lock = threading.Lock()

    @staticmethod
    def _histogram(meter: Meter, s: InstrumentSpec) -> otel_metrics.Histogram:
        return meter.create_histogram(
            s.name,
            unit=s.unit,
            description=s.description,
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )

    @property
    def enabled(self) -> bool:
        """True between :func:`enable_self_metrics` and :meth:`disable`."""
        return self._active

    def disable(self) -> None:
        """Stop publishing: callbacks report nothing, export listeners are removed."""
        with self._lock:
            self._active = False
            taps = [(e, t) for e, t in self._export_taps.items() if t.attached]
            for _, tap in taps:
                tap.attached = False
        for exporter, tap in taps:
            exporter.remove_listener(tap)

    def _enable(self) -> None:
        with self._lock:
            self._active = True
        self._processors(_SPANS)
        self._processors(_LOGS)
        self._readers()

    # -- discovery: every live part and its exporter, listeners attached once --

    def _processors(self, signal: _ProcessorSignal) -> list[_Processor]:
        """The live processors of ``signal``, their listeners attached (under the lock)."""
        if signal is _SPANS:
            processors: list[_Processor] = _live_processors()
        else:
            components = live_components()
            kind = _kinds()[0] if components else None
            processors = [c for c in components if kind is not None and isinstance(c, kind)]
        with self._lock:
            if not self._active:
                return []
            for processor in processors:
                if processor not in self._flush_taps:
                    tap = _FlushTap(self, component_attributes(processor))
                    self._flush_taps[processor] = tap
                    processor.add_flush_listener(tap)
                self._tap_exporter(processor.exporter)
        return processors

    def _readers(self) -> list[NonBlockingMetricReader]:
        """The live metric readers, their listeners attached."""
        components = live_components()
        if not components:
            return []
        kind = _kinds()[1]
        readers = [c for c in components if isinstance(c, kind)]
        with self._lock:
            if not self._active:
                return []
            for reader in readers:
                if reader not in self._collection_taps:
                    tap = _CollectionTap(self, _METRIC_READER_NAMES.attributes(reader))
                    self._collection_taps[reader] = tap
                    reader.add_collection_listener(tap)
                self._tap_exporter(reader.exporter)
        return readers

    def _tap_exporter(self, exporter: object) -> None:
        """Attach the export listener to ``exporter`` once (the caller holds the lock)."""
        if not isinstance(exporter, DeadlineExporter):
            return  # a sender of another kind: no listeners, no component name
        names = _names_of(exporter)
        if names is None:
            return
        export_tap = self._export_taps.get(exporter)
        if export_tap is None:
            export_tap = _ExportTap(self, names.attributes(exporter))
            self._export_taps[exporter] = export_tap
        if not export_tap.attached:
            export_tap.attached = True
            exporter.add_listener(export_tap)

    def _exporters(self, signal: _ProcessorSignal) -> list[DeadlineExporter[Any]]:
        unique: dict[int, DeadlineExporter[Any]] = {}
        for processor in self._processors(signal):
            exporter = processor.exporter
            if isinstance(exporter, DeadlineExporter) and _names_of(exporter) is not None:
                unique.setdefault(id(exporter), exporter)
        return list(unique.values())

    def _all_exporters(self) -> list[tuple[DeadlineExporter[Any], _Attributes]]:
        """Every observed exporter (span, log, metric) with its component attributes."""
        unique: dict[int, DeadlineExporter[Any]] = {}
        for signal in (_SPANS, _LOGS):
            for exporter in self._exporters(signal):
                unique.setdefault(id(exporter), exporter)
        for reader in self._readers():
            unique.setdefault(id(reader.exporter), reader.exporter)
        return [(e, component_attributes(e)) for e in unique.values()]

    def _monotonic(
        self, component: object, key: object, value: int, attributes: _Attributes
    ) -> Observation:
        """A counter never goes back: report the highest value seen for this series."""
        with self._lock:
            seen = self._seen.get(component)
            if seen is None:
                seen = self._seen[component] = {}
            value = max(value, seen.get(key, 0))
            seen[key] = value
        return Observation(value, attributes)

    def _processor_stats(
        self, signal: _ProcessorSignal
    ) -> list[tuple[_Processor, ProcessorStats, _Attributes]]:
        return [(p, p.stats(), component_attributes(p)) for p in self._processors(signal)]

    # -- observable callbacks: they run when the metric reader collects --

    def _observe_processed(self, signal: _ProcessorSignal) -> list[Observation]:
        observations: list[Observation] = []
        for processor, stats, attributes in self._processor_stats(signal):
            # Handed to the exporter: exported, in flight, waiting to be sent again, or
            # dropped after the hand-off. Items in the retry buffer when the shutdown
            # budget runs out count as ``shutdown`` too; the high-water mark in
            # _monotonic keeps this series from going back then.
            handed = stats.exported + stats.pending - stats.queue_depth
            for reason, count in stats.dropped.items():
                error_type = _BEFORE_HANDOFF.get(reason)
                if error_type is not None:
                    observations.append(
                        self._monotonic(
                            processor, reason, count, _with_error(attributes, error_type)
                        )
                    )
                else:
                    handed += count
            observations.append(self._monotonic(processor, None, handed, attributes))
        return observations

    def _observe_queue_size(self, signal: _ProcessorSignal) -> list[Observation]:
        return [Observation(s.queue_depth, a) for _, s, a in self._processor_stats(signal)]

    def _observe_queue_capacity(self, signal: _ProcessorSignal) -> list[Observation]:
        return [
            Observation(p.queue_capacity, component_attributes(p)) for p in self._processors(signal)
        ]

    def _observe_enqueued(self, signal: _ProcessorSignal) -> list[Observation]:
        return [
            self._monotonic(p, "enqueued", s.enqueued, a)
            for p, s, a in self._processor_stats(signal)
        ]

    def _observe_dropped(self, signal: _ProcessorSignal) -> list[Observation]:
        return [
            self._monotonic(p, ("dropped", reason), count, _with_error(a, reason))
            for p, s, a in self._processor_stats(signal)
            for reason, count in s.dropped.items()
        ]

    def _observe_retried(self, signal: _ProcessorSignal) -> list[Observation]:
        return [
            self._monotonic(p, "retried", _stat(s, "retried"), a)
            for p, s, a in self._processor_stats(signal)
        ]

    def _observe_retry_buffer(self, signal: _ProcessorSignal) -> list[Observation]:
        return [Observation(_stat(s, "retrying"), a) for _, s, a in self._processor_stats(signal)]

    def _observe_exported(self, signal: _ProcessorSignal) -> list[Observation]:
        """Items whose export finished, once each, from the processors' ledgers: a batch
        sent again after a transient failure counts once, when its last attempt ends."""
        finished: dict[int, tuple[DeadlineExporter[Any], Counter[str]]] = {}
        for processor, stats, _ in self._processor_stats(signal):
            exporter = processor.exporter
            if not isinstance(exporter, DeadlineExporter) or _names_of(exporter) is None:
                continue
            counts = finished.setdefault(id(exporter), (exporter, Counter()))[1]
            counts.update(getattr(stats, "finished", {}))
        return [o for e, counts in finished.values() for o in self._exported(e, counts)]

    def _exported(
        self, exporter: DeadlineExporter[Any], finished: Mapping[str, int] | None = None
    ) -> list[Observation]:
        """``finished`` items by outcome; without it, what the export listener counted
        (a metric reader's exporter: each export call is one finished export)."""
        tap = self._export_taps.get(exporter)
        if tap is None:
            return []
        counted = getattr(exporter.stats(), "spans", None)
        if not isinstance(counted, Mapping):
            if finished is not None:
                counted = finished
            else:
                with tap._lock:
                    counted = dict(tap.items)
        return [
            self._monotonic(exporter, ("exported", outcome), n, tap.attributes(outcome))
            for outcome, n in counted.items()
        ]

    def _observe_inflight(self, signal: _ProcessorSignal) -> list[Observation]:
        """Items handed over and not finished with, per exporter: what its processors
        hold outside the queue (in an export, in the retry buffer, in doubt)."""
        inflight: dict[int, list[Any]] = {}
        for processor, stats, _ in self._processor_stats(signal):
            exporter = processor.exporter
            if not isinstance(exporter, DeadlineExporter) or _names_of(exporter) is None:
                continue
            entry = inflight.setdefault(id(exporter), [exporter, 0])
            entry[1] += max(stats.pending - stats.queue_depth, 0)
        return [Observation(n, component_attributes(e)) for e, n in inflight.values()]

    def _observe_breaker_state(self, _options: CallbackOptions) -> list[Observation]:
        observations: list[Observation] = []
        for exporter, attributes in self._all_exporters():
            current = exporter.stats().breaker_state
            states = [state.value for state in BreakerState]
            if current not in states:
                states.append(current)
            observations.extend(
                Observation(int(state == current), {**attributes, BREAKER_STATE: state})
                for state in states
            )
        return observations

    def _observe_breaker_transitions(self, _options: CallbackOptions) -> list[Observation]:
        return [
            self._monotonic(e, "transitions", e.stats().breaker_transitions, a)
            for e, a in self._all_exporters()
        ]

    def _observe_attempt_outstanding(self, _options: CallbackOptions) -> list[Observation]:
        return [
            Observation(int(e.stats().attempt_outstanding), a) for e, a in self._all_exporters()
        ]

    def _observe_interrupted(self, _options: CallbackOptions) -> list[Observation]:
        return [
            self._monotonic(e, "interrupted", e.stats().interrupted_connections, a)
            for e, a in self._all_exporters()
        ]

    # -- metric readers and their exporters --

    def _observe_data_points_exported(self, _options: CallbackOptions) -> list[Observation]:
        unique = {id(r.exporter): r.exporter for r in self._readers()}
        return [o for e in unique.values() for o in self._exported(e)]

    def _observe_data_points_inflight(self, _options: CallbackOptions) -> list[Observation]:
        inflight: dict[int, list[Any]] = {}
        for reader in self._readers():
            entry = inflight.setdefault(id(reader.exporter), [reader.exporter, 0])
            entry[1] += reader.data_points_in_flight
        return [Observation(n, component_attributes(e)) for e, n in inflight.values()]

    def _reader_stats(self) -> list[tuple[Any, MetricReaderStats, _Attributes]]:
        return [(r, r.stats(), component_attributes(r)) for r in self._readers()]

    def _observe_collections(self, _options: CallbackOptions) -> list[Observation]:
        observations: list[Observation] = []
        for reader, stats, attributes in self._reader_stats():
            observations.append(
                self._monotonic(reader, "collections", stats.collections, attributes)
            )
            observations.append(
                self._monotonic(
                    reader,
                    COLLECTION_FAILED,
                    stats.collections_failed,
                    _with_error(attributes, COLLECTION_FAILED),
                )
            )
        return observations

    def _observe_collections_skipped(self, _options: CallbackOptions) -> list[Observation]:
        return [
            self._monotonic(r, "skipped", s.collections_skipped, a)
            for r, s, a in self._reader_stats()
        ]

    def _observe_reader_exports(self, _options: CallbackOptions) -> list[Observation]:
        observations: list[Observation] = []
        for reader, stats, attributes in self._reader_stats():
            for key, count, error_type in (
                ("exports_ok", stats.exports_ok, None),
                ("exports_failed", stats.exports_failed, ExportOutcome.FAILED.value),
                ("exports_timed_out", stats.exports_timed_out, ExportOutcome.TIMEOUT.value),
            ):
                series = attributes if error_type is None else _with_error(attributes, error_type)
                observations.append(self._monotonic(reader, key, count, series))
        return observations


_METER_NAME: Final = "otel_nonblocking"


def _version() -> str:
    from . import __version__

    return __version__


def enable_self_metrics(meter_provider: MeterProvider | None = None) -> SelfMetrics:
    """Publish every ``NonBlockingSpanProcessor``'s and its exporter's counters.

    ``meter_provider`` defaults to the global one; set before or after this call, it is
    followed (the API's proxy hands the instruments over). Every processor alive now or
    created later is observed; a later one's export and flush listeners are attached at
    the next collection, or at once by calling this again. Idempotent: calling it again
    with the same provider returns the same :class:`SelfMetrics`, and nothing is
    counted twice.

    >>> from opentelemetry.sdk.metrics import MeterProvider
    >>> from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    >>> reader = InMemoryMetricReader()
    >>> handle = enable_self_metrics(MeterProvider(metric_readers=[reader]))
    >>> handle.disable()
    """
    if meter_provider is not None and not isinstance(meter_provider, MeterProvider):
        raise ConfigurationError(
            "meter_provider must be an opentelemetry.metrics.MeterProvider or None, "
            f"got {type(meter_provider).__name__}"
        )
    registry = SELF_METRICS  # the process-wide registry (see _state.py)
    with registry.lock:
        current = otel_metrics.get_meter_provider()
        provider = current if meter_provider is None else meter_provider
        known = registry.by_provider.get(id(provider))
        handle = None if known is None else known[1]
        if handle is None and provider is current:
            # Created on the API's proxy before a real provider was set: the proxy has
            # handed its instruments to this provider already.
            handle = registry.on_global
        if handle is None:
            handle = SelfMetrics(provider.get_meter(_METER_NAME, _version()))
            registry.by_provider[id(provider)] = (provider, handle)
            if provider is current:
                registry.on_global = handle
    handle._enable()
    return handle
