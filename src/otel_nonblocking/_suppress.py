"""Every thread the package starts runs with instrumentation suppressed: exports never trace
themselves.

The SDK's batch processor attaches the suppress-instrumentation context key around each
export. Ours export (and deliver the spool, flush, shut down) on threads of their own, so
:func:`start_thread` attaches the same keys for the whole life of each of them: an
instrumented HTTP client (``opentelemetry-instrumentation-requests``, ``-urllib3``, ...)
then never turns an export POST into a span that would be exported by another POST.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from opentelemetry import context

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
