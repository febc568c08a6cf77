"""GIL slices with large spans: how long the export worker holds the GIL between the
moments it lets go, and how long another thread's wake-up waits meanwhile.

Spans at the SDK's default limits (128 attributes, 128 events of two attributes each) are
made first; then, in each round, a backlog of them is handed to the pipeline at once
(``on_end`` per span) while a ticker thread sleeps 1 ms in a loop and records how late it
wakes up, until the backend (in its own process) has accepted the whole backlog. The
stock pipeline and ours take turns with *idle* (no pipeline: the machine's own lateness).

A *slice* is the worker's CPU time (``time.thread_time()``) between two of its
``time.sleep(0)`` calls, the way the encoder lets go of the GIL: the benchmark wraps
``time.sleep`` for the run and keeps the calls made with 0 by threads other than the
ticker and the main thread.

    python -m benchmarks.bench_gil_slices [--quick] [--rounds 3] [--spans 512] [--json F]
"""

from __future__ import annotations

import argparse
import gc
import itertools
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from benchmarks._common import machine, markdown_table, percentile, quiet_logs, say, write_json
from otel_nonblocking.testing import ProcessBackend as BackendProcess

EXPORTER_TIMEOUT = 10  # seconds, both exporters: a large batch takes a while to decode
TICK_SECONDS = 0.001  # the ticker sleeps this long and records its lateness
ATTRIBUTES = 128  # the SDK's default max_attributes
EVENTS = 128  # the SDK's default max_events
SWITCH_INTERVAL_MS = sys.getswitchinterval() * 1000
VARIANTS = ("idle", "stock", "ours")
PIPELINES = {
    "idle": "no pipeline: the ticker alone (what the machine adds)",
    "stock": "BatchSpanProcessor(OTLPSpanExporter(timeout=10))",
    "ours": "NonBlockingSpanProcessor(otlp_span_exporter(timeout=10))",
}


class _Collect(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


def large_spans(count: int) -> list[ReadableSpan]:
    """``count`` ended spans at the SDK's default limits: 128 attributes, 128 events."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    collect = _Collect()
    provider = TracerProvider(shutdown_on_exit=False)  # default SpanLimits
    provider.add_span_processor(SimpleSpanProcessor(collect))
    tracer = provider.get_tracer("bench_gil_slices", "1.0")
    for number in range(count):
        span = tracer.start_span("GET /reports/{id}")
        for index in range(ATTRIBUTES):
            kind = index % 4
            key = f"app.attribute.{index}"
            if kind == 0:
                span.set_attribute(key, f"value-{number}-{index}")
            elif kind == 1:
                span.set_attribute(key, number * 1000 + index)
            elif kind == 2:
                span.set_attribute(key, index / 7)
            else:
                span.set_attribute(key, index % 2 == 0)
        for index in range(EVENTS):
            span.add_event("step", {"step.index": index, "step.name": f"stage-{index % 16}"})
        span.end()
    provider.shutdown()
    return collect.spans


class SleepZeroProbe:
    """Wraps ``time.sleep`` while active; records each ``sleep(0)`` of the watched threads
    as (``thread_time`` on entry, ``thread_time`` on return), per thread."""

    def __init__(self, ignore: Callable[[], set[int]]) -> None:
        self._ignore = ignore
        self.calls: dict[int, list[tuple[float, float]]] = {}
        self._original = time.sleep
        self.recording = False

    def __enter__(self) -> SleepZeroProbe:
        original = self._original
        thread_time = time.thread_time
        get_ident = threading.get_ident
        calls = self.calls
        ignore = self._ignore()

        def sleep(seconds: float) -> None:
            if seconds or not self.recording:
                original(seconds)
                return
            ident = get_ident()
            if ident in ignore:
                original(seconds)
                return
            entered = thread_time()
            original(0)
            calls.setdefault(ident, []).append((entered, thread_time()))

        time.sleep = sleep
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep = self._original

    def slices_ms(self) -> list[float]:
        """CPU milliseconds between one ``sleep(0)`` and the next, in the busiest thread."""
        if not self.calls:
            return []
        calls = max(self.calls.values(), key=len)
        return [
            (entered - previous_exit) * 1000
            for (_, previous_exit), (entered, _) in itertools.pairwise(calls)
        ]


def _processor(name: str, endpoint: str, backlog: int) -> SpanProcessor:
    if name == "stock":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        exporter = OTLPSpanExporter(endpoint=endpoint, timeout=EXPORTER_TIMEOUT)
        return BatchSpanProcessor(exporter, max_queue_size=max(2048, backlog))
    from otel_nonblocking import NonBlockingSpanProcessor, otlp_span_exporter

    return NonBlockingSpanProcessor(
        otlp_span_exporter(endpoint, timeout=EXPORTER_TIMEOUT),
        max_queue_size=max(16384, backlog),
        max_queue_bytes=1 << 30,  # hold the whole backlog: it is what is measured
    )


def _one_round(
    name: str, spans: list[ReadableSpan], backend: BackendProcess | None
) -> dict[str, Any]:
    """Hand ``spans`` to a fresh pipeline at once; tick until the backend has them all."""
    ticks: list[float] = []
    stop = threading.Event()
    sleep = time.sleep  # the real one: the probe is not installed yet
    clock = time.perf_counter

    def ticker() -> None:
        while not stop.is_set():
            began = clock()
            sleep(TICK_SECONDS)
            ticks.append(clock() - began - TICK_SECONDS)

    processor = None
    provider = TracerProvider(shutdown_on_exit=False)
    if backend is not None:
        processor = _processor(name, backend.endpoint, len(spans))
        provider.add_span_processor(processor)
        warm = spans[:4]  # connection, imports and caches, untimed
        base = backend.accepted()
        for span in warm:
            processor.on_end(span)
        processor.force_flush(30_000)
        backend.wait_accepted(base + len(warm), 30)
    gc.collect()
    thread = threading.Thread(target=ticker, name="ticker")
    thread.start()
    main = threading.get_ident()
    ignore = {main, thread.ident or 0}
    accepted = len(spans)
    with SleepZeroProbe(lambda: ignore) as probe:
        time.sleep(0.05)  # the ticker settles
        began = clock()
        probe.recording = True
        if processor is None or backend is None:
            time.sleep(0.5)
        else:
            base = backend.accepted()
            for span in spans:
                processor.on_end(span)
            accepted = backend.wait_accepted(base + len(spans), 120) - base
        probe.recording = False
        seconds = clock() - began
        stop.set()
        thread.join(5)
    if processor is not None:
        processor.shutdown()
    lateness = sorted(value * 1000 for value in ticks)
    slices = probe.slices_ms()
    return {
        "pipeline": name,
        "spans": len(spans) if processor is not None else 0,
        "accepted": accepted if processor is not None else 0,
        "seconds": round(seconds, 3),
        "ticks": len(lateness),
        "lateness_p50_ms": round(percentile(lateness, 50), 3) if lateness else None,
        "lateness_p99_ms": round(percentile(lateness, 99), 3) if lateness else None,
        "lateness_max_ms": round(lateness[-1], 3) if lateness else None,
        "slices": len(slices),
        "slice_median_ms": round(statistics.median(slices), 3) if slices else None,
        "slice_max_ms": round(max(slices), 3) if slices else None,
    }


def run(
    *, rounds: int = 3, spans: int = 512, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Alternate idle / stock / ours ``rounds`` times with a backlog of ``spans`` large spans."""
    say = progress or (lambda _text: None)
    logs = quiet_logs()
    began = time.perf_counter()
    say(f"  making {spans} spans of {ATTRIBUTES} attributes and {EVENTS} events ...\n")
    batch = large_spans(spans)
    results = []
    with BackendProcess(max_records=8) as backend:
        for number in range(rounds):
            shift = number % len(VARIANTS)
            for name in VARIANTS[shift:] + VARIANTS[:shift]:
                results.append(_one_round(name, batch, None if name == "idle" else backend))
            say(f"  round {number + 1}/{rounds} ({time.perf_counter() - began:.0f} s)\n")
    summary: dict[str, dict[str, Any]] = {}
    for name in VARIANTS:
        mine = [row for row in results if row["pipeline"] == name]
        slices = [row["slice_max_ms"] for row in mine if row["slice_max_ms"] is not None]
        medians = [row["slice_median_ms"] for row in mine if row["slice_median_ms"] is not None]
        summary[name] = {
            "lateness_max_ms": max(row["lateness_max_ms"] or 0.0 for row in mine),
            "lateness_p99_ms": statistics.median(row["lateness_p99_ms"] or 0.0 for row in mine),
            "seconds": statistics.median(row["seconds"] for row in mine),
            "slices": sum(row["slices"] for row in mine),
            "slice_max_ms": max(slices) if slices else None,
            "slice_median_ms": statistics.median(medians) if medians else None,
            "all_delivered": all(row["accepted"] == row["spans"] for row in mine),
        }
    stock, ours = summary["stock"], summary["ours"]
    return {
        "benchmark": "gil_slices",
        "machine": machine(),
        "rounds": rounds,
        "spans": spans,
        "attributes": ATTRIBUTES,
        "events": EVENTS,
        "switch_interval_ms": SWITCH_INTERVAL_MS,
        "pipelines": PIPELINES,
        "runs": results,
        "summary": summary,
        "ratios": {
            "lateness_max_ours_over_stock": round(
                ours["lateness_max_ms"] / max(stock["lateness_max_ms"], 1e-6), 3
            ),
            "lateness_p99_ours_over_stock": round(
                ours["lateness_p99_ms"] / max(stock["lateness_p99_ms"], 1e-6), 3
            ),
        },
        "wall_seconds": round(time.perf_counter() - began, 1),
        "log_records_hidden": logs.count,
    }


def to_markdown(result: dict[str, Any]) -> str:
    """Per pipeline: the ticker's lateness and the worker's slices."""

    def ms(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    rows = [
        [
            f"{name}: {result['pipelines'][name]}",
            ms(s["seconds"]),
            ms(s["lateness_p99_ms"]),
            ms(s["lateness_max_ms"]),
            str(s["slices"]),
            ms(s["slice_median_ms"]),
            ms(s["slice_max_ms"]),
            "yes" if s["all_delivered"] else "NO",
        ]
        for name, s in result["summary"].items()
    ]
    header = [
        "pipeline",
        "seconds to deliver (median)",
        "wake-up lateness p99 ms (median of rounds)",
        "longest wake-up lateness ms",
        "worker sleep(0) slices",
        "slice CPU median ms",
        "longest slice CPU ms",
        "all delivered",
    ]
    r = result["ratios"]
    return "\n".join(
        [
            f"{result['rounds']} rounds; in each, a backlog of {result['spans']:,} spans "
            f"({result['attributes']} attributes and {result['events']} events each, the "
            "SDK's default limits) is handed to a fresh pipeline at once while a thread "
            "sleeps 1 ms in a loop and records how late it wakes up, until the backend "
            "has accepted them all. A slice is the worker's CPU time between two of its "
            "`time.sleep(0)` calls (n/a: it never calls it). Switch interval "
            f"{result['switch_interval_ms']:g} ms.",
            "",
            markdown_table(header, rows),
            "",
            f"Ours / stock: longest wake-up lateness {r['lateness_max_ours_over_stock']:.2f}, "
            f"p99 {r['lateness_p99_ours_over_stock']:.2f}.",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_gil_slices")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 256 spans")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (3)")
    parser.add_argument("--spans", type=int, default=None, help="spans in the backlog (512)")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 3)
    spans = args.spans or (256 if args.quick else 512)

    result = run(rounds=rounds, spans=spans, progress=say)
    print(to_markdown(result))
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
