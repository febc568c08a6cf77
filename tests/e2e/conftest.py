"""A real trace backend for the end-to-end tests: an MLflow tracking server on 127.0.0.1.

MLflow ingests OTLP/HTTP protobuf at ``/v1/traces`` (header ``x-mlflow-experiment-id``),
stores the spans before it answers, and serves them back through its REST API. The
server runs offline from a temporary SQLite store and is stopped by its process group.
Run with ``.ci/e2e`` (which installs MLflow); the tests carry the ``e2e`` marker.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

HOST = "127.0.0.1"
E2E_MARKER = "e2e: end-to-end tests against a real backend (MLflow); run by .ci/e2e"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", E2E_MARKER)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Collect these tests only when ``-m`` names the e2e marker (they need MLflow)."""
    if "e2e" in (config.getoption("markexpr", "") or ""):
        return None
    return collection_path.suffix == ".py" and collection_path.name.startswith("test_")


START_LIMIT = 90.0  # seconds; it takes about 10 s here
STOP_LIMIT = 15.0  # seconds for SIGTERM before SIGKILL; about 3 s here


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _mlflow_command() -> str:
    """The ``mlflow`` script next to the interpreter running the tests."""
    candidate = Path(sys.executable).parent / "mlflow"
    if candidate.is_file():
        return str(candidate)
    found = shutil.which("mlflow")
    if found is None:
        pytest.fail("the e2e tests need MLflow: run them with .ci/e2e (it installs MLflow)")
    return found


@dataclass
class StoredSpan:
    """One span as MLflow stored it, ids as lowercase hex."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    attributes: dict[str, Any]
    trace_tags: dict[str, str] = field(default_factory=dict)


def _hex_id(value: str | None) -> str | None:
    if not value:
        return None
    return base64.b64decode(value).hex()


def _any_value(value: dict[str, Any]) -> Any:
    """An OTLP AnyValue in its protobuf-JSON form, as a Python value."""
    if "string_value" in value:
        return value["string_value"]
    if "bool_value" in value:
        return value["bool_value"]
    if "int_value" in value:
        return int(value["int_value"])
    if "double_value" in value:
        return float(value["double_value"])
    if "array_value" in value:
        return [_any_value(v) for v in value["array_value"].get("values", [])]
    if "kvlist_value" in value:
        return {
            kv["key"]: _any_value(kv.get("value", {}))
            for kv in value["kvlist_value"].get("values", [])
        }
    return value


class MlflowServer:
    """``mlflow server`` in its own process group, restartable on the same port and store."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = _free_port()
        self.base_url = f"http://{HOST}:{self.port}"
        self.endpoint = f"{self.base_url}/v1/traces"
        self._process: subprocess.Popen[bytes] | None = None
        self._log = workdir / "server.log"
        self.start_seconds: list[float] = []

    # -- process ---------------------------------------------------------------------

    def start(self) -> None:
        env = dict(os.environ)
        env.update(
            MLFLOW_DISABLE_TELEMETRY="true",
            DO_NOT_TRACK="true",
            # No job runner: it forks a dozen worker processes and slows the stop to 12 s.
            MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
        )
        env = {k: v for k, v in env.items() if not k.startswith("OTEL_")}
        command = [
            _mlflow_command(),
            "server",
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{self.workdir / 'mlflow.db'}",
            "--default-artifact-root",
            str(self.workdir / "artifacts"),
        ]
        started = time.monotonic()
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(
                command,
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped as one
            )
        deadline = started + START_LIMIT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                pytest.fail(f"mlflow server exited early:\n{self.log_tail()}")
            if self._healthy():
                self.start_seconds.append(time.monotonic() - started)
                return
            time.sleep(0.2)
        self.stop()
        pytest.fail(f"mlflow server not healthy after {START_LIMIT} s:\n{self.log_tail()}")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/health", timeout=2) as response:  # noqa: S310 - our own loopback URL
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def stop(self, *, crash: bool = False) -> None:
        """SIGTERM the process group (SIGKILL with ``crash``, or after STOP_LIMIT s)."""
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL if crash else signal.SIGTERM)
        try:
            process.wait(STOP_LIMIT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(STOP_LIMIT)
        # Children (uvicorn) share the group; make sure none outlives the test run.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)

    def restart(self, *, crash: bool = True) -> None:
        self.stop(crash=crash)
        self.start()

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self._log.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    # -- REST ------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - our own loopback URL
            f"{self.base_url}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - as above
            return json.loads(response.read() or b"{}")

    def create_experiment(self, prefix: str = "e2e") -> str:
        answer = self._call(
            "POST",
            "/api/2.0/mlflow/experiments/create",
            {"name": f"{prefix}-{uuid.uuid4().hex[:12]}"},
        )
        return str(answer["experiment_id"])

    def trace_ids(self, experiment_id: str) -> list[str]:
        """Ids of every trace stored in the experiment (the traces search endpoint)."""
        ids: list[str] = []
        token = None
        while True:
            body: dict[str, Any] = {
                "locations": [
                    {
                        "type": "MLFLOW_EXPERIMENT",
                        "mlflow_experiment": {"experiment_id": experiment_id},
                    }
                ],
                "max_results": 500,
            }
            if token:
                body["page_token"] = token
            answer = self._call("POST", "/api/3.0/mlflow/traces/search", body)
            ids += [t["trace_id"] for t in answer.get("traces", [])]
            token = answer.get("next_page_token")
            if not token:
                return ids

    def spans(self, experiment_id: str) -> list[StoredSpan]:
        """Every span stored in the experiment (search, then get for each trace)."""
        spans = []
        for trace_id in self.trace_ids(experiment_id):
            answer = self._call("GET", f"/api/3.0/mlflow/traces/get?trace_id={trace_id}")
            trace = answer["trace"]
            tags = dict(trace["trace_info"].get("tags", {}))
            for span in trace.get("spans", []):
                spans.append(
                    StoredSpan(
                        name=span["name"],
                        trace_id=_hex_id(span["trace_id"]) or "",
                        span_id=_hex_id(span["span_id"]) or "",
                        parent_span_id=_hex_id(span.get("parent_span_id")),
                        attributes={
                            kv["key"]: _any_value(kv.get("value", {}))
                            for kv in span.get("attributes", [])
                        },
                        trace_tags=tags,
                    )
                )
        return spans

    def wait_for_spans(
        self, experiment_id: str, count: int, timeout: float = 20.0
    ) -> list[StoredSpan]:
        """Poll until the experiment holds at least ``count`` spans (or ``timeout`` passes)."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.spans(experiment_id)
            if len(spans) >= count or time.monotonic() >= deadline:
                return spans
            time.sleep(0.25)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    server = MlflowServer(tmp_path_factory.mktemp("mlflow"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def experiment(mlflow_server: MlflowServer) -> str:
    """A new MLflow experiment for this test; its id goes in ``x-mlflow-experiment-id``."""
    return mlflow_server.create_experiment()


def by_name(spans: list[StoredSpan]) -> dict[str, StoredSpan]:
    named = {span.name: span for span in spans}
    assert len(named) == len(spans), [span.name for span in spans]
    return named
