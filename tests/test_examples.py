"""The examples in examples/ run as shipped, as subprocesses, against fake collectors.

The FastAPI app under ``opentelemetry-instrument`` delivers its server and handler spans
when stopped with SIGTERM and answers in time while the collector hangs; the Lambda
handler delivers each invocation's spans before returning, and returns within its budget
when the collector hangs. (The Langfuse example is tested in tests/integrations/.)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from otel_nonblocking.testing import FakeOTLPBackend, Mode

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
INSTRUMENT = Path(sys.executable).parent / "opentelemetry-instrument"
SLACK = 0.5  # seconds allowed on top of a budget
LIFESPAN_FLUSH = 2.0  # the flush budget of fastapi_app.py's lifespan, in seconds
# uvicorn ends the process with the signal it caught, once the app has shut down.
STOPPED = (0, -signal.SIGTERM)


def _env(**overrides: str) -> dict[str, str]:
    """This process's environment without OTEL_* variables, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(overrides)
    return env


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _by_id(spans: list[Span]) -> dict[bytes, Span]:
    return {span.span_id: span for span in spans}


# -- the FastAPI app under opentelemetry-instrument ----------------------------------------


class App:
    """examples/fastapi_app.py under opentelemetry-instrument, on a free loopback port."""

    def __init__(self, backend: FakeOTLPBackend, tmp_path: Path, exit_millis: int) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = _env(
            PORT=str(self.port),
            OTEL_SERVICE_NAME="shop",
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=backend.endpoint,
            OTEL_NONBLOCKING_EXIT_TIMEOUT=str(exit_millis),
            OTEL_PYTHON_FASTAPI_EXCLUDED_URLS="healthz",
            OTEL_BSP_SCHEDULE_DELAY="200",
        )
        self.process = subprocess.Popen(
            [str(INSTRUMENT), sys.executable, str(EXAMPLES / "fastapi_app.py")],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.output = ("", "")

    def get(self, path: str, timeout: float = 10) -> tuple[float, Any]:
        started = time.monotonic()
        with urllib.request.urlopen(f"{self.url}{path}", timeout=timeout) as response:  # noqa: S310 - loopback URL built above
            body = json.loads(response.read())
        return time.monotonic() - started, body

    def wait_ready(self, limit: float = 30) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the app exited: {self.process.communicate()[1][-3000:]}")
            try:
                self.get("/healthz", timeout=1)
                return
            except (OSError, urllib.error.URLError):
                time.sleep(0.1)
        pytest.fail("the app did not answer /healthz")

    def terminate(self, limit: float = 20) -> float:
        """SIGTERM, then the seconds until the process exited."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        self.output = self.process.communicate(timeout=limit)
        return time.monotonic() - started

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate()


@pytest.fixture
def start_app(tmp_path: Path) -> Iterator[Any]:
    apps: list[App] = []

    def start(backend: FakeOTLPBackend, exit_millis: int = 1000) -> App:
        app = App(backend, tmp_path, exit_millis)
        apps.append(app)
        app.wait_ready()
        return app

    yield start
    for app in apps:
        app.kill()


def test_fastapi_example_delivers_server_and_handler_spans_when_stopped(start_app: Any) -> None:
    with FakeOTLPBackend(Mode.OK) as backend:
        app = start_app(backend)
        for order in (7, 8, 9):
            _, body = app.get(f"/orders/{order}")
            assert body == {"order": order, "total": order * 1.5}

        exit_seconds = app.terminate()

        assert app.process.returncode in STOPPED, app.output[1][-3000:]
        assert exit_seconds < LIFESPAN_FLUSH + 3  # plus uvicorn's own shutdown
        spans = _by_id(backend.accepted_spans())
    servers = [s for s in spans.values() if s.name == "GET /orders/{order_id}"]
    loads = [s for s in spans.values() if s.name == "load-order"]
    prices = [s for s in spans.values() if s.name == "price-order"]
    assert len(servers) == len(loads) == len(prices) == 3
    for load in loads:
        assert spans[load.parent_span_id].name == "GET /orders/{order_id}"
    for price in prices:
        assert spans[price.parent_span_id].name == "load-order"
    orders = {a.value.int_value for s in loads for a in s.attributes if a.key == "order.id"}
    assert orders == {7, 8, 9}
    resource = backend.requests[0].decoded.resource_spans[0].resource  # type: ignore[union-attr]
    assert {a.key: a.value.string_value for a in resource.attributes}["service.name"] == "shop"


def test_fastapi_example_answers_in_time_and_exits_in_budget_while_the_collector_hangs(
    start_app: Any,
) -> None:
    with FakeOTLPBackend(Mode.HANG, hang_limit=60) as backend:
        app = start_app(backend)
        slowest = 0.0
        for order in range(40):  # enough spans for exports to start and hang
            seconds, _ = app.get(f"/orders/{order}")
            slowest = max(slowest, seconds)
        deadline = time.monotonic() + 10
        while backend.request_count == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert backend.request_count > 0  # an export is hanging now

        exit_seconds = app.terminate()

    assert slowest < SLACK, "a request waited for the hanging collector"
    assert app.process.returncode in STOPPED, app.output[1][-3000:]
    assert exit_seconds < LIFESPAN_FLUSH + 3  # plus uvicorn's own shutdown


# -- the AWS Lambda handler -------------------------------------------------------------------


def _invoke(backend: FakeOTLPBackend, tmp_path: Path, **env: str) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "lambda_handler.py")],
        cwd=tmp_path,
        env=_env(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=backend.endpoint, **env),
        capture_output=True,
        text=True,
        timeout=40,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [
        json.loads(line.removeprefix("INVOCATION "))
        for line in proc.stdout.splitlines()
        if line.startswith("INVOCATION ")
    ]


def test_lambda_example_delivers_each_invocations_spans_before_it_returns(
    tmp_path: Path,
) -> None:
    with FakeOTLPBackend(Mode.OK) as backend:
        reports = _invoke(backend, tmp_path, INVOCATIONS="3")
        spans = _by_id(backend.accepted_spans())

    assert [r["invocation"] for r in reports] == [0, 1, 2]
    for report in reports:
        assert report["status"] == 200
        assert report["ok"] is True
        assert report["exported"] == 2  # this invocation's spans, delivered before returning
        assert report["pending"] == 0
    handles = [s for s in spans.values() if s.name == "handle-order"]
    validates = [s for s in spans.values() if s.name == "validate-order"]
    assert len(handles) == len(validates) == 3
    for validate in validates:
        assert spans[validate.parent_span_id].name == "handle-order"


@pytest.mark.parametrize(
    ("time_left_ms", "budget"),
    [(3000, 1.0), (700, 0.5)],  # flush_after's timeout, or the time left less the 0.2 s margin
    ids=["timeout-bound", "time-left-bound"],
)
def test_lambda_example_returns_within_budget_while_the_collector_hangs(
    tmp_path: Path, time_left_ms: int, budget: float
) -> None:
    with FakeOTLPBackend(Mode.HANG, hang_limit=60) as backend:
        reports = _invoke(
            backend,
            tmp_path,
            INVOCATIONS="4",
            TIME_LEFT_MS=str(time_left_ms),
            OTEL_NONBLOCKING_EXIT_TIMEOUT="500",
        )

    assert len(reports) == 4
    for report in reports:
        assert report["status"] == 200
        assert report["seconds"] < budget + SLACK, report
        assert report["ok"] is False  # nothing got through, and the report says so
