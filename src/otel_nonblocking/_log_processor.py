"""NonBlockingLogRecordProcessor: on_emit is two checks, an append and a counter; a worker exports.

The log-record-shaped door to the same pipeline the span processor uses (``_pipeline.py``:
queue, worker, ledger, retry buffer, Retry-After, breaker, bounded flush and shutdown,
drop reasons, ``stats()``). What is particular to log records is here: the ``OTEL_BLRP_*``
settings, the records this door turns away (the package's own warnings, and whatever is
logged on a thread with instrumentation suppressed, such as the exporter's own warnings
on our export threads: they would feed the pipeline they are about), and handing the
exporter the record type the installed SDK's exporters take (on the worker). With
``spool_dir``, log records that cannot be delivered in time go to the ``logs``
subdirectory of the spool (``_spool.LOGS``), never among span requests.
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any, cast

from opentelemetry import context as otel_context

from . import _state
from ._compat_sdk import LogRecordProcessor, readable_log_records
from ._config import UNSET, _Unset
from ._deadline import Clock, millis_to_seconds
from ._errors import ConfigurationError
from ._exporter import Cutoff, ExportReport
from ._ledger import FlushReport, ProcessorStats
from ._log import logger
from ._pipeline import FlushListener, Pipeline
from ._runner import Attempt
from ._settings import LOGS, PipelineSettings, spool_checked
from ._spool import LOGS as LOGS_SPOOL
from ._spool import SpoolStats
from ._spooler import SpoolCodec, SpoolSender
from ._suppress import SUPPRESS_KEYS
from ._tally import Tally
from ._worker import Sender

# Memory of one queued log record, on top of its encoded size (a record from the stdlib
# LoggingHandler carries its code attributes and a bounded attribute dict).
_RECORD_OVERHEAD_BYTES = 2 * 1024
_STATS_WAIT_SECONDS = 0.5
# The package's own logger, and its children: never fed into a log pipeline.
_OWN_LOGGER = logger.name
_OWN_PREFIX = _OWN_LOGGER + "."

_current_context = otel_context.get_current
# The key the SDK's own processors and instrumentations set, "suppress_instrumentation-<uuid>"
# (every thread of ours sets all of SUPPRESS_KEYS); the plain string where there is none.
_SUPPRESS_KEY = next(
    (k for k in SUPPRESS_KEYS if k.startswith("suppress_instrumentation-")), SUPPRESS_KEYS[0]
)


def _ours(record: Any) -> bool:
    """True for a record the door must not take: logged by this package, or on a thread
    with instrumentation suppressed (our export threads: the exporter's own warnings about
    a failed export would otherwise be exported, fail, and warn again)."""
    try:
        name = record.instrumentation_scope.name
        if name == _OWN_LOGGER or name.startswith(_OWN_PREFIX):
            return True
    except Exception:  # noqa: BLE001, S110 - no scope: not ours by name; the context decides
        pass
    return bool(_current_context().get(_SUPPRESS_KEY))


class NonBlockingLogRecordProcessor(LogRecordProcessor):
    """A log record processor that never makes the logging code wait.

    Settings come from the arguments, else the ``OTEL_BLRP_*`` variables, else the
    defaults in ``docs/configuration.md``; the first four may be passed by position in the
    order of the SDK's ``BatchLogRecordProcessor``. ``exporter`` is any log exporter of
    the SDK's interface, which is wrapped in a ``DeadlineLogExporter`` whose deadline is
    ``export_timeout_millis``; pass a ``DeadlineLogExporter`` to choose its own.

    >>> from opentelemetry.sdk._logs import LoggerProvider
    >>> from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    >>> provider = LoggerProvider(shutdown_on_exit=False)
    >>> exporter = OTLPLogExporter(endpoint="http://127.0.0.1:4318/v1/logs")
    >>> processor = NonBlockingLogRecordProcessor(exporter)
    >>> provider.add_log_record_processor(processor)
    >>> processor.shutdown()
    """

    def __init__(
        self,
        exporter: object,
        schedule_delay_millis: int | _Unset | None = UNSET,
        max_export_batch_size: int | _Unset | None = UNSET,
        export_timeout_millis: int | _Unset | None = UNSET,
        max_queue_size: int | _Unset | None = UNSET,
        *,
        shutdown_timeout_millis: int | _Unset = UNSET,
        max_queue_bytes: int | _Unset = UNSET,
        retry_buffer_size: int | _Unset = UNSET,
        max_export_attempts: int | _Unset = UNSET,
        spool_dir: str | os.PathLike[str] | _Unset | None = UNSET,
        spool_max_bytes: int | _Unset = UNSET,
        clock: Clock = time.monotonic,
    ) -> None:
        settings = PipelineSettings.resolve(
            signal=LOGS,
            max_queue_size=_given(max_queue_size),
            max_export_batch_size=_given(max_export_batch_size),
            schedule_delay_millis=_given(schedule_delay_millis),
            export_timeout_millis=_given(export_timeout_millis),
            shutdown_timeout_millis=shutdown_timeout_millis,
            max_queue_bytes=max_queue_bytes,
            retry_buffer_size=retry_buffer_size,
            max_export_attempts=max_export_attempts,
            spool_dir=spool_dir,
            spool_max_bytes=spool_max_bytes,
        )
        self._exporter = _deadline_exporter(exporter, settings.export_timeout * 1000, clock)
        self._settings = spool_checked(
            settings,
            has_codec=_spool_codec(self._exporter) is not None,
            given=spool_dir,
            exporters="otlp_log_exporter() or the SDK's OTLP/HTTP OTLPLogExporter",
            exporter_name=type(getattr(self._exporter, "inner", self._exporter)).__name__,
        )
        self._clock = clock
        self._pipeline = Pipeline(
            _Readable(self._exporter),
            self._settings,
            item_overhead=_RECORD_OVERHEAD_BYTES,
            what="log records",
            clock=clock,
            spool_kind=LOGS_SPOOL,
        )
        self._door = self._pipeline.door  # what on_emit touches, one attribute away
        self._turned_away = Tally()  # records of ours, or emitted with instrumentation off
        _state.after_fork_in_child(self._after_fork)
        # The package's one exit hook closes it within the exit budget while it lives.
        self._remove_exit_hook = _state.on_exit(_weak_exit_hook(self))
        weakref.finalize(self, self._remove_exit_hook)
        _state.track_component(self)  # self-metrics observe it (otel_nonblocking.metrics)

    def _after_fork(self) -> None:
        self._pipeline.after_fork()
        self._door = self._pipeline.door

    @property
    def exporter(self) -> Sender:
        """The deadline-wrapped exporter this processor exports through."""
        return self._exporter

    @property
    def turned_away(self) -> int:
        """Records ``on_emit`` did not take: the package's own (logger ``otel_nonblocking``)
        and those emitted with instrumentation suppressed (the exporter's warnings on our
        export threads). Never enqueued, so not in :meth:`stats`."""
        return self._turned_away.value()

    @property
    def queue_capacity(self) -> int:
        """How many records the queue holds before it turns the next one away."""
        return self._door.cap

    # -- the caller's side: nothing here may wait, log, or take the export side's lock --

    def on_emit(self, log_record: Any) -> None:
        """Queue ``log_record`` for export (SDK 1.35+ calls this; 1.33/1.34 call ``emit``)."""
        if _ours(log_record):
            next(self._turned_away.counter)
            return
        door = self._door
        if door.closed:
            next(door.closed_drops.counter)
            return
        queue = door.queue
        if len(queue) >= door.cap:
            next(door.full_drops.counter)
            return
        queue.append(log_record)
        if len(queue) >= door.batch_size and not door.wake.is_set():
            door.wake.set()

    emit = on_emit  # the name SDK 1.33 and 1.34 call

    # -- flush, shutdown, stats --

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Wait up to ``timeout_millis`` for every record emitted before this call to be
        exported; True only if all of them were. The export runs on the worker."""
        return self._flush_report(timeout_millis).ok

    def _flush_report(self, timeout_millis: float) -> FlushReport:
        if self._door.closed:
            # Shut down: nothing more goes out, so there is nothing to wait for. SDK 1.33's
            # LoggingHandler.flush() calls this at exit (logging.shutdown, after the exit
            # hook closed this processor) holding the handler's lock, which a warning of
            # the worker's may be waiting for: waiting here would hold both for the budget.
            return FlushReport(ok=False, done=True)
        with self._pipeline.call() as entered:
            if not entered:  # a signal handler interrupted this thread's flush: no nesting
                return FlushReport(ok=False, done=False)
            return self._pipeline.timed_flush(millis_to_seconds(timeout_millis))

    def add_flush_listener(self, listener: FlushListener) -> None:
        """Call ``listener(flushed_ok, seconds)`` after every ``force_flush`` (caller's thread)."""
        self._pipeline.flush_listeners = (*self._pipeline.flush_listeners, listener)

    def busy_here(self) -> bool:
        """True when the calling thread is inside this processor's flush, shutdown or
        stats (a signal handler interrupted it): a flush now would not run."""
        return self._pipeline.busy_here()

    def shutdown(self, timeout_millis: float | None = None) -> None:
        """Export what is pending within the budget, then drop the rest (``shutdown``).

        ``timeout_millis`` defaults to ``shutdown_timeout_millis`` (``LoggerProvider``
        calls it without one), and at exit to at most the time left of the package's one
        exit budget (``OTEL_NONBLOCKING_EXIT_TIMEOUT``). Idempotent.
        """
        self._pipeline.shutdown(timeout_millis)
        self._remove_exit_hook()

    def close_at_exit(self, seconds: float) -> None:
        """The exit hook's turn: shut down within ``seconds`` or the shutdown budget."""
        self._pipeline.close_at_exit(seconds)
        self._remove_exit_hook()

    def _stats_within(self, wait: float) -> ProcessorStats:
        """:meth:`stats`, waiting at most ``wait`` seconds for the lock (module ``flush()``)."""
        return self._pipeline.stats_within(wait)

    def stats(self) -> ProcessorStats:
        """A consistent snapshot of the counters (best effort when the lock is not to be
        had within half a second): ``enqueued == exported + dropped_total + pending +
        spooled``."""
        return self._pipeline.stats_within(_STATS_WAIT_SECONDS)

    def spool_stats(self) -> SpoolStats | None:
        """The disk spool's counters (in log records), or None when there is no spool."""
        return self._pipeline.spool_stats()


def _given(value: int | _Unset | None) -> int | _Unset:
    """``None`` for a BatchLogRecordProcessor-shaped argument means "not given", as there."""
    return UNSET if value is None else value


def _deadline_exporter(exporter: object, timeout_millis: float, clock: Clock) -> Sender:
    """``exporter`` itself when it is a deadline exporter already (``DeadlineLogExporter``,
    or anything with ``export_report``), else wrapped in one with the processor's deadline."""
    if callable(getattr(exporter, "export_report", None)):
        return cast(Sender, exporter)
    if not callable(getattr(exporter, "export", None)):
        raise ConfigurationError(f"exporter must be a log exporter, not {type(exporter).__name__}")
    from ._exporter_logs import DeadlineLogExporter

    return DeadlineLogExporter(exporter, timeout_millis=timeout_millis, clock=clock)


def _spool_codec(sender: object) -> SpoolCodec | None:
    """The codec of ``sender`` when it has one (an OTLP/HTTP ``DeadlineLogExporter``)."""
    return sender.codec if isinstance(sender, SpoolSender) else None


def _weak_exit_hook(processor: NonBlockingLogRecordProcessor) -> Callable[[float], None]:
    """An exit hook that does not keep ``processor`` alive."""
    ref = weakref.ref(processor)

    def hook(seconds: float) -> None:
        live = ref()
        if live is not None:
            live.close_at_exit(seconds)

    return hook


class _Readable:
    """The exporter as the pipeline sees it: each batch handed over as the records the
    installed SDK's exporters take (converted on the worker, not on emit)."""

    def __init__(self, sender: Sender) -> None:
        self._sender = sender

    def export_report(
        self,
        items: Sequence[Any],
        timeout: float | None = None,
        *,
        cutoff: Cutoff | None = None,
        may_split: bool = False,
        probe: bool = False,
    ) -> ExportReport:
        return self._sender.export_report(
            readable_log_records(items),
            timeout,
            cutoff=cutoff,
            may_split=may_split,
            probe=probe,
        )

    def resolve(self, attempt: Attempt[object], wait: float) -> bool | None:
        return self._sender.resolve(attempt, wait)

    # -- what the disk spool needs (_spooler.SpoolSender): the codec converts the records
    # itself, and a spooled body goes out under the same deadline and breaker --

    @property
    def codec(self) -> SpoolCodec | None:
        return _spool_codec(self._sender)

    def export_encoded_report(
        self,
        data: bytes,
        item_count: int,
        timeout: float | None = None,
        *,
        cutoff: Cutoff | None = None,
    ) -> ExportReport:
        if not isinstance(self._sender, SpoolSender):  # pragma: no cover - no codec: no spool
            raise TypeError("this exporter cannot send encoded requests")
        return self._sender.export_encoded_report(data, item_count, timeout, cutoff=cutoff)

    def peek(self, attempt: Attempt[object]) -> bool | None:
        return self._sender.peek(attempt)

    def available_in(self) -> float:
        return self._sender.available_in()

    @property
    def probing(self) -> bool:
        return self._sender.probing

    @property
    def busy(self) -> bool:
        return self._sender.busy

    def shutdown(self, timeout_millis: float | None = None) -> None:
        self._sender.shutdown(timeout_millis)
