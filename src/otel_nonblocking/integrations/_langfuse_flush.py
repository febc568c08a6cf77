"""bound_langfuse_flush(): Langfuse's flush, shutdown and exit hook, bounded by one deadline.

It patches ``Langfuse`` and ``LangfuseResourceManager`` with ``wrapt``, puts a deadline
exporter inside Langfuse's span processors (or routes them through
``NonBlockingSpanProcessor``), and swaps the exit hook; ``unbind()`` undoes all of it.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import types
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from queue import Queue
from typing import Any, Literal

import wrapt
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from .. import _compat_sdk, _state
from .._config import seconds as _seconds  # the one seconds check
from .._deadline import Deadline
from .._errors import ConfigurationError
from .._exporter import DeadlineSpanExporter, ExportOutcome
from .._log import AggregatedWarning
from .._processor import NonBlockingSpanProcessor
from .._serverless import invocation_deadline
from .._suppress import BoundedCall, run_within, start_call
from . import _compat_langfuse as sdk
from ._langfuse_exporter import (
    CountingDeadlineExporter,
    disabled_for_malformed_host,
    drop_scores_without_keys,
    langfuse_span_exporter,
)

_logger = logging.getLogger("otel_nonblocking")

ProcessorMode = Literal["langfuse", "nonblocking"]
_POLL_SECONDS = 0.1  # how often a queue wait re-checks that its consumers are still alive
_WAKE_POLL_SECONDS = 0.05  # how often a shutdown wakes the consumers it is waiting for


@dataclass(frozen=True)
class LangfuseFlushResult:
    """What a bounded Langfuse flush or shutdown left behind.

    ``spans_pending`` counts spans still queued in Langfuse's span processor or in an
    export that had not returned; ``scores_pending`` and ``media_pending`` count score
    and media-upload tasks not yet finished. ``timed_out`` says the budget ran out
    while something was still on its way; pending items with ``timed_out`` False are
    ones no thread will send any more (their threads were stopped by ``shutdown()``),
    or, with ``processor="nonblocking"``, spans a flush left early because nothing
    could go out (the backend unreachable, its probe failed): the processor keeps them.
    ``spans_lost`` counts spans given up on during the call: an export that failed
    (the backend unreachable, rejecting them with 401, or abandoned at its deadline
    against a hanging host), which Langfuse's batch processor never sends again, or
    spans ``NonBlockingSpanProcessor`` dropped; not spans given up on before the call
    whose drop it only learned (out of attempts, their timed-out attempt then failed).
    """

    spans_pending: int = 0
    scores_pending: int = 0
    media_pending: int = 0
    timed_out: bool = False
    seconds: float = 0.0
    spans_lost: int = 0

    @property
    def pending(self) -> int:
        """Everything still pending, spans, scores and media together."""
        return self.spans_pending + self.scores_pending + self.media_pending

    @property
    def ok(self) -> bool:
        """Nothing was left pending, no span was lost, and the budget was kept.

        Scores and media the SDK gave up on (a backend that refuses or resets) are
        neither pending nor delivered: they are in Langfuse's own logs, not counted here.
        """
        return not self.timed_out and self.pending == 0 and self.spans_lost == 0


@dataclass(frozen=True)
class LangfuseClientStatus:
    """How one Langfuse project (resource manager) is handled by the binding.

    ``exporter``: ``"rebuilt"`` (Langfuse's default exporter replaced by
    :func:`langfuse_span_exporter`), ``"wrapped"`` (a custom exporter put behind a
    deadline), ``"kept"`` (already a deadline exporter) or ``"none"`` (tracing off).
    ``processor``: ``"langfuse"`` (Langfuse's batch processor) or ``"nonblocking"``.
    """

    public_key: str
    exporter: str
    processor: str
    shut_down: bool


@dataclass
class _Pending:
    spans: int = 0
    scores: int = 0
    media: int = 0
    complete: bool = True
    lost: int = 0
    # Spans dropped during the call that were given up on before it began (not in lost).
    earlier: int = 0

    def add(self, other: _Pending) -> None:
        self.spans += other.spans
        self.scores += other.scores
        self.media += other.media
        self.complete = self.complete and other.complete
        self.lost += other.lost
        self.earlier += other.earlier


class _LostSpans:
    """Counts spans whose export failed, for a processor that never sends them again
    (Langfuse's batch processor): an export listener on the deadline exporter."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def __call__(self, outcome: ExportOutcome, spans: int, seconds: float) -> None:
        if outcome is not ExportOutcome.SUCCESS:
            with self._lock:
                self.count += spans


class _Borrowed(SpanExporter):
    """Lends an exporter to a processor that must not shut it down (it stays Langfuse's)."""

    def __init__(self, exporter: Any, deadline_exporter: Any = None) -> None:
        self._exporter = exporter
        # The connection of our deadline exporter inside (perhaps behind Langfuse's
        # transforming exporter): the processor's deadline exporter reads the HTTP
        # status from it, so a 401 is a rejection, not an outage.
        self._session = getattr(deadline_exporter, "_session", None)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self._exporter.export(spans)
        return result if isinstance(result, SpanExportResult) else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class _NonBlockingBatch:
    """Stands in for the ``BatchProcessor`` inside Langfuse's processor.

    Langfuse's ``on_start``/``on_end`` (propagated attributes, project scoping, the
    export filter) still run; the spans they let through go to a
    :class:`NonBlockingSpanProcessor` instead of the batch queue.
    """

    def __init__(self, processor: NonBlockingSpanProcessor, replaced: Any, timeout: float):
        self.processor = processor
        self.replaced = replaced
        self._timeout_millis = int(timeout * 1000)

    @property
    def _exporter(self) -> Any:  # read by BatchSpanProcessor.span_exporter
        return _compat_sdk.batch_exporter(self.replaced)

    def emit(self, data: ReadableSpan) -> None:
        self.processor.on_end(data)

    def force_flush(self, timeout_millis: int | None = None) -> bool:
        millis = self._timeout_millis if timeout_millis is None else timeout_millis
        return self.processor.force_flush(millis)

    def shutdown(self, timeout_millis: float | None = None) -> None:
        self.processor.shutdown(timeout_millis)


class _SpanFlusher:
    """Runs a ``BatchSpanProcessor.force_flush`` (which ignores timeouts) on a helper thread.

    The caller waits only until its deadline. A flush still running is joined rather
    than doubled, so repeated flushes against a dead backend never pile up threads.
    """

    def __init__(self, processor: Any) -> None:
        self._processor = processor
        self._lock = threading.Lock()
        self._call: BoundedCall[None] | None = None

    def flush(self, deadline: Deadline) -> bool:
        """True if a complete flush ended before ``deadline``.

        Joining a flush that started earlier is enough: it exports until the queue is
        empty, so it also takes every span ended before this call.
        """
        with self._lock:
            call = self._call
            if call is None or call.done:
                call = self._call = start_call(self._run, "otel-nonblocking-langfuse-flush")
        return call.wait(deadline.remaining())

    def _run(self) -> None:
        try:
            self._processor.force_flush()
        except Exception:
            _logger.debug("otel_nonblocking: Langfuse span processor flush raised", exc_info=True)


@dataclass
class _ProcessorRecord:
    processor: Any
    slot: sdk.ExporterSlot | None = None
    original: Any = None
    installed: Any = None
    exporter_kind: str = "none"
    replaced_batch: Any = None
    nonblocking: NonBlockingSpanProcessor | None = None
    flusher: _SpanFlusher | None = None
    lost: _LostSpans | None = None  # with Langfuse's batch processor: its failed exports

    def exporter(self) -> Any:
        if self.installed is not None:
            return self.installed
        return self.slot.get() if self.slot is not None else None


@dataclass
class _ManagerRecord:
    processors: list[_ProcessorRecord] = field(default_factory=list)
    remove_exit_hook: Callable[[], None] | None = None
    prompt_tasks: Any = None  # the prompt cache task manager whose exit hook we took over


class _ExitHook:
    """The exit hook (in the package's one exit hook, ``_state.on_exit``) that replaces
    ``LangfuseResourceManager.shutdown``'s atexit callback for one manager."""

    def __init__(self, binding: LangfuseBinding, rm: Any) -> None:
        self._binding = weakref.ref(binding)
        self._rm = weakref.ref(rm)

    def __call__(self, seconds_left: float) -> None:
        binding, rm = self._binding(), self._rm()
        if binding is None or rm is None:
            return
        try:
            binding._exit(rm, seconds_left)
        except Exception:
            _logger.debug("otel_nonblocking: Langfuse exit hook failed", exc_info=True)


def _undeliverable(queue: Queue[Any]) -> int:
    """Items in a queue no consumer will take, not counting wake/shutdown sentinels.

    The sentinels are bare ``object()`` items; some releases count them as unfinished
    tasks (4.18), others mark them done as they put them (5.x), so they are skipped.
    """
    with queue.mutex:
        return sum(1 for item in queue.queue if type(item) is not object)


def _timed_join(
    queue: Queue[Any] | None,
    consumers: list[Any],
    deadline: Deadline,
    wake: Callable[[], object] | None = None,
) -> tuple[int, bool]:
    """``queue.join()`` until ``deadline``: (tasks still unfinished, whether time ran out).

    Returns at once when no consumer thread is alive, with the items nobody will ever
    take: after ``shutdown()`` Langfuse 4.x still enqueues scores, and a second
    ``shutdown()`` on 4.18 leaves sentinels behind, which would make a plain ``join()``
    wait forever.
    """
    if queue is None:
        return 0, False
    while True:
        if not sdk.alive(consumers):
            return _undeliverable(queue), False
        if wake is not None:  # again each round: a consumer may have started a new batch
            wake()
        with queue.all_tasks_done:
            left = queue.unfinished_tasks
            if left == 0:
                return 0, False
            remaining = deadline.remaining()
            if remaining <= 0:
                return left, True
            queue.all_tasks_done.wait(min(remaining, _POLL_SECONDS))


def _active() -> LangfuseBinding | None:
    """The active binding: the one registered with the package's flush (``_state.py``)."""
    for flushable in _state.flushables():
        if isinstance(flushable, LangfuseBinding) and flushable.active:
            return flushable
    return None


def _bind_instance(instance: Any, args: tuple[Any, ...]) -> Any:
    # Called through the class (``Langfuse.flush(client)``) the instance is the first arg.
    if instance is None and args:
        return args[0]
    return instance


def _client_flush(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    binding = _active()
    if binding is None:
        return wrapped(*args, **kwargs)
    client = _bind_instance(instance, args)
    return binding._flush_managers([sdk.client_resources(client)], None)


def _client_shutdown(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    binding = _active()
    if binding is None:
        return wrapped(*args, **kwargs)
    client = _bind_instance(instance, args)
    return binding._shutdown_managers([sdk.client_resources(client)], None)


def _rm_flush(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    binding = _active()
    if binding is None:
        return wrapped(*args, **kwargs)
    return binding._flush_managers([_bind_instance(instance, args)], None)


def _rm_shutdown(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    binding = _active()
    if binding is None:
        return wrapped(*args, **kwargs)
    return binding._shutdown_managers([_bind_instance(instance, args)], None)


def _rm_initialize(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    result = wrapped(*args, **kwargs)
    binding = _active()
    if binding is not None:
        binding._adopt_safely(_bind_instance(instance, args))
    return result


_WRAPPERS: tuple[tuple[Any, str, Callable[..., Any]], ...] = (
    (sdk.LANGFUSE_CLIENT, "flush", _client_flush),
    (sdk.LANGFUSE_CLIENT, "shutdown", _client_shutdown),
    (sdk.RESOURCE_MANAGER, "flush", _rm_flush),
    (sdk.RESOURCE_MANAGER, "shutdown", _rm_shutdown),
    (sdk.RESOURCE_MANAGER, "_initialize_instance", _rm_initialize),
)


class LangfuseBinding:
    """The active patch of Langfuse made by :func:`bound_langfuse_flush`.

    While it is active, ``Langfuse.flush()``/``shutdown()`` and the exit hook share one
    deadline across Langfuse's span processors, score queue and media queue and return
    a :class:`LangfuseFlushResult`. :meth:`unbind` restores the stock SDK.
    """

    def __init__(self, timeout: float, processor: ProcessorMode, exit_timeout: float) -> None:
        self._timeout = timeout
        self._processor_mode: ProcessorMode = processor
        self._exit_timeout = exit_timeout
        self._lock = threading.RLock()
        self._active = False
        self._patches: list[tuple[Any, str, Any, Any]] = []
        self._records: weakref.WeakKeyDictionary[Any, _ManagerRecord] = weakref.WeakKeyDictionary()
        self._shut_down: weakref.WeakSet[Any] = weakref.WeakSet()
        self._exit_deadline: Deadline | None = None
        self._warn = AggregatedWarning("Langfuse flush stopped at its deadline")

    # -- public --------------------------------------------------------------------

    @property
    def timeout(self) -> float:
        """Budget in seconds of each flush and shutdown, and the exporters' deadline."""
        return self._timeout

    @property
    def exit_timeout(self) -> float:
        """Budget in seconds of everything the exit hooks do, together."""
        return self._exit_timeout

    @property
    def processor(self) -> ProcessorMode:
        """``"langfuse"`` (Langfuse's batch processor) or ``"nonblocking"``."""
        return self._processor_mode

    @property
    def active(self) -> bool:
        """False once :meth:`unbind` ran."""
        return self._active

    def flush(self, client: Any = None, timeout: float | None = None) -> LangfuseFlushResult:
        """Flush one client (or every Langfuse project when ``client`` is None), bounded."""
        return self._flush_managers(self._managers_of(client), timeout)

    def shutdown(self, client: Any = None, timeout: float | None = None) -> LangfuseFlushResult:
        """Shut down one client (or every Langfuse project), bounded."""
        return self._shutdown_managers(self._managers_of(client), timeout)

    def clients(self) -> list[LangfuseClientStatus]:
        """How each Langfuse project seen so far is handled."""
        with self._lock:
            items = list(self._records.items())
        statuses = []
        for rm, record in items:
            kinds = {r.exporter_kind for r in record.processors} or {"none"}
            modes = {"nonblocking" if r.nonblocking else "langfuse" for r in record.processors}
            statuses.append(
                LangfuseClientStatus(
                    public_key=str(getattr(rm, "public_key", "")),
                    exporter="/".join(sorted(kinds)),
                    processor="/".join(sorted(modes)) if record.processors else "none",
                    shut_down=rm in self._shut_down,
                )
            )
        return statuses

    def flush_within(self, deadline: Deadline) -> _state.FlushCounts:
        """Flush every Langfuse project until ``deadline``: what ``otel_nonblocking.flush()``
        and ``flush_after`` call, with what is left of their own deadline."""
        return self._counted(deadline, shutdown=False)

    def shutdown_within(self, deadline: Deadline) -> _state.FlushCounts:
        """Shut every Langfuse project down until ``deadline`` (``otel_nonblocking.shutdown()``)."""
        return self._counted(deadline, shutdown=True)

    def unbind(self, timeout: float | None = None) -> None:
        """Restore the stock SDK: methods, exporters, processors and exit hooks. Idempotent.

        Spans held by ``NonBlockingSpanProcessor`` are exported within ``timeout``
        (default: the binding's timeout), the rest are dropped and counted.
        """
        budget = self._timeout if timeout is None else _seconds("timeout", timeout, allow_zero=True)
        deadline = Deadline.after(budget)
        with _state.bind_lock:
            with self._lock:
                if not self._active:
                    return
                self._active = False
                items = list(self._records.items())
                self._records = weakref.WeakKeyDictionary()
                patches, self._patches = self._patches, []
            for rm, record in items:
                self._release(rm, record, deadline)
            for cls, name, original, patched in reversed(patches):
                if cls.__dict__.get(name) is patched:
                    setattr(cls, name, original)
                # else someone wrapped it after us: our wrapper now passes straight through
            _state.unregister_flushable(self)

    def __repr__(self) -> str:
        state = "active" if self._active else "unbound"
        return (
            f"<LangfuseBinding {state} timeout={self._timeout:g}s processor={self._processor_mode}>"
        )

    # -- patching and adoption ---------------------------------------------------------

    def _patch(self) -> None:
        for cls, name, wrapper in _WRAPPERS:
            original = cls.__dict__[name]
            patched = wrapt.FunctionWrapper(original, wrapper)
            setattr(cls, name, patched)
            self._patches.append((cls, name, original, patched))
        self._active = True

    def _original(self, cls: Any, name: str) -> Any:
        for patched_cls, patched_name, original, _ in self._patches:
            if patched_cls is cls and patched_name == name:
                return original
        return cls.__dict__.get(name)

    def _adopt_safely(self, rm: Any) -> None:
        try:
            self._adopt(rm)
        except Exception:
            _logger.warning(
                "otel_nonblocking: could not bound Langfuse's exporter; flush stays bounded",
                exc_info=True,
            )

    def _adopt(self, rm: Any) -> _ManagerRecord:
        with self._lock:
            record = self._records.get(rm)
            fresh = record is None
            if record is None:
                record = _ManagerRecord()
                self._records[rm] = record
            known = {id(r.processor) for r in record.processors}
            for processor in sdk.span_processors(rm):
                if id(processor) not in known:
                    record.processors.append(self._adopt_processor(rm, processor))
            if fresh:
                drop_scores_without_keys(rm)
                sdk.make_wakeable(rm)  # flush and exit need not wait out a consumer's get()
                # Registered after the processors (and their own exit hooks): atexit runs
                # in reverse, so this hook runs first and its deadline covers them all.
                self._hook_exit(rm, record)
            return record

    def _adopt_processor(self, rm: Any, processor: Any) -> _ProcessorRecord:
        record = _ProcessorRecord(processor=processor, flusher=_SpanFlusher(processor))
        slot = sdk.exporter_slot(processor)
        if slot is not None:
            record.slot = slot
            record.original = current = slot.get()
            if isinstance(current, DeadlineSpanExporter):
                record.exporter_kind = "kept"
            else:
                record.installed, record.exporter_kind = self._deadline_exporter_for(rm, current)
                slot.set(record.installed)
        if self._processor_mode == "nonblocking":
            self._route_through_nonblocking(record)
        exporter = record.exporter()
        if record.nonblocking is None and isinstance(exporter, DeadlineSpanExporter):
            record.lost = _LostSpans()
            exporter.add_listener(record.lost)
        return record

    def _deadline_exporter_for(self, rm: Any, current: Any) -> tuple[Any, str]:
        """Langfuse's default exporter is rebuilt (its connection can then be cut when an
        export is abandoned); any other exporter is put behind a deadline as it is."""
        millis = self._timeout * 1000
        base_url = getattr(rm, "base_url", None)
        is_default = (
            type(current) is OTLPSpanExporter
            and isinstance(base_url, str)
            and _compat_sdk.exporter_endpoint(current) == sdk.default_endpoint(base_url)
        )
        if is_default:
            disabled = disabled_for_malformed_host(rm)
            if disabled is not None:
                return disabled, "none"
            try:
                rebuilt = langfuse_span_exporter(
                    self._timeout,
                    public_key=rm.public_key,
                    secret_key=rm.secret_key,
                    base_url=base_url,
                    additional_headers=getattr(rm, "additional_headers", None),
                    compression=getattr(rm, "otel_compression", None),
                )
                return rebuilt, "rebuilt"
            except (ConfigurationError, AttributeError) as error:
                _logger.debug("otel_nonblocking: keeping Langfuse's exporter (%s)", error)
        return CountingDeadlineExporter(current, timeout_millis=millis), "wrapped"

    def _route_through_nonblocking(self, record: _ProcessorRecord) -> None:
        batch = sdk.batch_processor(record.processor)
        if isinstance(batch, _NonBlockingBatch):
            return
        if batch is None:
            _logger.warning(
                "otel_nonblocking: processor='nonblocking' needs an OpenTelemetry SDK whose "
                "BatchSpanProcessor uses a BatchProcessor; Langfuse's processor is kept "
                "(its exporter is still bounded)"
            )
            return
        queue_size, batch_size, delay_millis = _compat_sdk.batch_settings(batch)
        nonblocking = NonBlockingSpanProcessor(
            _Borrowed(_compat_sdk.batch_exporter(batch), record.exporter()),
            max_queue_size=queue_size,
            max_export_batch_size=min(batch_size, queue_size),
            schedule_delay_millis=max(delay_millis, 1),
            export_timeout_millis=max(int(self._timeout * 1000), 1),
            shutdown_timeout_millis=int(self._exit_timeout * 1000),
        )
        _compat_sdk.replace_batch_processor(
            record.processor, _NonBlockingBatch(nonblocking, batch, self._timeout)
        )
        record.replaced_batch = batch
        record.nonblocking = nonblocking
        queue = _compat_sdk.batch_processor_queue(batch)
        while queue:  # spans queued before the switch: oldest first, as the batch would
            try:
                nonblocking.on_end(queue.pop())
            except IndexError:  # its worker took the last one meanwhile
                break

    def _hook_exit(self, rm: Any, record: _ManagerRecord) -> None:
        original = self._original(sdk.RESOURCE_MANAGER, "shutdown")
        if callable(original):
            atexit.unregister(types.MethodType(original, rm))
        current = getattr(rm, "shutdown", None)
        if callable(current):
            atexit.unregister(current)
        prompt_tasks = sdk.prompt_cache_tasks(rm)
        if prompt_tasks is not None:
            atexit.unregister(prompt_tasks.shutdown)
            record.prompt_tasks = prompt_tasks
        hook = _ExitHook(self, rm)
        # The package's one exit hook runs it, sharing one deadline with everything else
        # the package installed (and before the TracerProvider's own atexit callback).
        record.remove_exit_hook = _state.on_exit(hook)

    def _release(self, rm: Any, record: _ManagerRecord, deadline: Deadline) -> None:
        sdk.keep_scores(rm)
        sdk.restore_queue(rm)
        for pr in record.processors:
            exporter = pr.exporter()
            if pr.lost is not None and isinstance(exporter, DeadlineSpanExporter):
                exporter.remove_listener(pr.lost)
            if pr.nonblocking is not None and pr.replaced_batch is not None:
                _compat_sdk.replace_batch_processor(pr.processor, pr.replaced_batch)
                pr.nonblocking.shutdown(timeout_millis=deadline.remaining() * 1000)
            if pr.slot is not None and pr.installed is not None:
                pr.slot.set(pr.original)
                if isinstance(pr.installed, DeadlineSpanExporter):
                    pr.installed.shutdown(timeout_millis=min(deadline.remaining(), 0.1) * 1000)
                elif pr.exporter_kind == "rebuilt":  # tracing off: it holds nothing to wait for
                    pr.installed.shutdown()
        if record.remove_exit_hook is not None:
            record.remove_exit_hook()
            already = rm in self._shut_down or sdk.is_shut_down(rm)
            original = self._original(sdk.RESOURCE_MANAGER, "shutdown")
            if not already and callable(original):
                atexit.register(types.MethodType(original, rm))
        if record.prompt_tasks is not None:
            atexit.register(record.prompt_tasks.shutdown)

    # -- bounded flush and shutdown ------------------------------------------------------

    def _managers_of(self, client: Any) -> list[Any]:
        if client is None:
            return sdk.resource_managers()
        if isinstance(client, sdk.RESOURCE_MANAGER):
            return [client]
        return [sdk.client_resources(client)]

    def _budget(self, timeout: float | None) -> Deadline:
        if timeout is not None:
            timeout = _seconds("timeout", timeout, allow_zero=True)
        deadline = Deadline.after(self._timeout if timeout is None else timeout)
        invocation = invocation_deadline()  # inside a flush_after handler: its time left
        return deadline if invocation is None else deadline.earliest(invocation.remaining())

    def _counted(self, deadline: Deadline, *, shutdown: bool) -> _state.FlushCounts:
        started = time.monotonic()
        managers = [rm for rm in sdk.resource_managers() if rm is not None]
        records = [self._record_for(rm) for rm in managers]
        exported0, dropped0 = _span_totals(records)
        pending = _Pending()
        for rm in managers:
            one = self._shutdown_one if shutdown else self._flush_one
            pending.add(one(rm, deadline))
        self._result(pending, started, "shutdown" if shutdown else "flush")
        exported1, dropped1 = _span_totals(records)
        return _state.FlushCounts(
            exported=exported1 - exported0,
            dropped=max(dropped1 - dropped0 - pending.earlier, 0),
            pending=pending.spans,
            other_pending=pending.scores + pending.media,
            complete=pending.complete,
        )

    def _flush_managers(self, managers: list[Any], timeout: float | None) -> LangfuseFlushResult:
        started = time.monotonic()
        deadline = self._budget(timeout)
        pending = _Pending()
        for rm in managers:
            if rm is not None:
                pending.add(self._flush_one(rm, deadline))
        return self._result(pending, started, "flush")

    def _shutdown_managers(self, managers: list[Any], timeout: float | None) -> LangfuseFlushResult:
        started = time.monotonic()
        deadline = self._budget(timeout)
        pending = _Pending()
        for rm in managers:
            if rm is not None:
                pending.add(self._shutdown_one(rm, deadline))
        return self._result(pending, started, "shutdown")

    def _result(self, pending: _Pending, started: float, what: str) -> LangfuseFlushResult:
        result = LangfuseFlushResult(
            spans_pending=pending.spans,
            scores_pending=pending.scores,
            media_pending=pending.media,
            timed_out=not pending.complete,
            seconds=time.monotonic() - started,
            spans_lost=pending.lost,
        )
        if not result.ok:
            self._warn.add(f"{what}: spans_lost", result.spans_lost)
            self._warn.add(f"{what}: spans_pending", result.spans_pending)
            self._warn.add(f"{what}: scores_pending", result.scores_pending)
            self._warn.add(f"{what}: media_pending", result.media_pending)
            if result.pending == 0:
                self._warn.add(f"{what}: timed_out")
        return result

    def _record_for(self, rm: Any) -> _ManagerRecord:
        if self._active:
            return self._adopt(rm)
        # Unbound: still a bounded wait, but nothing is swapped or patched any more.
        return _ManagerRecord(
            processors=[
                _ProcessorRecord(processor=p, flusher=_SpanFlusher(p))
                for p in sdk.span_processors(rm)
            ]
        )

    def _flush_one(self, rm: Any, deadline: Deadline) -> _Pending:
        record = self._record_for(rm)
        sdk.wake_score_consumers(rm)
        pending = _Pending()
        lost_before = sum(self._spans_lost(pr) for pr in record.processors)
        for pr in record.processors:
            complete, earlier = self._flush_processor(pr, deadline)
            pending.complete = complete and pending.complete
            pending.earlier += earlier
        scores = sdk.score_queue(rm)
        pending.scores, late = _timed_join(
            scores, sdk.score_consumers(rm), deadline, wake=lambda: sdk.wake_queue(scores)
        )
        pending.complete = pending.complete and not late
        # Media jobs are produced while spans are exported (4.18+), so media comes last.
        pending.media, late = _timed_join(sdk.media_queue(rm), sdk.media_consumers(rm), deadline)
        pending.complete = pending.complete and not late
        pending.spans = sum(self._spans_pending(pr) for pr in record.processors)
        lost = sum(self._spans_lost(pr) for pr in record.processors) - lost_before
        pending.lost = max(lost - pending.earlier, 0)
        return pending

    def _flush_processor(self, pr: _ProcessorRecord, deadline: Deadline) -> tuple[bool, int]:
        """Flush one span processor until ``deadline``: whether the deadline did not end
        it, and how many spans dropped meanwhile had been given up on before it began
        (lost before this flush, not by it)."""
        if pr.nonblocking is not None:
            report = pr.nonblocking._flush_report(int(deadline.remaining() * 1000))
            # Not ok because spans were dropped, or given up on early with nothing able
            # to go out, is not a timeout: the pending and lost counts say it.
            return report.done, sum(report.dropped_earlier.values())
        if pr.flusher is None:
            return True, 0
        exporter = pr.exporter()
        if isinstance(exporter, DeadlineSpanExporter):
            # A flush is a natural probe: a breaker left open by an earlier outage lets
            # this flush's export out at once instead of failing (and losing) it.
            exporter.allow_probe(deadline.remaining())
        return pr.flusher.flush(deadline), 0

    def _spans_lost(self, pr: _ProcessorRecord) -> int:
        if pr.nonblocking is not None:
            return pr.nonblocking.stats().dropped_total
        return 0 if pr.lost is None else pr.lost.count

    def _spans_pending(self, pr: _ProcessorRecord) -> int:
        if pr.nonblocking is not None:
            return pr.nonblocking.stats().pending
        exporter = pr.exporter()
        in_flight = exporter.in_flight if isinstance(exporter, CountingDeadlineExporter) else 0
        return sdk.queued_spans(pr.processor) + in_flight

    def _shutdown_one(self, rm: Any, deadline: Deadline) -> _Pending:
        sdk.mark_shut_down(rm)  # 4.18+: new scores are dropped, a fork restarts nothing
        record = self._record_for(rm)
        if record.remove_exit_hook is not None:
            record.remove_exit_hook()
        stock_hook = getattr(rm, "shutdown", None)
        if callable(stock_hook):  # as stock shutdown() does, for a handle used after unbind()
            atexit.unregister(stock_hook)
        pending = self._flush_one(rm, deadline)
        media = sdk.alive(sdk.media_consumers(rm))
        for consumer in media:
            consumer.pause()
        signal = sdk.media_shutdown_signal(rm)
        if media and signal is not None:  # 4.18+: wakes them at once instead of within 1 s
            signal(count=len(media))
        scores = sdk.alive(sdk.score_consumers(rm))
        for consumer in scores:
            consumer.pause()
        queues = (sdk.media_queue(rm), sdk.score_queue(rm))
        _join_waking(media + scores, queues, deadline)
        self._shut_down.add(rm)
        return pending

    def _exit(self, rm: Any, seconds_left: float) -> None:
        """At interpreter exit: shut ``rm`` down, then its span processors and exporters.

        Every exit hook of the binding shares one deadline of ``exit_timeout``, or less
        when the package's exit budget has less left (``seconds_left``); shutting
        the processors down here means the provider's own exit hook later finds them
        already stopped and returns at once.
        """
        with self._lock:
            if self._exit_deadline is None:
                self._exit_deadline = Deadline.after(min(self._exit_timeout, seconds_left))
            deadline = self._exit_deadline
        started = time.monotonic()
        pending = self._shutdown_one(rm, deadline) if rm not in self._shut_down else _Pending()
        self._result(pending, started, "exit")
        record = self._records.get(rm)
        closers: list[Callable[[], object]] = []
        for pr in record.processors if record is not None else ():
            if pr.nonblocking is not None:
                pr.nonblocking.shutdown(timeout_millis=deadline.remaining() * 1000)
            exporter = pr.exporter()
            if isinstance(exporter, DeadlineSpanExporter):
                exporter.shutdown(timeout_millis=deadline.remaining() * 1000)
            closers.append(pr.processor.shutdown)
        if record is not None and record.prompt_tasks is not None:
            # Its consumers are stopped and woken here; its shutdown() then joins them.
            prompts = sdk.alive(sdk.prompt_consumers(rm))
            for consumer in prompts:
                consumer.pause()
            sdk.wake_prompt_consumers(rm, len(prompts))
            closers.append(record.prompt_tasks.shutdown)
        for close in closers:  # they may wait without a limit: daemon threads, waited in time
            run_within(_quietly(close), deadline.remaining(), "otel-nonblocking-langfuse-exit")
        self._warn.maybe_emit(force=True)


def _join_waking(
    threads: list[Any], queues: Sequence[Queue[Any] | None], deadline: Deadline
) -> None:
    """Join ``threads`` until ``deadline``, waking the consumers that wait on ``queues``.

    A paused 3.x/4.x consumer only notices it should stop when its ``get(timeout=1)``
    returns; woken, it returns at once. Woken again each round: a consumer may have
    started a new ``get`` after the previous wake.
    """
    for thread in threads:
        while thread.is_alive():
            for queue in queues:
                sdk.wake_queue(queue)
            remaining = deadline.remaining()
            if remaining <= 0:
                break
            thread.join(min(remaining, _WAKE_POLL_SECONDS))


def _span_totals(records: list[_ManagerRecord]) -> tuple[int, int]:
    """Spans exported and dropped so far by the processors of ``records``."""
    exported = dropped = 0
    for record in records:
        for pr in record.processors:
            if pr.nonblocking is not None:
                stats = pr.nonblocking.stats()
                exported += stats.exported
                dropped += stats.dropped_total
                continue
            exporter = pr.exporter()
            if isinstance(exporter, CountingDeadlineExporter):
                exported += exporter.exported
                dropped += exporter.failed
    return exported, dropped


def _quietly(call: Callable[[], object]) -> Callable[[], None]:
    def run() -> None:
        try:
            call()
        except Exception:
            _logger.debug("otel_nonblocking: Langfuse processor shutdown raised", exc_info=True)

    return run


def bound_langfuse_flush(
    timeout: float = 2.0,
    *,
    processor: ProcessorMode = "langfuse",
    exit_timeout: float | None = None,
) -> LangfuseBinding:
    """Bound Langfuse's ``flush()``, ``shutdown()`` and exit hook by ``timeout`` seconds.

    Patches (with ``wrapt``) ``Langfuse.flush``/``shutdown`` and
    ``LangfuseResourceManager.flush``/``shutdown`` so that one deadline is shared by
    Langfuse's span processors, its score queue and its media queue; what is still
    pending is returned as a :class:`LangfuseFlushResult` (and logged). Langfuse's
    default exporter is replaced by :func:`langfuse_span_exporter` (a custom one is put
    behind a deadline), and each project's exit hook is swapped for a bounded one
    sharing ``exit_timeout`` (default: ``timeout``). With ``processor="nonblocking"``
    spans that pass Langfuse's own filters go through :class:`NonBlockingSpanProcessor`.

    Safe to call before or after clients are created; calling it again returns the
    active binding (unbind first to change its settings); ``unbind()`` restores
    everything.

    >>> binding = bound_langfuse_flush(timeout=2)  # doctest: +SKIP
    >>> Langfuse().flush()  # doctest: +SKIP
    LangfuseFlushResult(spans_pending=0, scores_pending=0, media_pending=0, ...)
    """
    seconds = _seconds("timeout", timeout)
    exit_seconds = (
        seconds if exit_timeout is None else _seconds("exit_timeout", exit_timeout, allow_zero=True)
    )
    if processor not in ("langfuse", "nonblocking"):
        raise ConfigurationError(
            f"processor must be 'langfuse' or 'nonblocking', got {processor!r}"
        )
    with _state.bind_lock:  # one active binding per process
        current = _active()
        if current is not None:
            if (current.timeout, current.processor, current.exit_timeout) != (
                seconds,
                processor,
                exit_seconds,
            ):
                _logger.warning(
                    "otel_nonblocking: Langfuse is already bound (%r); unbind() first to "
                    "change its settings",
                    current,
                )
            return current
        binding = LangfuseBinding(seconds, processor, exit_seconds)
        binding._patch()
        _state.register_flushable(binding)  # otel_nonblocking.flush() and flush_after cover it
        for rm in sdk.resource_managers():
            binding._adopt_safely(rm)
        return binding


def unbind_langfuse_flush(timeout: float | None = None) -> bool:
    """Undo :func:`bound_langfuse_flush`; True if a binding was active."""
    binding = _active()
    if binding is None:
        return False
    binding.unbind(timeout)
    return True


def current_binding() -> LangfuseBinding | None:
    """The active binding, if any."""
    return _active()
