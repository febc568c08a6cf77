"""End to end against a real OTLP backend (MLflow): spans arrive whole, and after a restart.

Each test writes to its own MLflow experiment and reads the spans back through MLflow's
traces search and get endpoints: names, parent links, attributes and resource.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from opentelemetry import trace

import otel_nonblocking as nb
from tests.e2e.conftest import MlflowServer, StoredSpan, by_name

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]


def _env(**overrides: str) -> dict[str, str]:
    """This process's environment without OTEL_*/LANGFUSE_* variables, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LANGFUSE_"))}
    env.update(overrides)
    return env


def _run(command: list[str], env: dict[str, str], cwd: Path, limit: float = 40) -> str:
    proc = subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=limit, check=False
    )
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    return proc.stdout


def _assert_tree(spans: dict[str, StoredSpan], parents: dict[str, str | None]) -> None:
    """Every span in ``parents`` is stored, in one trace, under the named parent."""
    assert set(parents) <= set(spans), sorted(spans)
    trace_ids = {spans[name].trace_id for name in parents}
    assert len(trace_ids) == 1, trace_ids
    for name, parent in parents.items():
        expected = None if parent is None else spans[parent].span_id
        assert spans[name].parent_span_id == expected, name


# -- configure_tracing() -------------------------------------------------------------


@pytest.mark.usefixtures("clean_globals")
def test_configure_tracing_spans_reach_mlflow_with_names_parents_and_attributes(
    mlflow_server: MlflowServer, experiment: str
) -> None:
    handle = nb.configure_tracing(
        timeout=5,
        endpoint=mlflow_server.endpoint,
        headers={"x-mlflow-experiment-id": experiment},
        service_name="e2e-configure",
    )
    tracer = trace.get_tracer("e2e")
    with tracer.start_as_current_span(
        "checkout", attributes={"order.id": "A-17", "order.items": 3, "order.paid": True}
    ):
        with tracer.start_as_current_span("price-lookup") as lookup:
            lookup.set_attribute("price.eur", 12.5)
            lookup.set_attribute("price.tags", ["sale", "member"])
        with tracer.start_as_current_span("charge-card"):
            pass

    result = handle.flush(10)

    assert result.ok, result
    assert result.exported == 3
    spans = by_name(mlflow_server.wait_for_spans(experiment, 3))
    assert len(spans) == 3
    _assert_tree(spans, {"checkout": None, "price-lookup": "checkout", "charge-card": "checkout"})
    assert spans["checkout"].attributes["order.id"] == "A-17"
    assert spans["checkout"].attributes["order.items"] == 3
    assert spans["checkout"].attributes["order.paid"] is True
    assert spans["price-lookup"].attributes["price.eur"] == 12.5
    assert spans["price-lookup"].attributes["price.tags"] == ["sale", "member"]
    assert spans["checkout"].trace_tags.get("service.name") == "e2e-configure"


# -- opentelemetry-instrument ----------------------------------------------------------

INSTRUMENTED_APP = """
from opentelemetry import trace

tracer = trace.get_tracer("e2e-app")
for request in range(2):
    with tracer.start_as_current_span(f"request-{request}") as span:
        span.set_attribute("http.route", "/orders")
        with tracer.start_as_current_span(f"db-{request}") as db:
            db.set_attribute("db.rows", request + 10)
            with tracer.start_as_current_span(f"row-decode-{request}"):
                pass
print("APP-DONE", flush=True)
"""


def test_opentelemetry_instrument_spans_reach_mlflow_at_exit(
    mlflow_server: MlflowServer, experiment: str, tmp_path: Path
) -> None:
    app = tmp_path / "app.py"
    app.write_text(INSTRUMENTED_APP, encoding="utf-8")
    env = _env(
        OTEL_SERVICE_NAME="e2e-instrumented",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=mlflow_server.endpoint,
        OTEL_EXPORTER_OTLP_TRACES_HEADERS=f"x-mlflow-experiment-id={experiment}",
        OTEL_NONBLOCKING_EXIT_TIMEOUT="10000",
    )

    started = time.monotonic()
    stdout = _run([str(BIN / "opentelemetry-instrument"), sys.executable, str(app)], env, tmp_path)
    seconds = time.monotonic() - started

    assert "APP-DONE" in stdout
    assert seconds < 30  # the exit hook's budget (10 s) plus interpreter start-up
    spans = by_name(mlflow_server.wait_for_spans(experiment, 6))
    assert len(spans) == 6
    for request in range(2):
        _assert_tree(
            spans,
            {
                f"request-{request}": None,
                f"db-{request}": f"request-{request}",
                f"row-decode-{request}": f"db-{request}",
            },
        )
        assert spans[f"db-{request}"].attributes["db.rows"] == request + 10
        assert spans[f"request-{request}"].attributes["http.route"] == "/orders"
    assert spans["request-0"].trace_id != spans["request-1"].trace_id
    assert spans["request-0"].trace_tags.get("service.name") == "e2e-instrumented"


# -- the Langfuse exporter ---------------------------------------------------------------

LANGFUSE_APP = """
import json, sys
from langfuse import Langfuse
from otel_nonblocking.integrations.langfuse import bound_langfuse_flush, langfuse_span_exporter

base_url, experiment = sys.argv[1], sys.argv[2]
keys = {"public_key": "pk-lf-e2e", "secret_key": "sk-lf-e2e"}
exporter = langfuse_span_exporter(
    timeout=5, base_url=base_url, additional_headers={"x-mlflow-experiment-id": experiment},
    **keys,
)
langfuse = Langfuse(base_url=base_url, span_exporter=exporter, **keys)
bound_langfuse_flush(timeout=10)
with langfuse.start_as_current_observation(name="lf-request", input={"question": "why"}):
    with langfuse.start_as_current_observation(
        name="lf-generation", as_type="generation", model="e2e-model"
    ) as generation:
        generation.update(output="because")
    with langfuse.start_as_current_observation(name="lf-tool"):
        pass
result = langfuse.flush()
print("FLUSH " + json.dumps({"ok": result.ok, "pending": result.pending}), flush=True)
langfuse.shutdown()
"""


def test_langfuse_exporter_spans_reach_mlflow_with_langfuse_attributes(
    mlflow_server: MlflowServer, experiment: str, tmp_path: Path
) -> None:
    app = tmp_path / "langfuse_app.py"
    app.write_text(LANGFUSE_APP, encoding="utf-8")
    # The exporter posts to <base_url>/<this path>: MLflow's OTLP endpoint, not Langfuse's.
    env = _env(LANGFUSE_OTEL_TRACES_EXPORT_PATH="/v1/traces", LANGFUSE_TRACING_ENABLED="true")

    stdout = _run([sys.executable, str(app), mlflow_server.base_url, experiment], env, tmp_path)

    [line] = [line for line in stdout.splitlines() if line.startswith("FLUSH ")]
    assert json.loads(line.removeprefix("FLUSH ")) == {"ok": True, "pending": 0}
    spans = by_name(mlflow_server.wait_for_spans(experiment, 3))
    assert len(spans) == 3
    _assert_tree(
        spans, {"lf-request": None, "lf-generation": "lf-request", "lf-tool": "lf-request"}
    )
    generation = spans["lf-generation"].attributes
    assert generation["langfuse.observation.type"] == "generation"
    assert generation["langfuse.observation.model.name"] == "e2e-model"
    # Langfuse 5 sends input/output as OTLP values, earlier releases as JSON strings.
    assert "because" in str(generation["langfuse.observation.output"])
    assert "why" in str(spans["lf-request"].attributes["langfuse.observation.input"])


# -- a backend restart in the middle of a run ---------------------------------------------


@pytest.mark.timeout(240)
@pytest.mark.usefixtures("clean_globals")
def test_delivery_resumes_after_the_backend_restarts_mid_run(
    mlflow_server: MlflowServer, experiment: str
) -> None:
    handle = nb.configure_tracing(
        timeout=2,
        endpoint=mlflow_server.endpoint,
        headers={"x-mlflow-experiment-id": experiment},
        service_name="e2e-restart",
        schedule_delay_millis=200,
    )
    tracer = trace.get_tracer("e2e")
    phase = ["before"]
    stop = threading.Event()
    ended: list[str] = []
    slowest_end = [0.0]

    def produce() -> None:  # one span every 50 ms, named after the phase it ended in
        while not stop.is_set():
            name = f"{phase[0]}-{len(ended)}"
            span = tracer.start_span(name)
            began = time.perf_counter()
            span.end()
            slowest_end[0] = max(slowest_end[0], time.perf_counter() - began)
            ended.append(name)
            stop.wait(0.05)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    try:
        time.sleep(2)
        assert mlflow_server.wait_for_spans(experiment, 1, timeout=10), "nothing arrived"
        phase[0] = "down"
        mlflow_server.stop(crash=True)  # killed, like a crashed collector
        time.sleep(3)
        phase[0] = "restarting"
        mlflow_server.start()
        phase[0] = "after"
        time.sleep(2)
    finally:
        stop.set()
        producer.join(5)

    # The open breaker probes about once a second (a 0.5-1 s back-off). A refused probe
    # costs its batch no attempt (nothing reached MLflow), so the spans ended while it was
    # down wait in the retry buffer however long the restart takes; allow a slow one.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        stats = handle.stats()
        if stats.pending == 0:
            break
        handle.flush(2)
    stats = handle.stats()
    stored = mlflow_server.wait_for_spans(experiment, stats.exported, timeout=20)
    stored_names = {span.name for span in stored}

    assert slowest_end[0] < 0.5, "span.end() blocked while the backend was down"
    assert stats.pending == 0, stats
    assert stats.retried > 0, stats  # exports did fail while it was down, and went out again
    assert stats.enqueued == len(ended)
    assert stats.exported + stats.dropped_total == len(ended), stats
    assert len(stored) == len(stored_names) == stats.exported  # each exported span once
    assert any(name.startswith("before-") for name in stored_names)
    assert any(name.startswith("after-") for name in stored_names), "delivery did not resume"
    # Spans ended while it was down wait in the retry buffer and go out after the restart.
    down = [name for name in ended if name.startswith(("down-", "restarting-"))]
    assert down
    assert set(down) <= stored_names, stats
