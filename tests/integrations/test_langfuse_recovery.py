"""After an outage a Langfuse flush delivers at once; its result is never ok when spans were lost.

Against the fake Langfuse API on 127.0.0.1, with Langfuse's own batch processor over our
deadline exporter (the default) and with ``processor="nonblocking"``.
"""

from __future__ import annotations

import threading
import time

import pytest

pytest.importorskip("langfuse", reason="the Langfuse integration needs otel-nonblocking[langfuse]")

from otel_nonblocking import DeadlineSpanExporter
from otel_nonblocking.integrations import _compat_langfuse as sdk
from otel_nonblocking.integrations.langfuse import bound_langfuse_flush, langfuse_span_exporter
from otel_nonblocking.testing import Mode
from tests.integrations.conftest import PUBLIC_KEY, SECRET_KEY

PROCESSORS = ["langfuse", "nonblocking"]
SLACK = 0.5  # the generous margin timing bounds allow on a shared machine


def _spans(client, name: str, count: int = 3) -> None:
    with client.start_as_current_observation(name=name):
        for index in range(count - 1):
            with client.start_as_current_observation(name=f"{name}-{index}"):
                pass


def _breaker_open(client) -> bool:
    """Langfuse's exporter's breaker (or, with processor="nonblocking", the processor's)."""
    (processor,) = sdk.span_processors(client._resources)
    slot = sdk.exporter_slot(processor)
    assert slot is not None
    exporters = [slot.get()]
    nonblocking = getattr(sdk.batch_processor(processor), "processor", None)
    if nonblocking is not None:
        exporters.append(nonblocking.exporter)
    assert all(isinstance(exporter, DeadlineSpanExporter) for exporter in exporters)
    return any(exporter.stats().breaker_state != "closed" for exporter in exporters)


def _wait_for(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.mark.parametrize("processor", PROCESSORS)
def test_flushes_after_an_outage_deliver_every_span_while_the_breaker_is_still_open(
    processor, monkeypatch, fake, make_client
) -> None:
    # A long back-off: only the flush acting as the breaker's probe can deliver in time.
    monkeypatch.setenv("OTEL_NONBLOCKING_BREAKER_BACKOFF", "30000")
    fake.retry_after = None
    fake.mode = Mode.UNAVAILABLE
    binding = bound_langfuse_flush(timeout=1.0, processor=processor)
    client = make_client()
    for index in range(4):  # the outage: invocations whose flushes fail
        _spans(client, f"outage-{index}")
        # A budget longer than the export deadline: each flush ends with its export.
        binding.flush(client, timeout=3.0)
    assert _breaker_open(client)
    fake.mode = Mode.OK
    delivered_before = fake.spans_delivered
    results = []
    for index in range(10):  # healthy invocations, each flushing as a handler would
        _spans(client, f"healthy-{index}")
        results.append(client.flush())
    # Every healthy span arrived (nonblocking mode also sends the outage's kept spans).
    assert _wait_for(lambda: fake.spans_delivered - delivered_before >= 30)
    names = {
        name
        for record in fake.requests_to(fake.OTLP_PATH)
        if record.accepted
        for name in record.span_names()
    }
    assert {f"healthy-{index}" for index in range(10)} <= names
    for index, result in enumerate(results):
        assert result.ok, f"invocation {index}: {result}"
        assert result.spans_lost == 0
        assert result.seconds < 1.0 + SLACK


@pytest.mark.parametrize("processor", PROCESSORS)
def test_a_flush_whose_spans_were_rejected_is_not_ok(processor, fake, make_client) -> None:
    fake.mode = Mode.ERROR_STATUS
    fake.error_status = 401
    bound_langfuse_flush(timeout=1.0, processor=processor)
    client = make_client()
    _spans(client, "rejected")
    result = client.flush()
    assert not result.ok
    assert result.spans_lost == 3
    assert result.spans_pending == 0


@pytest.mark.parametrize("processor", PROCESSORS)
def test_a_flush_whose_export_was_abandoned_against_a_hanging_host_is_not_ok(
    processor, fake, make_client
) -> None:
    fake.mode = Mode.HANG
    binding = bound_langfuse_flush(timeout=0.5, processor=processor)  # the export deadline
    client = make_client()
    _spans(client, "abandoned")
    result = binding.flush(client, timeout=2.0)  # the export is abandoned well within it
    assert not result.ok
    # Langfuse's processor drops the abandoned batch (lost); ours keeps it (pending).
    assert result.spans_lost + result.spans_pending == 3


def test_a_flush_does_not_report_spans_given_up_on_before_it_began(
    monkeypatch, fake, make_client
) -> None:
    # The batch's only attempt outlasts the processor's 1 s export deadline against a
    # hanging host (Langfuse's exporter allows 10 s): given up on, it waits only to learn
    # whether that attempt got through. The host recovers while the next flush waits and
    # drops the held connection: the attempt failed, a loss from before that flush began,
    # not that flush's. (Under CPU load the outage's last attempt ended so, and the first
    # healthy flush said timed_out and spans_lost=3 within 28 ms of its 1 s.)
    monkeypatch.setenv("OTEL_NONBLOCKING_MAX_ATTEMPTS", "1")
    client = make_client()
    (processor,) = sdk.span_processors(client._resources)
    slot = sdk.exporter_slot(processor)
    assert slot is not None
    slot.set(
        langfuse_span_exporter(
            10.0, public_key=PUBLIC_KEY, secret_key=SECRET_KEY, base_url=fake.base_url
        )
    )
    binding = bound_langfuse_flush(timeout=1.0, processor="nonblocking")
    fake.mode = Mode.HANG
    _spans(client, "given-up")
    first = binding.flush(client, timeout=1.2)
    assert (first.ok, first.spans_pending) == (False, 3), first  # its answer is still out
    _spans(client, "next")
    recover = threading.Timer(0.3, lambda: setattr(fake, "mode", Mode.OK))
    recover.start()
    try:
        second = binding.flush(client, timeout=3.0)
    finally:
        recover.cancel()
        fake.mode = Mode.OK
    assert second.ok, second
    assert (second.spans_lost, second.spans_pending, second.timed_out) == (0, 0, False)
    assert second.seconds < 3.0 + SLACK
    # The loss is still counted where it happened: among the processor's dropped spans.
    stats = sdk.batch_processor(processor).processor.stats()
    assert dict(stats.dropped) == {"backend_unavailable": 3}
    assert stats.exported == 3
    assert "next" in fake.span_names()
