"""Lambda replay for Langfuse: what each invocation and the process exit cost, per handler.

Each row runs in a fresh process against its own fake Langfuse API on 127.0.0.1 (healthy,
or never answering): a cold start, then N invocations of a handler that makes 3
observations and one score, then the end of the process. Per invocation it measures the
handler including its flush; then the time from the end of the script to the end of the
process. Rows:

- ``readme``: the README's snippet as printed, ``bounded_langfuse(timeout=2)``, and the
  handler under ``@otel_nonblocking.flush_after(timeout=1.0)``;
- ``readme+flush``: the same client, the handler ending with ``langfuse.flush()``;
- ``readme, no flush``: the same client, the handler never flushes (the exit pays);
- ``stock`` (with ``--stock``): ``Langfuse(timeout=2)`` and ``langfuse.flush()``;
- ``old readme`` (with ``--only``, Langfuse 4.2.0+): the snippet the README printed before
  ``bounded_langfuse()``, ``Langfuse(span_exporter=langfuse_span_exporter(timeout=2))``,
  and ``langfuse.flush()`` (span exports bounded, the score queue join not).

    python -m benchmarks.bench_langfuse_lambda [--quick] [--invocations 20] [--stock]
        [--only readme,stock]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

from benchmarks._common import markdown_table, say
from otel_nonblocking.testing import FakeLangfuse, Mode

SECRET_KEY = "sk-lf-bench"  # noqa: S105 - a made-up key for a loopback fake

_CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    import otel_nonblocking

    variant = os.environ["BENCH_VARIANT"]
    if variant == "stock":
        from langfuse import Langfuse
        langfuse = Langfuse(timeout=2)
    elif variant == "old readme":
        from langfuse import Langfuse
        from otel_nonblocking.integrations.langfuse import langfuse_span_exporter
        langfuse = Langfuse(span_exporter=langfuse_span_exporter(timeout=2))
    else:
        from otel_nonblocking.integrations.langfuse import bounded_langfuse
        langfuse = bounded_langfuse(timeout=2)  # the README's snippet

    def work():
        with langfuse.start_as_current_observation(name="request"):
            trace_id = langfuse.get_current_trace_id()
            for step in range(2):
                with langfuse.start_as_current_observation(name=f"step-{step}"):
                    pass
        langfuse.create_score(name="quality", value=1.0, trace_id=trace_id)

    if variant == "readme":
        @otel_nonblocking.flush_after(timeout=1.0)
        def handler(event, context):
            work()
    elif variant == "readme, no flush":
        def handler(event, context):
            work()
    else:
        def handler(event, context):
            work()
            langfuse.flush()

    times = []
    for _ in range(int(os.environ["BENCH_INVOCATIONS"])):
        started = time.perf_counter()
        handler({}, None)
        times.append(time.perf_counter() - started)
    print(json.dumps(times), flush=True)
    """
)

VARIANTS = ("readme", "readme+flush", "readme, no flush")
ALL = (*VARIANTS, "stock", "old readme")


def _row(variant: str, fault: str, invocations: int, timeout: float) -> dict[str, Any]:
    with FakeLangfuse(Mode(fault), hang_limit=600) as fake:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGFUSE_", "OTEL_"))}
        env.update(
            BENCH_VARIANT=variant,
            BENCH_INVOCATIONS=str(invocations),
            LANGFUSE_PUBLIC_KEY="pk-lf-bench",
            LANGFUSE_SECRET_KEY=SECRET_KEY,
            LANGFUSE_BASE_URL=fake.base_url,
        )
        with subprocess.Popen(
            [sys.executable, "-c", _CHILD],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        ) as child:
            try:
                line = child.stdout.readline() if child.stdout else ""
                printed = time.perf_counter()
                child.wait(timeout=timeout)
                exit_seconds: float | None = time.perf_counter() - printed
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
                exit_seconds = None
        times = json.loads(line) if line.strip() else []
        delivered = (fake.spans_delivered, fake.scores_delivered)
    return {
        "variant": variant,
        "fault": fault,
        "invocations": invocations,
        "median": statistics.median(times) if times else None,
        "max": max(times) if times else None,
        "exit": exit_seconds,
        "delivered": delivered,
    }


def _seconds(value: float | None, cap: float) -> str:
    if value is None:
        return f"> {cap:g} s"
    return f"{value * 1000:.0f} ms" if value < 0.1 else f"{value:.2f} s"


def to_markdown(rows: Sequence[dict[str, Any]], cap: float) -> str:
    table = markdown_table(
        ["handler", "Langfuse API", "per invocation, median", "max", "exit", "delivered"],
        [
            [
                r["variant"],
                "healthy" if r["fault"] == "ok" else "never answers",
                _seconds(r["median"], cap),
                _seconds(r["max"], cap),
                _seconds(r["exit"], cap),
                f"{r['delivered'][0]} spans + {r['delivered'][1]} scores",
            ]
            for r in rows
        ],
    )
    heading = f"langfuse {version('langfuse')}, {rows[0]['invocations']} invocations per row"
    return f"{heading}\n\n{table}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_langfuse_lambda")
    parser.add_argument("--invocations", type=int, default=None, help="per row (default 20)")
    parser.add_argument("--quick", action="store_true", help="5 invocations per row")
    parser.add_argument("--stock", action="store_true", help="add stock Langfuse rows (slow)")
    parser.add_argument("--only", help="comma-separated subset of: " + ", ".join(ALL))
    parser.add_argument("--cap", type=float, default=120.0, help="seconds per row at most")
    args = parser.parse_args(argv)
    invocations = args.invocations or (5 if args.quick else 20)
    variants = (*VARIANTS, "stock") if args.stock else VARIANTS
    if args.only:
        variants = tuple(v for v in ALL if v in args.only.split(","))
    rows = []
    for fault in ("ok", "hang"):
        for variant in variants:
            say(f"langfuse lambda replay: {variant} / {fault} ...")
            rows.append(_row(variant, fault, invocations, args.cap))
    print(to_markdown(rows, args.cap))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
