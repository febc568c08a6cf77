"""DeadlineExporter: a real wall-clock deadline around any exporter's export, whatever it exports.

The inner export runs on the wrapper's own runner thread; the caller waits at most
``timeout_millis`` and gets a failure if the deadline passes. Where the inner exporter
talks through an :class:`InterruptibleSession` its connection is then cut, so the
abandoned attempt ends early. A circuit breaker fails exports fast while the backend
keeps failing, so a dead collector costs milliseconds per export, not the deadline.
The core knows nothing of spans, log records or metrics: how to call the inner exporter
and which results it may return are given; the signal's own classes (in
:mod:`._exporter`, :mod:`._exporter_logs`, :mod:`._exporter_metrics`) are thin doors.
"""

from __future__ import annotations

import enum
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, cast, runtime_checkable

from . import _compat_sdk, _config
from ._breaker import BreakerState, CircuitBreaker
from ._config import UNSET, _Unset
from ._deadline import Clock, Deadline, millis_to_seconds
from ._errors import ConfigurationError
from ._guard import GuardedLock
from ._log import AggregatedWarning
from ._runner import Attempt, AttemptRunner
from ._session import find_session
from ._state import after_fork_in_child
from ._suppress import run_within

if TYPE_CHECKING:
    from ._otlp_codec import OTLPCodec
    from ._requests import EncodedBatch

# An abandoned attempt whose connection was cut usually ends within milliseconds, and
# one spared because its request had gone out ends at its socket timeout, which
# otlp_span_exporter() and its siblings set 0.1 s past the deadline. The next export
# waits this long for it before failing fast as ``attempt_outstanding``.
_ABANDONED_GRACE_SECONDS = 0.2
# After cutting an attempt at its deadline, how long to look whether it had in fact
# just succeeded; this is the "few milliseconds" an export may run past its deadline.
_LATE_RESULT_GRACE_SECONDS = 0.005
# The longest the application's side waits for the counters' lock (held for an increment).
_LOCK_WAIT_SECONDS = 0.5


class ExportOutcome(str, enum.Enum):
    """What became of one export call."""

    SUCCESS = "success"
    FAILED = "export_failed"  # the exporter said FAILURE, raised, or returned garbage
    TIMEOUT = "export_timeout"  # the deadline passed first
    BUSY = "attempt_outstanding"  # an abandoned attempt still runs: failed fast
    CIRCUIT_OPEN = "circuit_open"  # the breaker is open: failed fast
    SHUTDOWN = "shutdown"  # the exporter was shut down


# Outcomes of an export that never started: nothing of the batch went out.
_NOTHING_SENT = frozenset({ExportOutcome.CIRCUIT_OPEN, ExportOutcome.BUSY, ExportOutcome.SHUTDOWN})

_NO_CODEC = object()  # codec not looked up yet

#: HTTP statuses after which the OTLP specification says the batch may be sent again.
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
# Statuses that reject one batch's content, not the backend's availability.
_DATA_STATUSES = frozenset({400, 413})


def _is_connection_error(error: BaseException) -> bool:
    if isinstance(error, OSError):
        return True
    try:
        import requests
    except ImportError:  # pragma: no cover - requests comes with the OTLP exporter
        return False
    return isinstance(error, requests.exceptions.RequestException)


@dataclass(frozen=True)
class ExportReport:
    """One export's outcome, with what the backend said when it is known.

    ``transient`` tells whether sending the same batch again later may succeed: a
    timeout, a refused or reset connection, a retryable status (429/502/503/504), an
    open breaker or an outstanding attempt. A permanent failure (another HTTP status,
    an exporter that raised something other than a connection error) is not.
    """

    outcome: ExportOutcome
    status: int | None = None
    retry_after: float | None = None
    request_bytes: int | None = None
    transient: bool = False
    #: On TIMEOUT: the abandoned attempt, which may still turn out to have delivered
    #: the batch (see :meth:`DeadlineExporter.resolve`).
    attempt: Attempt[object] | None = field(default=None, compare=False, repr=False)
    #: On SUCCESS: items of the batch left out of its requests, by reason
    #: (``unencodable``: no encoder can write it; ``too_large``: over the size limit alone).
    rejected: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    #: On SUCCESS with ``may_split``: nothing was sent, the batch is over the request size
    #: limit and goes out once split (each of its items fits alone). On FAILED: the
    #: request was over a message size limit (an OTLP/gRPC client's, or the collector's
    #: ``RESOURCE_EXHAUSTED``), like HTTP 413: to split, or drop when it holds one item.
    too_large: bool = False
    #: Whether the backend could have judged the batch: a request of it began to go out
    #: (it may have hung or been reset after), or an answer came. False when nothing went
    #: out: the breaker was open, an attempt still ran, or every request failed before its
    #: first byte (refused, DNS failure, connect timeout: an outage, whatever the batch
    #: held). Without an :class:`AttemptWitness` to tell (an HTTP exporter's
    #: :class:`InterruptibleSession`, an OTLP/gRPC exporter's client), True.
    reached: bool = True


@runtime_checkable
class AttemptWitness(Protocol):
    """What the transport under an inner exporter tells about its current attempt: an
    OTLP/HTTP exporter's :class:`InterruptibleSession`, an OTLP/gRPC exporter's ``GrpcClient``."""

    last_status: int | None
    last_retry_after: float | None
    last_request_bytes: int | None
    last_connection_error: bool

    def begin_attempt(self) -> None: ...

    def abort(self, *, spare_sent: bool = False) -> int: ...

    def may_deliver(self) -> bool: ...

    @property
    def reached(self) -> bool: ...


def find_witness(exporter: object) -> AttemptWitness | None:
    """The session or gRPC client inside ``exporter`` that tells about its attempts."""
    session = find_session(exporter)
    if session is not None:
        return session
    client = _compat_sdk.adopted_grpc_client(exporter)  # the OTLP/gRPC client, if adopted
    return client if isinstance(client, AttemptWitness) else None


# Set on a runner thread while it runs a probe: a deadline exporter nested inside (a
# processor over an exporter that is itself deadline-wrapped) lets the probe through too.
_probing = threading.local()


def _in_probe() -> bool:
    return bool(getattr(_probing, "active", False))


# Set on a runner thread while it runs an export: that export's deadline.
_attempt = threading.local()


def attempt_seconds_left() -> float | None:
    """On a runner thread running an export: the seconds its deadline leaves; else None.

    For an inner exporter that sets a network deadline of its own (the OTLP/gRPC client
    gives each RPC what is left of the export's deadline)."""
    deadline: Deadline | None = getattr(_attempt, "deadline", None)
    return None if deadline is None else deadline.remaining()


#: ``cutoff()``: seconds an export already running may still take, or None (no new limit).
#: A cutoff with a ``poll_seconds`` attribute is polled that often instead.
Cutoff = Callable[[], "float | None"]
# How often a running export polls its cutoff.
_CUTOFF_POLL_SECONDS = 0.05


def _wait_with_cutoff(attempt: Attempt[object], deadline: Deadline, cutoff: Cutoff) -> bool:
    """Wait for ``attempt`` until ``deadline`` or until ``cutoff()`` says time is up."""
    every = float(getattr(cutoff, "poll_seconds", _CUTOFF_POLL_SECONDS))
    while True:
        remaining = deadline.remaining()
        limit = cutoff()
        if limit is not None:
            remaining = min(remaining, limit)
        if remaining <= 0:
            return attempt.done.is_set()
        if attempt.done.wait(min(remaining, every)):
            return True


#: ``listener(outcome, item_count, seconds)``, called after each export.
ExportListener = Callable[[ExportOutcome, int, float], object]


@dataclass(frozen=True)
class ExporterStats:
    """A snapshot of a :class:`DeadlineExporter`'s counters."""

    outcomes: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    breaker_state: str = BreakerState.CLOSED.value
    breaker_transitions: int = 0
    attempt_outstanding: bool = False
    last_export_seconds: float | None = None
    interrupted_connections: int = 0


def require_exporter(exporter: object, kind: str) -> None:
    """Raise :class:`ConfigurationError` unless ``exporter`` has a callable ``export`` (a
    ``kind`` such as "SpanExporter", or anything shaped like one)."""
    if not callable(getattr(exporter, "export", None)):
        raise ConfigurationError(f"exporter must be a {kind}")


def peek_attempt(attempt: Attempt[object], succeeded: Callable[[object], bool]) -> bool | None:
    """True if ``attempt`` ended with a result ``succeeded`` accepts, False if it ended
    otherwise, None while it still runs."""
    if not attempt.done.is_set():
        return None
    return attempt.error is None and succeeded(attempt.result)


#: What an exported batch holds (spans, log records, metrics data).
T = TypeVar("T")
#: ``call(batch, deadline)``: the inner exporter's export of ``batch``; it may pass the
#: time ``deadline`` leaves on to an inner exporter that takes a timeout.
InnerCall = Callable[[list[T], Deadline], object]


def told_too_large(error: BaseException | None) -> bool:
    """Whether an exporter's error says the request was over a message size limit
    (``too_large``: the OTLP/gRPC client's, refused before sending or by the collector)."""
    return getattr(error, "too_large", False) is True


def told_retry_after(error: BaseException | None) -> float | None:
    """The back-off the backend asked for, carried by an exporter's error as ``retry_after``
    seconds (the OTLP/gRPC client's errors carry the RetryInfo so), else None."""
    value = getattr(error, "retry_after", None)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if 0 <= value < float("inf") else None


def _result_name(result: object) -> str | None:
    name = getattr(result, "name", None)
    return name if isinstance(result, enum.Enum) and isinstance(name, str) else None


class DeadlineExporter(Generic[T]):
    """Runs ``call(batch, deadline)`` so that each export returns within ``timeout_millis``.

    Nothing here knows what a batch holds. ``call`` is the inner export; ``result_types``
    are the enums it may return, whose member named ``SUCCESS`` means the batch went out
    (anything else it returns is a bug: a permanent failure). ``noun`` names the items in
    the aggregated warnings; ``timeout_setting`` is where ``timeout_millis`` falls back to
    (the signal's ``OTEL_EXPORTER_OTLP_*_TIMEOUT``). A signal's exporter class
    (:class:`DeadlineSpanExporter`, ``DeadlineLogExporter``, ``DeadlineMetricExporter``)
    subclasses this core and its SDK's exporter base, and adds the SDK's ``export`` signature.

    >>> import enum
    >>> class Result(enum.Enum):
    ...     SUCCESS = 0
    ...     FAILURE = 1
    >>> core = DeadlineExporter(
    ...     object(), lambda batch, deadline: Result.SUCCESS, (Result,), timeout_millis=500
    ... )
    >>> core.export_report(["item"]).outcome
    <ExportOutcome.SUCCESS: 'success'>
    """

    def __init__(
        self,
        exporter: object,
        call: InnerCall[T],
        result_types: tuple[type[enum.Enum], ...],
        *,
        noun: str = "item",
        timeout_setting: _config.Setting[float] = _config.OTLP_TIMEOUT_MILLIS,
        timeout_millis: float | _Unset = UNSET,
        failure_threshold: int | _Unset = UNSET,
        breaker_backoff_millis: int | _Unset = UNSET,
        on_abandon: Callable[[], object] | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self._inner = exporter
        self._call = call
        self._result_types = result_types
        self._noun = noun
        self._timeout = millis_to_seconds(timeout_setting.resolve(timeout_millis))
        self._breaker_settings = (
            _config.BREAKER_FAILURE_THRESHOLD.resolve(failure_threshold),
            _config.BREAKER_BACKOFF_MILLIS.resolve(breaker_backoff_millis) / 1000,
        )
        self._session = find_witness(exporter)
        self._on_abandon = on_abandon
        self._clock = clock
        self._runner = AttemptRunner("export")
        self._listeners: tuple[ExportListener, ...] = ()
        self._shutdown = False
        self._shutdown_once = threading.Lock()
        self._codec: object = _NO_CODEC
        self._init_state()
        after_fork_in_child(self._init_state)

    def _init_state(self) -> None:
        """Fresh locks, counters and breaker (at start, and in a forked child)."""
        threshold, backoff = self._breaker_settings
        self._breaker = CircuitBreaker(
            failure_threshold=threshold, backoff_seconds=backoff, clock=self._clock
        )
        self._lock = GuardedLock()
        self._outcomes: Counter[str] = Counter()
        self._last_seconds: float | None = None
        self._interrupted = 0
        self._abandoned_at = float("-inf")
        self._probe_granted_until = float("-inf")
        self._warn = AggregatedWarning(f"{self._noun} exports failed", clock=self._clock)

    @property
    def timeout_seconds(self) -> float:
        """The deadline of one export, in seconds."""
        assert self._timeout is not None
        return self._timeout

    @property
    def inner(self) -> object:
        """The wrapped exporter."""
        return self._inner

    def succeeded(self, result: object) -> bool:
        """True when ``result`` (what the inner export returned) says the batch went out."""
        return isinstance(result, self._result_types) and _result_name(result) == "SUCCESS"

    def __repr__(self) -> str:
        # Never the inner exporter's repr: it could show headers or keys.
        return (
            f"{type(self).__name__}({type(self._inner).__name__}, "
            f"timeout_millis={self.timeout_seconds * 1000:g})"
        )

    def add_listener(self, listener: ExportListener) -> None:
        """Call ``listener(outcome, item_count, seconds)`` after every export.

        Listeners run on the exporting (worker) thread, never on the application's;
        an exception in one is counted and ignored.
        """
        self._listeners = (*self._listeners, listener)

    def remove_listener(self, listener: ExportListener) -> None:
        self._listeners = tuple(x for x in self._listeners if x is not listener)

    def export_outcome(self, items: Sequence[T], timeout: float | None = None) -> ExportOutcome:
        """Export within ``min(timeout, timeout_millis)`` seconds and say what happened."""
        return self.export_report(items, timeout).outcome

    def export_report(
        self,
        items: Sequence[T],
        timeout: float | None = None,
        *,
        cutoff: Cutoff | None = None,
        may_split: bool = False,
        probe: bool = False,
    ) -> ExportReport:
        """Like :meth:`export_outcome`, with the status, Retry-After and transience.

        ``cutoff()``, polled while the export runs, may shorten its deadline after it
        started: it returns the seconds still allowed, or None for no new limit.

        With an OTLP codec (see :attr:`codec`), an item that cannot be encoded or is too
        large alone is left out and counted in ``rejected``; a batch over the request size
        limit goes out as several requests, or, with ``may_split``, not at all
        (``too_large``), for the caller to split it and send the parts as batches of their own.
        ``probe``: a flush or shutdown asks, so an open breaker lets this export out at
        once as its half-open probe.
        """
        batch = list(items)
        codec = self.codec
        if codec is None or not codec.exports:
            call = self._call
            return self._run_report(
                lambda deadline: call(batch, deadline),
                lambda: self.count_items(batch),
                timeout,
                cutoff,
                probe=probe,
            )
        encoded: list[EncodedBatch] = []

        def work(deadline: Deadline) -> object:
            assert codec is not None
            plan = codec.encode_batch(cast("list[Any]", batch), single=may_split)
            encoded.append(plan)
            if plan.split:
                return self._result_types[0]["SUCCESS"]  # nothing sent: the caller splits it
            return codec.send_batch(plan)

        def carried() -> int:  # the items the requests carried: what listeners count
            return sum(r.spans for r in encoded[0].requests) if encoded else len(batch)

        report = self._run_report(work, carried, timeout, cutoff, probe=probe)
        if report.outcome is not ExportOutcome.SUCCESS or not encoded:
            return report
        plan = encoded[0]
        if plan.split:
            return replace(report, request_bytes=None, too_large=True)
        if not may_split:  # no caller to count them
            for reason, count in plan.rejected.items():
                self._warn.add(f"{self._noun}s left out: {reason}", count)
        sent = report.request_bytes if plan.requests else None
        return replace(report, request_bytes=sent, rejected=plan.rejected)

    def count_items(self, batch: Sequence[T]) -> int:
        """How many telemetry items ``batch`` holds, as export listeners are told (spans
        and log records: one each; a metric exporter counts data points). Called on the
        exporting thread, only when a listener is attached."""
        return len(batch)

    @property
    def codec(self) -> OTLPCodec | None:
        """How to encode a batch and send encoded bytes (the disk spool needs it), where
        the signal's class knows one for its inner exporter (:meth:`_find_codec`)."""
        if self._codec is _NO_CODEC:
            self._codec = self._find_codec()
        return self._codec  # type: ignore[return-value]

    def _find_codec(self) -> OTLPCodec | None:
        """The inner exporter's codec; the core knows none (every export calls it)."""
        return None

    def export_encoded_report(
        self,
        data: bytes,
        item_count: int,
        timeout: float | None = None,
        *,
        cutoff: Cutoff | None = None,
    ) -> ExportReport:
        """Send an already-encoded OTLP request body (``item_count`` items) under the same
        deadline, breaker and abandon rules as :meth:`export_report`."""
        codec = self.codec
        if codec is None:
            return ExportReport(self._count(ExportOutcome.FAILED, "no OTLP codec"))
        send = codec.send
        return self._run_report(lambda _deadline: send(data), item_count, timeout, cutoff)

    def _run_report(
        self,
        work: Callable[[Deadline], object],
        item_count: int | Callable[[], int],
        timeout: float | None,
        cutoff: Cutoff | None,
        *,
        probe: bool = False,
    ) -> ExportReport:
        started = self._clock()
        outcome, error, attempt = self._export(work, timeout, cutoff, probe=probe)
        report = self._report(outcome, error, attempt)
        listeners = self._listeners
        if listeners:
            seconds = self._clock() - started
            if callable(item_count):
                item_count = item_count()
            for listener in listeners:
                try:
                    listener(outcome, item_count, seconds)
                except Exception as failure:  # noqa: BLE001 - a listener must not break export
                    self._warn.add(f"listener raised {type(failure).__name__}")
        return report

    def _report(
        self,
        outcome: ExportOutcome,
        error: BaseException | None,
        attempt: Attempt[object] | None,
    ) -> ExportReport:
        session = self._session
        status = retry_after = size = None
        connection_error = False
        if session is not None and outcome is not ExportOutcome.CIRCUIT_OPEN:
            status, retry_after = session.last_status, session.last_retry_after
            size, connection_error = session.last_request_bytes, session.last_connection_error
        if retry_after is None and outcome is ExportOutcome.FAILED:
            retry_after = told_retry_after(error)  # no HTTP session: the error may say
        if outcome is ExportOutcome.SUCCESS or outcome is ExportOutcome.SHUTDOWN:
            transient = False
        elif outcome is not ExportOutcome.FAILED:
            transient = True  # timeout, open breaker, outstanding attempt
        elif status is not None and not 200 <= status < 300:
            transient = status in RETRYABLE_STATUSES
        elif error is not None:
            transient = _is_connection_error(error)
        else:
            # FAILURE without an HTTP answer: a refused or reset connection where the
            # session saw one; from an exporter we cannot see into, assume transient.
            transient = connection_error or session is None
        # Could the backend judge the batch? Without a session to tell, assume it could.
        reached = outcome not in _NOTHING_SENT and (session is None or session.reached)
        too_large = outcome is ExportOutcome.FAILED and told_too_large(error)
        return ExportReport(
            outcome,
            status,
            retry_after,
            size,
            transient,
            attempt=attempt,
            too_large=too_large,
            reached=reached,
        )

    def _export(
        self,
        work: Callable[[Deadline], object],
        timeout: float | None,
        cutoff: Cutoff | None = None,
        *,
        probe: bool = False,
    ) -> tuple[ExportOutcome, BaseException | None, Attempt[object] | None]:
        if self._shutdown:
            return self._count(ExportOutcome.SHUTDOWN), None, None
        deadline = Deadline.after(self.timeout_seconds, self._clock).earliest(timeout)
        if self._breaker.retry_in() > 0:  # open: fail fast, before any wait ...
            probe = probe or _in_probe() or self._take_probe_grant()
            if not probe:  # ... unless a flush asks: its export is the probe
                return self._count(ExportOutcome.CIRCUIT_OPEN), None, None
        if self._runner.busy and not self._wait_for_abandoned(deadline):
            return self._count(ExportOutcome.BUSY), None, None
        # Whether this export probes the backend (a deadline exporter nested inside then
        # lets it through as well, whatever its own breaker says).
        probing = self._breaker.state is not BreakerState.CLOSED
        if not self._breaker.allow(probe=probe):
            return self._count(ExportOutcome.CIRCUIT_OPEN), None, None
        session = self._session

        def call() -> object:
            if session is not None:
                session.begin_attempt()
            _probing.active = probing
            outer, _attempt.deadline = getattr(_attempt, "deadline", None), deadline
            try:
                return work(deadline)
            finally:
                _probing.active = False
                _attempt.deadline = outer

        started = self._clock()
        attempt = self._runner.try_submit(call)
        if attempt is None:  # the runner turned busy between the check and now
            self._breaker_release()
            return self._count(ExportOutcome.BUSY), None, None
        if cutoff is None:
            finished = attempt.done.wait(deadline.remaining())
        else:
            finished = _wait_with_cutoff(attempt, deadline, cutoff)
        with self._lock:
            self._last_seconds = self._clock() - started
        if not finished:
            # Cut a connection still in its TLS handshake (one resolving or connecting
            # ends at its socket timeout and is then refused). One that has begun to
            # send is left to read its answer (or hit its socket timeout):
            # the backend may hold the batch already, and resending it on a guess would
            # duplicate every item. The batch waits in doubt until the attempt ends.
            self._abandon(spare_sent=True)
            finished = attempt.done.wait(_LATE_RESULT_GRACE_SECONDS)
            if not finished or not self.succeeded(attempt.result):
                with self._lock:
                    self._abandoned_at = self._clock()
                # The attempt may have had a 503 with Retry-After before the SDK's own
                # retry sleep ran into the deadline: the backend's word sets the back-off.
                retry_after = session.last_retry_after if session is not None else None
                self._breaker.record_failure(retry_after=retry_after)
                # In doubt only while the attempt may still deliver the batch: a request
                # that went out with no answer yet (or a 2xx still reading its body). One
                # whose last answer was a failure, asleep before a retry it may no longer
                # send, cannot: its batch is free to go again at once.
                if session is not None and not session.may_deliver():
                    attempt = None
                return self._count(ExportOutcome.TIMEOUT), None, attempt
        if attempt.error is None and self.succeeded(attempt.result):
            self._breaker.record_success()
            return self._count(ExportOutcome.SUCCESS), None, None
        refused_data = session is not None and session.last_status in _DATA_STATUSES
        if refused_data or told_too_large(attempt.error):
            self._breaker.record_success()  # the backend is up; it refused this batch only
        else:
            retry_after = (
                session.last_retry_after if session is not None else told_retry_after(attempt.error)
            )
            self._breaker.record_failure(retry_after=retry_after)
        detail = type(attempt.error).__name__ if attempt.error is not None else "failure"
        error = attempt.error
        if error is None and not isinstance(attempt.result, self._result_types):
            detail = f"returned {type(attempt.result).__name__}"
            error = TypeError(f"exporter {detail}")  # a bug, not a passing fault
        if session is not None and session.last_status is not None:
            detail = f"HTTP {session.last_status}"
        elif told_too_large(error):
            detail = "request too large"  # to be split; one item alone is dropped
        return self._count(ExportOutcome.FAILED, detail), error, None

    def _wait_for_abandoned(self, deadline: Deadline) -> bool:
        """Give an abandoned attempt a moment to end; cut it once it is a deadline old."""
        if self._overdue():
            # Spared at its deadline because its request had gone out; a whole deadline
            # later (or after the process was frozen) it is cut without waiting first.
            self._abandon()
        if self._runner.wait_idle(min(_ABANDONED_GRACE_SECONDS, deadline.remaining())):
            return True
        if self._overdue():
            self._abandon()
            return self._runner.wait_idle(min(_ABANDONED_GRACE_SECONDS, deadline.remaining()))
        return False

    def _overdue(self) -> bool:
        """True once the abandoned attempt has run a whole deadline past its own."""
        with self._lock:
            return self._clock() - self._abandoned_at >= self.timeout_seconds

    def resolve(self, attempt: Attempt[object], wait: float) -> bool | None:
        """What became of an abandoned ``attempt``: True if it delivered the batch after
        all, False if it failed, None if it is still running after ``wait`` seconds."""
        if not attempt.done.wait(Deadline.after(wait).remaining()):
            if not self._overdue():
                return None
            self._abandon()
            if not attempt.done.wait(_ABANDONED_GRACE_SECONDS):
                return None
        delivered = self.peek(attempt)
        if delivered:
            with self._lock:
                self._outcomes["late_success"] += 1
        return delivered

    def peek(self, attempt: Attempt[object]) -> bool | None:
        """What became of ``attempt`` so far, without waiting, cutting or counting: True
        if it delivered the batch, False if it failed, None while it still runs."""
        return peek_attempt(attempt, self.succeeded)

    def available_in(self) -> float:
        """Seconds until the breaker lets an export out again (0 when it does now).

        A probe (a flush's or shutdown's export) may go out sooner: see :meth:`allow_probe`.
        """
        return self._breaker.retry_in()

    @property
    def probing(self) -> bool:
        """The breaker is not closed: the next export that goes out is its probe."""
        return self._breaker.state is not BreakerState.CLOSED

    @property
    def busy(self) -> bool:
        """An abandoned attempt still runs: no export (not even a probe) can start now."""
        return self._runner.busy

    def allow_probe(self, seconds: float) -> None:
        """For the next ``seconds``, let one export the open breaker would refuse go out
        as its half-open probe. A processor that is not ours (the SDK's batch processor)
        calls ``export()`` with no way to say a flush asks: the flush grants this first.
        """
        with self._lock:
            self._probe_granted_until = self._clock() + max(seconds, 0.0)

    def _take_probe_grant(self) -> bool:
        with self._lock:
            granted = self._clock() < self._probe_granted_until
            self._probe_granted_until = float("-inf")
        return granted

    def _breaker_release(self) -> None:
        # A probe that never went out must not leave the breaker waiting for it.
        if self._breaker.state is BreakerState.HALF_OPEN:
            self._breaker.record_failure()

    def _abandon(self, *, spare_sent: bool = False) -> None:
        cut = 0
        if self._session is not None:
            cut = self._session.abort(spare_sent=spare_sent)
        if self._on_abandon is not None:
            try:
                self._on_abandon()
            except Exception as error:  # noqa: BLE001 - a hook must not break export
                self._warn.add(f"on_abandon raised {type(error).__name__}")
        # May run in shutdown() from a signal handler: never wait on this thread's own lock.
        if self._lock.acquire_within(_LOCK_WAIT_SECONDS):
            try:
                self._interrupted += cut
            finally:
                self._lock.release()

    def _count(self, outcome: ExportOutcome, detail: str | None = None) -> ExportOutcome:
        with self._lock:
            self._outcomes[outcome.value] += 1
        if outcome is not ExportOutcome.SUCCESS and outcome is not ExportOutcome.SHUTDOWN:
            self._warn.add(outcome.value if detail is None else f"{outcome.value}: {detail}")
        return outcome

    def stats(self) -> ExporterStats:
        """Counters by outcome, breaker state, and whether an attempt is still stuck."""
        locked = self._lock.acquire_within(_LOCK_WAIT_SECONDS)  # else a best-effort read
        try:
            outcomes = MappingProxyType(dict(self._outcomes))
            last, interrupted = self._last_seconds, self._interrupted
        finally:
            if locked:
                self._lock.release()
        return ExporterStats(
            outcomes=outcomes,
            breaker_state=self._breaker.state.value,
            breaker_transitions=self._breaker.transitions,
            attempt_outstanding=self._runner.busy,
            last_export_seconds=last,
            interrupted_connections=interrupted,
        )

    def force_flush(self, timeout_millis: float = 30000) -> bool:
        """Flush the inner exporter within the budget; False if it did not finish."""
        if self._shutdown:
            return True
        budget = millis_to_seconds(timeout_millis)
        inner = self._inner
        attempt = self._runner.try_submit(lambda: inner.force_flush(timeout_millis))  # type: ignore[attr-defined]
        if attempt is None or not attempt.done.wait(Deadline.after(budget).remaining()):
            return False
        return attempt.error is None and attempt.result is not False

    def shutdown(self, timeout_millis: float | None = None) -> None:
        """Shut down within ``timeout_millis`` (default: the export deadline); idempotent.

        A stuck attempt is cut first; the inner ``shutdown`` runs on a short-lived daemon
        thread, so even an inner exporter that hangs there cannot hold the caller.
        """
        budget = (
            self.timeout_seconds if timeout_millis is None else millis_to_seconds(timeout_millis)
        )
        deadline = Deadline.after(budget, self._clock)  # wall-clock, from the call's start
        # Taken once, never released, never waited for (a signal handler may be here).
        if not self._shutdown_once.acquire(blocking=False):
            return
        self._shutdown = True
        if self._runner.busy:
            self._abandon()
        # The inner shutdown goes to the runner's thread when it has one (after any
        # abandoned attempt); a new thread only when there is time left to start one.
        final = self._runner.close(self._inner_shutdown)
        if final is not None:
            final.done.wait(deadline.remaining())
        elif not deadline.expired():
            run_within(self._inner_shutdown, deadline.remaining(), "otel-nonblocking-shutdown")
        self._warn.maybe_emit(force=True)

    def _inner_shutdown(self) -> None:
        try:
            self._inner.shutdown()  # type: ignore[attr-defined]
        # On this short-lived thread even SystemExit or KeyboardInterrupt from a broken
        # exporter is only something to report, never something to print a traceback for.
        except BaseException as error:  # noqa: BLE001
            self._warn.add(f"shutdown raised {type(error).__name__}")
