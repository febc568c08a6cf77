"""The package's process-wide state and hooks, all in one place.

Everything that lives as long as the process rather than one object is here: the one
``atexit`` callback and its one deadline, the one ``os.register_at_fork`` hook, the
registry of live processors, the other things module-level ``flush()`` covers
(flushables), the handles ``configure_tracing()`` installed, one-time warnings, the
self-metrics handles and the file locks of spool claims. Tests put it back as it was
with :func:`otel_nonblocking.testing.reset`.

**Exit.** At interpreter exit (and when a ``multiprocessing`` child made by ``fork`` ends,
which skips ``atexit``) one hook fixes one deadline, ``OTEL_NONBLOCKING_EXIT_TIMEOUT`` from
now, and hands the time left to each part in turn: first the hooks registered with
:func:`on_exit` (newest first: handles, integrations such as Langfuse; the handles' hook
moves to the newest place whenever a handle is added), then every live processor
(:func:`track_processor`), oldest first. An integration joins with one call::

    remove = on_exit(lambda seconds_left: my_client.flush(timeout=seconds_left))

**Fork.** Threads do not survive ``fork``, and a lock held by one of them at fork time
would stay held forever in the child. The one at-fork hook gives this module's own locks
fresh ones, lets go of the parent's spool claims, then calls every method registered with
:func:`after_fork_in_child`. Methods and processors are held weakly: an object that is
gone leaves nothing behind, so ``fork()`` and exit never slow down with the number of
objects a process has created and dropped.

**Flushables** are what an integration installs besides processors (the Langfuse
binding): module-level ``flush()``/``shutdown()`` (and ``flush_after``) give each what is
left of their deadline. They differ from :func:`on_exit` hooks, which run at exit only,
newest first, and hold no counts: a Langfuse binding is one flushable for ``flush()``, and
one exit hook per Langfuse project, in place of the project's own ``atexit`` callback.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import logging
import os
import sys
import threading
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ._deadline import Deadline

if TYPE_CHECKING:
    from typing import TypeAlias

    from opentelemetry.metrics import MeterProvider

    from ._processor import NonBlockingSpanProcessor
    from ._setup import TracingHandle
    from ._telemetry import TelemetryHandle
    from .metrics import SelfMetrics

    #: What configure_tracing() and configure_telemetry() install.
    InstalledHandle: TypeAlias = TracingHandle | TelemetryHandle

_logger = logging.getLogger("otel_nonblocking")

#: ``hook(seconds_left)``, called once at exit.
ExitHook = Callable[[float], object]

_keys = itertools.count()  # registration order, shared by every registry below

# -- live processors: the exit hook closes them, self-metrics observes them ----------------

_processors: weakref.WeakValueDictionary[int, NonBlockingSpanProcessor] = (
    weakref.WeakValueDictionary()
)


def track_processor(processor: NonBlockingSpanProcessor) -> None:
    """Count ``processor`` among the live ones and close it at exit
    (``processor.close_at_exit(seconds_left)``) while it lives. Held weakly."""
    _processors[next(_keys)] = processor
    _register_once()


def live_processors() -> list[NonBlockingSpanProcessor]:
    """Every NonBlockingSpanProcessor in this process that is still referenced, oldest first."""
    # valuerefs() copies the references in one step: processors made meanwhile on other
    # threads cannot break the iteration.
    refs = _processors.valuerefs()
    return [p for p in (ref() for ref in refs) if p is not None]


# -- the other live parts self-metrics observes (log record processors, metric readers) --

_components: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()


def track_component(component: object) -> None:
    """Count ``component`` (a log record processor, a metric reader) among the live parts
    that self-metrics observes. Held weakly; the exit hook does not visit it (such parts
    join the exit with :func:`on_exit`)."""
    _components[next(_keys)] = component


def live_components() -> list[Any]:
    """Every part :func:`track_component` was given that is still referenced, oldest first."""
    refs = _components.valuerefs()  # one step: see live_processors()
    return [c for c in (ref() for ref in refs) if c is not None]


# -- exit: one atexit callback, one deadline ----------------------------------------------

_exit_hooks: dict[int, ExitHook] = {}
_exit_budget: float | None = None  # seconds; None: OTEL_NONBLOCKING_EXIT_TIMEOUT at exit
_exit_deadline: Deadline | None = None  # fixed by whatever part of the exit comes first
_exit_ran = False
_exit_lock = threading.Lock()
_atexit_registered = False


def on_exit(hook: ExitHook) -> Callable[[], None]:
    """Call ``hook(seconds_left)`` in the package's exit hook; returns a function that
    removes it again. A hook must return within ``seconds_left``; what it raises is
    logged at debug level and ignored."""
    key = next(_keys)
    _exit_hooks[key] = hook
    _register_once()

    def remove() -> None:
        _exit_hooks.pop(key, None)

    return remove


def set_exit_budget(seconds: float | None) -> None:
    """The budget of the whole exit; None: ``OTEL_NONBLOCKING_EXIT_TIMEOUT``."""
    global _exit_budget
    _exit_budget = seconds


# Where the budget comes from when no code set one: ``_config`` registers the
# OTEL_NONBLOCKING_EXIT_TIMEOUT reader at its import (it warns through this module, so
# this module cannot import it); 2 s, that setting's default, until then.
_exit_budget_from_env: Callable[[], float] = lambda: 2.0  # noqa: E731 - a replaceable default


def set_exit_budget_source(source: Callable[[], float]) -> None:
    """Where :func:`exit_budget` reads the budget when no code set one (``_config`` calls it)."""
    global _exit_budget_from_env
    _exit_budget_from_env = source


def exit_budget() -> float:
    """Seconds the exit hook may take in all."""
    if _exit_budget is not None:
        return _exit_budget
    return _exit_budget_from_env()


def exiting() -> bool:
    """True once the process is exiting: the exit deadline is fixed, or the main thread
    has ended (``atexit`` callbacks, such as a TracerProvider's own, run after that)."""
    return _exit_deadline is not None or not threading.main_thread().is_alive()


def exit_deadline() -> Deadline:
    """The one deadline of the exit, fixed by the first caller.

    A TracerProvider's own exit callback may shut processors down before the package's
    hook runs; they take their time from this same deadline (see
    ``NonBlockingSpanProcessor.shutdown``), so the order of the callbacks does not matter.
    """
    global _exit_deadline
    deadline = _exit_deadline
    if deadline is None:
        deadline = _exit_deadline = Deadline.after(exit_budget())
    return deadline


def exit_hooks() -> list[ExitHook]:
    """The hooks :func:`on_exit` holds, oldest first (tests check who joined the exit)."""
    return [_exit_hooks[key] for key in sorted(_exit_hooks)]


def exit_registered_count() -> int:
    """How many hooks and live processors the exit hook would visit (tests check leaks)."""
    return len(_exit_hooks) + len(_processors)


def run_exit_hooks(budget: float | None = None) -> None:
    """Close everything under one deadline of ``budget`` seconds (default: the exit
    budget). Runs once per process; later calls return at once."""
    global _exit_ran
    if not _exit_lock.acquire(blocking=False):
        return  # running already (a signal handler interrupted it)
    try:
        if _exit_ran:
            return
        _exit_ran = True
        deadline = exit_deadline() if budget is None else Deadline.after(budget)
        for key in sorted(_exit_hooks, reverse=True):
            hook = _exit_hooks.get(key)
            if hook is not None:
                _call(hook, deadline)
        for key in sorted(_processors.keys()):
            processor = _processors.get(key)
            if processor is not None:
                _call(processor.close_at_exit, deadline)
    finally:
        _exit_lock.release()


def _call(hook: ExitHook, deadline: Deadline) -> None:
    try:
        hook(deadline.remaining())
    except Exception:  # one part's failure must not cost the others their turn
        _logger.debug("otel_nonblocking: exit hook failed", exc_info=True)


def _at_exit() -> None:
    run_exit_hooks()


def _register_once() -> None:
    """Register with atexit when the first part arrives, not at import: callbacks the
    application registered before its first processor then run after ours, as they did
    when each processor had its own (atexit runs the newest first)."""
    global _atexit_registered
    if not _atexit_registered:
        _atexit_registered = True
        atexit.register(_at_exit)


# -- flushables: what module-level flush()/shutdown() cover besides processors -----------


@dataclass(frozen=True)
class FlushCounts:
    """What one registered flushable did during a flush or shutdown.

    ``exported`` and ``dropped`` count spans that reached that state during the call;
    ``pending`` counts spans still waiting, and ``other_pending`` other items still
    waiting (Langfuse scores and media uploads); ``complete`` is False when the
    deadline ended the call while something was still on its way.
    """

    exported: int = 0
    dropped: int = 0
    pending: int = 0
    other_pending: int = 0
    complete: bool = True

    def __add__(self, other: FlushCounts) -> FlushCounts:
        return FlushCounts(
            exported=self.exported + other.exported,
            dropped=self.dropped + other.dropped,
            pending=self.pending + other.pending,
            other_pending=self.other_pending + other.other_pending,
            complete=self.complete and other.complete,
        )


@runtime_checkable
class Flushable(Protocol):
    """Something the package installed besides its processors, flushed with them."""

    def flush_within(self, deadline: Deadline) -> FlushCounts: ...

    def shutdown_within(self, deadline: Deadline) -> FlushCounts: ...


# Writers replace the tuple under the lock; readers (flush(), maybe in a signal handler)
# take no lock: reading one module attribute is atomic.
_flushables_lock = threading.Lock()
_flushables: tuple[Flushable, ...] = ()


# Held while an integration binds or unbinds (``bound_langfuse_flush``): one at a time.
bind_lock = threading.RLock()


def register_flushable(flushable: Flushable) -> None:
    """Have module-level ``flush()``/``shutdown()`` (and ``flush_after``) cover ``flushable``."""
    global _flushables
    with _flushables_lock:
        if not any(f is flushable for f in _flushables):
            _flushables = (*_flushables, flushable)


def unregister_flushable(flushable: Flushable) -> None:
    global _flushables
    with _flushables_lock:
        _flushables = tuple(f for f in _flushables if f is not flushable)


def flushables() -> list[Flushable]:
    return list(_flushables)  # no lock: see above


def run_flushables(deadline: Deadline, *, shutdown: bool) -> FlushCounts:
    """Flush (or shut down) every registered flushable, in turn, under ``deadline``.

    A flushable that raises counts as incomplete; the others still run.
    """
    total = FlushCounts()
    for flushable in flushables():
        try:
            counts = (
                flushable.shutdown_within(deadline)
                if shutdown
                else flushable.flush_within(deadline)
            )
        except Exception:
            _logger.debug("otel_nonblocking: flushing %r failed", flushable, exc_info=True)
            counts = FlushCounts(complete=False)
        total = total + counts
    return total


# -- what configure_tracing() and configure_telemetry() installed -----------------------

# Held by configure_tracing() from "is anything installed?" to the registration, so that
# racing first calls install one processor; reentrant, so that it can never deadlock.
configure_lock = threading.RLock()
_installed: list[InstalledHandle] = []
_installed_lock = threading.Lock()
_installed_exit: Callable[[], None] | None = None  # removes the handles' exit hook


def add_installed(handle: InstalledHandle, exit_seconds: float, hook: ExitHook) -> None:
    """Remember ``handle``. The first one joins the exit with ``hook``, with its budget
    ``exit_seconds`` for the whole exit; the handles then get their turn first. Each
    handle added moves ``hook`` to the newest place, ahead of the own exit hooks of the
    parts that handle holds (made before it), so that each part gets its share through
    it rather than the newest part the whole budget."""
    global _installed_exit
    with _installed_lock:
        _installed.append(handle)
        if _installed_exit is None:
            set_exit_budget(exit_seconds)
        else:
            _installed_exit()
        _installed_exit = on_exit(hook)


def forget_installed(handle: InstalledHandle) -> None:
    # No lock: shutdown() may run in a signal handler; list.remove is one C call.
    with contextlib.suppress(ValueError):
        _installed.remove(handle)


def installed_handles() -> list[InstalledHandle]:
    """The handles of everything configure_tracing() and configure_telemetry() installed
    and that is still running, oldest first."""
    return list(_installed)  # no lock: one C call, and flush() may run in a signal handler


# -- one-time warnings ---------------------------------------------------------------------

_warned: set[Hashable] = set()
_warned_lock = threading.Lock()


def warn_once(key: Hashable, message: str, *args: object) -> None:
    """Log ``message % args`` as a warning the first time this process sees ``key``."""
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    _logger.warning(message, *args)


# -- self-metrics: one SelfMetrics per MeterProvider --------------------------------------


@dataclass
class SelfMetricsRegistry:
    """``enable_self_metrics()``'s handles.

    By id, holding the provider (so the id stays its own): any MeterProvider will do, even
    one that cannot be weakly referenced. Providers are few and live as long as the process.
    ``on_global`` is the handle made on the global provider, proxy or real.
    """

    lock: threading.Lock = field(default_factory=threading.Lock)
    by_provider: dict[int, tuple[MeterProvider, SelfMetrics]] = field(default_factory=dict)
    on_global: SelfMetrics | None = None


SELF_METRICS = SelfMetricsRegistry()

# -- spool claims -----------------------------------------------------------------------

#: The fds holding the locks of this process's spool claims (every Spool's).
spool_claim_fds: set[int] = set()

# -- fork: one hook for everything ---------------------------------------------------------

# (a weak reference to the object, its function): no weakref callbacks, which can fire
# during interpreter teardown after this module's globals are gone (WeakMethod's own
# callback then raises into stderr). Dead entries are pruned at each registration.
_fork_methods: dict[int, tuple[weakref.ref[Any], Callable[[Any], Any]]] = {}


def after_fork_in_child(method: Callable[[], Any]) -> None:
    """Call the bound ``method`` in every child forked after this call, while its object lives.

    Methods run in the order they were registered.
    """
    owner = method.__self__  # type: ignore[attr-defined]
    function = method.__func__  # type: ignore[attr-defined]
    for key in [k for k, (ref, _) in _fork_methods.items() if ref() is None]:
        _fork_methods.pop(key, None)
    _fork_methods[next(_keys)] = (weakref.ref(owner), function)


def fork_registered_count() -> int:
    """How many methods are waiting for the next fork (tests check nothing leaks)."""
    return sum(1 for ref, _ in list(_fork_methods.values()) if ref() is not None)


class _Marker:
    """A weakly referenceable object for multiprocessing's after-fork registry."""


_MARKER = _Marker()
_mp_registered = False  # children inherit the registration with the registry


def _before_fork() -> None:
    # Only when the application uses multiprocessing: importing it costs 15 ms.
    global _mp_registered
    util = sys.modules.get("multiprocessing.util")
    if util is None or _mp_registered:
        return
    _mp_registered = True
    util.register_after_fork(_MARKER, _in_multiprocessing_child)


def _in_multiprocessing_child(_: object) -> None:
    """Runs in a multiprocessing child after its finalizers were cleared: the exit hook
    becomes one of its finalizers, which ``Process._bootstrap`` runs when ``run`` ends."""
    global _exit_ran, _exit_deadline
    _exit_ran, _exit_deadline = False, None
    from multiprocessing import util

    util.Finalize(None, _at_exit, exitpriority=0)


def _after_fork_in_child() -> None:
    global _exit_lock, _flushables_lock, _installed_lock, _warned_lock
    global bind_lock, configure_lock
    # A lock held by another thread (or a signal handler) at fork time stays held forever
    # in the child: every lock of this module is new.
    _exit_lock = threading.Lock()
    _flushables_lock = threading.Lock()
    _installed_lock = threading.Lock()
    _warned_lock = threading.Lock()
    configure_lock = threading.RLock()
    bind_lock = threading.RLock()
    SELF_METRICS.lock = threading.Lock()
    # Closing the inherited copy of a claim's fd keeps the parent's lock; holding it
    # would keep the claim alive after the parent ends (or keep the parent from
    # claiming the file again once it gave it back).
    for fd in list(spool_claim_fds):
        with contextlib.suppress(OSError):
            os.close(fd)
    spool_claim_fds.clear()
    for ref, function in list(_fork_methods.values()):
        owner = ref()
        if owner is None:
            continue
        try:
            function(owner)
        except Exception:  # one object's failure must not leave the others broken
            _logger.debug("otel_nonblocking: re-initialising after fork failed", exc_info=True)


if hasattr(os, "register_at_fork"):  # pragma: no branch - not on Windows
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
