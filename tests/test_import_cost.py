"""Importing is a cold start: what loads when, checked by module, not by a timing.

``import otel_nonblocking`` loads none of the packages it wraps; ``configure_tracing()``
loads the exporter stack it sets up, but the fast encoder (whose import probes the SDK)
waits for the first export, on the worker, and asyncio for ``aflush()``.
``benchmarks/bench_import.py`` measures the times.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap

from otel_nonblocking.testing import FakeOTLPBackend, Mode, refused_endpoint
from tests.conftest import run_bounded

# Each of these costs milliseconds to import; none is needed to import the package.
HEAVY = (
    "asyncio",
    "google.protobuf",
    "importlib.metadata",
    "opentelemetry",
    "otel_nonblocking._encoder",
    "otel_nonblocking._processor",
    "otel_nonblocking._session",
    "requests",
    "urllib3",
)


def _loaded_after(script: str, *args: str) -> set[str]:
    """The modules in ``sys.modules`` after ``script`` ran in a fresh interpreter."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LANGFUSE_"))}
    code = textwrap.dedent(script) + "\nimport json\nprint(json.dumps(sorted(sys.modules)))\n"
    stdout, _, _ = run_bounded([sys.executable, "-c", code, *args], env, timeout=60)
    return set(json.loads(stdout.splitlines()[-1]))


def test_importing_the_package_loads_nothing_it_wraps() -> None:
    loaded = _loaded_after("import sys\nimport otel_nonblocking")
    assert sorted(m for m in loaded if m.startswith(HEAVY)) == []
    assert sorted(m for m in loaded if m.startswith("otel_nonblocking")) == [
        "otel_nonblocking",
        "otel_nonblocking._version",
    ]


def test_version_and_an_exception_class_load_no_pipeline() -> None:
    loaded = _loaded_after(
        """
        import sys
        import otel_nonblocking
        assert otel_nonblocking.__version__
        otel_nonblocking.ConfigurationError
        """
    )
    assert sorted(m for m in loaded if m.startswith(HEAVY)) == []


def test_configure_tracing_leaves_the_encoder_to_the_first_export() -> None:
    script = """
        import sys
        import otel_nonblocking
        handle = otel_nonblocking.configure_tracing(endpoint=sys.argv[1], timeout=0.5)
        assert handle.processor is not None
        """
    loaded = _loaded_after(script, refused_endpoint())
    assert "otel_nonblocking._encoder" not in loaded
    # Not loaded by us; the API loads it itself on some releases (1.33's util._decorator).
    stock = _loaded_after("import sys, opentelemetry.trace, opentelemetry.sdk.trace")
    assert "asyncio" not in loaded or "asyncio" in stock


def test_the_first_export_loads_the_encoder_and_delivers() -> None:
    script = """
        import sys
        import otel_nonblocking
        from opentelemetry import trace
        otel_nonblocking.configure_tracing(endpoint=sys.argv[1], timeout=2)
        trace.get_tracer("cold").start_span("first").end()
        assert otel_nonblocking.flush(5).exported == 1
        """
    with FakeOTLPBackend(Mode.OK) as backend:
        loaded = _loaded_after(script, backend.endpoint)
        assert len(backend.accepted_spans()) == 1
    assert "otel_nonblocking._encoder" in loaded
