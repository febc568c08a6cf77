"""The benchmark plots (PNG, matplotlib's Agg backend): request latency and flush times.

matplotlib is a benchmark-only dependency (the ``bench`` extra); the package never imports it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib as mpl

mpl.use("Agg")

# The backend is chosen above, before pyplot loads.
import matplotlib.pyplot as plt

COLOURS = {"off": "#7f7f7f", "sdk": "#2ca02c", "stock": "#d62728", "ours": "#1f77b4"}
DPI = 80  # small PNGs: each well under 150 KB


def latency_plot(result: dict[str, Any], path: Path) -> Path:
    """Request latency by percentile, tracing off / SDK alone / stock / ours, one panel per
    app and profile (two columns: asyncio, threaded).

    The x axis is a logit scale, so the tail (p90, p99, p99.9) gets as much room as the median.
    """
    points = [(q, i) for i, q in enumerate(result["curve_quantiles"]) if 1 <= q < 100]
    fractions = [q / 100 for q, _ in points]
    apps = result["apps"]
    rows = -(-len(apps) // 2)
    figure, grid = plt.subplots(rows, 2, figsize=(10, 4 * rows), squeeze=False)
    for axis, (app, data) in zip(grid.flat, apps.items(), strict=False):
        for name, summary in data["variants"].items():
            curve = summary["latency_curve_ms"]
            axis.plot(
                fractions,
                [curve[i] for _, i in points],
                label=name,
                color=COLOURS.get(name),
                linewidth=1.6,
            )
        axis.set_xscale("logit")
        ticks = [0.1, 0.5, 0.9, 0.99, 0.999]
        axis.set_xticks(ticks, ["p10", "p50", "p90", "p99", "p99.9"])
        axis.minorticks_off()
        axis.set_xlim(0.01, 0.999)
        axis.set_ylim(bottom=0)
        axis.set_title(f"{app}: request latency")
        axis.set_xlabel("percentile")
        axis.set_ylabel("ms")
        axis.grid(True, alpha=0.3)
        axis.legend(loc="upper left")
    figure.tight_layout()
    return _save(figure, path)


def flush_plot(result: dict[str, Any], path: Path) -> Path:
    """force_flush(2000) and shutdown() seconds per fault, stock vs ours (capped bars hatched)."""
    cap = result["cap_seconds"]
    faults = list(dict.fromkeys(row["fault"] for row in result["rows"]))
    rows = {(row["fault"], row["pipeline"]): row for row in result["rows"]}
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    width = 0.4
    for axis, call, title in (
        (axes[0], "flush", "force_flush(timeout_millis=2000)"),
        (axes[1], "shutdown", "shutdown()"),
    ):
        for offset, name in ((-width / 2, "stock"), (width / 2, "ours")):
            seconds = []
            capped = []
            for fault in faults:
                measured = rows[(fault, name)][call]
                seconds.append(measured["seconds"] if measured["finished"] else cap)
                capped.append(not measured["finished"])
            bars = axis.bar(
                [index + offset for index in range(len(faults))],
                seconds,
                width,
                label=name,
                color=COLOURS[name],
            )
            for bar, was_capped in zip(bars, capped, strict=True):
                if was_capped:
                    bar.set_hatch("//")
                    bar.set_edgecolor("white")
        axis.axhline(2.0, color="black", linestyle="--", linewidth=0.8)
        axis.set_xticks(range(len(faults)), faults, rotation=45, ha="right")
        axis.set_title(title)
        axis.set_ylim(0, cap * 1.05)
        axis.grid(True, axis="y", alpha=0.3)
    axes[0].set_ylabel(f"seconds (hatched: still running at the {cap:g} s cap)")
    axes[0].legend(loc="upper left")
    figure.tight_layout()
    return _save(figure, path)


def memory_plot(result: dict[str, Any], path: Path) -> Path:
    """RSS over the outage, stock vs ours."""
    figure, axis = plt.subplots(figsize=(7, 3.5))
    for name, run in result["runs"].items():
        times = [sample[0] for sample in run["rss_samples"]]
        rss = [sample[1] / 1024 for sample in run["rss_samples"]]
        axis.plot(times, rss, label=name, color=COLOURS.get(name), linewidth=1.6)
    axis.set_xlabel("seconds into the outage")
    axis.set_ylabel("RSS, MiB")
    axis.set_title(f"RSS while the backend hangs ({result['rate']:,} spans/s)")
    axis.grid(True, alpha=0.3)
    axis.legend(loc="upper left")
    figure.tight_layout()
    return _save(figure, path)


def _save(figure: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path
