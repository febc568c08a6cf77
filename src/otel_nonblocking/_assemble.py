"""Spans as encoded items, and OTLP trace requests assembled from them without decoding.

An item is one ``bytes`` (which the garbage collector does not track): a varint group
number, then the span's ``ScopeSpans.spans`` field (tag, length, ``Span`` message). A group
number indexes an append-only table of encoded resource and scope fields; group 0 means
the four fields follow inline (once the table holds :data:`MAX_GROUPS` groups).

>>> pieces = SpanPieces(SpanEncoder())  # doctest: +SKIP
>>> body = pieces.assemble([pieces.item(span) for span in spans])  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ._varint import read_varint, varint

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

    from ._encoder import SpanEncoder

#: Groups (distinct encoded resource and scope pairs) the table holds; the spans of any
#: further group carry its fields inline (a few hundred bytes more each), so an application
#: that makes a resource per request cannot grow the table without bound.
MAX_GROUPS = 1024
# (id(resource), id(scope)) -> (resource, scope, prefix): the objects are held so that
# their ids stay theirs while the entry exists; emptied when full.
_MAX_CACHED_PAIRS = 256

# The four encoded fields of a group: ResourceSpans.resource and .schema_url,
# ScopeSpans.scope and .schema_url.
Fields = tuple[bytes, bytes, bytes, bytes]


_NOTHING = object()


class SpanPieces:
    """Turns spans into items and items into ``ExportTraceServiceRequest`` bytes.

    One per exporter (it shares the exporter's :class:`SpanEncoder` and its caches). The
    table is only ever appended to, with operations that are atomic under the GIL, so
    threads may share it and no lock survives a fork.
    """

    def __init__(
        self, encoder: SpanEncoder | Callable[[], SpanEncoder], *, max_groups: int = MAX_GROUPS
    ) -> None:
        # The encoder, or how to get it at the first span (its import probes the SDK:
        # on the worker, not at a cold start).
        self._encoder: SpanEncoder | None = None if callable(encoder) else encoder
        self._get_encoder = encoder if callable(encoder) else None
        self._max_groups = max_groups
        self._groups: dict[int, Fields] = {}  # group number -> its fields
        self._numbers: dict[Fields, int] = {}  # its fields -> group number
        self._next = itertools.count(1)
        self._pairs: dict[tuple[int, int], tuple[Any, Any, bytes]] = {}
        self._last: tuple[Any, Any, bytes] = (_NOTHING, _NOTHING, b"")  # the last pair seen

    @property
    def groups(self) -> int:
        """How many groups the table holds."""
        return len(self._numbers)

    def item(self, span: ReadableSpan) -> bytes:
        """``span`` as an item; raises where the stock encoder raises (the span is then
        to be dropped as unencodable)."""
        encoder = self._encoder
        if encoder is None:
            assert self._get_encoder is not None
            encoder = self._encoder = self._get_encoder()
        resource, scope = encoder.span_group(span)
        last = self._last
        if last[0] is resource and last[1] is scope:
            prefix = last[2]
        else:
            prefix = self._prefix(encoder, resource, scope)
        return encoder.span_item(span, prefix)

    def _prefix(self, encoder: SpanEncoder, resource: Any, scope: Any) -> bytes:
        pair = (id(resource), id(scope))
        cached = self._pairs.get(pair)
        if cached is not None and cached[0] is resource and cached[1] is scope:
            self._last = cached
            return cached[2]
        fields = encoder.group_fields(resource, scope)
        number = self._numbers.get(fields)
        if number is None and len(self._numbers) < self._max_groups:
            new = next(self._next)
            self._groups[new] = fields  # before it can be found: a reader finds it whole
            number = self._numbers.setdefault(fields, new)
        if number is None:
            prefix = b"\x00" + b"".join(varint(len(part)) + part for part in fields)
        else:
            prefix = varint(number)
        if len(self._pairs) >= _MAX_CACHED_PAIRS:
            self._pairs.clear()
        self._last = self._pairs[pair] = (resource, scope, prefix)
        return prefix

    def _split(self, item: bytes) -> tuple[int | Fields, bytes]:
        """An item's group (its number, or its inline fields) and its ``ScopeSpans.spans``
        field, for an item whose first byte is not a one-byte group number."""
        number, pos = read_varint(item, 0)
        if number:
            return number, item[pos:]
        parts = []
        for _ in range(4):
            size, pos = read_varint(item, pos)
            parts.append(item[pos : pos + size])
            pos += size
        return (parts[0], parts[1], parts[2], parts[3]), item[pos:]

    def assemble(self, items: Sequence[bytes]) -> bytes:
        """The ``ExportTraceServiceRequest`` bytes carrying ``items``.

        Spans are grouped by resource, then by scope, in order of first appearance, as
        :meth:`SpanEncoder.encode` groups them; resources and scopes are told apart by
        their encoding (equal objects encode alike). The length of every enclosing message
        is computed from the pieces: nothing is decoded.
        """
        by_group: dict[int | Fields, list[bytes]] = {}
        for item in items:
            first = item[0]
            if 0 < first < 0x80:  # the usual case: a one-byte group number
                key: int | Fields = first
                field = item[1:]
            else:
                key, field = self._split(item)
            parts = by_group.get(key)
            if parts is None:
                parts = by_group[key] = []
            parts.append(field)
        # A resource's first group comes first among its groups: the order is kept.
        resources: dict[tuple[bytes, bytes], list[tuple[Fields, list[bytes]]]] = {}
        groups = self._groups
        for key, parts in by_group.items():
            fields = groups[key] if isinstance(key, int) else key
            scopes = resources.get((fields[0], fields[1]))
            if scopes is None:
                scopes = resources[(fields[0], fields[1])] = []
            scopes.append((fields, parts))
        out: list[bytes] = []
        for (resource_head, resource_tail), scopes in resources.items():
            chunks: list[bytes] = []
            size = len(resource_head) + len(resource_tail)
            for (_, _, scope_head, scope_tail), parts in scopes:
                scope_size = len(scope_head) + sum(map(len, parts)) + len(scope_tail)
                marker = b"\x12" + varint(scope_size)
                chunks.append(marker)
                chunks.append(scope_head)
                chunks.extend(parts)
                chunks.append(scope_tail)
                size += len(marker) + scope_size
            out.append(b"\x0a" + varint(size))
            out.append(resource_head)
            out.extend(chunks)
            out.append(resource_tail)
        return b"".join(out)
