"""Self-metrics: the processor's and exporter's counters through the OpenTelemetry metrics API.

:func:`enable_self_metrics` publishes what ``stats()`` counts, under the ``otel.sdk.*``
names of the semantic conventions where they exist, ``otel_nonblocking.*`` otherwise.

Counters, gauges and queue sizes are observable instruments that read ``stats()`` when the
metric reader collects; the two histograms are fed by the export and flush listeners on
the worker (or flushing) thread. Nothing runs on ``span.end()``.
"""

from __future__ import annotations

import importlib
import itertools
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from opentelemetry import metrics as otel_metrics
from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation

from ._breaker import BreakerState
from ._errors import ConfigurationError
from ._exporter import DeadlineSpanExporter, ExportOutcome
from ._processor import QUEUE_FULL, SHUTDOWN, NonBlockingSpanProcessor, ProcessorStats
from ._state import SELF_METRICS, after_fork_in_child
from ._state import live_processors as _live_processors

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

PROCESSOR_SPAN_PROCESSED: Final = _semconv(
    _OTEL_METRICS, "OTEL_SDK_PROCESSOR_SPAN_PROCESSED", "otel.sdk.processor.span.processed"
)
PROCESSOR_SPAN_QUEUE_SIZE: Final = _semconv(
    _OTEL_METRICS, "OTEL_SDK_PROCESSOR_SPAN_QUEUE_SIZE", "otel.sdk.processor.span.queue.size"
)
PROCESSOR_SPAN_QUEUE_CAPACITY: Final = _semconv(
    _OTEL_METRICS,
    "OTEL_SDK_PROCESSOR_SPAN_QUEUE_CAPACITY",
    "otel.sdk.processor.span.queue.capacity",
)
EXPORTER_SPAN_EXPORTED: Final = _semconv(
    _OTEL_METRICS, "OTEL_SDK_EXPORTER_SPAN_EXPORTED", "otel.sdk.exporter.span.exported"
)
EXPORTER_OPERATION_DURATION: Final = _semconv(
    _OTEL_METRICS,
    "OTEL_SDK_EXPORTER_OPERATION_DURATION",
    "otel.sdk.exporter.operation.duration",
)
PROCESSOR_SPAN_ENQUEUED: Final = "otel_nonblocking.processor.span.enqueued"
PROCESSOR_SPAN_DROPPED: Final = "otel_nonblocking.processor.span.dropped"
PROCESSOR_SPAN_RETRIED: Final = "otel_nonblocking.processor.span.retried"
PROCESSOR_RETRY_BUFFER_SIZE: Final = "otel_nonblocking.processor.span.retry_buffer.size"
PROCESSOR_FLUSH_DURATION: Final = "otel_nonblocking.processor.flush.duration"
EXPORTER_BREAKER_STATE: Final = "otel_nonblocking.exporter.breaker.state"
EXPORTER_BREAKER_TRANSITIONS: Final = "otel_nonblocking.exporter.breaker.transitions"
EXPORTER_ATTEMPT_OUTSTANDING: Final = "otel_nonblocking.exporter.attempt.outstanding"
EXPORTER_CONNECTIONS_INTERRUPTED: Final = "otel_nonblocking.exporter.connection.interrupted"

COMPONENT_TYPE: Final = _semconv(_OTEL_ATTRIBUTES, "OTEL_COMPONENT_TYPE", "otel.component.type")
COMPONENT_NAME: Final = _semconv(_OTEL_ATTRIBUTES, "OTEL_COMPONENT_NAME", "otel.component.name")
ERROR_TYPE: Final = _semconv(_ERROR_ATTRIBUTES, "ERROR_TYPE", "error.type")
BREAKER_STATE: Final = "otel_nonblocking.breaker.state"

#: ``otel.component.type`` values: no standard value applies, so (as the semantic
#: conventions ask) the language's name of the type.
PROCESSOR_COMPONENT_TYPE: Final = "otel_nonblocking.NonBlockingSpanProcessor"
EXPORTER_COMPONENT_TYPE: Final = "otel_nonblocking.DeadlineSpanExporter"

#: ``error.type`` of a flush that returned False (not everything exported in time).
FLUSH_INCOMPLETE: Final = "incomplete"

#: Drop reasons that happen before a span is handed to the exporter, and the ``error.type``
#: the conventions require for them on ``otel.sdk.processor.span.processed``. Every other
#: reason, including ones added later, happens after the hand-off (failed, timed out...).
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


_COMPONENT = (COMPONENT_TYPE, COMPONENT_NAME)

#: Every instrument, in the order of ``docs/observability.md``.
INSTRUMENTS: Final[tuple[InstrumentSpec, ...]] = (
    InstrumentSpec(
        PROCESSOR_SPAN_PROCESSED,
        "observable_counter",
        "{span}",
        "Spans the processor finished with: handed to the exporter (no error.type) or "
        "dropped before that (error.type queue_full or already_shutdown).",
        (*_COMPONENT, ERROR_TYPE),
    ),
    InstrumentSpec(
        PROCESSOR_SPAN_QUEUE_SIZE,
        "observable_up_down_counter",
        "{span}",
        "Spans waiting in the processor's queue.",
        _COMPONENT,
    ),
    InstrumentSpec(
        PROCESSOR_SPAN_QUEUE_CAPACITY,
        "observable_up_down_counter",
        "{span}",
        "Spans the processor's queue can hold (max_queue_size).",
        _COMPONENT,
    ),
    InstrumentSpec(
        PROCESSOR_SPAN_ENQUEUED,
        "observable_counter",
        "{span}",
        "Sampled spans handed to the processor's on_end, including those turned away.",
        _COMPONENT,
    ),
    InstrumentSpec(
        PROCESSOR_SPAN_DROPPED,
        "observable_counter",
        "{span}",
        "Spans lost, by reason (error.type): every key of ProcessorStats.dropped.",
        (*_COMPONENT, ERROR_TYPE),
    ),
    InstrumentSpec(
        PROCESSOR_SPAN_RETRIED,
        "observable_counter",
        "{span}",
        "Spans sent again after a transient export failure.",
        _COMPONENT,
    ),
    InstrumentSpec(
        PROCESSOR_RETRY_BUFFER_SIZE,
        "observable_up_down_counter",
        "{span}",
        "Spans waiting in the retry buffer to be sent again.",
        _COMPONENT,
    ),
    InstrumentSpec(
        PROCESSOR_FLUSH_DURATION,
        "histogram",
        "s",
        "Duration of each force_flush; error.type incomplete when it returned False.",
        (*_COMPONENT, ERROR_TYPE),
    ),
    InstrumentSpec(
        EXPORTER_SPAN_EXPORTED,
        "observable_counter",
        "{span}",
        "Spans whose export finished; error.type is the outcome when it did not succeed.",
        (*_COMPONENT, ERROR_TYPE),
    ),
    InstrumentSpec(
        EXPORTER_OPERATION_DURATION,
        "histogram",
        "s",
        "Duration of each export call, deadline included; error.type as above.",
        (*_COMPONENT, ERROR_TYPE),
    ),
    InstrumentSpec(
        EXPORTER_BREAKER_STATE,
        "observable_up_down_counter",
        "1",
        "1 for the circuit breaker's current state, 0 for the others.",
        (*_COMPONENT, BREAKER_STATE),
    ),
    InstrumentSpec(
        EXPORTER_BREAKER_TRANSITIONS,
        "observable_counter",
        "{transition}",
        "Changes of the circuit breaker's state.",
        _COMPONENT,
    ),
    InstrumentSpec(
        EXPORTER_ATTEMPT_OUTSTANDING,
        "observable_up_down_counter",
        "{attempt}",
        "1 while an abandoned export attempt is still running, else 0.",
        _COMPONENT,
    ),
    InstrumentSpec(
        EXPORTER_CONNECTIONS_INTERRUPTED,
        "observable_counter",
        "{connection}",
        "Connections cut because their export passed its deadline.",
        _COMPONENT,
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


def component_attributes(
    component: NonBlockingSpanProcessor | DeadlineSpanExporter,
) -> Mapping[str, str]:
    """``otel.component.type`` and ``otel.component.name`` of a processor or exporter.

    The name (``<type>/<n>``) is fixed the first time it is asked for and stays the
    same while the object lives, for every meter provider.
    """
    if isinstance(component, NonBlockingSpanProcessor):
        return _PROCESSOR_NAMES.attributes(component)
    if isinstance(component, DeadlineSpanExporter):
        return _EXPORTER_NAMES.attributes(component)
    raise ConfigurationError(
        "component must be a NonBlockingSpanProcessor or a DeadlineSpanExporter, "
        f"got {type(component).__name__}"
    )


def _stat(stats: ProcessorStats, name: str) -> int:
    """A counter of ``stats`` that older releases of the processor do not have (0 there)."""
    value = getattr(stats, name, 0)
    return value if isinstance(value, int) else 0


def _with_error(attributes: _Attributes, error_type: str) -> _Attributes:
    return {**attributes, ERROR_TYPE: error_type}


class _ExportTap:
    """The export listener: records each call's duration and counts its spans by outcome.

    The counts feed ``otel.sdk.exporter.span.exported`` where the exporter's own
    ``stats()`` does not count spans by outcome; they start when the tap is attached.
    """

    __slots__ = ("_attributes", "_lock", "_metrics", "attached", "spans")

    def __init__(self, metrics: SelfMetrics, attributes: _Attributes) -> None:
        self._metrics = metrics
        self._attributes: dict[str, _Attributes] = {ExportOutcome.SUCCESS.value: attributes}
        self._lock = threading.Lock()
        self.spans: dict[str, int] = {}
        self.attached = False

    def attributes(self, outcome: str) -> _Attributes:
        found = self._attributes.get(outcome)
        if found is None:
            success = self._attributes[ExportOutcome.SUCCESS.value]
            found = self._attributes.setdefault(outcome, _with_error(success, outcome))
        return found

    def __call__(self, outcome: ExportOutcome, span_count: int, seconds: float) -> None:
        metrics = self._metrics
        if not metrics._active:
            return
        key = str(outcome.value)
        with self._lock:
            self.spans[key] = self.spans.get(key, 0) + span_count
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


_Callback = Callable[[CallbackOptions], Iterable[Observation]]


class SelfMetrics:
    """The self-metrics of one ``MeterProvider``, as :func:`enable_self_metrics` returns them.

    ``disable()`` stops publishing (the instruments stay registered but report nothing);
    ``enable_self_metrics()`` with the same provider turns them on again.
    """

    def __init__(self, meter: Meter) -> None:
        self._active = False
        self._lock = threading.Lock()
        after_fork_in_child(self._fresh_locks)
        self._export_taps: weakref.WeakKeyDictionary[DeadlineSpanExporter, _ExportTap] = (
            weakref.WeakKeyDictionary()
        )
        self._flush_taps: weakref.WeakKeyDictionary[NonBlockingSpanProcessor, _FlushTap] = (
            weakref.WeakKeyDictionary()
        )
        self._seen: weakref.WeakKeyDictionary[object, dict[object, int]] = (
            weakref.WeakKeyDictionary()
        )
        spec = {s.name: s for s in INSTRUMENTS}
        observables: dict[str, _Callback] = {
            PROCESSOR_SPAN_PROCESSED: self._observe_processed,
            PROCESSOR_SPAN_QUEUE_SIZE: self._observe_queue_size,
            PROCESSOR_SPAN_QUEUE_CAPACITY: self._observe_queue_capacity,
            PROCESSOR_SPAN_ENQUEUED: self._observe_enqueued,
            PROCESSOR_SPAN_DROPPED: self._observe_dropped,
            PROCESSOR_SPAN_RETRIED: self._observe_retried,
            PROCESSOR_RETRY_BUFFER_SIZE: self._observe_retry_buffer,
            EXPORTER_SPAN_EXPORTED: self._observe_exported,
            EXPORTER_BREAKER_STATE: self._observe_breaker_state,
            EXPORTER_BREAKER_TRANSITIONS: self._observe_breaker_transitions,
            EXPORTER_ATTEMPT_OUTSTANDING: self._observe_attempt_outstanding,
            EXPORTER_CONNECTIONS_INTERRUPTED: self._observe_interrupted,
        }
        for name, callback in observables.items():
            s = spec[name]
            create = (
                meter.create_observable_counter
                if s.kind == "observable_counter"
                else meter.create_observable_up_down_counter
            )
            create(name, callbacks=[callback], unit=s.unit, description=s.description)
        self._export_duration = self._histogram(meter, spec[EXPORTER_OPERATION_DURATION])
        self._flush_duration = self._histogram(meter, spec[PROCESSOR_FLUSH_DURATION])

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
        self._processors()

    # -- discovery: every live processor and its exporter, listeners attached once --

    def _processors(self) -> list[NonBlockingSpanProcessor]:
        processors = _live_processors()
        with self._lock:
            if not self._active:
                return []
            for processor in processors:
                if processor not in self._flush_taps:
                    tap = _FlushTap(self, _PROCESSOR_NAMES.attributes(processor))
                    self._flush_taps[processor] = tap
                    processor.add_flush_listener(tap)
                exporter = processor.exporter
                export_tap = self._export_taps.get(exporter)
                if export_tap is None:
                    export_tap = _ExportTap(self, _EXPORTER_NAMES.attributes(exporter))
                    self._export_taps[exporter] = export_tap
                if not export_tap.attached:
                    export_tap.attached = True
                    exporter.add_listener(export_tap)
        return processors

    def _exporters(self) -> list[DeadlineSpanExporter]:
        unique: dict[int, DeadlineSpanExporter] = {}
        for processor in self._processors():
            unique.setdefault(id(processor.exporter), processor.exporter)
        return list(unique.values())

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
        self,
    ) -> list[tuple[NonBlockingSpanProcessor, ProcessorStats, _Attributes]]:
        return [(p, p.stats(), _PROCESSOR_NAMES.attributes(p)) for p in self._processors()]

    # -- observable callbacks: they run when the metric reader collects --

    def _observe_processed(self, _options: CallbackOptions) -> list[Observation]:
        observations: list[Observation] = []
        for processor, stats, attributes in self._processor_stats():
            # Handed to the exporter: exported, in flight, waiting to be sent again, or
            # dropped after the hand-off. Spans in the retry buffer when the shutdown
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

    def _observe_queue_size(self, _options: CallbackOptions) -> list[Observation]:
        return [Observation(s.queue_depth, a) for _, s, a in self._processor_stats()]

    def _observe_queue_capacity(self, _options: CallbackOptions) -> list[Observation]:
        return [
            Observation(p.queue_capacity, _PROCESSOR_NAMES.attributes(p))
            for p in self._processors()
        ]

    def _observe_enqueued(self, _options: CallbackOptions) -> list[Observation]:
        return [
            self._monotonic(p, "enqueued", s.enqueued, a) for p, s, a in self._processor_stats()
        ]

    def _observe_dropped(self, _options: CallbackOptions) -> list[Observation]:
        return [
            self._monotonic(p, ("dropped", reason), count, _with_error(a, reason))
            for p, s, a in self._processor_stats()
            for reason, count in s.dropped.items()
        ]

    def _observe_retried(self, _options: CallbackOptions) -> list[Observation]:
        return [
            self._monotonic(p, "retried", _stat(s, "retried"), a)
            for p, s, a in self._processor_stats()
        ]

    def _observe_retry_buffer(self, _options: CallbackOptions) -> list[Observation]:
        return [Observation(_stat(s, "retrying"), a) for _, s, a in self._processor_stats()]

    def _observe_exported(self, _options: CallbackOptions) -> list[Observation]:
        observations: list[Observation] = []
        for exporter in self._exporters():
            tap = self._export_taps.get(exporter)
            if tap is None:
                continue
            counted = getattr(exporter.stats(), "spans", None)
            if not isinstance(counted, Mapping):
                with tap._lock:
                    counted = dict(tap.spans)
            observations.extend(
                self._monotonic(exporter, ("exported", outcome), n, tap.attributes(outcome))
                for outcome, n in counted.items()
            )
        return observations

    def _observe_breaker_state(self, _options: CallbackOptions) -> list[Observation]:
        observations: list[Observation] = []
        for exporter in self._exporters():
            attributes = _EXPORTER_NAMES.attributes(exporter)
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
            self._monotonic(
                e, "transitions", e.stats().breaker_transitions, _EXPORTER_NAMES.attributes(e)
            )
            for e in self._exporters()
        ]

    def _observe_attempt_outstanding(self, _options: CallbackOptions) -> list[Observation]:
        return [
            Observation(int(e.stats().attempt_outstanding), _EXPORTER_NAMES.attributes(e))
            for e in self._exporters()
        ]

    def _observe_interrupted(self, _options: CallbackOptions) -> list[Observation]:
        return [
            self._monotonic(
                e,
                "interrupted",
                e.stats().interrupted_connections,
                _EXPORTER_NAMES.attributes(e),
            )
            for e in self._exporters()
        ]


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
