"""Log correlation: put the current span's trace and span ids on every log record.

:class:`TraceContextFilter` does it for the standard library's ``logging``;
:func:`add_trace_context` is a ``structlog`` processor (structlog itself is never imported).

The ids are OpenTelemetry's hex forms: ``trace_id`` 32 lower-case hex digits, ``span_id``
16, as ``opentelemetry.trace.format_trace_id`` / ``format_span_id`` write them and as
OTLP backends show them. ``trace_sampled`` tells whether the trace is being exported.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any, Final

from opentelemetry.trace import SpanContext, format_span_id, format_trace_id, get_current_span

__all__ = [
    "SPAN_ID",
    "TRACE_ID",
    "TRACE_SAMPLED",
    "TraceContextFilter",
    "add_trace_context",
]

#: Names of the fields set on a ``logging.LogRecord`` and added to a structlog event dict.
#: In a ``logging`` format string: ``%(trace_id)s``, ``%(span_id)s``, ``%(trace_sampled)s``.
TRACE_ID: Final = "trace_id"
SPAN_ID: Final = "span_id"
TRACE_SAMPLED: Final = "trace_sampled"


# The last span context formatted, and its ids: consecutive log lines usually come from
# the same span. One tuple, replaced whole, so threads never see a torn entry.
_last: tuple[SpanContext | None, str, str] = (None, "", "")


def _ids(context: SpanContext) -> tuple[str, str]:
    global _last  # a one-entry cache, see above
    last = _last
    if last[0] is context:
        return last[1], last[2]
    trace_id, span_id = format_trace_id(context.trace_id), format_span_id(context.span_id)
    _last = (context, trace_id, span_id)
    return trace_id, span_id


class TraceContextFilter(logging.Filter):
    """A ``logging.Filter`` that sets ``trace_id``, ``span_id`` and ``trace_sampled``.

    Every record gets the three attributes, so a format string may always use them.
    Outside a span they are ``""``, ``""`` and ``False`` (``missing`` changes the empty
    string). A record that already has a ``trace_id`` attribute (set by ``extra=``, or
    by this filter on an earlier handler) is left alone. The filter never rejects a record.

    Attach it to the *handler*: a logger's own filters do not see records logged on its
    child loggers. Behind a ``QueueHandler`` put it on the ``QueueHandler``, which runs
    on the logging thread; the ``QueueListener``'s thread has another current span.

    >>> import logging, sys
    >>> handler = logging.StreamHandler(sys.stdout)
    >>> handler.addFilter(TraceContextFilter())
    >>> handler.setFormatter(logging.Formatter("%(message)s trace_id=%(trace_id)s"))
    >>> log = logging.getLogger("doctest.logs")
    >>> log.addHandler(handler)
    >>> log.warning("no span here")
    no span here trace_id=
    >>> log.removeHandler(handler)
    """

    def __init__(self, name: str = "", *, missing: str = "") -> None:
        super().__init__(name)
        self._missing = missing

    def filter(self, record: logging.LogRecord) -> bool:
        fields = record.__dict__  # plain dict operations: a failed hasattr() costs more
        if TRACE_ID in fields:
            return True
        context = get_current_span().get_span_context()
        if context.is_valid:
            fields[TRACE_ID], fields[SPAN_ID] = _ids(context)
            fields[TRACE_SAMPLED] = context.trace_flags.sampled
        else:
            fields[TRACE_ID] = fields[SPAN_ID] = self._missing
            fields[TRACE_SAMPLED] = False
        return True


def add_trace_context(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor adding ``trace_id``, ``span_id`` and ``trace_sampled``.

    Outside a span it adds nothing, so JSON lines carry no empty ids. Keys the event
    already has are kept. Put it before the renderer::

        structlog.configure(processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            add_trace_context,
            structlog.processors.JSONRenderer(),
        ])
    """
    context = get_current_span().get_span_context()
    if context.is_valid:
        trace_id, span_id = _ids(context)
        event_dict.setdefault(TRACE_ID, trace_id)
        event_dict.setdefault(SPAN_ID, span_id)
        event_dict.setdefault(TRACE_SAMPLED, context.trace_flags.sampled)
    return event_dict
