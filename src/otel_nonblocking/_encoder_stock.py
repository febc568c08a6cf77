"""The stock OTLP span encoder, as reference and fallback for the fast encoder in _encoder.py.

Probes once what the installed stock encoder writes (span flags, ``None`` attribute values)
and encodes, through its public ``encode_spans``, whatever the fast path does not cover.
Every call into it here is quiet: an attribute it cannot encode is left out as it always
is, but counted into one aggregated warning instead of an ERROR line (with the key and the
value) per attribute.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import (
    encode_spans as _stock_encode_spans,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, TraceFlags

from ._log import AggregatedWarning
from ._state import after_fork_in_child

_log = logging.getLogger(__name__)

# The stock encoder logs, through loggers under this prefix, each attribute it drops.
_STOCK_LOGGER_PREFIX = "opentelemetry.exporter.otlp.proto.common"
# The one that logs "Failed to encode key ...", with a traceback, per attribute it drops.
_STOCK_ATTRIBUTE_LOGGER = _STOCK_LOGGER_PREFIX + "._internal"


class _Quiet(threading.local):
    depth = 0  # inside how many _quiet_calls() this thread is
    left_out = 0  # attributes left out since the outermost one began


class _Total:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.left_out = 0
        after_fork_in_child(self.fresh_lock)

    def fresh_lock(self) -> None:
        """A new lock in a forked child: one held at fork time would stay held there."""
        self.lock = threading.Lock()


_quiet = _Quiet()
_total = _Total()
_left_out_warning = AggregatedWarning("span attributes that cannot be encoded were left out")


class _CountWhileQuiet(logging.Filter):
    """Drops, and counts, the stock encoder's records from a thread inside :func:`_quiet_calls`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _quiet.depth:
            _quiet.left_out += 1
            return False
        return True


_COUNT_WHILE_QUIET = _CountWhileQuiet()
_STOCK_LOGGER = logging.getLogger(_STOCK_ATTRIBUTE_LOGGER)


@contextmanager
def _quiet_calls() -> Iterator[None]:
    if _COUNT_WHILE_QUIET not in _STOCK_LOGGER.filters:  # again after a logging reconfiguration
        _STOCK_LOGGER.addFilter(_COUNT_WHILE_QUIET)
    outer = _quiet.depth
    _quiet.depth = outer + 1
    try:
        yield
    finally:
        _quiet.depth = outer
        if not outer and _quiet.left_out:
            left_out, _quiet.left_out = _quiet.left_out, 0
            with _total.lock:
                _total.left_out += left_out
            _left_out_warning.add("attributes", left_out)


def left_out_attributes() -> int:
    """How many attributes the stock encoder, called from this package, has left out so far."""
    with _total.lock:
        return _total.left_out


def stock_encode_spans(spans: Sequence[ReadableSpan]) -> bytes:
    """The stock encoder's wire bytes: ``encode_spans(spans).SerializePartialToString()``.

    This is what ``OTLPSpanExporter`` sends; the fast encoder's output decodes equal to it.
    An attribute the stock encoder cannot write is left out as it always is, but counted
    (see :func:`left_out_attributes`) instead of logged as an ERROR each time.
    """
    with _quiet_calls():
        return _stock_encode_spans(spans).SerializePartialToString()  # type: ignore[no-any-return]


def stock_span_bytes(span: ReadableSpan) -> bytes:
    """The serialized ``Span`` message the stock encoder writes for ``span`` (raises as it does)."""
    with _quiet_calls():
        request = _stock_encode_spans([span])
    return request.resource_spans[0].scope_spans[0].spans[0].SerializePartialToString()  # type: ignore[no-any-return]


def _carrier(resource: Resource, scope: InstrumentationScope | None) -> ExportTraceServiceRequest:
    span = ReadableSpan(
        name="carrier",
        context=SpanContext(1, 1, is_remote=False),
        resource=resource,
        instrumentation_scope=scope,
    )
    with _quiet_calls():
        return _stock_encode_spans([span])


def stock_resource_fields(resource: Resource) -> tuple[bytes, str]:
    """The stock encoding of ``resource``: its ``Resource`` message and its schema URL."""
    resource_spans = _carrier(resource, None).resource_spans[0]
    return resource_spans.resource.SerializePartialToString(), resource_spans.schema_url


def stock_scope_fields(scope: InstrumentationScope) -> tuple[bytes, str]:
    """The stock encoding of ``scope``: its ``InstrumentationScope`` message and schema URL."""
    scope_spans = _carrier(Resource({}), scope).resource_spans[0].scope_spans[0]
    return scope_spans.scope.SerializePartialToString(), scope_spans.schema_url


@dataclass(frozen=True)
class StockFeatures:
    """What the installed stock encoder writes where SDK releases differ.

    ``*_flags`` are the ``flags`` values written for a span without a parent, with a local or
    a remote parent, and for links to a local or remote context (0: the field is not set).
    ``none_as_empty_value`` is true when a ``None`` attribute value (top level, inside a
    sequence or a mapping) becomes an empty ``AnyValue``; when false the fast encoder hands
    spans holding ``None`` to the stock encoder. ``fast_path`` is false when the probe could
    not establish these facts; then every span goes to the stock encoder.
    """

    fast_path: bool
    root_flags: int = 0
    local_parent_flags: int = 0
    remote_parent_flags: int = 0
    local_link_flags: int = 0
    remote_link_flags: int = 0
    none_as_empty_value: bool = False


class _ThisThreadOnly(logging.Filter):
    """Drops records logged by the thread that made it (the probe's own expected noise)."""

    def __init__(self) -> None:
        super().__init__()
        self._thread = threading.get_ident()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread != self._thread


@contextmanager
def _quiet_stock_loggers() -> Iterator[None]:
    names = [
        name
        for name in list(logging.root.manager.loggerDict)
        if name == _STOCK_LOGGER_PREFIX or name.startswith(_STOCK_LOGGER_PREFIX + ".")
    ]
    loggers = [logging.getLogger(name) for name in names]
    quiet = _ThisThreadOnly()
    for logger in loggers:
        logger.addFilter(quiet)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(quiet)


def _context(span_id: int, *, remote: bool, sampled: bool) -> SpanContext:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    return SpanContext(0xABC, span_id, is_remote=remote, trace_flags=flags)


def _probe_request() -> ExportTraceServiceRequest:
    none_attributes: dict[str, Any] = {"top": None, "seq": ("x", None), "map": {"k": None}}
    spans = [
        ReadableSpan(
            name="root",
            context=_context(1, remote=False, sampled=True),
            attributes=none_attributes,
            links=(
                Link(_context(7, remote=False, sampled=True)),
                Link(_context(8, remote=True, sampled=False)),
            ),
        ),
        ReadableSpan(
            name="root-unsampled",
            context=_context(2, remote=False, sampled=False),
            links=(
                Link(_context(7, remote=False, sampled=False)),
                Link(_context(8, remote=True, sampled=True)),
            ),
        ),
        ReadableSpan(
            name="local",
            context=_context(3, remote=False, sampled=True),
            parent=_context(1, remote=False, sampled=True),
        ),
        ReadableSpan(
            name="local-unsampled",
            context=_context(4, remote=False, sampled=False),
            parent=_context(1, remote=False, sampled=False),
        ),
        ReadableSpan(
            name="remote",
            context=_context(5, remote=False, sampled=True),
            parent=_context(9, remote=True, sampled=True),
        ),
        ReadableSpan(
            name="remote-unsampled",
            context=_context(6, remote=False, sampled=False),
            parent=_context(9, remote=True, sampled=False),
        ),
    ]
    with _quiet_stock_loggers():
        return _stock_encode_spans(spans)


def _none_as_empty(span: Any) -> bool:
    attributes = {kv.key: kv.value for kv in span.attributes}
    if set(attributes) != {"top", "seq", "map"}:
        return False
    top, seq, mapping = attributes["top"], attributes["seq"], attributes["map"]
    empty = b""
    return (
        top.SerializeToString() == empty
        and seq.WhichOneof("value") == "array_value"
        and [v.SerializeToString() for v in seq.array_value.values] == [b"\n\x01x", empty]
        and mapping.WhichOneof("value") == "kvlist_value"
        and [(kv.key, kv.value.SerializeToString()) for kv in mapping.kvlist_value.values]
        == [("k", empty)]
    )


def detect_stock_features() -> StockFeatures:
    """Runs a few synthetic spans through the installed stock encoder and reads what it wrote."""
    try:
        request = _probe_request()
        spans = {s.name: s for s in request.resource_spans[0].scope_spans[0].spans}
        pairs = (
            ("root", "root-unsampled"),
            ("local", "local-unsampled"),
            ("remote", "remote-unsampled"),
        )
        for sampled, unsampled in pairs:
            if spans[sampled].flags != spans[unsampled].flags:
                return StockFeatures(fast_path=False)  # flags follow trace flags: not modelled
        links = [[link.flags for link in spans[name].links] for name in ("root", "root-unsampled")]
        if links[0] != links[1]:
            return StockFeatures(fast_path=False)
        return StockFeatures(
            fast_path=True,
            root_flags=spans["root"].flags,
            local_parent_flags=spans["local"].flags,
            remote_parent_flags=spans["remote"].flags,
            local_link_flags=links[0][0],
            remote_link_flags=links[0][1],
            none_as_empty_value=_none_as_empty(spans["root"]),
        )
    except Exception:  # noqa: BLE001 - an unknown stock encoder must only cost speed, never crash
        _log.debug("could not probe the stock OTLP encoder; using it for every span", exc_info=True)
        return StockFeatures(fast_path=False)
