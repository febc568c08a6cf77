"""Log records carry the trace and span ids of the span active where they were emitted."""

from __future__ import annotations

import asyncio
import contextvars
import io
import json
import logging
import logging.handlers
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Span, Tracer, format_span_id, format_trace_id

from otel_nonblocking.logs import TraceContextFilter, add_trace_context


@pytest.fixture
def tracer() -> Iterator[Tracer]:
    provider = TracerProvider(shutdown_on_exit=False)
    yield provider.get_tracer("tests.logs")
    provider.shutdown()


class _Records(logging.Handler):
    """Keeps every record it handles, with the thread that handled it."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, _Records]]:
    """A logger whose handler has the filter, and the records that handler saw."""
    handler = _Records()
    handler.addFilter(TraceContextFilter())
    logger = logging.getLogger(f"tests.logs.{id(handler)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield logger, handler
    logger.removeHandler(handler)


def _ids(span: Span) -> tuple[str, str]:
    context = span.get_span_context()
    return format_trace_id(context.trace_id), format_span_id(context.span_id)


def _by_message(records: list[logging.LogRecord]) -> dict[str, tuple[str, str]]:
    return {r.getMessage(): (r.trace_id, r.span_id) for r in records}


def test_filter_sets_hex_ids_and_sampled_flag_of_the_current_span(logged, tracer) -> None:
    logger, handler = logged
    with tracer.start_as_current_span("work") as span:
        logger.info("inside")
    (record,) = handler.records
    assert (record.trace_id, record.span_id) == _ids(span)
    assert len(record.trace_id) == 32
    assert len(record.span_id) == 16
    assert int(record.trace_id, 16) == span.get_span_context().trace_id
    assert record.trace_sampled is True


def test_filter_sets_empty_ids_outside_any_span_so_format_strings_still_work(logged) -> None:
    logger, handler = logged
    handler.setFormatter(logging.Formatter("%(message)s [%(trace_id)s/%(span_id)s]"))
    logger.info("outside")
    (record,) = handler.records
    assert (record.trace_id, record.span_id, record.trace_sampled) == ("", "", False)
    assert handler.format(record) == "outside [/]"


def test_filter_missing_value_is_configurable() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    assert TraceContextFilter(missing="0").filter(record) is True
    assert (record.trace_id, record.span_id) == ("0", "0")


def test_filter_reports_an_unsampled_trace_as_not_sampled(logged) -> None:
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    logger, handler = logged
    provider = TracerProvider(sampler=ALWAYS_OFF, shutdown_on_exit=False)
    with provider.get_tracer("t").start_as_current_span("unsampled") as span:
        logger.info("dropped trace")
    (record,) = handler.records
    assert record.trace_id == _ids(span)[0]
    assert record.trace_sampled is False


def test_ids_follow_the_innermost_span_and_come_back_to_the_parent(logged, tracer) -> None:
    logger, handler = logged
    with tracer.start_as_current_span("parent") as parent:
        logger.info("in parent")
        with tracer.start_as_current_span("child") as child:
            logger.info("in child")
        logger.info("parent again")
    logger.info("after")
    got = _by_message(handler.records)
    assert got["in parent"] == got["parent again"] == _ids(parent)
    assert got["in child"] == _ids(child)
    assert got["in child"][0] == got["in parent"][0]  # one trace
    assert got["after"] == ("", "")


def test_ids_given_with_extra_are_not_overwritten(logged, tracer) -> None:
    logger, handler = logged
    with tracer.start_as_current_span("work"):
        logger.info("explicit", extra={"trace_id": "f" * 32, "span_id": "e" * 16})
    (record,) = handler.records
    assert (record.trace_id, record.span_id) == ("f" * 32, "e" * 16)


def test_each_asyncio_task_logs_the_ids_of_its_own_span(logged, tracer) -> None:
    logger, handler = logged

    async def job(name: str, spans: dict[str, Span]) -> None:
        with tracer.start_as_current_span(name) as span:
            spans[name] = span
            for step in range(3):
                await asyncio.sleep(0)  # interleave the tasks
                logger.info("%s step %d", name, step)

    async def main() -> dict[str, Span]:
        spans: dict[str, Span] = {}
        with tracer.start_as_current_span("request") as request:
            spans["request"] = request
            await asyncio.gather(*(asyncio.create_task(job(f"task{i}", spans)) for i in range(3)))
            logger.info("request done")
        return spans

    spans = asyncio.run(main())
    got = _by_message(handler.records)
    for i in range(3):
        for step in range(3):
            assert got[f"task{i} step {step}"] == _ids(spans[f"task{i}"])
    assert got["request done"] == _ids(spans["request"])
    assert len({ids[0] for ids in got.values()}) == 1  # the tasks' spans share one trace


def test_threads_started_with_the_context_log_the_ids_of_the_starting_span(logged, tracer) -> None:
    logger, handler = logged

    def work(label: str) -> None:
        logger.info(label)

    with tracer.start_as_current_span("request") as span:
        copied = threading.Thread(target=contextvars.copy_context().run, args=(work, "copied"))
        copied.start()
        copied.join(5)
        captured = otel_context.get_current()

        def attached(label: str) -> None:
            token = otel_context.attach(captured)
            try:
                work(label)
            finally:
                otel_context.detach(token)

        with ThreadPoolExecutor(max_workers=2) as pool:
            pool.submit(attached, "pool with attach").result(5)
            pool.submit(work, "pool without propagation").result(5)

        async def to_thread() -> None:
            await asyncio.to_thread(work, "asyncio.to_thread")

        asyncio.run(to_thread())
        bare = threading.Thread(target=work, args=("plain thread",))
        bare.start()
        bare.join(5)
    got = _by_message(handler.records)
    assert got["copied"] == got["pool with attach"] == got["asyncio.to_thread"] == _ids(span)
    # Without propagation a new thread has no current span: nothing is made up.
    assert got["plain thread"] == got["pool without propagation"] == ("", "")


def test_on_a_queue_handler_the_ids_are_those_of_the_logging_thread(tracer) -> None:
    records: queue.Queue[logging.LogRecord] = queue.Queue()
    queue_handler = logging.handlers.QueueHandler(records)
    queue_handler.addFilter(TraceContextFilter())
    sink = _Records()
    sink.addFilter(TraceContextFilter())  # runs again on the listener's thread: no change
    listener = logging.handlers.QueueListener(records, sink)
    logger = logging.getLogger("tests.logs.queue")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(queue_handler)
    listener.start()
    try:
        with tracer.start_as_current_span("request") as span:
            logger.info("queued")
    finally:
        listener.stop()
        logger.removeHandler(queue_handler)
    (record,) = sink.records
    assert (record.trace_id, record.span_id) == _ids(span)


def test_stdlib_json_lines_carry_the_ids(tracer) -> None:
    class JsonFormatter(logging.Formatter):  # the docs' standard-library example
        def format(self, record: logging.LogRecord) -> str:
            line = {"level": record.levelname, "message": record.getMessage()}
            if record.trace_id:
                line["trace_id"] = record.trace_id
                line["span_id"] = record.span_id
            return json.dumps(line)

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(TraceContextFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.logs.json")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        with tracer.start_as_current_span("work") as span:
            logger.warning("inside")
        logger.warning("outside")
    finally:
        logger.removeHandler(handler)
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (inside["trace_id"], inside["span_id"]) == _ids(span)
    assert "trace_id" not in outside


def test_structlog_processor_adds_ids_inside_a_span_and_nothing_outside(tracer) -> None:
    with tracer.start_as_current_span("work") as span:
        event = add_trace_context(None, "info", {"event": "inside"})
    assert (event["trace_id"], event["span_id"]) == _ids(span)
    assert event["trace_sampled"] is True
    assert add_trace_context(None, "info", {"event": "outside"}) == {"event": "outside"}


def test_structlog_processor_keeps_keys_the_event_already_has(tracer) -> None:
    with tracer.start_as_current_span("work") as span:
        event = add_trace_context(None, "info", {"event": "e", "trace_id": "mine"})
    assert event["trace_id"] == "mine"
    assert event["span_id"] == _ids(span)[1]


def test_structlog_json_renderer_output_carries_the_ids(tracer) -> None:
    structlog = pytest.importorskip("structlog")  # in the test extra; see docs/observability.md
    stream = io.StringIO()
    logger = structlog.wrap_logger(
        structlog.PrintLogger(stream),
        processors=[add_trace_context, structlog.processors.JSONRenderer(sort_keys=True)],
    )

    async def task_logs(name: str) -> Span:
        with tracer.start_as_current_span(name) as span:
            await asyncio.sleep(0)
            logger.info(name)
            return span

    async def main() -> list[Span]:
        return list(await asyncio.gather(task_logs("a"), task_logs("b")))

    spans = asyncio.run(main())
    logger.info("outside")
    lines = {line["event"]: line for line in map(json.loads, stream.getvalue().splitlines())}
    for name, span in zip("ab", spans, strict=True):
        assert (lines[name]["trace_id"], lines[name]["span_id"]) == _ids(span)
    assert "trace_id" not in lines["outside"]


def test_importing_the_module_does_not_import_structlog() -> None:
    code = (
        "import sys, otel_nonblocking.logs as logs; "
        "logs.add_trace_context(None, 'info', {}); "
        "print('structlog' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert result.stdout.strip() == "False"
