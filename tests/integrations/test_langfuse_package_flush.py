"""The package's own flush covers Langfuse: one flush, one deadline, everything bound.

``otel_nonblocking.flush()``, ``aflush()`` and ``@flush_after`` flush every bound Langfuse
client (spans, scores, media) with what is left of their deadline (on Lambda: the time
the invocation has left) and count its spans in the ``FlushResult``; and a flush on a
healthy backend does not wait out the score consumer's batching interval (3.x/4.x).
"""

from __future__ import annotations

import asyncio
import time
from queue import Queue

import pytest

pytest.importorskip("langfuse", reason="the Langfuse integration needs otel-nonblocking[langfuse]")

import otel_nonblocking
from otel_nonblocking import _state
from otel_nonblocking.integrations import _compat_langfuse as sdk
from otel_nonblocking.integrations.langfuse import bound_langfuse_flush
from otel_nonblocking.testing import Mode
from tests.integrations.conftest import request_handler

BUDGET = 0.5  # seconds
SLACK = 0.5  # the generous margin timing bounds allow on a shared machine
SPANS = 3  # request_handler: a root observation and two children, then one score


class _LambdaContext:
    """The part of a Lambda context that sets the flush budget: the time left, counting down."""

    def __init__(self, millis: int) -> None:
        self.ends = time.monotonic() + millis / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self.ends - time.monotonic()) * 1000), 0)


def test_otel_nonblocking_flush_delivers_and_counts_langfuse_spans(fake, make_client) -> None:
    bound_langfuse_flush(timeout=2)
    client = make_client()
    request_handler(client)

    result = otel_nonblocking.flush(2.0)

    assert fake.spans_delivered == SPANS
    assert fake.scores_delivered == 1
    assert result.exported == SPANS, result
    assert result.ok, result


def test_flush_after_flushes_langfuse_when_the_handler_returns(fake, make_client) -> None:
    bound_langfuse_flush(timeout=2)
    client = make_client()
    flushing = otel_nonblocking.flush_after(timeout=2.0)

    @flushing
    def handler(event, context):
        request_handler(client)
        return "done"

    assert handler({}, _LambdaContext(30_000)) == "done"
    assert fake.spans_delivered == SPANS
    assert fake.scores_delivered == 1
    assert flushing.result is not None
    assert flushing.result.exported == SPANS, flushing.result


def test_async_flush_after_flushes_langfuse_too(fake, make_client) -> None:
    bound_langfuse_flush(timeout=2)
    client = make_client()
    flushing = otel_nonblocking.flush_after(timeout=2.0)

    @flushing
    async def handler(event, context):
        request_handler(client)
        return "done"

    assert asyncio.run(handler({}, _LambdaContext(30_000))) == "done"
    assert fake.spans_delivered == SPANS
    assert flushing.result is not None
    assert flushing.result.exported == SPANS, flushing.result


def test_flush_after_gives_langfuse_only_the_lambda_time_left(fake, make_client) -> None:
    fake.mode = Mode.HANG
    bound_langfuse_flush(timeout=5)  # Langfuse's own budget is longer than the time left
    client = make_client()
    flushing = otel_nonblocking.flush_after(timeout=5.0, margin=0.2)

    @flushing
    def handler(event, context):
        request_handler(client)

    started = time.monotonic()
    handler({}, _LambdaContext(int((BUDGET + 0.2) * 1000)))  # BUDGET s left after the margin
    took = time.monotonic() - started

    assert took < BUDGET + SLACK, f"the invocation took {took:.2f}s"
    result = flushing.result
    assert result is not None
    assert result.timed_out, result
    assert result.pending >= SPANS + 1, result  # the spans and the score were not delivered
    assert not result.ok


# -- a healthy flush does not wait out a batching interval -------------------------------------


def test_a_healthy_flush_with_a_score_does_not_wait_for_the_score_interval(make_client, fake):
    bound_langfuse_flush(timeout=10)
    client = make_client(flush_interval=5)  # stock: the score consumer sends every 5 s
    for _ in range(3):
        request_handler(client)
        started = time.monotonic()
        result = client.flush()
        took = time.monotonic() - started
        assert result.ok, result
        assert took < 1.0, f"a healthy flush took {took:.2f}s"
    assert fake.scores_delivered == 3


def test_unbind_restores_the_score_queue_and_leaves_the_package_flush(make_client) -> None:
    binding = bound_langfuse_flush(timeout=BUDGET)
    client = make_client()
    rm = client._resources
    queue = sdk.score_queue(rm)
    has_wake = any(callable(getattr(c, "wake", None)) for c in sdk.score_consumers(rm))
    assert type(queue) is (Queue if has_wake else sdk.WakeableQueue)  # 5.x wakes its own
    assert binding in _state.flushables()

    binding.unbind()

    assert type(queue) is Queue
    assert binding not in _state.flushables()


def test_langfuse_flush_inside_a_flush_after_handler_keeps_to_the_lambda_time_left(
    fake, make_client
) -> None:
    fake.mode = Mode.HANG
    bound_langfuse_flush(timeout=5)  # longer than the invocation has left
    client = make_client()
    inner: list[float] = []

    @otel_nonblocking.flush_after(timeout=5.0, margin=0.2)
    def handler(event, context):
        request_handler(client)
        started = time.monotonic()
        client.flush()  # the user's own flush, as in the incident
        inner.append(time.monotonic() - started)

    started = time.monotonic()
    handler({}, _LambdaContext(int((BUDGET + 0.2) * 1000)))
    took = time.monotonic() - started

    assert inner[0] < BUDGET + SLACK, f"langfuse.flush() took {inner[0]:.2f}s"
    assert took < BUDGET + SLACK, f"the invocation took {took:.2f}s"
