"""Throughput: spans per second delivered to a local backend, and the CPU the export costs.

The stock pipeline and ours take turns in one process: end K spans as fast as possible,
flush, wait until the backend (in its own process) has accepted all K.

    python -m benchmarks.bench_throughput [--quick] [--rounds 5] [--spans 20480]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

from benchmarks._common import machine, markdown_table, quiet_logs, say, write_json
from otel_nonblocking.testing import ProcessBackend as BackendProcess

EXPORTER_TIMEOUT = 2  # seconds, both exporters
BATCH = 512  # both processors' default max_export_batch_size
PIPELINES = {
    "stock": "BatchSpanProcessor(OTLPSpanExporter(timeout=2), max_queue_size=K)",
    "ours": "NonBlockingSpanProcessor(otlp_span_exporter(timeout=2), max_queue_size=K)",
}


def _processor(name: str, endpoint: str, queue: int) -> SpanProcessor:
    if name == "stock":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        exporter = OTLPSpanExporter(endpoint=endpoint, timeout=EXPORTER_TIMEOUT)
        return BatchSpanProcessor(exporter, max_queue_size=queue)
    from otel_nonblocking import NonBlockingSpanProcessor, otlp_span_exporter

    return NonBlockingSpanProcessor(
        otlp_span_exporter(endpoint, timeout=EXPORTER_TIMEOUT),
        max_queue_size=queue,
        max_queue_bytes=queue * 64 * 1024,  # the span count is the limit here
    )


def _one_round(name: str, backend: BackendProcess, spans: int) -> dict[str, Any]:
    """End ``spans`` spans flat out, flush, wait for the backend; timings and CPU."""
    provider = TracerProvider(shutdown_on_exit=False)
    processor = _processor(name, backend.endpoint, queue=spans)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("bench_throughput")
    before = backend.accepted()
    # A warm-up batch opens the connection and imports what the export path needs.
    for _ in range(BATCH):
        tracer.start_span("warm-up").end()
    processor.force_flush(10_000)
    base = backend.wait_accepted(before + BATCH, 10)
    gc.collect()
    attributes: dict[str, str | int] = {
        "http.method": "GET",
        "http.route": "/items/{id}",
        "http.status_code": 200,
    }
    began = time.perf_counter()
    cpu_began = time.process_time()
    producer_began = time.thread_time()
    for index in range(spans):
        span = tracer.start_span("GET /items/{id}", attributes=attributes)
        span.set_attribute("index", index)
        span.end()
    producer_cpu = time.thread_time() - producer_began
    produced = time.perf_counter() - began
    # Stock 1.45.2 exports the rest on this thread inside force_flush: counted as export CPU.
    processor.force_flush(60_000)
    accepted = backend.wait_accepted(base + spans, 60) - base
    elapsed = time.perf_counter() - began
    export_cpu = time.process_time() - cpu_began - producer_cpu
    dropped: dict[str, int] = {}
    stats = getattr(processor, "stats", None)
    if callable(stats):
        dropped = dict(stats().dropped)
    provider.shutdown()
    return {
        "pipeline": name,
        "spans": spans,
        "accepted": accepted,
        "produce_seconds": round(produced, 4),
        "delivered_seconds": round(elapsed, 4),
        "spans_per_second": round(accepted / elapsed, 1),
        "producer_cpu_seconds": round(producer_cpu, 4),
        "export_cpu_seconds": round(export_cpu, 4),
        "export_cpu_per_1000_spans": round(export_cpu / max(accepted, 1) * 1000, 5),
        "dropped": dropped,
    }


def run(
    *, rounds: int = 5, spans: int = 40 * BATCH, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Alternate stock and ours ``rounds`` times each; per-round figures and medians."""
    say = progress or (lambda _text: None)
    logs = quiet_logs()
    began = time.perf_counter()
    results = []
    with BackendProcess(max_records=64) as backend:
        for number in range(rounds):
            order = ("stock", "ours") if number % 2 == 0 else ("ours", "stock")
            for name in order:
                results.append(_one_round(name, backend, spans))
            say(f"  round {number + 1}/{rounds} ({time.perf_counter() - began:.0f} s)\n")
    summary: dict[str, dict[str, float]] = {}
    for name in PIPELINES:
        mine = [row for row in results if row["pipeline"] == name]
        summary[name] = {
            key: round(statistics.median(row[key] for row in mine), 5)
            for key in (
                "spans_per_second",
                "export_cpu_per_1000_spans",
                "producer_cpu_seconds",
                "delivered_seconds",
            )
        }
        summary[name]["all_delivered"] = all(row["accepted"] == row["spans"] for row in mine)
    stock, ours = summary["stock"], summary["ours"]
    ratios = {
        "spans_per_second_ours_over_stock": round(
            ours["spans_per_second"] / stock["spans_per_second"], 3
        ),
        "export_cpu_ours_over_stock": round(
            ours["export_cpu_per_1000_spans"] / stock["export_cpu_per_1000_spans"], 3
        ),
    }
    return {
        "benchmark": "throughput",
        "machine": machine(),
        "rounds": rounds,
        "spans_per_round": spans,
        "pipelines": PIPELINES,
        "runs": results,
        "medians": summary,
        "ratios": ratios,
        "wall_seconds": round(time.perf_counter() - began, 1),
        "log_records_hidden": logs.count,
    }


def to_markdown(result: dict[str, Any]) -> str:
    """The throughput figures as markdown: medians, then the ratios."""
    rows = []
    for name, m in result["medians"].items():
        rows.append(
            [
                name,
                f"{m['spans_per_second']:,.0f}",
                f"{m['delivered_seconds']:.2f}",
                f"{m['export_cpu_per_1000_spans'] * 1000:.1f}",
                "yes" if m["all_delivered"] else "NO",
            ]
        )
    header = [
        "pipeline",
        "spans/s delivered",
        "seconds to deliver all",
        "export CPU ms per 1,000 spans",
        "all delivered",
    ]
    r = result["ratios"]
    return "\n".join(
        [
            f"Medians of {result['rounds']} rounds per pipeline, {result['spans_per_round']:,} "
            "spans each, ended as fast as one thread can, then flushed; the rate counts to the "
            "backend's confirmation of the last span. Export CPU: the process's CPU time "
            "minus the producing thread's own.",
            "",
            markdown_table(header, rows),
            "",
            f"Ours / stock: spans per second {r['spans_per_second_ours_over_stock']:.2f}, "
            f"export CPU per span {r['export_cpu_ours_over_stock']:.2f}.",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_throughput")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 10,240 spans")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per pipeline (5)")
    parser.add_argument("--spans", type=int, default=None, help="spans per round (20480)")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 5)
    spans = args.spans or (20 * BATCH if args.quick else 40 * BATCH)

    result = run(rounds=rounds, spans=spans, progress=say)
    print(to_markdown(result))
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
