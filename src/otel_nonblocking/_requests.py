"""A batch of spans as OTLP request bodies: one bad span costs that span, never its batch.

:func:`encode_batch` is the one place every path (fast or stock encoder, export or spool)
turns spans into requests. A span no encoder can write is left out as ``unencodable``; a
span whose request alone is over the size limit is left out as ``too_large``; the others
go into as few requests under the limit as halving the batch finds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

#: Why a span was left out of its batch's requests (the processor's drop reasons too).
UNENCODABLE = "unencodable"  # no encoder can write it (e.g. a lone surrogate in its name)
TOO_LARGE = "too_large"  # its request alone is over the exporter's request size limit

#: A span: a ReadableSpan, or an item the worker's stage encoded (``_assemble.py``).
S = TypeVar("S")
Encode = Callable[[Sequence[S]], bytes]


@dataclass(frozen=True)
class EncodedRequest:
    """One request body and how many spans it carries."""

    data: bytes
    spans: int


@dataclass(frozen=True)
class EncodedBatch:
    """A batch as request bodies under the size limit, in the batch's order, and the number
    of spans left out of them by reason (``unencodable``, ``too_large``)."""

    requests: tuple[EncodedRequest, ...]
    rejected: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    #: With ``single``: the batch needs more than one request, so none was made (and
    #: nothing is in ``rejected``): its parts are to be encoded as batches of their own.
    split: bool = False

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


def _fits(data: bytes, max_bytes: int) -> bool:
    return max_bytes <= 0 or len(data) <= max_bytes


def encode_batch(
    spans: Sequence[S], encode: Encode[S], max_bytes: int, *, single: bool = False
) -> EncodedBatch:
    """``spans`` as requests of at most ``max_bytes`` each (0: no limit), encoded by ``encode``.

    The whole batch is encoded once; only when that fails or is too large is each span
    encoded alone, to find the ones to leave out, and the rest halved until each part fits.
    With ``single``, a batch whose spans need more than one request is not halved here:
    the result has ``split`` set, for the caller to split the batch itself.

    >>> encode_batch(spans, SpanEncoder().encode, 64 << 20).requests  # doctest: +SKIP
    """
    batch = list(spans)
    data: bytes | None
    try:
        data = encode(batch)
    except Exception:  # noqa: BLE001 - find the span(s) at fault below
        data = None
    if data is not None and _fits(data, max_bytes):
        return EncodedBatch((EncodedRequest(data, len(batch)),))
    too_large = data is not None  # encodable, but over the limit
    data = None  # not kept alive while the spans are looked at one by one
    rejected: Counter[str] = Counter()
    kept = []
    for span in batch:
        try:
            alone = encode([span])
        except Exception:  # noqa: BLE001 - counted just below
            rejected[UNENCODABLE] += 1
            continue
        if _fits(alone, max_bytes):
            kept.append(span)
        else:
            rejected[TOO_LARGE] += 1
    requests: list[EncodedRequest] = []
    if kept:
        if single and len(kept) > 1:
            if too_large and len(kept) == len(batch):
                return EncodedBatch((), split=True)  # encoded whole above: over the limit
            try:
                data = encode(kept)
            except Exception:  # noqa: BLE001 - a span that changed since it encoded alone
                data = None
            if data is None or not _fits(data, max_bytes):
                return EncodedBatch((), split=True)
            requests.append(EncodedRequest(data, len(kept)))
        else:
            _halve_until_fit(kept, encode, max_bytes, requests, rejected)
    return EncodedBatch(tuple(requests), MappingProxyType(dict(rejected)))


def _halve_until_fit(
    spans: list[S],
    encode: Encode[S],
    max_bytes: int,
    out: list[EncodedRequest],
    rejected: Counter[str],
) -> None:
    """Requests for ``spans`` (each of which fits alone), halving a part that does not fit."""
    parts = [spans]
    while parts:
        part = parts.pop()
        try:
            data: bytes | None = encode(part)
        except Exception:  # noqa: BLE001 - a span that changed since it encoded alone
            data = None
        if data is not None and _fits(data, max_bytes):
            out.append(EncodedRequest(data, len(part)))
            continue
        if len(part) == 1:
            rejected[UNENCODABLE if data is None else TOO_LARGE] += 1
            continue
        half = len(part) // 2
        parts.append(part[half:])
        parts.append(part[:half])  # popped first: the batch's order is kept
