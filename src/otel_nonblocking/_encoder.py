"""A fast OTLP span encoder: a batch of ReadableSpan to ExportTraceServiceRequest wire bytes,
written by hand, decoding equal to the stock encoder's (see docs/encoder.md for how).

>>> from otel_nonblocking._encoder import SpanEncoder
>>> body = SpanEncoder().encode(spans)  # doctest: +SKIP
"""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import SpanContext, SpanKind, StatusCode
from opentelemetry.trace.span import DEFAULT_TRACE_STATE

from ._compat_sdk import check_sdk_layout
from ._encoder_stock import (
    StockFeatures,
    detect_stock_features,
    stock_encode_spans,
    stock_resource_fields,
    stock_scope_fields,
    stock_span_bytes,
)
from ._errors import ConfigurationError
from ._varint import TABLE_SIZE as _TABLE_SIZE
from ._varint import VARINTS as _V
from ._varint import varint as _varint
from ._varint import varint_slow as _varint_slow

__all__ = [
    "SDK_LAYOUT_OK",
    "STOCK_FEATURES",
    "EncoderStats",
    "SpanEncoder",
    "StockFeatures",
    "encode_spans",
    "stock_encode_spans",
]

STOCK_FEATURES: StockFeatures = detect_stock_features()
"""What the installed stock encoder writes where SDK releases differ (probed at import)."""

SDK_LAYOUT_OK: bool = check_sdk_layout()
"""Whether spans of the exact SDK types are read through their fields (checked at import)."""

# The trace state of most spans: empty (checked here, once).
_DEFAULT_TRACE_STATE: Any = DEFAULT_TRACE_STATE if not DEFAULT_TRACE_STATE else object()
# Compared with ``type(x) is``; typed Any so that the private fields read after it type-check.
_BOUNDED_ATTRIBUTES: Any = BoundedAttributes
_BOUNDED_LIST: Any = BoundedList


class _Unsupported(Exception):  # noqa: N818 - a signal to use the stock encoder, not an error
    """Raised inside the fast path for input it does not cover."""


# --- wire-format primitives -------------------------------------------------------------

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_UINT32_MAX = (1 << 32) - 1
_TWO_64 = 1 << 64
_MASK_64 = _TWO_64 - 1


def _int64(value: int) -> bytes:
    """Varint of an ``int64`` field (two's complement for negatives); raises when out of range."""
    if 0 <= value < _TABLE_SIZE:
        return _V[value]
    if value < 0:
        if value < _INT64_MIN:
            raise _Unsupported
        return _varint_slow(value + _TWO_64)
    if value > _INT64_MAX:
        raise _Unsupported
    return _varint_slow(value)


def _uint32_field(tag: bytes, value: Any) -> bytes:
    if type(value) is not int or not 0 < value <= _UINT32_MAX:
        raise _Unsupported  # the stock encoder raises for these; let it say how
    return tag + _varint(value)


_pack_double = struct.Struct("<d").pack
_pack_fixed32 = struct.Struct("<I").pack
_pack_times = struct.Struct("<BQBQ").pack  # start (field 7) and end (field 8), both fixed64
_pack_fixed64_field = struct.Struct("<BQ").pack
# trace_id (field 1, 16 bytes) and span_id (field 2, 8 bytes), optionally parent_span_id (4).
_pack_ids = struct.Struct(">2sQQ2sQ").pack
_pack_ids_parent = struct.Struct(">2sQQ2sQ2sQ").pack
_pack_link_ids = _pack_ids


def _message(tag: bytes, body: bytes) -> bytes:
    return tag + _varint(len(body)) + body


def _string_field(tag: bytes, value: Any) -> bytes:
    """A proto3 ``string`` field; ``None`` and ``""`` are not written (as in the stock output)."""
    if not value:
        if value is None or value == "":
            return b""
        raise _Unsupported
    if type(value) is not str:
        raise _Unsupported
    data = value.encode()  # a lone surrogate raises UnicodeEncodeError, as in the stock encoder
    return tag + _varint(len(data)) + data


def _fixed32_field(tag: bytes, value: int) -> bytes:
    return tag + _pack_fixed32(value) if value else b""


def _time_field(tag: int, value: Any) -> bytes:
    """A ``fixed64`` timestamp; ``None`` and 0 are not written."""
    if type(value) is int and 0 < value < _TWO_64:
        return _pack_fixed64_field(tag, value)
    if value is None or (type(value) is int and value == 0):
        return b""
    raise _Unsupported


# --- attribute values -------------------------------------------------------------------

# AnyValue fields: string 1, bool 2, int 3, double 4, array 5, kvlist 6, bytes 7.
_TRUE = b"\x10\x01"
_FALSE = b"\x10\x00"
_NONE_VALUE: bytes | None = b"" if STOCK_FEATURES.none_as_empty_value else None
# A string value at least this long stays its own part, copied once by the final join.
_BIG = 512


def _any_value(value: Any) -> bytes:
    """The body of an ``AnyValue`` for ``value``, as the stock ``_encode_value`` writes it."""
    kind = type(value)
    if kind is str:
        data: bytes = value.encode()
        return b"\x0a" + _varint(len(data)) + data
    if kind is bool:
        return _TRUE if value else _FALSE
    if kind is int:
        return b"\x18" + _int64(value)
    if kind is float:
        return b"\x21" + _pack_double(value)
    if kind is tuple or kind is list:
        body = b"".join([_message(b"\x0a", _any_value(item)) for item in value])
        return b"\x2a" + _varint(len(body)) + body
    if kind is bytes:
        return b"\x3a" + _varint(len(value)) + bytes(value)
    if value is None:
        if _NONE_VALUE is None:
            raise _Unsupported
        return _NONE_VALUE
    if kind is dict:
        body = b"".join([_message(b"\x0a", _key_value(k, v)) for k, v in value.items()])
        return b"\x32" + _varint(len(body)) + body
    # Subclasses of the scalar types, in the stock encoder's isinstance order; containers of
    # other types (bytearray, deque, mapping proxies, ...) are left to the stock encoder.
    if isinstance(value, str):
        return _any_value(str.__str__(value))
    if isinstance(value, int):  # IntEnum, IntFlag (bool cannot be subclassed)
        return _any_value(int.__int__(value))
    if isinstance(value, float):
        return _any_value(float.__float__(value))
    raise _Unsupported


def _key_value(key: Any, value: Any) -> bytes:
    """The body of a ``KeyValue`` inside a kvlist."""
    if type(key) is not str:
        raise _Unsupported  # the stock encoder writes str(key); let it
    data = key.encode()
    return b"\x0a" + _varint(len(data)) + data + _message(b"\x12", _any_value(value))


# Attribute encodings are cached per key (for each enclosing message: span, event, link,
# resource), as a _Key: the key's field, ready-made fields for True and False, the fixed
# prefix of a double field, prefixes of int and short-string fields by value size, and whole
# fields of up to _VALUES_PER_KEY recent short str and int values. A key that shows more
# distinct values (an id, a count) stops having its values looked up.
_MAX_CACHED_STRING = 256
_MAX_CACHED_VALUE = 64
_VALUES_PER_KEY = 16
_SHORT = 126  # a string this short has one-byte lengths in the AnyValue and its KeyValue
_NO_STATUS = object()


class _Key:
    __slots__ = ("double", "false", "field", "ints", "strings", "true", "values")

    def __init__(self, tag: bytes, field: bytes) -> None:
        # field: KeyValue.key (1) and the tag of KeyValue.value (2)
        self.field = field
        self.values: dict[Any, bytes] | None = {} if tag != b"\x0a" else None
        self.true = _message(tag, field + b"\x02" + _TRUE)
        self.false = _message(tag, field + b"\x02" + _FALSE)
        self.double = tag + _varint(len(field) + 10) + field + b"\x09\x21"
        self.ints: tuple[bytes, ...] | None = None  # by varint size, made on first use
        self.strings: list[bytes | None] | None = None  # by UTF-8 size below _SHORT

    def int_prefixes(self, tag: bytes) -> tuple[bytes, ...]:
        """Prefixes of an int field by the size of the value's varint (1 to 10 bytes)."""
        field = self.field
        ints = self.ints = tuple(
            tag + _varint(len(field) + 2 + n) + field + _V[n + 1] + b"\x18" for n in range(11)
        )
        return ints

    def string_prefix(self, tag: bytes, size: int) -> bytes:
        strings = self.strings
        if strings is None:
            strings = self.strings = [None] * _SHORT
        prefix = strings[size]
        if prefix is None:
            field = self.field
            prefix = (
                tag + _varint(len(field) + size + 3) + field + _V[size + 2] + b"\x0a" + _V[size]
            )
            strings[size] = prefix
        return prefix


class _Caches:
    """Bounded encodings shared across batches: attribute keys and values, names, statuses."""

    __slots__ = ("event_names", "keys_by_tag", "last_status", "max_strings", "span_names")

    def __init__(self, max_strings: int) -> None:
        self.max_strings = max_strings
        self.keys_by_tag: dict[bytes, dict[str, _Key]] = {
            tag: {} for tag in (b"\x4a", b"\x1a", b"\x22", b"\x0a")
        }
        self.span_names: dict[str, bytes] = {}
        self.event_names: dict[str, bytes] = {}
        self.last_status: tuple[Any, bytes] = (_NO_STATUS, b"")

    def size(self) -> int:
        keys = sum(len(keys) for keys in self.keys_by_tag.values())
        return keys + len(self.span_names) + len(self.event_names)

    def clear(self) -> None:
        for keys in self.keys_by_tag.values():
            keys.clear()
        self.span_names.clear()
        self.event_names.clear()
        self.last_status = (_NO_STATUS, b"")

    def key(self, keys: dict[str, _Key], tag: bytes, key: Any) -> _Key:
        if type(key) is not str:
            raise _Unsupported  # the stock encoder decides (it drops the attribute)
        data = key.encode()
        entry = _Key(tag, b"\x0a" + _varint(len(data)) + data + b"\x12")
        if len(data) <= _MAX_CACHED_STRING:
            if len(keys) >= self.max_strings:
                keys.clear()
            keys[key] = entry
        return entry

    def name_field(self, cache: dict[str, bytes], tag: bytes, name: Any) -> bytes:
        """A name field (``Span.name`` or ``Event.name``), remembered in ``cache``."""
        field = _string_field(tag, name)
        if type(name) is str and len(name) <= _MAX_CACHED_STRING:
            if len(cache) >= self.max_strings:
                cache.clear()
            cache[name] = field
        return field


def _put_attributes(parts: list[bytes], attributes: Any, tag: bytes, caches: _Caches) -> None:
    """Appends one ``tag``-ged ``KeyValue`` field per attribute of the mapping to ``parts``."""
    keys = caches.keys_by_tag[tag]
    for key, value in attributes.items():
        entry = keys.get(key)
        if entry is None:
            entry = caches.key(keys, tag, key)
        kind = type(value)
        if kind is str:
            values = entry.values
            if values is not None and len(value) <= _MAX_CACHED_VALUE:
                field = values.get(value)
                if field is not None:
                    parts.append(field)
                    continue
            data = value.encode()
            size = len(data)
            if size < _SHORT:
                field = entry.string_prefix(tag, size) + data
                if values is not None and len(value) <= _MAX_CACHED_VALUE:
                    if len(values) < _VALUES_PER_KEY:
                        values[value] = field
                    else:
                        entry.values = None  # too many distinct values: stop looking them up
                parts.append(field)
                continue
            head = b"\x0a" + _varint(size)
            head = entry.field + _varint(len(head) + size) + head
            head = tag + _varint(len(head) + size) + head
            if size >= _BIG:
                parts.append(head)
                parts.append(data)
            else:
                parts.append(head + data)
        elif kind is bool:
            parts.append(entry.true if value else entry.false)
        elif kind is int:
            values = entry.values
            if values is not None:
                field = values.get(value)
                if field is not None:
                    parts.append(field)
                    continue
            varint = _V[value] if 0 <= value < _TABLE_SIZE else _int64(value)
            field = (entry.ints or entry.int_prefixes(tag))[len(varint)] + varint
            if values is not None:
                if len(values) < _VALUES_PER_KEY:
                    values[value] = field
                else:
                    entry.values = None
            parts.append(field)
        elif kind is float:
            parts.append(entry.double + _pack_double(value))
        else:
            body = _any_value(value)
            parts.append(_message(tag, entry.field + _varint(len(body)) + body))


def _attributes_body(attributes: Any, tag: bytes, caches: _Caches) -> bytes:
    if type(attributes) is _BOUNDED_ATTRIBUTES and SDK_LAYOUT_OK:
        attributes = attributes._dict  # the same items, without a locked copy
    if not attributes:
        return b""
    parts: list[bytes] = []
    _put_attributes(parts, attributes, tag, caches)
    return b"".join(parts)


# --- spans ------------------------------------------------------------------------------

_KIND_FIELDS: dict[int, bytes] = {
    id(kind): b"\x30" + _varint(kind.value + 1)
    for kind in SpanKind  # proto enum = SDK value + 1
}
_INTERNAL = SpanKind.INTERNAL
_INTERNAL_FIELD = _KIND_FIELDS[id(_INTERNAL)]
_STATUS_CODES = {id(code): code.value for code in StatusCode}
# Span.status (field 15) without a description, by code.
_STATUS_FIELDS = {
    id(code): _message(b"\x7a", b"\x18" + _V[code.value] if code.value else b"")
    for code in StatusCode
}
_SPAN_ROOT_FLAGS = _fixed32_field(b"\x85\x01", STOCK_FEATURES.root_flags)
_SPAN_LOCAL_FLAGS = _fixed32_field(b"\x85\x01", STOCK_FEATURES.local_parent_flags)
_SPAN_REMOTE_FLAGS = _fixed32_field(b"\x85\x01", STOCK_FEATURES.remote_parent_flags)
_LINK_LOCAL_FLAGS = _fixed32_field(b"\x35", STOCK_FEATURES.local_link_flags)
_LINK_REMOTE_FLAGS = _fixed32_field(b"\x35", STOCK_FEATURES.remote_link_flags)


def _status_field(status: Any) -> bytes:
    if status is None:
        return b""
    code = status.status_code
    description = status.description
    if description is None or description == "":
        field = _STATUS_FIELDS.get(id(code))
        if field is None:
            raise _Unsupported
        return field
    value = _STATUS_CODES.get(id(code))
    if value is None:
        raise _Unsupported
    body = _string_field(b"\x12", description)
    if value:
        body += b"\x18" + _V[value]
    return _message(b"\x7a", body)


def _trace_state_field(tag: bytes, trace_state: Any) -> bytes:
    text = ",".join([f"{key}={value}" for key, value in trace_state.items()])
    return _string_field(tag, text)


def _event_field(event: Any, caches: _Caches) -> bytes:
    timestamp = event.timestamp
    if type(timestamp) is int and 0 < timestamp < _TWO_64:
        body = _pack_fixed64_field(0x09, timestamp)
    else:
        body = _time_field(0x09, timestamp)
    name = event.name
    field = caches.event_names.get(name) if type(name) is str else None
    body += field if field is not None else caches.name_field(caches.event_names, b"\x12", name)
    body += _attributes_body(event.attributes, b"\x1a", caches)
    dropped = event.dropped_attributes
    if dropped:
        body += _uint32_field(b"\x20", dropped)
    return _message(b"\x5a", body)


def _link_field(link: Any, caches: _Caches) -> bytes:
    context = link.context
    trace_id = context.trace_id
    body = _pack_link_ids(
        b"\x0a\x10", trace_id >> 64, trace_id & _MASK_64, b"\x12\x08", context.span_id
    )
    # The stock encoder does not write a link's trace state.
    body += _attributes_body(link.attributes, b"\x22", caches)
    dropped = link.dropped_attributes
    if dropped:
        body += _uint32_field(b"\x28", dropped)
    body += _LINK_REMOTE_FLAGS if context.is_remote else _LINK_LOCAL_FLAGS
    return _message(b"\x6a", body)


def _span_body(span: Any, caches: _Caches) -> bytes:
    """The body of one ``Span`` message, fields in field-number order like the stock output."""
    context: Any
    trace_state: Any
    attributes: Any
    events: Any
    links: Any
    if type(span) is ReadableSpan and SDK_LAYOUT_OK:
        context = span._context
        parent = span._parent
        name = span._name
        kind = span._kind
        start = span._start_time
        end = span._end_time
        status = span._status
        attributes = span._attributes
        if type(attributes) is _BOUNDED_ATTRIBUTES:
            dropped_attributes = attributes.dropped
            attributes = attributes._dict
        elif attributes is None or type(attributes) is dict:
            dropped_attributes = 0
        else:
            attributes = span.attributes
            dropped_attributes = span.dropped_attributes
        events = span._events
        if type(events) is _BOUNDED_LIST:
            dropped_events = events.dropped
            events = events._dq
        elif type(events) is tuple or type(events) is list:
            dropped_events = 0
        else:
            events = span.events
            dropped_events = span.dropped_events
        links = span._links
        if type(links) is _BOUNDED_LIST:
            dropped_links = links.dropped
            links = links._dq
        elif type(links) is tuple or type(links) is list:
            dropped_links = 0
        else:
            links = span.links
            dropped_links = span.dropped_links
    else:
        context = span.get_span_context()
        parent = span.parent
        name = span.name
        kind = span.kind
        start = span.start_time
        end = span.end_time
        status = span.status
        attributes = span.attributes
        dropped_attributes = span.dropped_attributes
        events = span.events
        dropped_events = span.dropped_events
        links = span.links
        dropped_links = span.dropped_links
    if type(context) is SpanContext and SDK_LAYOUT_OK:
        trace_id = context[0]
        span_id = context[1]
        trace_state = context[4]
    else:
        trace_id = context.trace_id
        span_id = context.span_id
        trace_state = context.trace_state
    parent_remote = False
    if trace_state is _DEFAULT_TRACE_STATE:
        trace_state = None  # empty, known without a call to its __len__
    if parent and not trace_state:
        parent_remote = parent.is_remote
        parts = [
            _pack_ids_parent(
                b"\x0a\x10",
                trace_id >> 64,
                trace_id & _MASK_64,
                b"\x12\x08",
                span_id,
                b"\x22\x08",
                parent.span_id,
            )
        ]
    else:
        parts = [_pack_ids(b"\x0a\x10", trace_id >> 64, trace_id & _MASK_64, b"\x12\x08", span_id)]
        if trace_state:
            parts.append(_trace_state_field(b"\x1a", trace_state))
        if parent:
            parent_remote = parent.is_remote
            parts.append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))
    name_field = caches.span_names.get(name) if type(name) is str else None
    if name_field is None:
        name_field = caches.name_field(caches.span_names, b"\x2a", name)
    parts.append(name_field)
    if kind is _INTERNAL:
        parts.append(_INTERNAL_FIELD)
    else:
        kind_field = _KIND_FIELDS.get(id(kind))
        if kind_field is None:
            raise _Unsupported  # the stock encoder raises KeyError
        parts.append(kind_field)
    if type(start) is int and type(end) is int and 0 < start < _TWO_64 and 0 < end < _TWO_64:
        parts.append(_pack_times(0x39, start, 0x41, end))
    else:
        parts.append(_time_field(0x39, start) + _time_field(0x41, end))
    if attributes:
        _put_attributes(parts, attributes, b"\x4a", caches)
    if dropped_attributes:
        parts.append(_uint32_field(b"\x50", dropped_attributes))
    if events:
        for event in events:
            parts.append(_event_field(event, caches))
    if dropped_events:
        parts.append(_uint32_field(b"\x60", dropped_events))
    if links:
        for link in links:
            parts.append(_link_field(link, caches))
    if dropped_links:
        parts.append(_uint32_field(b"\x70", dropped_links))
    last_status = caches.last_status  # one tuple, so that threads never mix two statuses
    if status is last_status[0]:
        parts.append(last_status[1])
    else:
        status_field = _status_field(status)
        caches.last_status = (status, status_field)
        parts.append(status_field)
    if parent is None:
        parts.append(_SPAN_ROOT_FLAGS)
    else:
        parts.append(_SPAN_REMOTE_FLAGS if parent_remote else _SPAN_LOCAL_FLAGS)
    return b"".join(parts)


# --- resources and scopes ---------------------------------------------------------------


def _resource_fields(resource: Any, caches: _Caches) -> tuple[bytes, bytes]:
    """``ResourceSpans.resource`` (attributes only, as the stock encoder writes it) and
    ``ResourceSpans.schema_url``."""
    fields: tuple[bytes, bytes] | None
    try:
        body = _attributes_body(resource.attributes, b"\x0a", caches)
        fields = _message(b"\x0a", body), _string_field(b"\x1a", resource.schema_url)
    except Exception:  # noqa: BLE001 - outside the fast path: the stock encoder decides
        fields = None
    if fields is None:  # out of the except block, so the stock logs chain no traceback
        body, schema_url = stock_resource_fields(resource)
        fields = _message(b"\x0a", body), _string_field(b"\x1a", schema_url)
    return fields


def _scope_fields(scope: Any, caches: _Caches) -> tuple[bytes, bytes]:
    """``ScopeSpans.scope`` (name, version, attributes) and ``ScopeSpans.schema_url``."""
    if scope is None:
        return b"\x0a\x00", b""
    fields: tuple[bytes, bytes] | None
    try:
        body = (
            _string_field(b"\x0a", scope.name)
            + _string_field(b"\x12", scope.version)
            + _attributes_body(scope.attributes, b"\x1a", caches)
        )
        fields = _message(b"\x0a", body), _string_field(b"\x1a", scope.schema_url)
    except Exception:  # noqa: BLE001 - outside the fast path: the stock encoder decides
        fields = None
    if fields is None:
        body, schema_url = stock_scope_fields(scope)
        fields = _message(b"\x0a", body), _string_field(b"\x1a", schema_url)
    return fields


def _stock_fields(body: bytes, schema_url: str) -> tuple[bytes, bytes]:
    return _message(b"\x0a", body), _string_field(b"\x1a", schema_url)


@dataclass(frozen=True)
class EncoderStats:
    """Counters of a :class:`SpanEncoder` since it was made.

    ``fallback_spans`` counts spans the fast path handed to the stock encoder (values it does
    not cover, such as lone surrogates or ints beyond 64 bits); ``cached_*`` are cache sizes.
    """

    batches: int
    spans: int
    fallback_spans: int
    cached_resources: int
    cached_scopes: int
    cached_strings: int


class _ScopeGroup:
    __slots__ = ("parts", "scope", "size")

    def __init__(self, scope: Any) -> None:
        self.scope = scope
        self.parts: list[bytes] = []
        self.size = 0


class _ResourceGroup:
    __slots__ = ("by_id", "by_value", "resource")

    def __init__(self, resource: Any) -> None:
        self.resource = resource
        self.by_id: dict[int, _ScopeGroup] = {}
        self.by_value: dict[Any, _ScopeGroup] = {}


class SpanEncoder:
    """Encodes batches of spans to OTLP ``ExportTraceServiceRequest`` bytes, fast.

    The output decodes equal to the installed stock encoder's. The fast path covers the
    values the SDK produces and gives up on anything else (a lone surrogate, an int beyond
    64 bits, an unknown type, ...): that span is encoded by the stock encoder, which drops
    or raises as it always does (its attributes left out are counted, not logged each time).

    Encodings are cached across batches: resources and scopes by identity (the SDK makes
    them immutable), at most ``max_cached_resources`` and ``max_cached_scopes`` of them;
    per kind of message, at most ``max_cached_strings`` attribute keys (each with up to 16
    short values), span names and event names. A full cache is emptied. One encoder may be
    shared by threads.

    Every ``yield_every`` spans (64 by default; 0: never) the encoder lets go of the GIL
    for a moment (``time.sleep(0)``), so that encoding a large batch on a background
    thread holds up the application's threads for about half a millisecond at a time
    instead of for the whole batch.

    >>> encoder = SpanEncoder()
    >>> body = encoder.encode(spans)  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        max_cached_resources: int = 64,
        max_cached_scopes: int = 256,
        max_cached_strings: int = 1024,
        yield_every: int = 64,
    ) -> None:
        for name, value in (
            ("max_cached_resources", max_cached_resources),
            ("max_cached_scopes", max_cached_scopes),
            ("max_cached_strings", max_cached_strings),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"{name} must be a positive int, got {value!r}")
        if isinstance(yield_every, bool) or not isinstance(yield_every, int) or yield_every < 0:
            raise ConfigurationError(f"yield_every must be an int >= 0, got {yield_every!r}")
        self._yield_every = yield_every
        self._max_resources = max_cached_resources
        self._max_scopes = max_cached_scopes
        self._caches = _Caches(max_cached_strings)
        # id(resource) -> (resource, ResourceSpans.resource field, ResourceSpans.schema_url field)
        self._resources: dict[int, tuple[Any, bytes, bytes]] = {}
        # id(scope) -> (scope, ScopeSpans.scope field, ScopeSpans.schema_url field)
        self._scopes: dict[int, tuple[Any, bytes, bytes]] = {}
        self._lock = threading.Lock()
        self._batches = 0
        self._spans = 0
        self._items = 0  # spans encoded one at a time (span_item)
        self._fallbacks = 0

    def stats(self) -> EncoderStats:
        """Counters and cache sizes (see :class:`EncoderStats`)."""
        with self._lock:
            return EncoderStats(
                batches=self._batches,
                spans=self._spans + self._items,
                fallback_spans=self._fallbacks,
                cached_resources=len(self._resources),
                cached_scopes=len(self._scopes),
                cached_strings=self._caches.size(),
            )

    def clear(self) -> None:
        """Empties every cache (the counters are kept)."""
        self._resources.clear()
        self._scopes.clear()
        self._caches.clear()

    def _resource_fields(self, resource: Any) -> tuple[bytes, bytes]:
        cached = self._resources.get(id(resource))
        if cached is not None and cached[0] is resource:
            return cached[1], cached[2]
        head, tail = _resource_fields(resource, self._caches)
        if len(self._resources) >= self._max_resources:
            self._resources.clear()
        self._resources[id(resource)] = (resource, head, tail)
        return head, tail

    def _scope_fields(self, scope: Any) -> tuple[bytes, bytes]:
        cached = self._scopes.get(id(scope))
        if cached is not None and cached[0] is scope:
            return cached[1], cached[2]
        head, tail = _scope_fields(scope, self._caches)
        if len(self._scopes) >= self._max_scopes:
            self._scopes.clear()
        self._scopes[id(scope)] = (scope, head, tail)
        return head, tail

    def encode(self, spans: Sequence[ReadableSpan]) -> bytes:
        """The ``ExportTraceServiceRequest`` wire bytes for ``spans``.

        Spans are grouped by resource, then by instrumentation scope, in order of first
        appearance and with the SDK's equality for both, as the stock encoder does. Raises
        where the stock encoder raises (a span name with a lone surrogate, a span without
        a context, ...).
        """
        if not STOCK_FEATURES.fast_path:
            self._count(len(spans), len(spans))
            return stock_encode_spans(spans)
        caches = self._caches
        resources_by_id: dict[int, _ResourceGroup] = {}
        resources_by_value: dict[Any, _ResourceGroup] = {}
        fast_fields = SDK_LAYOUT_OK
        fallbacks = 0
        last_resource: Any = _NO_STATUS
        last_scope: Any = _NO_STATUS
        scope_group = _ScopeGroup(None)
        yield_every = self._yield_every
        countdown = yield_every
        for span in spans:
            if countdown:
                countdown -= 1
                if not countdown:
                    countdown = yield_every
                    time.sleep(0)  # let the application's threads run (see the class doc)
            if fast_fields and type(span) is ReadableSpan:
                resource = span._resource
                scope = span._instrumentation_scope or None
            else:
                resource = span.resource
                scope = span.instrumentation_scope or None
            if resource is not last_resource or scope is not last_scope:
                group = resources_by_id.get(id(resource))
                if group is None:
                    group = resources_by_value.get(resource)
                    if group is None:
                        group = resources_by_value[resource] = _ResourceGroup(resource)
                    resources_by_id[id(resource)] = group
                found = group.by_id.get(id(scope))
                if found is None:
                    found = group.by_value.get(scope)
                    if found is None:
                        found = group.by_value[scope] = _ScopeGroup(scope)
                    group.by_id[id(scope)] = found
                scope_group = found
                last_resource = resource
                last_scope = scope
            try:
                body: bytes | None = _span_body(span, caches)
            except Exception:  # noqa: BLE001 - outside the fast path: the stock encoder decides
                body = None
            if body is None:  # out of the except block, so the stock logs chain no traceback
                fallbacks += 1
                body = stock_span_bytes(span)
            size = len(body)
            head = b"\x12" + (_V[size] if size < _TABLE_SIZE else _varint_slow(size))
            scope_group.parts.append(head)
            scope_group.parts.append(body)
            scope_group.size += len(head) + size
        out: list[bytes] = []
        for group in resources_by_value.values():
            resource_head, resource_tail = self._resource_fields(group.resource)
            chunks: list[bytes] = []
            size = len(resource_head) + len(resource_tail)
            for scope_group in group.by_value.values():
                scope_head, scope_tail = self._scope_fields(scope_group.scope)
                scope_size = len(scope_head) + scope_group.size + len(scope_tail)
                marker = b"\x12" + _varint(scope_size)
                chunks.append(marker)
                chunks.append(scope_head)
                chunks.extend(scope_group.parts)
                chunks.append(scope_tail)
                size += len(marker) + scope_size
            out.append(b"\x0a" + _varint(size))
            out.append(resource_head)
            out.extend(chunks)
            out.append(resource_tail)
        self._count(len(spans), fallbacks)
        return b"".join(out)

    # -- one span at a time: what the encoded stage keeps (see ``_assemble.py``) --

    def span_item(self, span: ReadableSpan, prefix: bytes) -> bytes:
        """``prefix``, then ``span`` as a ``ScopeSpans.spans`` field (tag, length, ``Span``
        message, as :meth:`encode` writes it), in one ``bytes``; raises where the stock
        encoder raises. Counted in :meth:`stats` (``spans``, ``fallback_spans``)."""
        fast: bytes | None = None
        if STOCK_FEATURES.fast_path:
            try:
                fast = _span_body(span, self._caches)
            except Exception:  # noqa: BLE001 - outside the fast path: the stock encoder decides
                fast = None
        if fast is not None:
            # No lock: a stat (two workers sharing the encoder may lose an increment).
            self._items += 1
            size = len(fast)
            return prefix + b"\x12" + (_V[size] if size < _TABLE_SIZE else _varint(size)) + fast
        # Out of the except block, so the stock logs chain no traceback.
        body = stock_span_bytes(span)
        self._count(1, 1, batches=0)
        return prefix + b"\x12" + _varint(len(body)) + body

    @staticmethod
    def span_group(span: ReadableSpan) -> tuple[Any, Any]:
        """``span``'s resource and instrumentation scope (None when it has none)."""
        if SDK_LAYOUT_OK and type(span) is ReadableSpan:
            return span._resource, span._instrumentation_scope or None
        return span.resource, span.instrumentation_scope or None

    def group_fields(self, resource: Any, scope: Any) -> tuple[bytes, bytes, bytes, bytes]:
        """The encoded ``ResourceSpans.resource`` and ``.schema_url`` of ``resource``, and
        ``ScopeSpans.scope`` and ``.schema_url`` of ``scope``, cached."""
        if STOCK_FEATURES.fast_path:
            resource_head, resource_tail = self._resource_fields(resource)
            scope_head, scope_tail = self._scope_fields(scope)
        else:
            resource_head, resource_tail = _stock_fields(*stock_resource_fields(resource))
            scope_head, scope_tail = (
                (b"\x0a\x00", b"") if scope is None else _stock_fields(*stock_scope_fields(scope))
            )
        return resource_head, resource_tail, scope_head, scope_tail

    def _count(self, spans: int, fallbacks: int, *, batches: int = 1) -> None:
        with self._lock:
            self._batches += batches
            self._spans += spans
            self._fallbacks += fallbacks


_DEFAULT = SpanEncoder()


def encode_spans(spans: Sequence[ReadableSpan], encoder: SpanEncoder | None = None) -> bytes:
    """``ExportTraceServiceRequest`` wire bytes for ``spans``; decodes equal to the stock encoder's.

    Uses ``encoder``'s caches, or a module-wide :class:`SpanEncoder` when it is ``None``.

    >>> body = encode_spans(spans)  # doctest: +SKIP
    """
    return (_DEFAULT if encoder is None else encoder).encode(spans)
