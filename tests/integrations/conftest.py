"""Fixtures for the Langfuse integration tests: a fake Langfuse API and a clean SDK per test.

Langfuse is imported lazily: where it is not installed, the test modules skip themselves
(``pytest.importorskip``) and nothing here runs.
"""

from __future__ import annotations

import atexit
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.util._once import Once

from otel_nonblocking.testing import FakeLangfuse, Mode, reset

PUBLIC_KEY = "pk-lf-test"
SECRET_KEY = "sk-lf-test"  # noqa: S105 - a made-up key for a loopback fake

LANGFUSE_VARS = (
    "LANGFUSE_PUBLIC_KEY",
    "LANGFUSE_SECRET_KEY",
    "LANGFUSE_BASE_URL",
    "LANGFUSE_HOST",
    "LANGFUSE_TIMEOUT",
    "LANGFUSE_FLUSH_AT",
    "LANGFUSE_FLUSH_INTERVAL",
    "LANGFUSE_TRACING_ENABLED",
    "LANGFUSE_OTEL_TRACES_EXPORT_PATH",
    "LANGFUSE_OTEL_COMPRESSION",
    "LANGFUSE_SAMPLE_RATE",
    "LANGFUSE_DEBUG",
)


def _in_thread(call: Callable[[], object], limit: float) -> None:
    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(limit)


def teardown_langfuse() -> None:
    """Shut down every Langfuse project within about a second and forget the SDK state."""
    from otel_nonblocking.integrations import _compat_langfuse as sdk
    from otel_nonblocking.integrations.langfuse import bound_langfuse_flush, current_binding

    binding = current_binding() or bound_langfuse_flush(timeout=0.2)
    binding.shutdown(timeout=0.2)
    managers = sdk.resource_managers()
    binding.unbind(timeout=0.1)
    providers = {id(rm.tracer_provider): rm.tracer_provider for rm in managers}
    for provider in providers.values():
        if provider is None:
            continue
        _in_thread(provider.shutdown, 1.0)
        handler = getattr(provider, "_atexit_handler", None)
        if handler is not None:
            atexit.unregister(handler)
    for rm in managers:
        atexit.unregister(rm.shutdown)
        client = getattr(rm, "httpx_client", None)
        if client is not None:
            client.close()
    sdk.RESOURCE_MANAGER._instances.clear()
    trace._TRACER_PROVIDER_SET_ONCE = Once()  # type: ignore[attr-defined]
    trace._TRACER_PROVIDER = None  # type: ignore[attr-defined]
    reset()  # and the package's own state: warnings given while tearing down, ...


@pytest.fixture(autouse=True)
def clean_langfuse(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in LANGFUSE_VARS:
        monkeypatch.delenv(var, raising=False)
    teardown_langfuse()
    yield
    teardown_langfuse()


@pytest.fixture
def fake() -> Iterator[FakeLangfuse]:
    with FakeLangfuse(Mode.OK, drip_interval=0.2, hang_limit=30) as backend:
        yield backend


@pytest.fixture
def make_client(fake: FakeLangfuse) -> Callable[..., Any]:
    from langfuse import Langfuse

    def make(public_key: str = PUBLIC_KEY, **kwargs: Any) -> Any:
        kwargs.setdefault("base_url", fake.base_url)
        return Langfuse(public_key=public_key, secret_key=SECRET_KEY, **kwargs)

    return make


def request_handler(client: Any, name: str = "request", observations: int = 3) -> None:
    """What the incident's handler did: a few nested observations, then a score."""
    with client.start_as_current_observation(name=name):
        trace_id = client.get_current_trace_id()
        for index in range(observations - 1):
            with client.start_as_current_observation(name=f"{name}-step-{index}"):
                pass
    client.create_score(name="quality", value=1.0, trace_id=trace_id)


def seconds_to_exit_after_ready(script: str, env: dict[str, str], limit: float) -> float:
    """Run ``python -c script``, which prints ``ready`` when its work is done; return how
    long it took to exit after that. Fails the test if it never gets ready (30 s), does not
    exit within ``limit`` seconds, exits non-zero or prints a traceback (a thread of
    Langfuse's that died at exit); never leaves the process behind."""
    with subprocess.Popen(
        [sys.executable, "-c", script],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            lines: list[str] = []
            assert child.stdout is not None
            stdout = child.stdout
            reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
            reader.start()
            reader.join(30)
            assert lines, "the child never got ready"
            assert lines[0].strip() == "ready"
            ready = time.monotonic()
            try:
                child.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                pytest.fail(f"the process did not exit within {limit:.1f}s")
            exited = time.monotonic() - ready
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        assert child.stderr is not None
        stderr = child.stderr.read()
    assert child.returncode == 0, stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-2000:]
    return exited
