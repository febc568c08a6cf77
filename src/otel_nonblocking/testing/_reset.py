"""reset(): the package's process-wide state back as it was after import, between tests."""

from __future__ import annotations

import sys


def reset(timeout: float = 0.5) -> None:
    """Put the package's process-wide state back as it was after import.

    Call it between tests (like structlog's ``reset_defaults()``) so that nothing one test
    installed leaks into the next. Within about ``timeout`` seconds in all it unbinds a
    bound Langfuse client (``bound_langfuse_flush``) and shuts down everything
    ``configure_tracing()`` and ``configure_telemetry()`` installed; then it forgets the
    exit hooks and the exit budget, the flushables, which one-time warnings were given,
    and the self-metrics handles (disabled first: a ``MeterProvider`` that outlives the
    test reports nothing twice). Processors, exporters and spools that a test still holds
    are left alone: they are held weakly and leave with their objects. OpenTelemetry's
    own globals (the global tracer and meter providers) are not the package's and are
    not touched.

    >>> from otel_nonblocking.testing import reset
    >>> reset()
    """
    from otel_nonblocking import _setup, _state
    from otel_nonblocking._deadline import Deadline

    deadline = Deadline.after(max(timeout, 0.0))
    langfuse = sys.modules.get("otel_nonblocking.integrations._langfuse_flush")
    if langfuse is not None:  # only when imported: importing it imports Langfuse
        langfuse.unbind_langfuse_flush(timeout=deadline.remaining())
    _setup.shutdown(deadline.remaining())
    _state._installed.clear()  # also those a busy shutdown left running
    _state._installed_exit = None
    _state._exit_hooks.clear()
    _state.set_exit_budget(None)
    _state._exit_deadline = None
    _state._exit_ran = False
    for flushable in _state.flushables():
        _state.unregister_flushable(flushable)
    with _state._warned_lock:
        _state._warned.clear()
    registry = _state.SELF_METRICS
    with registry.lock:
        handles = [handle for _, handle in registry.by_provider.values()]
        if registry.on_global is not None:
            handles.append(registry.on_global)
        registry.by_provider.clear()
        registry.on_global = None
    for handle in handles:
        handle.disable()
