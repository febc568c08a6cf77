"""Every thread the package starts is started here, with instrumentation suppressed:
exports never trace themselves, and a caller waits for one of them at most N seconds.

The SDK's batch processor attaches the suppress-instrumentation context key around each
export. Ours export (and deliver the spool, flush, shut down) on threads of their own, so
:func:`start_thread` attaches the same keys for the whole life of each of them: an
instrumented HTTP client (``opentelemetry-instrumentation-requests``, ``-urllib3``, ...)
then never turns an export POST into a span that would be exported by another POST.

:func:`run_within` ("run this on a thread of ours and wait at most N seconds") is how a
bounded caller runs something that may hang (an exporter's or Langfuse's ``shutdown``,
a ``force_flush`` that ignores its timeout): the call goes on, abandoned, on a daemon
thread that cannot keep the process alive. The export runner (``_runner.py``, one
attempt at a time on one long-lived thread) and the processor's worker use
:func:`start_thread` directly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from opentelemetry import context

from ._deadline import wait_seconds

T = TypeVar("T")

# The keys instrumentations check (``opentelemetry.instrumentation.utils``): the API's own
# key objects (private names, so probed here and only here), and the plain string that
# older instrumentations look for. We do not import the public helper
# ``opentelemetry.instrumentation.utils.suppress_instrumentation``: importing it imports
# ``opentelemetry.propagate``, which raises on a misspelled OTEL_PROPAGATORS.
_PLAIN_KEY = "suppress_instrumentation"


def _probe_keys() -> tuple[str, ...]:
    keys = [_PLAIN_KEY]
    for name in ("_SUPPRESS_INSTRUMENTATION_KEY", "_SUPPRESS_HTTP_INSTRUMENTATION_KEY"):
        key = getattr(context, name, None)
        if isinstance(key, str) and key not in keys:
            keys.append(key)
    return tuple(keys)


#: The context keys :func:`suppressed` sets (a test fails loudly if the API moves them).
SUPPRESS_KEYS = _probe_keys()


def suppressed(target: Callable[[], object]) -> Callable[[], None]:
    """``target`` wrapped to run with every suppress-instrumentation key set."""

    def run() -> None:
        ctx = context.get_current()
        for key in SUPPRESS_KEYS:
            ctx = context.set_value(key, True, ctx)
        token = context.attach(ctx)
        try:
            target()
        finally:
            context.detach(token)

    return run


def start_thread(target: Callable[[], object], name: str) -> threading.Thread:
    """Start a daemon thread that runs ``target`` with instrumentation suppressed.

    >>> start_thread(lambda: None, "otel-nonblocking-demo").join(1.0)
    """
    thread = threading.Thread(target=suppressed(target), name=name, daemon=True)
    thread.start()
    return thread


class BoundedCall(Generic[T]):
    """``fn()`` running on a daemon thread of ours (:func:`start_call`), waited for with
    a bound. What it returned is ``value``, what it raised ``error`` (kept for the
    caller, never printed as a thread's traceback), how long it ran ``seconds``."""

    def __init__(self, fn: Callable[[], T], name: str) -> None:
        self._fn = fn
        self._done = threading.Event()
        self.value: T | None = None
        self.error: BaseException | None = None
        self.seconds = 0.0
        self.thread = start_thread(self._run, name)

    def _run(self) -> None:
        began = time.perf_counter()
        try:
            self.value = self._fn()
        # On our thread even SystemExit from someone else's code is only a result.
        except BaseException as error:  # noqa: BLE001
            self.error = error
        finally:
            self.seconds = time.perf_counter() - began
            self._done.set()

    @property
    def done(self) -> bool:
        """True once ``fn`` returned or raised."""
        return self._done.is_set()

    def wait(self, seconds: float) -> bool:
        """Wait at most ``seconds`` (none if not positive) for ``fn`` to end; True if it has."""
        return self._done.wait(wait_seconds(seconds))


def start_call(fn: Callable[[], T], name: str) -> BoundedCall[T]:
    """Start ``fn()`` on a daemon thread of ours (suppressed) and return at once."""
    return BoundedCall(fn, name)


def run_within(fn: Callable[[], T], seconds: float, name: str) -> BoundedCall[T]:
    """Run ``fn()`` on a daemon thread of ours and wait for it at most ``seconds``.

    Check ``done`` on the result: a call still running is abandoned, not stopped.

    >>> run_within(lambda: 42, 1.0, "otel-nonblocking-demo").value
    42
    """
    call = start_call(fn, name)
    call.wait(seconds)
    return call
