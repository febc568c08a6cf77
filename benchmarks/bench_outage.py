"""Outage: spans delivered, dropped and duplicated by the stock pipeline and ours, one script.

A backend in its own process goes healthy -> hang -> reset -> 503 (Retry-After: 1) ->
healthy while a producer ends spans at a fixed rate; each pipeline runs the same script in
its own process (stock, ours, stock, ours), then flushes and shuts down after recovery.

    python -m benchmarks.bench_outage [--quick] [--phase 4] [--rate 2000] [--runs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks._common import RESULTS_DIR, machine, markdown_table, say, write_json

EXPORTER_TIMEOUT = 2  # seconds, for both exporters
PHASES: tuple[tuple[str, str], ...] = (
    ("ok", "healthy"),
    ("hang", "never answers"),
    ("reset", "resets the connection"),
    ("unavailable", "503 with Retry-After: 1"),
    ("ok", "healthy again"),
)
FLUSH_MILLIS = 10_000  # the final force_flush, after recovery
CALL_CAP = 20.0  # seconds the watchdog waits for the final flush, and for shutdown
RUN_CAP = 150.0  # seconds one run's process may take before it is killed
PIPELINES = {
    "stock": "BatchSpanProcessor(OTLPSpanExporter(timeout=2))",
    "ours": "NonBlockingSpanProcessor(otlp_span_exporter(timeout=2))",
}


# -- one run: one pipeline through the whole script, in a process of its own --


def _processor(pipeline: str, endpoint: str) -> Any:
    if pipeline == "stock":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        return BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, timeout=EXPORTER_TIMEOUT))
    from otel_nonblocking import NonBlockingSpanProcessor, otlp_span_exporter

    return NonBlockingSpanProcessor(otlp_span_exporter(endpoint, timeout=EXPORTER_TIMEOUT))


def _produce(provider: Any, rate: int, stop: threading.Event, ids: list[int]) -> None:
    """End spans at ``rate`` per second (in ticks of 10 ms) until ``stop`` is set."""
    tracer = provider.get_tracer("bench_outage")
    began = time.monotonic()
    while not stop.is_set():
        due = int((time.monotonic() - began) * rate) - len(ids)
        for _ in range(max(due, 0)):
            span = tracer.start_span("outage-span")
            span.end()
            ids.append(span.get_span_context().span_id)
        stop.wait(0.01)


def run_one(pipeline: str, *, phase_seconds: float, rate: int) -> dict[str, Any]:
    """Run the outage script through ``pipeline`` ("stock" or "ours"); counts and timings."""
    from opentelemetry.sdk.trace import TracerProvider

    from benchmarks._common import capped_call, quiet_logs
    from otel_nonblocking.testing import ProcessBackend

    quiet_logs()
    backend = ProcessBackend(hang_limit=30, retry_after=1)
    try:
        processor = _processor(pipeline, backend.endpoint)
        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(processor)
        ids: list[int] = []
        stop = threading.Event()
        producer = threading.Thread(target=_produce, args=(provider, rate, stop, ids))
        began = time.monotonic()
        producer.start()
        for number, (mode, _) in enumerate(PHASES, 1):
            backend.set_mode(mode)
            if number == len(PHASES):
                backend.watch_recovery()
            time.sleep(max(began + phase_seconds * number - time.monotonic(), 0.0))
        stop.set()
        producer.join(10)
        produce_seconds = time.monotonic() - began
        flush = capped_call(lambda: processor.force_flush(FLUSH_MILLIS), CALL_CAP, name="flush")
        shutdown = capped_call(processor.shutdown, CALL_CAP, name="shutdown")
        time.sleep(0.5)  # a request still in flight lands
        report = {
            "accepted": backend.accepted_span_ids(),
            "requests": backend.request_count(),
            "recovered_after": backend.recovered_after(),
        }
    finally:
        backend.stop()
    ended = {span_id.to_bytes(8, "big") for span_id in ids}
    accepted = Counter(report["accepted"])
    delivered = sum(1 for span_id in accepted if span_id in ended)
    result: dict[str, Any] = {
        "pipeline": pipeline,
        "ended": len(ids),
        "delivered": delivered,
        "duplicated": sum(count - 1 for count in accepted.values()),
        "dropped": len(ids) - delivered,
        "unknown_accepted": sum(1 for span_id in accepted if span_id not in ended),
        "requests": report["requests"],
        "recovered_after": report["recovered_after"],
        "produce_seconds": round(produce_seconds, 2),
        "flush": flush.as_json(),
        "shutdown": shutdown.as_json(),
    }
    stats = getattr(processor, "stats", None)
    if callable(stats):
        snapshot = stats()
        result["stats"] = {
            "exported": snapshot.exported,
            "dropped": dict(snapshot.dropped),
            "pending": snapshot.pending,
            "retried": snapshot.retried,
        }
        exporter = processor.exporter.stats()
        result["exporter"] = {
            "outcomes": dict(exporter.outcomes),
            "breaker_transitions": exporter.breaker_transitions,
        }
    return result


# -- the whole benchmark: runs taking turns, each in a fresh interpreter --


def _spawn_run(pipeline: str, phase_seconds: float, rate: int) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "benchmarks.bench_outage",
        "--one",
        pipeline,
        "--phase",
        str(phase_seconds),
        "--rate",
        str(rate),
    ]
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        command, cwd=root, capture_output=True, text=True, timeout=RUN_CAP, check=False
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{pipeline} run failed ({done.returncode}): {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _totals(runs: Sequence[dict[str, Any]], pipeline: str) -> dict[str, Any]:
    mine = [run for run in runs if run["pipeline"] == pipeline]
    keys = ("ended", "delivered", "dropped", "duplicated")
    totals: dict[str, Any] = {key: sum(run[key] for run in mine) for key in keys}
    ended = totals["ended"] or 1
    totals["delivered_ratio"] = round(totals["delivered"] / ended, 4)
    totals["dropped_ratio"] = round(totals["dropped"] / ended, 4)
    totals["duplicated_ratio"] = round(totals["duplicated"] / ended, 4)
    return totals


def run(*, phase_seconds: float, rate: int, runs: int, progress: Any = None) -> dict[str, Any]:
    """Alternate stock and ours ``runs`` times each; per-run figures and totals."""
    results = []
    for index in range(runs):
        for pipeline in ("stock", "ours"):
            if progress is not None:
                progress(f"  run {index + 1}/{runs}: {pipeline}\n")
            results.append(_spawn_run(pipeline, phase_seconds, rate))
    return {
        "machine": machine(),
        "phase_seconds": phase_seconds,
        "rate": rate,
        "phases": [f"{mode} ({text})" for mode, text in PHASES],
        "runs": results,
        "totals": {pipeline: _totals(results, pipeline) for pipeline in PIPELINES},
    }


def _call(call: dict[str, Any]) -> str:
    if not call["finished"]:
        return f"> {call['seconds']:.0f} s"
    value = "" if call.get("result") is None else f" → {call['result']}"
    error = f" ({call['error']})" if call.get("error") else ""
    return f"{call['seconds']:.2f} s{value}{error}"


def to_markdown(result: dict[str, Any]) -> str:
    """Per-run rows, then the totals per pipeline."""
    rows = []
    for number, item in enumerate(result["runs"], 1):
        rows.append(
            [
                str(number),
                item["pipeline"],
                str(item["ended"]),
                str(item["delivered"]),
                str(item["dropped"]),
                str(item["duplicated"]),
                "never" if item["recovered_after"] is None else f"{item['recovered_after']:.1f} s",
                _call(item["flush"]),
                _call(item["shutdown"]),
            ]
        )
    header = [
        "run",
        "pipeline",
        "ended",
        "delivered",
        "dropped",
        "duplicated",
        "first delivery after recovery",
        f"final force_flush({FLUSH_MILLIS})",
        "shutdown()",
    ]
    totals = [
        [
            f"{pipeline}: {PIPELINES[pipeline]}",
            str(t["ended"]),
            f"{t['delivered']} ({t['delivered_ratio']:.1%})",
            f"{t['dropped']} ({t['dropped_ratio']:.1%})",
            f"{t['duplicated']} ({t['duplicated_ratio']:.2%})",
        ]
        for pipeline, t in result["totals"].items()
    ]
    reasons = [
        f"- run {number} (ours): exported {item['stats']['exported']}, dropped "
        + (", ".join(f"{k} {v}" for k, v in sorted(item["stats"]["dropped"].items())) or "none")
        + f", retried {item['stats']['retried']}; exports: "
        + ", ".join(f"{k} {v}" for k, v in sorted(item["exporter"]["outcomes"].items()))
        for number, item in enumerate(result["runs"], 1)
        if "stats" in item
    ]
    script = " → ".join(result["phases"])
    return "\n".join(
        [
            f"Script: {script}, {result['phase_seconds']:g} s each; "
            f"{result['rate']} spans/s ended throughout.",
            "",
            markdown_table(header, rows),
            "",
            markdown_table(["pipeline", "ended", "delivered", "dropped", "duplicated"], totals),
            "",
            "Ours, by the processor's own accounting:",
            "",
            *reasons,
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_outage")
    parser.add_argument("--quick", action="store_true", help="1.5 s phases, one run each")
    parser.add_argument("--phase", type=float, default=None, help="seconds per phase (4)")
    parser.add_argument("--rate", type=int, default=2000, help="spans ended per second")
    parser.add_argument("--runs", type=int, default=None, help="runs per pipeline (2)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    parser.add_argument("--one", choices=sorted(PIPELINES), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    phase = args.phase or (1.5 if args.quick else 4.0)
    if args.one:
        print(json.dumps(run_one(args.one, phase_seconds=phase, rate=args.rate)), flush=True)
        # Abandoned stock export threads (a retry sleep, a hung read) must not hold the
        # run open: everything is measured and printed.
        os._exit(0)

    began = time.perf_counter()
    runs = args.runs or (1 if args.quick else 2)
    result = run(phase_seconds=phase, rate=args.rate, runs=runs, progress=say)
    command = "python -m benchmarks.bench_outage" + (" --quick" if args.quick else "")
    result["command"] = command
    markdown = f"Command: `{command}`\n\n{to_markdown(result)}\n"
    write_json(args.out / "outage.json", result)
    (args.out / "outage.md").write_text(markdown, encoding="utf-8")
    sdk = result["machine"]["versions"].get("opentelemetry-sdk", "unknown")
    write_json(args.out / f"outage-sdk-{sdk}.json", result)
    (args.out / f"outage-sdk-{sdk}.md").write_text(markdown, encoding="utf-8")
    print(markdown)
    say(f"done in {time.perf_counter() - began:.0f} s; results in {args.out}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
