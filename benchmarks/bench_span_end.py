"""What ``span.end()`` costs the caller: no processor, stock BatchSpanProcessor, ours.

Each ``span.end()`` is timed on its own with ``perf_counter_ns``; the variants take
turns in short rounds so that machine noise hits them all alike. In-memory exporters only.

    python -m benchmarks.bench_span_end [--quick] [--rounds 250] [--per-round 200]
"""

from __future__ import annotations

import argparse
import gc
import inspect
import statistics
import threading
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from benchmarks._common import (
    capped_call,
    machine,
    markdown_table,
    percentile,
    quiet_logs,
    say,
    write_json,
)
from otel_nonblocking import NonBlockingSpanProcessor

DEFAULT_QUEUE = 2048  # both processors' default max_queue_size
NEVER_MILLIS = 3_600_000  # our export deadline for the blocked exporter: never, within a run


class NullExporter(SpanExporter):
    """A healthy exporter: accepts every batch at once."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


class NoopProcessor(SpanProcessor):
    """Does nothing: what the SDK itself costs for having one processor (the floor)."""

    def on_end(self, span: ReadableSpan) -> None:
        return None


class BlockedExporter(SpanExporter):
    """An exporter stuck in ``export`` until ``release`` is set (a hung collector)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.release.wait(600)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.release.set()


@dataclass
class Variant:
    """One way of ending spans, with the samples it has collected."""

    name: str
    make_processor: Callable[[], SpanProcessor | None]
    provider: TracerProvider = field(init=False)
    processor: SpanProcessor | None = field(init=False, default=None)
    samples: array[int] = field(init=False, default_factory=lambda: array("q"))

    def start(self) -> None:
        self.provider = TracerProvider(shutdown_on_exit=False)
        self.processor = self.make_processor()
        if self.processor is not None:
            self.provider.add_span_processor(self.processor)

    def run_round(self, count: int, *, record: bool = True) -> None:
        start_span = self.provider.get_tracer("bench").start_span
        clock = time.perf_counter_ns
        out = array("q", bytes(8 * count))
        for index in range(count):
            span = start_span("bench.span", attributes={"index": index})
            began = clock()
            span.end()
            out[index] = clock() - began
        if record:
            self.samples.extend(out)


def _variants(queue: int, endpoint: str | None = None) -> list[Variant]:
    def stock(exporter: SpanExporter, size: int) -> Callable[[], SpanProcessor]:
        return lambda: BatchSpanProcessor(exporter, max_queue_size=size)

    def ours(exporter: SpanExporter, size: int) -> Callable[[], SpanProcessor]:
        options: dict[str, Any] = {"max_queue_size": size, "export_timeout_millis": NEVER_MILLIS}
        if "max_queue_bytes" in inspect.signature(NonBlockingSpanProcessor).parameters:
            options["max_queue_bytes"] = size * 64 * 1024  # the span count is the limit here
        return lambda: NonBlockingSpanProcessor(exporter, **options)

    def otlp(pipeline: str, size: int) -> Callable[[], SpanProcessor]:
        # The real OTLP/HTTP exporters, to a healthy backend in its own process: with ours,
        # the worker's encoding stage runs (it does not with an exporter of our own here).
        assert endpoint is not None
        if pipeline == "stock":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            return lambda: BatchSpanProcessor(
                OTLPSpanExporter(endpoint=endpoint, timeout=10), max_queue_size=size
            )
        from otel_nonblocking import otlp_span_exporter

        return lambda: NonBlockingSpanProcessor(
            otlp_span_exporter(endpoint, timeout=10), max_queue_size=size
        )

    extra = (
        [Variant("stock/otlp", otlp("stock", queue)), Variant("ours/otlp", otlp("ours", queue))]
        if endpoint
        else []
    )
    return [
        Variant("none", lambda: None),
        Variant("noop processor", NoopProcessor),
        Variant("stock/healthy", stock(NullExporter(), queue)),
        Variant("stock/blocked", stock(BlockedExporter(), queue)),
        Variant("ours/healthy", ours(NullExporter(), queue)),
        Variant("ours/blocked", ours(BlockedExporter(), queue)),
        # With the default queue the blocked exporter fills it: every later span is a drop.
        Variant(f"stock/blocked, queue {DEFAULT_QUEUE}", stock(BlockedExporter(), DEFAULT_QUEUE)),
        Variant(f"ours/blocked, queue {DEFAULT_QUEUE}", ours(BlockedExporter(), DEFAULT_QUEUE)),
        *extra,
    ]


def _stats(samples: array[int]) -> dict[str, float]:
    values = sorted(samples)
    return {
        "count": len(values),
        "median_ns": percentile(values, 50),
        "p99_ns": percentile(values, 99),
        "p99_9_ns": percentile(values, 99.9),
        "max_ns": values[-1],
        "mean_ns": round(statistics.fmean(values), 1),
    }


def _ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 3) if denominator > 0 else None


def run(
    *,
    rounds: int = 250,
    per_round: int = 200,
    otlp: bool = False,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Measure every variant over ``rounds * per_round`` spans; returns the results.

    ``otlp``: also the stock pipeline and ours with their OTLP/HTTP exporters, exporting to
    a healthy backend in its own process (so ours' worker encodes as it runs).
    """
    if otlp:
        from otel_nonblocking.testing import ProcessBackend

        with ProcessBackend(max_records=8) as backend:
            return _run(rounds, per_round, backend.endpoint, progress)
    return _run(rounds, per_round, None, progress)


def _run(
    rounds: int, per_round: int, endpoint: str | None, progress: Callable[[str], None] | None
) -> dict[str, Any]:
    say = progress or (lambda _text: None)
    logs = quiet_logs()
    total = rounds * per_round
    variants = _variants(queue=total + per_round + 1, endpoint=endpoint)  # never full
    for variant in variants:
        variant.start()
        variant.run_round(min(per_round, 1000), record=False)  # warm-up
    began = time.perf_counter()
    for number in range(rounds):
        # Rotate who goes first, so no variant always follows the same neighbour.
        shift = number % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            variant.run_round(per_round)
        if (number + 1) % max(1, rounds // 5) == 0:
            say(f"  round {number + 1}/{rounds} ({time.perf_counter() - began:.1f} s)\n")
    stats = {variant.name: _stats(variant.samples) for variant in variants}
    drops = {}
    for variant in variants:
        if isinstance(variant.processor, NonBlockingSpanProcessor):
            drops[variant.name] = dict(variant.processor.stats().dropped)
    _cleanup(variants)
    gc.collect()

    none = stats["none"]

    def added(name: str, key: str) -> float:
        return stats[name][key] - none[key]

    ratios: dict[str, float | None] = {}
    for state in ("healthy", "blocked"):
        for key, label in (("median_ns", "median"), ("p99_ns", "p99")):
            ratios[f"added_ours_over_stock_{state}_{label}"] = _ratio(
                added(f"ours/{state}", key), added(f"stock/{state}", key)
            )
    if "ours/otlp" in stats:
        for key, label in (("median_ns", "median"), ("p99_ns", "p99")):
            ratios[f"added_ours_over_stock_otlp_{label}"] = _ratio(
                added("ours/otlp", key), added("stock/otlp", key)
            )
    noop = stats["noop processor"]
    for state in ("healthy", "blocked"):
        ratios[f"own_ours_over_stock_{state}_median"] = _ratio(
            stats[f"ours/{state}"]["median_ns"] - noop["median_ns"],
            stats[f"stock/{state}"]["median_ns"] - noop["median_ns"],
        )
    for pipeline in ("ours", "stock"):
        for key, label in (("median_ns", "median"), ("p99_ns", "p99")):
            ratios[f"{pipeline}_blocked_over_healthy_{label}"] = _ratio(
                stats[f"{pipeline}/blocked"][key], stats[f"{pipeline}/healthy"][key]
            )
            ratios[f"{pipeline}_added_blocked_over_healthy_{label}"] = _ratio(
                added(f"{pipeline}/blocked", key), added(f"{pipeline}/healthy", key)
            )
    return {
        "benchmark": "span_end",
        "machine": machine(),
        "rounds": rounds,
        "spans_per_round": per_round,
        "spans_per_variant": total,
        "variants": stats,
        "ours_dropped": drops,
        "ratios": ratios,
        "targets": _targets(ratios),
        "log_records_hidden": logs.count,
    }


def _targets(ratios: dict[str, float | None]) -> dict[str, Any]:
    """The issue's targets: added cost <= half of stock's; same healthy or blocked."""
    half = [ratios[f"added_ours_over_stock_{state}_median"] for state in ("healthy", "blocked")]
    same = ratios["ours_blocked_over_healthy_median"]
    return {
        "added_cost_at_most_half_of_stock": all(r is not None and r <= 0.5 for r in half),
        # "Identical" within measurement noise: medians within 10 %.
        "identical_healthy_or_blocked": same is not None and abs(same - 1) <= 0.10,
    }


def _cleanup(variants: list[Variant]) -> None:
    for variant in variants:
        processor = variant.processor
        if processor is None:
            continue
        exporter = getattr(processor, "span_exporter", None) or getattr(processor, "exporter", None)
        inner = getattr(exporter, "_exporter", exporter)
        if isinstance(inner, BlockedExporter):
            inner.release.set()
        capped_call(variant.provider.shutdown, cap=30, name="bench-shutdown")


def to_markdown(result: dict[str, Any]) -> str:
    """The span.end() figures as markdown."""
    stats = result["variants"]
    none = stats["none"]
    rows = []
    for name, s in stats.items():
        extra = "" if name == "none" else f"{s['median_ns'] - none['median_ns']:+.0f}"
        rows.append(
            [
                name,
                f"{s['median_ns']:.0f}",
                extra,
                f"{s['p99_ns']:.0f}",
                f"{s['p99_9_ns']:.0f}",
                f"{s['max_ns']:.0f}",
            ]
        )
    table = markdown_table(
        ["variant", "median ns", "added vs none", "p99 ns", "p99.9 ns", "max ns"], rows
    )
    r = result["ratios"]
    targets = result["targets"]

    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    lines = [
        f"{result['spans_per_variant']:,} spans per variant, in {result['rounds']} rounds of "
        f"{result['spans_per_round']:,} taking turns; each `span.end()` timed on its own.",
        "",
        table,
        "",
        "| ratio | median | p99 |",
        "| --- | --- | --- |",
        "| (ours - none) / (stock - none), exporter healthy | "
        f"{fmt(r['added_ours_over_stock_healthy_median'])} | "
        f"{fmt(r['added_ours_over_stock_healthy_p99'])} |",
        "| (ours - none) / (stock - none), exporter blocked | "
        f"{fmt(r['added_ours_over_stock_blocked_median'])} | "
        f"{fmt(r['added_ours_over_stock_blocked_p99'])} |",
        f"| ours blocked / ours healthy | {fmt(r['ours_blocked_over_healthy_median'])} | "
        f"{fmt(r['ours_blocked_over_healthy_p99'])} |",
        f"| stock blocked / stock healthy | {fmt(r['stock_blocked_over_healthy_median'])} | "
        f"{fmt(r['stock_blocked_over_healthy_p99'])} |",
        "| (ours - noop) / (stock - noop): the processors' own code, healthy / blocked | "
        f"{fmt(r['own_ours_over_stock_healthy_median'])} / "
        f"{fmt(r['own_ours_over_stock_blocked_median'])} | |",
        *(
            [
                "| (ours - none) / (stock - none), OTLP/HTTP exporters to a healthy backend | "
                f"{fmt(r['added_ours_over_stock_otlp_median'])} | "
                f"{fmt(r['added_ours_over_stock_otlp_p99'])} |"
            ]
            if "added_ours_over_stock_otlp_median" in r
            else []
        ),
        "",
        "Targets: added cost at most half of stock's: "
        f"**{'met' if targets['added_cost_at_most_half_of_stock'] else 'NOT met'}**; "
        "identical whether the exporter is healthy or blocked (medians within 10 %): "
        f"**{'met' if targets['identical_healthy_or_blocked'] else 'NOT met'}**.",
    ]
    if result["ours_dropped"]:
        dropped = "; ".join(
            f"{name}: {counts or 'none'}" for name, counts in result["ours_dropped"].items()
        )
        lines += ["", f"Our drops: {dropped}."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_span_end")
    parser.add_argument("--rounds", type=int, default=250)
    parser.add_argument("--per-round", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="50 rounds of 200 spans")
    parser.add_argument(
        "--otlp",
        action="store_true",
        help="also both pipelines with their OTLP/HTTP exporters to a healthy local backend",
    )
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    rounds, per_round = (50, 200) if args.quick else (args.rounds, args.per_round)

    result = run(rounds=rounds, per_round=per_round, otlp=args.otlp, progress=say)
    print(to_markdown(result))
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
