"""encode_batch(): bad spans left out one by one, requests halved until under the limit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from otel_nonblocking._requests import encode_batch


class _Encoder:
    """Encodes "spans" (strings) as their concatenation; raises on one containing "!"."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, spans: Sequence[Any]) -> bytes:
        self.calls += 1
        if any("!" in span for span in spans):
            raise UnicodeEncodeError("utf-8", "!", 0, 1, "surrogates not allowed")
        return "".join(spans).encode()


def test_a_batch_that_fits_is_encoded_once() -> None:
    encode = _Encoder()
    encoded = encode_batch(["ab", "cd"], encode, 10)
    assert [(r.data, r.spans) for r in encoded.requests] == [(b"abcd", 2)]
    assert dict(encoded.rejected) == {}
    assert encode.calls == 1


def test_an_unencodable_span_is_left_out_and_the_rest_is_one_request() -> None:
    encoded = encode_batch(["a", "b", "!", "c", "!"], _Encoder(), 0)
    assert [(r.data, r.spans) for r in encoded.requests] == [(b"abc", 3)]
    assert dict(encoded.rejected) == {"unencodable": 2}


def test_a_batch_over_the_limit_is_halved_in_order_until_each_part_fits() -> None:
    spans = [f"{i:02d}" * 2 for i in range(10)]  # 4 bytes each, 40 in all
    encoded = encode_batch(spans, _Encoder(), 12)
    assert all(len(r.data) <= 12 for r in encoded.requests)
    assert b"".join(r.data for r in encoded.requests) == "".join(spans).encode()
    assert sum(r.spans for r in encoded.requests) == 10
    assert dict(encoded.rejected) == {}


def test_a_span_too_large_alone_is_left_out_alone() -> None:
    spans = ["a", "b" * 20, "c", "!", "d"]
    encoded = encode_batch(spans, _Encoder(), 10)
    assert [(r.data, r.spans) for r in encoded.requests] == [(b"acd", 3)]
    assert dict(encoded.rejected) == {"too_large": 1, "unencodable": 1}


def test_nothing_left_means_no_request() -> None:
    encoded = encode_batch(["!", "x" * 50], _Encoder(), 10)
    assert encoded.requests == ()
    assert encoded.rejected_total == 2


def test_single_asks_for_a_split_instead_of_halving() -> None:
    encode = _Encoder()
    spans = [f"{i:02d}" * 2 for i in range(10)]  # 4 bytes each, 40 in all
    encoded = encode_batch(spans, encode, 12, single=True)
    assert encoded.split is True
    assert encoded.requests == ()
    assert dict(encoded.rejected) == {}  # the parts will be looked at again on their own


def test_single_leaves_out_the_span_too_large_alone_and_sends_the_rest() -> None:
    spans = ["a", "b" * 20, "c", "!", "d"]
    encoded = encode_batch(spans, _Encoder(), 10, single=True)
    assert encoded.split is False
    assert [(r.data, r.spans) for r in encoded.requests] == [(b"acd", 3)]
    assert dict(encoded.rejected) == {"too_large": 1, "unencodable": 1}
