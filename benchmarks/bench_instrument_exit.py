"""Exit time under ``opentelemetry-instrument`` with every signal on, collector never answering.

An app makes 200 spans, 200 log records (stdlib logging through the SDK's
``LoggingHandler``) and a counter, then returns; the figure is the time from its return
to the process's exit. Ours (this environment's ``opentelemetry-instrument``, with the
``otel_nonblocking`` distro) beside the stock ``opentelemetry-distro`` (the
``opentelemetry-instrument`` of another virtual environment, given with ``--stock-venv``,
that has ``opentelemetry-distro`` and the OTLP exporters but not this package), in the
same run, against :class:`FakeOTLPBackend` / :class:`FakeGrpcBackend` on 127.0.0.1 in
HANG mode. Needs the grpc extra for the gRPC rows.

    python -m benchmarks.bench_instrument_exit --stock-venv /path/to/venv [--runs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks._common import markdown_table, say
from otel_nonblocking.testing import FakeGrpcBackend, FakeOTLPBackend, Mode

APP = """
import logging, time
from opentelemetry import metrics, trace

tracer = trace.get_tracer("app")
log = logging.getLogger("app")
counter = metrics.get_meter("app").create_counter("orders")
for i in range(200):
    with tracer.start_as_current_span("handle-request"):
        log.warning("order %d", i)
        counter.add(1)
print("RETURNED-AT", repr(time.time()), flush=True)
"""

_WALL_LIMIT = 120.0  # seconds: the stock distro takes tens of seconds; never longer


def _exit_seconds(instrument: Path, python: Path, env: dict[str, str], app: Path) -> float:
    proc = subprocess.Popen(
        [str(instrument), str(python), str(app)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        stdout, _ = proc.communicate(timeout=_WALL_LIMIT)
        exited = time.time()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    [line] = [x for x in stdout.splitlines() if x.startswith("RETURNED-AT ")]
    return exited - float(line.split()[1])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stock-venv", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--exit-timeout-ms", default="2000")
    args = parser.parse_args(argv)
    ours_bin = Path(sys.executable).parent
    stock_bin = args.stock_venv / "bin"
    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    base.update(
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_METRICS_EXPORTER="otlp",
        OTEL_LOGS_EXPORTER="otlp",
        OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED="true",
        OTEL_NONBLOCKING_EXIT_TIMEOUT=args.exit_timeout_ms,
    )
    rows = []
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        app = Path(tmp) / "app.py"
        app.write_text(APP, encoding="utf-8")
        for protocol in ("http/protobuf", "grpc"):
            for name, bin_dir in (("stock opentelemetry-distro", stock_bin), ("ours", ours_bin)):
                backend = FakeGrpcBackend(Mode.HANG) if protocol == "grpc" else None
                http = FakeOTLPBackend(Mode.HANG) if backend is None else None
                with backend or http:  # type: ignore[union-attr]
                    url = backend.endpoint if backend is not None else http.base_url  # type: ignore[union-attr]
                    env = dict(base, OTEL_EXPORTER_OTLP_ENDPOINT=url)
                    env["OTEL_EXPORTER_OTLP_PROTOCOL"] = protocol
                    times = []
                    for _ in range(args.runs):
                        say(f"{name} over {protocol} ...")
                        seconds = _exit_seconds(
                            bin_dir / "opentelemetry-instrument", bin_dir / "python", env, app
                        )
                        say(f" {seconds:.2f} s\n")
                        times.append(seconds)
                results[f"{name} {protocol}"] = times
                rows.append((name, protocol, " / ".join(f"{t:.2f} s" for t in times)))
    print(markdown_table(("distro", "protocol", "exit after main returned"), rows))
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
