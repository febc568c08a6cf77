"""The package's one exit hook: one deadline at exit, shared by everything it installed.

At interpreter exit (and when a ``multiprocessing`` child made by ``fork`` ends, which
skips ``atexit``) one hook fixes one deadline, ``OTEL_NONBLOCKING_EXIT_TIMEOUT`` from
now, and hands the time left to each part in turn: first the hooks registered with
:func:`on_exit` (newest first: handles, integrations such as Langfuse), then every live
object registered with :func:`track` (processors), oldest first. An integration joins
with one call::

    remove = on_exit(lambda seconds_left: my_client.flush(timeout=seconds_left))
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Protocol

from . import _config
from ._deadline import Deadline

_logger = logging.getLogger("otel_nonblocking")

#: ``hook(seconds_left)``, called once at exit.
ExitHook = Callable[[float], object]


class Closeable(Protocol):
    """What :func:`track` needs: a bounded close for the exit hook."""

    def close_at_exit(self, seconds: float) -> None: ...


_hooks: dict[int, ExitHook] = {}
_live: weakref.WeakValueDictionary[int, Closeable] = weakref.WeakValueDictionary()
_keys = itertools.count()
_budget: float | None = None  # seconds; None: OTEL_NONBLOCKING_EXIT_TIMEOUT at exit
_deadline: Deadline | None = None  # fixed by whatever part of the exit comes first
_ran = False
_ran_lock = threading.Lock()


def on_exit(hook: ExitHook) -> Callable[[], None]:
    """Call ``hook(seconds_left)`` in the package's exit hook; returns a function that
    removes it again. A hook must return within ``seconds_left``; what it raises is
    logged at debug level and ignored."""
    key = next(_keys)
    _hooks[key] = hook
    _register_once()

    def remove() -> None:
        _hooks.pop(key, None)

    return remove


def track(obj: Closeable) -> None:
    """Close ``obj`` at exit (``obj.close_at_exit(seconds_left)``) while it lives.

    Held weakly: an object that is gone leaves nothing behind.
    """
    _live[next(_keys)] = obj
    _register_once()


def set_exit_budget(seconds: float | None) -> None:
    """The budget of the whole exit; None: ``OTEL_NONBLOCKING_EXIT_TIMEOUT``."""
    global _budget
    _budget = seconds


def exit_budget() -> float:
    """Seconds the exit hook may take in all."""
    if _budget is not None:
        return _budget
    return _config.EXIT_TIMEOUT_MILLIS.resolve() / 1000


def exiting() -> bool:
    """True once the process is exiting: the exit deadline is fixed, or the main thread
    has ended (``atexit`` callbacks, such as a TracerProvider's own, run after that)."""
    return _deadline is not None or not threading.main_thread().is_alive()


def exit_deadline() -> Deadline:
    """The one deadline of the exit, fixed by the first caller.

    A TracerProvider's own exit callback may shut processors down before the package's
    hook runs; they take their time from this same deadline (see
    ``NonBlockingSpanProcessor.shutdown``), so the order of the callbacks does not matter.
    """
    global _deadline
    deadline = _deadline
    if deadline is None:
        deadline = _deadline = Deadline.after(exit_budget())
    return deadline


def registered_hooks() -> list[ExitHook]:
    """The hooks :func:`on_exit` holds, oldest first (tests check who joined the exit)."""
    return [_hooks[key] for key in sorted(_hooks)]


def registered_count() -> int:
    """How many hooks and live objects the exit hook would visit (tests check leaks)."""
    return len(_hooks) + len(_live)


def run_exit_hooks(budget: float | None = None) -> None:
    """Close everything under one deadline of ``budget`` seconds (default: the exit
    budget). Runs once per process; later calls return at once."""
    global _ran
    if not _ran_lock.acquire(blocking=False):
        return  # running already (a signal handler interrupted it)
    try:
        if _ran:
            return
        _ran = True
        deadline = exit_deadline() if budget is None else Deadline.after(budget)
        for key in sorted(_hooks, reverse=True):
            hook = _hooks.get(key)
            if hook is not None:
                _call(hook, deadline)
        for key in sorted(_live.keys()):
            obj = _live.get(key)
            if obj is not None:
                _call(obj.close_at_exit, deadline)
    finally:
        _ran_lock.release()


def _call(hook: ExitHook, deadline: Deadline) -> None:
    try:
        hook(deadline.remaining())
    except Exception:  # one part's failure must not cost the others their turn
        _logger.debug("otel_nonblocking: exit hook failed", exc_info=True)


def _at_exit() -> None:
    run_exit_hooks()


_registered = False


def _register_once() -> None:
    """Register with atexit when the first part arrives, not at import: callbacks the
    application registered before its first processor then run after ours, as they did
    when each processor had its own (atexit runs the newest first)."""
    global _registered
    if not _registered:
        _registered = True
        atexit.register(_at_exit)


# -- multiprocessing children made by fork end in os._exit, without atexit -----------------


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
    global _ran, _deadline
    _ran, _deadline = False, None
    from multiprocessing import util

    util.Finalize(None, _at_exit, exitpriority=0)


def _after_fork_in_child() -> None:
    global _ran_lock
    _ran_lock = threading.Lock()  # a signal in the parent may have held it at fork time


if hasattr(os, "register_at_fork"):  # pragma: no branch - not on Windows
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
