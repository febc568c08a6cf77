"""configure_tracing() and the bounded lifecycle of everything the package installs.

``configure_tracing`` wires ``NonBlockingSpanProcessor`` over the deadline OTLP exporter
into the SDK provider. Module-level :func:`flush` and :func:`shutdown` act on every
processor the package installed with one shared deadline, and always return a
:class:`FlushResult` instead of waiting without bound.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter

from . import _config, _state
from ._config import UNSET, _Unset
from ._deadline import Deadline
from ._errors import ConfigurationError
from ._ledger import FlushReport
from ._otlp import otlp_span_exporter
from ._processor import MAYBE_DELIVERED, SHUTDOWN, NonBlockingSpanProcessor, ProcessorStats

if TYPE_CHECKING:
    from ._log_processor import NonBlockingLogRecordProcessor
    from ._metric_reader import MetricReaderStats, NonBlockingMetricReader

_logger = logging.getLogger("otel_nonblocking")


@dataclass(frozen=True)
class FlushResult:
    """What a bounded flush or shutdown achieved.

    ``exported`` and ``dropped`` count spans that reached that state during the call
    (not spans given up on before it, out of attempts, whose drop it only learned when
    their timed-out attempt failed),
    ``dropped_reasons`` the drops by reason (``backend_unavailable``: the backend could
    not be reached; ``http_401``: it refused them; ``shutdown``: out of time;
    ``integration``: lost by a bound Langfuse client's own pipeline; see
    docs/observability.md); ``pending`` is what was still waiting when it returned.
    ``timed_out`` says the budget ran out with spans still pending (or, at shutdown,
    dropped for want of time). A call that returned early because nothing could go out
    (the backend unreachable, its probe failed) has ``timed_out`` False and is not ok.
    ``busy`` says the call could not run at all and returned at once: it interrupted
    another flush, shutdown or stats call of this package on the same thread (a signal
    handler), which still holds what it would need.
    """

    exported: int = 0
    dropped: int = 0
    pending: int = 0
    timed_out: bool = False
    seconds: float = 0.0
    busy: bool = False
    dropped_reasons: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    signals: Mapping[str, SignalResult] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def ok(self) -> bool:
        """Everything was delivered: nothing pending, nothing dropped, in time, and every
        other signal in :attr:`signals` ok too."""
        return (
            not self.timed_out
            and not self.busy
            and self.pending == 0
            and self.dropped == 0
            and all(s.ok for s in self.signals.values())
        )


@dataclass(frozen=True)
class SignalResult:
    """What a bounded flush or shutdown achieved for one signal other than spans
    (``FlushResult.signals["logs"]``, ``["metrics"]``), present when the package installed
    that signal.

    For ``logs``, ``exported``/``dropped``/``pending`` count log records, as
    ``FlushResult``'s own fields count spans. For ``metrics`` they count exports (one
    collection each): ``exported`` the exports that succeeded during the call,
    ``dropped`` those that failed or timed out (their data goes again with the next
    collection under cumulative temporality); ``pending`` stays 0. ``complete`` is False
    when the call ended (out of time, the backend unreachable) with something not
    delivered.
    """

    exported: int = 0
    dropped: int = 0
    pending: int = 0
    complete: bool = True

    @property
    def ok(self) -> bool:
        return self.complete and self.pending == 0 and self.dropped == 0


_READ_GRACE_SECONDS = 0.01
#: The ``FlushResult.dropped_reasons`` key of spans that an integration's own pipeline
#: (a bound Langfuse client) lost during the call; its own result says why.
INTEGRATION = "integration"


def _totals(stats: Iterable[ProcessorStats]) -> tuple[int, Counter[str], int]:
    exported = pending = 0
    dropped: Counter[str] = Counter()
    for s in stats:
        exported += s.exported
        dropped.update(s.dropped)
        pending += s.pending
    return exported, dropped, pending


# A wait that ended this close to its deadline used the whole budget.
_DEADLINE_SLACK_SECONDS = 0.005


def _flush_within(
    processors: list[NonBlockingSpanProcessor],
    timeout: float,
    *,
    shutdown: bool,
    flushables: bool = False,
    log_processors: Sequence[NonBlockingLogRecordProcessor] = (),
    metric_readers: Sequence[MetricPart] = (),
) -> FlushResult:
    """Flush (or shut down) ``processors``, then ``log_processors``, then
    ``metric_readers``, one after another under one deadline.

    With ``flushables``, the registered flushables (``_state.py``: the Langfuse
    binding) follow under the same deadline, and their counts are added. Log records and
    metric exports are counted apart, in ``FlushResult.signals``.
    """
    started = time.monotonic()
    deadline = Deadline.after(max(timeout, 0.0))
    if any(p.busy_here() for p in processors) or any(p.busy_here() for p in log_processors):
        # A signal handler interrupted one of our calls on this thread: nothing can
        # run before it returns. Say so now rather than wait for ourselves.
        _, _, pending = _totals(p.stats() for p in processors)
        return FlushResult(pending=pending, busy=True, seconds=time.monotonic() - started)
    shares = _Shares(
        deadline,
        len(processors)
        + len(log_processors)
        + len(metric_readers)
        + (1 if flushables and _state.flushables() else 0),
    )
    # Every "before" is read first: what a later part's worker exports on its own while
    # an earlier part has its turn counts as exported during the call too.
    spans_before = _snapshot(processors, deadline)
    logs_before = _snapshot(log_processors, deadline)
    metrics_before = [r.stats() for r in metric_readers]
    spans = _ledger_flush(processors, spans_before, shares, shutdown=shutdown)
    signals: dict[str, SignalResult] = {}
    if log_processors:
        signals["logs"] = _ledger_flush(
            log_processors, logs_before, shares, shutdown=shutdown
        ).counts()
    if metric_readers:
        signals["metrics"] = _metrics_flush(
            metric_readers, metrics_before, shares, shutdown=shutdown
        )
    reasons = spans.reasons
    pending = spans.pending
    extra = _state.FlushCounts()
    if flushables:
        extra = _state.run_flushables(deadline, shutdown=shutdown)
    if extra.dropped:
        reasons[INTEGRATION] = reasons.get(INTEGRATION, 0) + extra.dropped
    pending += extra.pending + extra.other_pending
    shares.done()
    out_of_time = shares.ran_out or deadline.remaining() <= _DEADLINE_SLACK_SECONDS
    # At shutdown, spans dropped for want of time are left over too, and so are those
    # whose answer was still out when it ended (maybe_delivered).
    left = pending > 0 or (
        shutdown and (reasons.get(SHUTDOWN, 0) + reasons.get(MAYBE_DELIVERED, 0)) > 0
    )
    # Another signal that was left over because the budget ran out times the call out too.
    others_left = any(not s.ok for s in signals.values())
    return FlushResult(
        exported=spans.exported + extra.exported,
        dropped=sum(reasons.values()),
        pending=pending,
        # Pending (or dropped at shutdown) because the budget ran out, not because the
        # call gave up early with the backend unreachable.
        # (A flushable that did not complete says its deadline ended its call.)
        timed_out=(
            left
            and (out_of_time or not extra.complete)
            and (shutdown or not (spans.complete and extra.complete))
        )
        or (others_left and out_of_time),
        seconds=time.monotonic() - started,
        dropped_reasons=MappingProxyType(reasons),
        signals=MappingProxyType(signals),
    )


class _Shares:
    """One deadline handed to ``parts`` parts in turn: each may use an equal share of
    what is left (``remaining / parts left``), so that a backend that never answers one
    signal cannot leave the others no time; what a part leaves unused goes to the next.
    With one part it has the whole deadline."""

    def __init__(self, deadline: Deadline, parts: int) -> None:
        self.deadline = deadline
        self._left = max(parts, 1)
        self._part_end: float | None = None  # when the share of the part running ends
        self.ran_out = False  # a part used its whole share

    def take(self) -> float:
        """The seconds the next part may use."""
        self.done()
        share = self.deadline.remaining() / self._left
        self._left = max(self._left - 1, 1)
        self._part_end = time.monotonic() + share
        return share

    def done(self) -> None:
        """The part that took the last share has returned: did it use all of it?"""
        if self._part_end is not None:
            if time.monotonic() >= self._part_end - _DEADLINE_SLACK_SECONDS:
                self.ran_out = True
            self._part_end = None


class _Ledgered(Protocol):
    """What a span processor and a log record processor share for a bounded flush."""

    def _stats_within(self, seconds: float) -> ProcessorStats: ...

    def _flush_report(self, timeout_millis: int) -> FlushReport: ...

    def shutdown(self, timeout_millis: float | None = None) -> None: ...


class MetricPart(Protocol):
    """What a metric reader under the package's budget offers a bounded flush: a
    ``NonBlockingMetricReader``, or another reader behind ``_foreign_reader.ForeignReader``."""

    def flush_within(self, deadline: Deadline) -> _state.FlushCounts: ...

    def shutdown_within(self, deadline: Deadline) -> _state.FlushCounts: ...

    def stats(self) -> MetricReaderStats: ...


@dataclass
class _LedgerCounts:
    exported: int
    reasons: dict[str, int]
    pending: int
    complete: bool
    shutdown: bool

    def counts(self) -> SignalResult:
        left = self.pending > 0 or (
            self.shutdown
            and (self.reasons.get(SHUTDOWN, 0) + self.reasons.get(MAYBE_DELIVERED, 0)) > 0
        )
        return SignalResult(
            exported=self.exported,
            dropped=sum(self.reasons.values()),
            pending=self.pending,
            complete=self.complete and not left,
        )


def _snapshot(processors: Sequence[_Ledgered], deadline: Deadline) -> tuple[int, Counter[str]]:
    """Exported and dropped so far. Reading the counters waits for the lock only within
    the budget, too."""
    exported, dropped, _ = _totals(p._stats_within(deadline.remaining()) for p in processors)
    return exported, dropped


def _ledger_flush(
    processors: Sequence[_Ledgered],
    before: tuple[int, Counter[str]],
    shares: _Shares,
    *,
    shutdown: bool,
) -> _LedgerCounts:
    """Flush (or shut down) processors that keep a ledger, each within its share; what
    changed since ``before`` (:func:`_snapshot`)."""
    deadline = shares.deadline
    exported0, dropped0 = before
    complete = True
    earlier: Counter[str] = Counter()  # dropped during the call, given up on before it
    for processor in processors:
        millis = shares.take() * 1000
        if shutdown:
            processor.shutdown(timeout_millis=millis)
        else:
            report = processor._flush_report(int(millis))
            complete = report.ok and complete
            earlier.update(report.dropped_earlier)
    # (At least a moment: the worker holds the lock for microseconds, and a read
    # without it may be torn.)
    exported1, dropped1, pending = _totals(
        p._stats_within(max(deadline.remaining(), _READ_GRACE_SECONDS)) for p in processors
    )
    reasons = {k: n for k, n in (dropped1 - dropped0 - earlier).items() if n > 0}
    return _LedgerCounts(exported1 - exported0, reasons, pending, complete, shutdown)


def _metrics_flush(
    readers: Sequence[MetricPart],
    before: Sequence[MetricReaderStats],
    shares: _Shares,
    *,
    shutdown: bool,
) -> SignalResult:
    """Flush (or shut down) metric readers, each within its share: one collection and
    export each; the exports counted since ``before``."""
    complete = True
    for reader in readers:
        share = Deadline.after(shares.take())
        counts = reader.shutdown_within(share) if shutdown else reader.flush_within(share)
        complete = counts.complete and complete
    after = [r.stats() for r in readers]
    ok = sum(a.exports_ok - b.exports_ok for a, b in zip(after, before, strict=True))
    failed = sum(
        (a.exports_failed + a.exports_timed_out) - (b.exports_failed + b.exports_timed_out)
        for a, b in zip(after, before, strict=True)
    )
    return SignalResult(exported=ok, dropped=failed, complete=complete and failed == 0)


class TracingHandle:
    """What :func:`configure_tracing` installed, with bounded ``flush`` and ``shutdown``."""

    def __init__(
        self,
        processor: NonBlockingSpanProcessor | None,
        provider: TracerProvider | None,
        timeout: float,
    ) -> None:
        self._processor = processor
        self._provider = provider
        self._timeout = timeout

    @property
    def enabled(self) -> bool:
        """False when tracing was switched off (``OTEL_SDK_DISABLED`` or the kill switch)."""
        return self._processor is not None

    @property
    def processor(self) -> NonBlockingSpanProcessor | None:
        return self._processor

    @property
    def provider(self) -> TracerProvider | None:
        return self._provider

    def _processors(self) -> list[NonBlockingSpanProcessor]:
        return [] if self._processor is None else [self._processor]

    def _log_processors(self) -> list[NonBlockingLogRecordProcessor]:
        return []

    def _metric_readers(self) -> list[NonBlockingMetricReader]:
        return []

    def flush(self, timeout: float | None = None) -> FlushResult:
        """Wait up to ``timeout`` seconds (default: the configured timeout) for export."""
        return _flush_within(self._processors(), _or(timeout, self._timeout), shutdown=False)

    def shutdown(self, timeout: float | None = None) -> FlushResult:
        """Export what fits in ``timeout`` seconds, then stop; idempotent."""
        result = _flush_within(self._processors(), _or(timeout, self._timeout), shutdown=True)
        if not result.busy:
            self._release()
        return result

    def _release(self) -> None:
        """No longer installed: module ``flush()``/``shutdown()`` forget it."""
        _forget(self)

    def stats(self) -> ProcessorStats:
        if self._processor is None:
            return ProcessorStats(enqueued=0, exported=0)
        return self._processor.stats()


def _or(timeout: float | None, default: float) -> float:
    """``timeout`` checked as a budget in seconds (0 allowed), or ``default`` if None."""
    return default if timeout is None else _config.seconds("timeout", timeout, allow_zero=True)


def _exit_hook(seconds_left: float) -> None:
    shutdown(seconds_left)


def installed() -> list[TracingHandle]:
    """The handles of everything configure_tracing() installed and that is still running."""
    return [h for h in _state.installed_handles() if isinstance(h, TracingHandle)]


def _forget(handle: _state.InstalledHandle) -> None:
    _state.forget_installed(handle)


def _register(handle: _state.InstalledHandle, exit_timeout_millis: int) -> None:
    # The package's one exit hook (see _state.py): the first handle's budget covers
    # everything, and the handles get their turn first.
    _state.add_installed(handle, exit_timeout_millis / 1000, _exit_hook)


def configure_tracing(
    timeout: float | _Unset = UNSET,
    *,
    endpoint: str | None = None,
    headers: Mapping[str, str] | None = None,
    service_name: str | None = None,
    exporter: SpanExporter | None = None,
    compression: str | None = None,
    tracer_provider: TracerProvider | None = None,
    max_queue_size: int | _Unset = UNSET,
    max_export_batch_size: int | _Unset = UNSET,
    schedule_delay_millis: int | _Unset = UNSET,
    exit_timeout: float | _Unset = UNSET,
    exit_timeout_millis: int | _Unset = UNSET,
) -> TracingHandle:
    """Send traces through ``NonBlockingSpanProcessor`` and the deadline OTLP exporter.

    ``timeout`` (seconds, default 2) is the real deadline of each export and the
    default budget of ``flush()`` and ``shutdown()``; ``exit_timeout`` (seconds,
    default ``OTEL_NONBLOCKING_EXIT_TIMEOUT``, 2) the budget of everything the package
    installed at interpreter exit (``exit_timeout_millis`` is its deprecated form).
    With an SDK ``TracerProvider`` already installed (or ``tracer_provider`` given) the
    processor is added to it; otherwise a provider is created and set globally. Calling
    it again returns the same handle: spans are never exported twice. With
    ``OTEL_SDK_DISABLED=true`` or ``OTEL_NONBLOCKING_DISABLED=true`` nothing is installed.

    >>> handle = configure_tracing(timeout=2, service_name="checkout")  # doctest: +SKIP
    >>> handle.flush()  # doctest: +SKIP
    FlushResult(exported=12, dropped=0, pending=0, timed_out=False, seconds=0.01)
    """
    flush_timeout = _config.FLUSH_TIMEOUT.resolve(timeout)
    exit_millis = _exit_millis(exit_timeout, exit_timeout_millis)
    if _config.tracing_disabled():
        return TracingHandle(None, None, flush_timeout)
    with _state.configure_lock:
        for handle in installed():
            _logger.debug("configure_tracing() called again: keeping the first configuration")
            return handle
        if exporter is None:
            exporter = otlp_span_exporter(
                endpoint=endpoint, headers=headers, timeout=timeout, compression=compression
            )
        processor = NonBlockingSpanProcessor(
            exporter,
            max_queue_size=max_queue_size,
            max_export_batch_size=max_export_batch_size,
            schedule_delay_millis=schedule_delay_millis,
            export_timeout_millis=_config.EXPORT_TIMEOUT_MILLIS.resolve_seconds(timeout)
            if not isinstance(timeout, _Unset)
            else UNSET,
        )
        provider = _provider(tracer_provider, service_name)
        provider.add_span_processor(processor)
        handle = TracingHandle(processor, provider, flush_timeout)
        _register(handle, exit_millis)
    if _config.SELF_METRICS.resolve():
        _enable_self_metrics()
    return handle


def _exit_millis(exit_timeout: float | _Unset, exit_timeout_millis: int | _Unset) -> int:
    """The exit budget in milliseconds, from ``exit_timeout`` (seconds, as every budget
    of the façade) or the deprecated ``exit_timeout_millis``."""
    if isinstance(exit_timeout_millis, _Unset):
        return _config.EXIT_TIMEOUT_MILLIS.resolve_seconds(exit_timeout)
    if not isinstance(exit_timeout, _Unset):
        raise ConfigurationError("give exit_timeout (seconds), not also exit_timeout_millis")
    millis = _config.EXIT_TIMEOUT_MILLIS.resolve(exit_timeout_millis)
    warnings.warn(
        "configure_tracing(exit_timeout_millis=...) is deprecated: pass exit_timeout= in "
        "seconds, as timeout=",
        DeprecationWarning,
        stacklevel=3,
    )
    return millis


def _enable_self_metrics() -> None:
    from .metrics import enable_self_metrics

    try:
        enable_self_metrics()
    except Exception:  # self-metrics must never stop tracing
        _logger.debug("otel_nonblocking: self-metrics not enabled", exc_info=True)


def _provider(given: TracerProvider | None, service_name: str | None) -> TracerProvider:
    if given is not None:
        return given
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    attributes = {SERVICE_NAME: service_name} if service_name else {}
    # The exit hook shuts this provider's processors down within its own budget.
    provider = TracerProvider(resource=Resource.create(attributes), shutdown_on_exit=False)
    trace.set_tracer_provider(provider)
    if trace.get_tracer_provider() is not provider:  # someone else won the race
        winner = trace.get_tracer_provider()
        if isinstance(winner, TracerProvider):
            return winner
    return provider


def _all_processors() -> list[NonBlockingSpanProcessor]:
    return [p for h in _state.installed_handles() for p in h._processors()]


def _flush_installed(
    handles: list[_state.InstalledHandle], timeout: float, *, shutdown: bool
) -> FlushResult:
    """Every signal of ``handles`` and every flushable, under one deadline."""
    return _flush_within(
        [p for h in handles for p in h._processors()],
        timeout,
        shutdown=shutdown,
        flushables=True,
        log_processors=[p for h in handles for p in h._log_processors()],
        metric_readers=[r for h in handles for r in h._metric_readers()],
    )


def flush(timeout: float = 2.0) -> FlushResult:
    """Flush everything the package installed, within ``timeout`` seconds in total.

    That is every span processor :func:`configure_tracing` or :func:`configure_telemetry`
    installed, then that call's log record processors and metric readers (counted in
    ``FlushResult.signals``), then every bound Langfuse client
    (``bounded_langfuse()``/``bound_langfuse_flush()``): its spans, scores and media
    uploads, under the same deadline. Langfuse's spans count in
    ``exported``/``dropped``/``pending``, its scores and media uploads in ``pending``.
    """
    return _flush_installed(_state.installed_handles(), _or(timeout, 2.0), shutdown=False)


def shutdown(timeout: float = 2.0) -> FlushResult:
    """Shut down everything the package installed, within ``timeout`` seconds in total."""
    handles = _state.installed_handles()
    result = _flush_installed(handles, _or(timeout, 2.0), shutdown=True)
    if not result.busy:  # else still running: the exit hook shuts them down
        for handle in handles:
            handle._release()  # and a LoggingHandler it installed leaves the root logger
    return result


async def aflush(timeout: float = 2.0) -> FlushResult:
    """:func:`flush` for asyncio: waits in a worker thread, never blocking the event loop.

    Returns within ``timeout`` (and a moment) even when the loop's default executor is
    too busy to start the flush: the result then says ``timed_out``.
    """
    import asyncio  # loaded already by whoever awaits this; not at a cold start

    budget = _or(timeout, 2.0)
    started = time.monotonic()
    try:
        return await asyncio.wait_for(
            asyncio.to_thread(flush, budget), budget + _AFLUSH_GRACE_SECONDS
        )
    except asyncio.TimeoutError:
        _, _, pending = _totals(p.stats() for p in _all_processors())
        return FlushResult(pending=pending, timed_out=True, seconds=time.monotonic() - started)


# How long aflush() waits for the executor's thread beyond the flush's own budget.
_AFLUSH_GRACE_SECONDS = 0.1
