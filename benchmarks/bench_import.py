"""Benchmark: what importing costs a cold start (an AWS Lambda's first invocation), in one run.

Each variant runs in a fresh interpreter that times its own statement (interpreter start-up,
the same for all, is left out); the variants take turns, and the medians are compared:

- *stock*: the SDK's OTLP/HTTP stack imported (``opentelemetry.sdk.trace``, its ``export``
  module and ``opentelemetry.exporter.otlp.proto.http.trace_exporter``);
- *stock, ready*: that stack set up as a program would, a ``TracerProvider`` with
  ``BatchSpanProcessor(OTLPSpanExporter())`` installed globally;
- *ours*: ``import otel_nonblocking``;
- *ours, ready*: ``import otel_nonblocking`` and ``configure_tracing()``: what a Lambda
  cold start pays before its handler runs.

    python -m benchmarks.bench_import [--quick] [--runs 21]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks._common import machine, markdown_table, say

# Nothing listens there, and nothing is sent: no span is ended.
_ENDPOINT = "http://127.0.0.1:9/v1/traces"

VARIANTS: dict[str, str] = {
    "stock": (
        "import opentelemetry.sdk.trace, opentelemetry.sdk.trace.export, "
        "opentelemetry.exporter.otlp.proto.http.trace_exporter"
    ),
    "stock, ready": (
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from opentelemetry.sdk.trace.export import BatchSpanProcessor\n"
        "from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter\n"
        "provider = TracerProvider()\n"
        f"provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint={_ENDPOINT!r})))\n"
        "trace.set_tracer_provider(provider)"
    ),
    "ours": "import otel_nonblocking",
    "ours, ready": (
        f"import otel_nonblocking\notel_nonblocking.configure_tracing(endpoint={_ENDPOINT!r})"
    ),
}

# The child times the statement alone and prints wall-clock and CPU milliseconds.
_CHILD = """\
import time
_wall, _cpu = time.perf_counter(), time.process_time()
exec(compile({statement!r}, "<variant>", "exec"))
print((time.perf_counter() - _wall) * 1e3, (time.process_time() - _cpu) * 1e3)
"""


def _environment() -> dict[str, str]:
    """This environment without OpenTelemetry settings, which would change what is set up.

    Bytecode caches are written and used, as an installed package has them (pip compiles
    the stock stack at install): ``PYTHONDONTWRITEBYTECODE`` would leave this package's
    source tree, and only it, compiled again by every run.
    """
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("OTEL_", "LANGFUSE_"))
        and name not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPROFILEIMPORTTIME")
    }


def time_once(statement: str) -> tuple[float, float]:
    """Wall-clock and CPU milliseconds ``statement`` takes in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", _CHILD.format(statement=statement)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=_environment(),
    )
    if done.returncode != 0:
        raise RuntimeError(f"import benchmark child failed: {done.stderr[-2000:]}")
    wall, cpu = done.stdout.strip().splitlines()[-1].split()
    return float(wall), float(cpu)


def run(runs: int = 21, progress: Callable[[str], None] = say) -> dict[str, Any]:
    """Median milliseconds (wall clock, CPU) of each variant over ``runs`` interleaved runs."""
    for statement in VARIANTS.values():  # compile the bytecode caches, warm the page cache
        time_once(statement)
    wall: dict[str, list[float]] = {name: [] for name in VARIANTS}
    cpu: dict[str, list[float]] = {name: [] for name in VARIANTS}
    order = list(VARIANTS)
    for round_ in range(runs):
        for name in order if round_ % 2 == 0 else order[::-1]:
            seconds = time_once(VARIANTS[name])
            wall[name].append(seconds[0])
            cpu[name].append(seconds[1])
        progress(".")
    progress("\n")
    return {
        "machine": machine(),
        "runs": runs,
        "median_ms": {name: statistics.median(values) for name, values in wall.items()},
        "median_cpu_ms": {name: statistics.median(values) for name, values in cpu.items()},
        "times_ms": wall,
        "cpu_ms": cpu,
        "statements": VARIANTS,
    }


COMPARISONS = (("ours", "stock"), ("ours, ready", "stock"), ("ours, ready", "stock, ready"))


def to_markdown(result: dict[str, Any]) -> str:
    wall, cpu = result["median_ms"], result["median_cpu_ms"]
    rows = [[name, f"{wall[name]:.0f}", f"{cpu[name]:.0f}"] for name in VARIANTS]
    rows += [
        [
            f"{ours} - {stock}",
            f"{wall[ours] - wall[stock]:+.0f} ({wall[ours] / wall[stock]:.2f}x)",
            f"{cpu[ours] - cpu[stock]:+.0f} ({cpu[ours] / cpu[stock]:.2f}x)",
        ]
        for ours, stock in COMPARISONS
    ]
    return "\n".join(
        [
            f"Fresh interpreters, median of {result['runs']} runs each, taking turns.",
            "",
            markdown_table(["variant", "wall ms", "CPU ms"], rows),
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_import")
    parser.add_argument("--quick", action="store_true", help="7 runs instead of 21")
    parser.add_argument("--runs", type=int, default=None, help="fresh interpreters per variant")
    args = parser.parse_args(argv)
    runs = args.runs or (7 if args.quick else 21)
    print(to_markdown(run(runs=runs)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
