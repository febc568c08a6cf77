"""Checks, once at import, that the SDK's span objects store what their properties return.

The fast encoder reads ``ReadableSpan``'s fields directly (the properties copy events and
links under a lock); it does so only for exact SDK types and only when this check passes.
"""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

_log = logging.getLogger(__name__)


def _sample() -> ReadableSpan:
    context = SpanContext(
        0x1234,
        0x56,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([("k", "v")]),
    )
    attributes = BoundedAttributes(maxlen=4, attributes={"a": 1, "b": "x"}, immutable=False)
    attributes["c"] = 2.5
    attributes.dropped = 1  # as if one had been evicted (evicting would log a warning)
    events: Any = BoundedList(1)
    events.append(Event("e1", timestamp=1))
    events.append(Event("e2", {"k": 1}, timestamp=2))
    links: Any = BoundedList(1)
    links.append(Link(context))
    links.append(Link(SpanContext(0x1234, 0x57, is_remote=False), {"k": "v"}))
    return ReadableSpan(
        name="sample",
        context=context,
        parent=SpanContext(0x1234, 0x78, is_remote=False),
        resource=Resource({"r": 1}),
        attributes=attributes,
        events=events,
        links=links,
        kind=SpanKind.CLIENT,
        status=Status(StatusCode.ERROR, "bad"),
        start_time=5,
        end_time=6,
        instrumentation_scope=InstrumentationScope("scope", "1"),
    )


def _check() -> bool:
    span = _sample()
    context = span.get_span_context()
    parent = span.parent
    assert context is not None
    assert parent is not None
    fields = (
        span._context is context,
        span._parent is parent,
        span._name == span.name,
        span._kind is span.kind,
        span._start_time == span.start_time,
        span._end_time == span.end_time,
        span._status is span.status,
        span._resource is span.resource,
        span._instrumentation_scope is span.instrumentation_scope,
    )
    attributes: Any = span._attributes
    events: Any = span._events
    links: Any = span._links
    containers = (
        type(attributes) is BoundedAttributes,
        list(attributes._dict.items()) == list((span.attributes or {}).items()),
        attributes.dropped == span.dropped_attributes == 1,
        type(events) is BoundedList,
        tuple(events._dq) == span.events,
        events.dropped == span.dropped_events == 1,
        type(links) is BoundedList,
        tuple(links._dq) == span.links,
        links.dropped == span.dropped_links == 1,
    )
    context_tuple = (
        type(context) is SpanContext,
        (context[0], context[1], context[2]) == (context.trace_id, context.span_id, True),
        context[4] is context.trace_state,
        parent[2] is parent.is_remote is False,
    )
    return all(fields) and all(containers) and all(context_tuple)


def check_sdk_layout() -> bool:
    """True when the installed SDK stores span fields where the fast encoder reads them."""
    try:
        return _check()
    except Exception:  # noqa: BLE001 - a different layout only means the public properties are used
        _log.debug("unexpected SDK span layout; the encoder reads public properties", exc_info=True)
        return False
