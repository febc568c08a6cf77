"""Run the benchmark suite; write ``benchmarks/results/latest.{json,md}`` and the plots.

Also writes ``sdk-<opentelemetry-sdk version>.{json,md}`` so runs on two SDKs sit side by
side, and PNGs into ``docs/img/`` (needs matplotlib: the ``bench`` extra).

    python -m benchmarks.run [--quick] [--cap 15] [--only request_path,throughput]
                             [--outage] [--encoder] [--no-plots]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks import (
    bench_flush,
    bench_import,
    bench_memory,
    bench_request_path,
    bench_span_end,
    bench_throughput,
)
from benchmarks._common import RESULTS_DIR, machine, say, write_json

ROOT = Path(__file__).resolve().parent.parent
IMG_DIR = ROOT / "docs" / "img"
# In the order they run: flush goes last, because it leaves abandoned stock export
# threads behind (stuck on a dripping backend) that would disturb the timings after it.
BENCHMARKS = ("import", "span_end", "request_path", "throughput", "memory", "flush")
SECTIONS = {
    "import": ("Import cost (a cold start)", bench_import.to_markdown),
    "span_end": ("span.end() cost", bench_span_end.to_markdown),
    "request_path": ("Request path under export load", bench_request_path.to_markdown),
    "throughput": ("Throughput to a local backend", bench_throughput.to_markdown),
    "memory": ("Memory during an outage", bench_memory.to_markdown),
    "flush": ("Flush deadlines", bench_flush.to_markdown),
}
PLOTS = {
    "request_path": ("latency_plot", "bench-request-latency.png"),
    "flush": ("flush_plot", "bench-flush-times.png"),
    "memory": ("memory_plot", "bench-memory-rss.png"),
}


def _markdown(results: dict[str, dict[str, Any]], command: str) -> str:
    first = next(results[name] for name in BENCHMARKS if name in results)
    info = first["machine"]  # as recorded when the figures were taken
    versions = info["versions"]
    lines = [
        "# Benchmark results",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {info['nproc']} CPUs ({info['cpu_model']}), {info['platform']}; "
        + ", ".join(f"{name} {value}" for name, value in versions.items()),
        "",
    ]
    for name in BENCHMARKS:
        if name in results:
            title, render = SECTIONS[name]
            lines += [f"## {title}", ""]
            if "suite_command" in results[name]:
                lines += [f"Measured by `{results[name]['suite_command']}`.", ""]
            lines += [render(results[name]), ""]
    for name, title in (("outage", "Outage"), ("encoder", "Encoder")):
        if name in results:
            lines += [f"## {title}", "", results[name]["markdown"], ""]
    return "\n".join(lines)


def rewrite_markdown(out: Path = RESULTS_DIR, stem: str = "latest") -> None:
    """Re-render ``<stem>.md`` from ``<stem>.json`` (after a change to the formatting)."""
    results = json.loads((out / f"{stem}.json").read_text(encoding="utf-8"))
    command = (out / f"{stem}.md").read_text(encoding="utf-8").split("`")[1]
    (out / f"{stem}.md").write_text(_markdown(results, command), encoding="utf-8")


def plot(results: dict[str, dict[str, Any]], img_dir: Path = IMG_DIR) -> list[Path]:
    """Draw the PNGs for the benchmarks present in ``results``; the paths written."""
    from benchmarks import _plots

    written = []
    for name, (function, filename) in PLOTS.items():
        if name in results:
            written.append(getattr(_plots, function)(results[name], img_dir / filename))
    return written


def _external(module: str, quick: bool, say: Callable[[str], None]) -> dict[str, Any]:
    """Run a benchmark that has only a command line (outage, encoder); keep its markdown."""
    command = [sys.executable, "-m", f"benchmarks.{module}"] + (["--quick"] if quick else [])
    say(f"  {' '.join(command[1:])}\n")
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{module} failed ({done.returncode}): {done.stderr[-2000:]}")
    return {"command": " ".join(["python", *command[1:]]), "markdown": done.stdout.strip()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run")
    parser.add_argument("--quick", action="store_true", help="a fast pass of every benchmark")
    parser.add_argument(
        "--cap", type=float, default=None, help="bench_flush: seconds per stock call (15)"
    )
    parser.add_argument(
        "--only",
        default=None,
        help="comma-separated subset of " + ",".join(BENCHMARKS) + " (the other results "
        "already in latest.json are kept)",
    )
    parser.add_argument("--outage", action="store_true", help="also run bench_outage")
    parser.add_argument("--encoder", action="store_true", help="also run bench_encoder")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNGs")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    parser.add_argument("--img", type=Path, default=IMG_DIR, help="where the PNGs go")
    args = parser.parse_args(argv)
    chosen = BENCHMARKS if args.only is None else tuple(args.only.split(","))
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown:
        parser.error(f"--only: unknown benchmark(s) {', '.join(unknown)}")

    results: dict[str, dict[str, Any]] = {}
    latest = args.out / "latest.json"
    if args.only is not None and latest.exists():
        results = json.loads(latest.read_text(encoding="utf-8"))
    quick = args.quick
    began = time.perf_counter()
    runners: dict[str, Callable[[], dict[str, Any]]] = {
        "import": lambda: bench_import.run(runs=7 if quick else 21, progress=say),
        "span_end": lambda: bench_span_end.run(
            rounds=50 if quick else 250, per_round=200, progress=say
        ),
        "request_path": lambda: bench_request_path.run(
            rounds=2 if quick else 5, seconds=0.5 if quick else 1.0, progress=say
        ),
        "throughput": lambda: bench_throughput.run(
            rounds=2 if quick else 5, spans=(20 if quick else 40) * 512, progress=say
        ),
        "memory": lambda: bench_memory.run(seconds=10.0 if quick else 60.0, progress=say),
        "flush": lambda: bench_flush.run(cap=args.cap or (5.0 if quick else 15.0), progress=say),
    }
    command = "python -m benchmarks.run" + (" --quick" if quick else "")
    if args.cap:
        command += f" --cap {args.cap:g}"
    if args.only is not None:
        command += f" --only {args.only}"
    command += " --outage" * args.outage + " --encoder" * args.encoder
    sdk = machine()["versions"]["opentelemetry-sdk"]

    def save() -> str:
        # After every benchmark, so a failure later keeps what was measured.
        markdown = _markdown(results, command)
        for stem in ("latest", f"sdk-{sdk}"):
            write_json(args.out / f"{stem}.json", results)
            (args.out / f"{stem}.md").write_text(markdown, encoding="utf-8")
        return markdown

    for name in BENCHMARKS:
        if name in chosen:
            say(f"{SECTIONS[name][0]}\n")
            results[name] = runners[name]()
            results[name]["suite_command"] = command
            save()
    for flag, module, key in (
        (args.outage, "bench_outage", "outage"),
        (args.encoder, "bench_encoder", "encoder"),
    ):
        if flag:
            say(f"{key}\n")
            results[key] = _external(module, quick, say)
    markdown = save()
    if not args.no_plots:
        try:
            for path in plot(results, args.img):
                say(f"plot: {path} ({path.stat().st_size // 1024} KB)\n")
        except ImportError:
            say("no plots: matplotlib is not installed (pip install -e '.[bench]')\n")
    print(markdown)
    say(f"done in {time.perf_counter() - began:.0f} s; results in {args.out}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
