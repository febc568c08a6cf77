"""Run every benchmark and write ``benchmarks/results/latest.{json,md}``.

Also writes ``sdk-<opentelemetry-sdk version>.{json,md}`` so runs on two SDKs sit side by side.

    python -m benchmarks.run [--quick] [--cap 15]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import bench_flush, bench_span_end
from benchmarks._common import RESULTS_DIR, machine, write_json


def _markdown(results: dict[str, dict[str, Any]], command: str) -> str:
    info = results["span_end"]["machine"]  # as recorded when the figures were taken
    versions = info["versions"]
    lines = [
        "# Benchmark results",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {info['nproc']} CPUs ({info['cpu_model']}), {info['platform']}; "
        + ", ".join(f"{name} {value}" for name, value in versions.items()),
        "",
        "## span.end() cost",
        "",
        bench_span_end.to_markdown(results["span_end"]),
        "",
        "## Flush deadlines",
        "",
        bench_flush.to_markdown(results["flush"]),
        "",
    ]
    return "\n".join(lines)


def rewrite_markdown(out: Path = RESULTS_DIR, stem: str = "latest") -> None:
    """Re-render ``<stem>.md`` from ``<stem>.json`` (after a change to the formatting)."""
    results = json.loads((out / f"{stem}.json").read_text(encoding="utf-8"))
    command = (out / f"{stem}.md").read_text(encoding="utf-8").split("`")[1]
    (out / f"{stem}.md").write_text(_markdown(results, command), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run")
    parser.add_argument("--quick", action="store_true", help="a fast pass of both benchmarks")
    parser.add_argument(
        "--cap", type=float, default=None, help="bench_flush: seconds per stock call (15)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    args = parser.parse_args(argv)

    def say(text: str) -> None:
        sys.stderr.write(text)
        sys.stderr.flush()

    began = time.perf_counter()
    say("span.end() cost\n")
    rounds, per_round = (50, 200) if args.quick else (250, 200)
    # First, while no abandoned stock export thread from bench_flush is around.
    span_end = bench_span_end.run(rounds=rounds, per_round=per_round, progress=say)
    say("flush deadlines\n")
    cap = args.cap or (5.0 if args.quick else 15.0)
    flush = bench_flush.run(cap=cap, progress=say)
    results = {"span_end": span_end, "flush": flush}
    command = "python -m benchmarks.run" + (" --quick" if args.quick else "")
    if args.cap:
        command += f" --cap {args.cap:g}"
    markdown = _markdown(results, command)
    sdk = machine()["versions"]["opentelemetry-sdk"]
    for stem in ("latest", f"sdk-{sdk}"):
        write_json(args.out / f"{stem}.json", results)
        (args.out / f"{stem}.md").write_text(markdown, encoding="utf-8")
    print(markdown)
    say(f"done in {time.perf_counter() - began:.0f} s; results in {args.out}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
