"""Memory under an outage: peak RSS of the stock pipeline and ours while the backend hangs.

Each pipeline runs in a fresh interpreter of its own (both at once, against one hanging
backend in a third process), ending spans at a steady rate for the whole outage.

    python -m benchmarks.bench_memory [--quick] [--seconds 60] [--rate 2000]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks._common import machine, markdown_table, say, write_json

EXPORTER_TIMEOUT = 2  # seconds, both exporters
SAMPLE_SECONDS = 0.5  # how often a run samples its RSS
PIPELINES = {
    "stock": "BatchSpanProcessor(OTLPSpanExporter(timeout=2))",
    "ours": "NonBlockingSpanProcessor(otlp_span_exporter(timeout=2))",
}


def _status_kib(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``), in KiB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def run_one(pipeline: str, *, endpoint: str, seconds: float, rate: int) -> dict[str, Any]:
    """End ``rate`` spans/s for ``seconds`` through ``pipeline`` against ``endpoint``."""
    from opentelemetry.sdk.trace import TracerProvider

    from benchmarks._common import quiet_logs

    quiet_logs()
    if pipeline == "stock":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        processor: Any = BatchSpanProcessor(
            OTLPSpanExporter(endpoint=endpoint, timeout=EXPORTER_TIMEOUT)
        )
    else:
        from otel_nonblocking import NonBlockingSpanProcessor, otlp_span_exporter

        processor = NonBlockingSpanProcessor(otlp_span_exporter(endpoint, timeout=EXPORTER_TIMEOUT))
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("bench_memory")
    for _ in range(10):  # import and warm what ending a span touches
        tracer.start_span("warm-up").end()
    baseline = _status_kib("VmRSS")
    samples: list[tuple[float, int]] = []
    attributes: dict[str, str | int] = {
        "http.method": "GET",
        "http.route": "/items/{id}",
        "http.status_code": 200,
    }
    ended = 0
    began = time.monotonic()
    next_sample = began
    while (now := time.monotonic()) < began + seconds:
        due = int((now - began) * rate) - ended
        for _ in range(max(due, 0)):
            span = tracer.start_span("GET /items/{id}", attributes=attributes)
            span.set_attribute("user.id", f"user-{ended % 1000}")
            span.end()
            ended += 1
        if now >= next_sample:
            samples.append((round(now - began, 2), _status_kib("VmRSS")))
            next_sample += SAMPLE_SECONDS
        time.sleep(0.01)
    peak, final = _status_kib("VmHWM"), _status_kib("VmRSS")  # before the list below
    # What a full collection costs with the outage's backlog alive (the queued spans, or
    # whatever form the pipeline keeps them in): the request path's longest GC pause.
    tracked = len(gc.get_objects())
    collect_began = time.perf_counter()
    gc.collect()
    full_collection_ms = (time.perf_counter() - collect_began) * 1000
    result: dict[str, Any] = {
        "pipeline": pipeline,
        "seconds": seconds,
        "rate": rate,
        "ended": ended,
        "baseline_rss_kib": baseline,
        "peak_rss_kib": peak,
        "final_rss_kib": final,
        "rss_samples": samples,
        "gc_tracked_objects": tracked,
        "full_collection_ms": round(full_collection_ms, 2),
    }
    stats = getattr(processor, "stats", None)
    if callable(stats):
        snapshot = stats()
        result["stats"] = {
            "dropped": dict(snapshot.dropped),
            "pending": snapshot.pending,
            "queue_depth": snapshot.queue_depth,
        }
    return result


def _spawn(pipeline: str, endpoint: str, seconds: float, rate: int) -> subprocess.Popen[str]:
    command = [
        sys.executable,
        "-m",
        "benchmarks.bench_memory",
        "--one",
        pipeline,
        "--endpoint",
        endpoint,
        "--seconds",
        str(seconds),
        "--rate",
        str(rate),
    ]
    root = Path(__file__).resolve().parent.parent
    return subprocess.Popen(
        command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _collect(pipeline: str, child: subprocess.Popen[str], cap: float) -> dict[str, Any]:
    try:
        out, err = child.communicate(timeout=cap)
    except subprocess.TimeoutExpired:
        child.kill()
        out, err = child.communicate()
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if child.returncode != 0 or not lines:
        raise RuntimeError(f"{pipeline} run failed ({child.returncode}): {err[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def run(
    *, seconds: float = 60.0, rate: int = 2000, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Both pipelines at once, each in its own interpreter, against one hanging backend."""
    from otel_nonblocking.testing import ProcessBackend as BackendProcess

    say = progress or (lambda _text: None)
    began = time.perf_counter()
    with BackendProcess("hang", hang_limit=seconds + 60, max_records=64) as backend:
        say(f"  stock and ours, {seconds:g} s of outage at {rate} spans/s ...\n")
        children = {name: _spawn(name, backend.endpoint, seconds, rate) for name in PIPELINES}
        results = {name: _collect(name, child, seconds + 120) for name, child in children.items()}
        accepted = backend.accepted()
    stock, ours = results["stock"], results["ours"]
    return {
        "benchmark": "memory",
        "machine": machine(),
        "seconds": seconds,
        "rate": rate,
        "pipelines": PIPELINES,
        "runs": results,
        "accepted_during_outage": accepted,
        "ratios": {
            "peak_rss_ours_over_stock": round(ours["peak_rss_kib"] / stock["peak_rss_kib"], 3),
            "growth_ours_over_stock": round(
                (ours["peak_rss_kib"] - ours["baseline_rss_kib"])
                / max(stock["peak_rss_kib"] - stock["baseline_rss_kib"], 1),
                3,
            ),
        },
        "wall_seconds": round(time.perf_counter() - began, 1),
    }


def _collection(run: dict[str, Any]) -> str:
    if "full_collection_ms" not in run:  # results from before the column existed
        return "n/a"
    return f"{run['full_collection_ms']:.1f} ({run['gc_tracked_objects']:,})"


def to_markdown(result: dict[str, Any]) -> str:
    """Peak RSS per pipeline, and the growth over the baseline."""
    rows = []
    for name, r in result["runs"].items():
        dropped = r.get("stats", {}).get("dropped")
        rows.append(
            [
                f"{name}: {result['pipelines'][name]}",
                f"{r['ended']:,}",
                f"{r['baseline_rss_kib'] / 1024:.1f}",
                f"{r['peak_rss_kib'] / 1024:.1f}",
                f"{(r['peak_rss_kib'] - r['baseline_rss_kib']) / 1024:+.1f}",
                _collection(r),
                "n/a (not counted)"
                if dropped is None
                else (", ".join(f"{k} {v:,}" for k, v in sorted(dropped.items())) or "none"),
            ]
        )
    header = [
        "pipeline",
        "spans ended",
        "RSS before, MiB",
        "peak RSS, MiB",
        "growth, MiB",
        "full GC at the end, ms (tracked objects)",
        "dropped (own accounting)",
    ]
    r = result["ratios"]
    return "\n".join(
        [
            f"{result['seconds']:g} s of outage (the backend accepts connections and never "
            f"answers), {result['rate']:,} spans/s ended throughout; each pipeline in its own "
            "interpreter, both at once. Peak RSS is the kernel's high-water mark (`VmHWM`).",
            "",
            markdown_table(header, rows),
            "",
            f"Ours / stock: peak RSS {r['peak_rss_ours_over_stock']:.2f}, growth "
            f"{r['growth_ours_over_stock']:.2f}.",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_memory")
    parser.add_argument("--quick", action="store_true", help="a 10 s outage")
    parser.add_argument("--seconds", type=float, default=None, help="outage seconds (60)")
    parser.add_argument("--rate", type=int, default=2000, help="spans ended per second")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--one", choices=sorted(PIPELINES), help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    seconds = args.seconds or (10.0 if args.quick else 60.0)
    if args.one:
        result = run_one(args.one, endpoint=args.endpoint, seconds=seconds, rate=args.rate)
        print(json.dumps(result), flush=True)
        # Export threads stuck on the hanging backend must not hold the process open.
        os._exit(0)

    result = run(seconds=seconds, rate=args.rate, progress=say)
    print(to_markdown(result))
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
