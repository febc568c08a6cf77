"""One bad span costs one span: whatever the encoder (fast or stock) and whatever the path
(export, or the disk spool), a span that cannot be encoded or is too large alone is dropped
with its own reason, and a batch over the request size limit goes out in several requests.

The request size limit is lowered (``otlp_span_exporter(max_request_bytes=...)``) so that
the cases of the issue (40 spans of 2 MiB under 64 MiB; one 65 MiB span among 200) keep
their proportions at a thousandth of the memory: 40 spans of 2 KiB under 64 KiB, one
65 KiB span among 200.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.trace import Tracer

from otel_nonblocking import NonBlockingSpanProcessor, otlp_span_exporter
from otel_nonblocking._processor import ProcessorStats
from otel_nonblocking.testing import FakeOTLPBackend, Mode

ENCODERS = ("fast", "stock")
LIMIT = 64 * 1024  # stands for the SDK's 64 MiB
BIG = 65 * 1024  # stands for a 65 MiB span
TWO_KIB = 2 * 1024  # stands for a 2 MiB span


@pytest.fixture
def backend() -> Iterator[FakeOTLPBackend]:
    with FakeOTLPBackend(Mode.OK) as server:
        yield server


class _Pipeline:
    """Our processor and the real OTLP exporter, flushing only when asked."""

    def __init__(
        self,
        endpoint: str,
        encoder: str,
        spool: Path | None,
        limit: int | None = None,
        delay_millis: int = 10_000,  # one batch, sent by force_flush or shutdown
    ) -> None:
        options = {} if limit is None else {"max_request_bytes": limit}
        exporter = otlp_span_exporter(endpoint, timeout=1, encoder=encoder, **options)
        self.listened: Counter[str] = Counter()  # spans by export outcome, as listeners see them
        exporter.add_listener(
            lambda outcome, count, _: self.listened.update({outcome.value: count})
        )
        self.processor = NonBlockingSpanProcessor(
            exporter,
            schedule_delay_millis=delay_millis,
            spool_dir=None if spool is None else str(spool),
        )
        self.provider = TracerProvider(shutdown_on_exit=False)
        self.provider.add_span_processor(self.processor)
        self.tracer: Tracer = self.provider.get_tracer("bad-spans")

    def span(self, name: str, attributes: dict[str, object] | None = None) -> int:
        span = self.tracer.start_span(name, attributes=attributes)  # type: ignore[arg-type]
        span.end()
        return span.get_span_context().span_id

    def shutdown(self) -> ProcessorStats:
        started = time.monotonic()
        self.processor.shutdown(timeout_millis=2000)
        assert time.monotonic() - started < 3.0
        return self.processor.stats()


def _accepted(backend: FakeOTLPBackend, ids: set[int], count: int) -> Counter[int]:
    """How often each of ``ids`` reached the backend, once ``count`` of them did (2 s at most)."""
    deadline = time.monotonic() + 2.0
    while True:
        seen = Counter(
            int.from_bytes(s.span_id, "big")
            for s in backend.accepted_spans()
            if int.from_bytes(s.span_id, "big") in ids
        )
        if sum(seen.values()) >= count or time.monotonic() > deadline:
            return seen
        time.sleep(0.01)


def _deliver_spooled(
    backend: FakeOTLPBackend, spool: Path, encoder: str, limit: int | None, expected: int
) -> ProcessorStats:
    """A later process's processor, on the same spool: it sends what was spooled."""
    backend.mode = Mode.OK
    later = _Pipeline(backend.endpoint, encoder, spool, limit, delay_millis=20)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        stats = later.processor.stats()
        if stats.recovered + stats.exported >= expected:
            break
        time.sleep(0.02)
    return later.shutdown()


def _run(
    backend: FakeOTLPBackend,
    encoder: str,
    spool: Path | None,
    spans: list[tuple[str, dict[str, object] | None]],
    limit: int | None,
) -> tuple[ProcessorStats, list[int], Counter[str]]:
    """End ``spans`` (name, attributes) in one batch; deliver it, or spool it with the backend
    down and deliver it from a later processor. Returns the first processor's stats and ids."""
    if spool is not None:
        backend.mode = Mode.UNAVAILABLE  # held until shutdown, which spools the batch
    pipeline = _Pipeline(backend.endpoint, encoder, spool, limit)
    ids = [pipeline.span(name, attributes) for name, attributes in spans]
    if spool is None:
        pipeline.processor.force_flush(3000)
    stats = pipeline.shutdown()
    assert stats.enqueued == stats.exported + stats.dropped_total + stats.spooled, stats
    assert stats.pending == 0
    if spool is not None:
        later = _deliver_spooled(backend, spool, encoder, limit, stats.spooled)
        assert later.recovered + later.exported == stats.spooled
    return stats, ids, pipeline.listened


@pytest.mark.parametrize("spooled", [False, True], ids=["export", "spool"])
@pytest.mark.parametrize("encoder", ENCODERS)
def test_a_span_no_encoder_can_write_costs_only_itself(
    encoder: str, spooled: bool, backend: FakeOTLPBackend, tmp_path: Path
) -> None:
    spans: list[tuple[str, dict[str, object] | None]] = [("good", {"i": i}) for i in range(10)]
    spans[4] = ("bad \ud800 name", None)
    stats, ids, _ = _run(backend, encoder, tmp_path / "spool" if spooled else None, spans, None)
    good = set(ids) - {ids[4]}
    assert stats.dropped == {"unencodable": 1}
    assert (stats.spooled if spooled else stats.exported) == 9
    seen = _accepted(backend, set(ids), 9)
    assert set(seen) == good
    assert max(seen.values()) == 1


@pytest.mark.parametrize("spooled", [False, True], ids=["export", "spool"])
@pytest.mark.parametrize("encoder", ENCODERS)
def test_a_batch_over_the_request_limit_goes_out_in_several_requests(
    encoder: str, spooled: bool, backend: FakeOTLPBackend, tmp_path: Path
) -> None:
    spans: list[tuple[str, dict[str, object] | None]] = [
        ("two-kib", {"payload": f"{i:04d}" + "x" * TWO_KIB}) for i in range(40)
    ]
    spool = tmp_path / "spool" if spooled else None
    stats, ids, listened = _run(backend, encoder, spool, spans, LIMIT)
    assert stats.dropped_total == 0
    assert listened["success"] == (0 if spooled else 40)  # each span counted once
    assert (stats.spooled if spooled else stats.exported) == 40
    seen = _accepted(backend, set(ids), 40)
    assert set(seen) == set(ids)
    assert max(seen.values()) == 1
    carrying = [r for r in backend.requests if r.status == 200 and r.spans]
    assert len(carrying) >= 2
    assert all(len(r.body) <= LIMIT for r in carrying)


@pytest.mark.parametrize("spooled", [False, True], ids=["export", "spool"])
@pytest.mark.parametrize("encoder", ENCODERS)
def test_a_span_too_large_alone_is_dropped_alone(
    encoder: str, spooled: bool, backend: FakeOTLPBackend, tmp_path: Path
) -> None:
    spans: list[tuple[str, dict[str, object] | None]] = [("small", {"i": i}) for i in range(200)]
    spans[120] = ("huge", {"payload": "y" * BIG})
    spool = tmp_path / "spool" if spooled else None
    stats, ids, listened = _run(backend, encoder, spool, spans, LIMIT)
    assert stats.dropped == {"too_large": 1}
    assert listened["success"] == (0 if spooled else 199)
    assert (stats.spooled if spooled else stats.exported) == 199
    seen = _accepted(backend, set(ids), 199)
    assert set(seen) == set(ids) - {ids[120]}
    assert max(seen.values()) == 1
    assert all(len(r.body) <= LIMIT for r in backend.requests)


@pytest.mark.parametrize("encoder", ENCODERS)
def test_the_exporter_alone_sends_a_large_batch_as_several_requests(
    encoder: str, backend: FakeOTLPBackend
) -> None:
    # Without our processor (e.g. under the SDK's BatchSpanProcessor) there is nobody to
    # split the batch: the exporter sends it in parts itself, and leaves out a bad span.
    provider = TracerProvider(shutdown_on_exit=False)
    tracer = provider.get_tracer("bad-spans")
    spans: list[ReadableSpan] = []
    for i in range(40):
        span = tracer.start_span("two-kib", attributes={"payload": f"{i:04d}" + "x" * TWO_KIB})
        span.end()
        spans.append(span)  # type: ignore[arg-type]
    huge = tracer.start_span("huge", attributes={"payload": "y" * BIG})
    huge.end()
    spans.insert(7, huge)  # type: ignore[arg-type]
    exporter = otlp_span_exporter(
        backend.endpoint, timeout=2, encoder=encoder, max_request_bytes=LIMIT
    )
    try:
        report = exporter.export_report(spans)
    finally:
        exporter.shutdown(timeout_millis=500)
    assert report.outcome.value == "success"
    assert dict(report.rejected) == {"too_large": 1}
    ids = {span.context.span_id for span in spans} - {huge.get_span_context().span_id}
    seen = _accepted(backend, ids, 40)
    assert set(seen) == ids
    assert len(backend.requests) >= 2
    assert all(len(r.body) <= LIMIT for r in backend.requests)


@pytest.mark.parametrize("encoder", ENCODERS)
def test_attributes_no_encoder_can_write_are_left_out_without_an_error_per_span(
    encoder: str, backend: FakeOTLPBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    pipeline = _Pipeline(backend.endpoint, encoder, None)
    odd: dict[str, object] = {"big": 2**70, "small": -(2**70), "in_list": [1, 2**64], "ok": 7}
    ids = {pipeline.span("odd-attributes", odd) for _ in range(20)}
    assert pipeline.processor.force_flush(3000)
    stats = pipeline.shutdown()
    assert stats.exported == 20
    assert stats.dropped_total == 0
    received = [s for s in backend.accepted_spans() if int.from_bytes(s.span_id, "big") in ids]
    assert len(received) == 20
    # As on the wire of the stock encoder: the attributes it cannot write are left out.
    assert all([kv.key for kv in span.attributes] == ["ok"] for span in received)
    assert all(span.attributes[0].value.int_value == 7 for span in received)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    left_out = [r for r in caplog.records if "cannot be encoded" in r.getMessage()]
    assert len(left_out) <= 1  # one aggregated line, never one per span
    assert all(str(2**70) not in r.getMessage() for r in caplog.records)  # never a value
