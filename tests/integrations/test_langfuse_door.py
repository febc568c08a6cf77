"""bounded_langfuse(), the one-call Langfuse door, as the README prints it.

The snippet alone must bound everything Langfuse does (spans, scores, flush, exit) on
every release, and missing keys must turn tracing off with one warning instead of
stopping the app (``missing_keys="raise"`` stays available).
"""

from __future__ import annotations

import logging
import os
import re
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("langfuse", reason="the Langfuse integration needs otel-nonblocking[langfuse]")

from otel_nonblocking import ConfigurationError
from otel_nonblocking.integrations.langfuse import (
    DisabledSpanExporter,
    LangfuseFlushResult,
    bounded_langfuse,
    current_binding,
    langfuse_span_exporter,
)
from otel_nonblocking.testing import FakeLangfuse, FakeOTLPBackend, Mode
from tests.integrations.conftest import (
    PUBLIC_KEY,
    SECRET_KEY,
    request_handler,
    seconds_to_exit_after_ready,
)

README = Path(__file__).resolve().parents[2] / "README.md"

BUDGET = 0.5  # seconds
SLACK = 0.5  # the generous margin timing bounds allow on a shared machine
EXIT_SLACK = 1.5  # interpreter teardown after the exit hooks
SPANS = 3  # request_handler: a root observation and two children, then one score


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch, fake: FakeLangfuse) -> FakeLangfuse:
    """Keys and host in the LANGFUSE_* variables, as the README tells users to set them."""
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", PUBLIC_KEY)
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("LANGFUSE_BASE_URL", fake.base_url)
    return fake


# -- the door ----------------------------------------------------------------------------------


def test_the_readmes_langfuse_snippet_is_the_door_and_delivers(keys) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    (snippet,) = [b for b in blocks if "langfuse" in b.lower()]
    assert "bounded_langfuse(timeout=2)" in snippet
    namespace: dict[str, object] = {}
    exec(compile(snippet, str(README), "exec"), namespace)  # noqa: S102 - our own README

    langfuse = namespace["langfuse"]
    request_handler(langfuse)
    assert langfuse.flush().ok
    assert keys.spans_delivered == SPANS
    assert keys.scores_delivered == 1


def test_bounded_langfuse_alone_bounds_a_flush_with_a_score_against_a_hanging_host(keys) -> None:
    keys.mode = Mode.HANG
    langfuse = bounded_langfuse(timeout=BUDGET)  # the README's snippet, nothing else

    worst = 0.0
    for index in range(3):
        started = time.monotonic()
        request_handler(langfuse, f"request-{index}")
        result = langfuse.flush()
        worst = max(worst, time.monotonic() - started)
    assert worst < BUDGET + SLACK, f"slowest request took {worst:.2f}s"
    assert isinstance(result, LangfuseFlushResult)
    assert result.timed_out
    assert result.scores_pending >= 1


def test_bounded_langfuse_delivers_spans_and_scores_on_a_healthy_host(keys) -> None:
    langfuse = bounded_langfuse(timeout=2)
    request_handler(langfuse)
    result = langfuse.flush()

    assert result.ok, result
    assert keys.spans_delivered == SPANS
    assert keys.scores_delivered == 1
    (status,) = current_binding().clients()
    assert status.exporter in ("rebuilt", "kept")  # every span export has a deadline


def test_bounded_langfuse_passes_other_arguments_to_langfuse(fake) -> None:
    langfuse = bounded_langfuse(
        timeout=2, public_key=PUBLIC_KEY, secret_key=SECRET_KEY, base_url=fake.base_url
    )
    request_handler(langfuse)
    assert langfuse.flush().ok
    assert fake.spans_delivered == SPANS


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"timeout": 0}, "timeout"),
        ({"timeout": 86_401}, "timeout must be at most a day"),  # the one seconds check
        ({"missing_keys": "ignore"}, "missing_keys"),
    ],
)
def test_bounded_langfuse_rejects_bad_arguments_naming_them(kwargs, named) -> None:
    with pytest.raises(ConfigurationError, match=named):
        bounded_langfuse(**kwargs)


_DOOR_SCRIPT = textwrap.dedent(
    """
    from otel_nonblocking.integrations.langfuse import bounded_langfuse

    langfuse = bounded_langfuse(timeout=float(__import__("os").environ["TEST_BUDGET"]))
    for index in range(3):
        with langfuse.start_as_current_observation(name="work"):
            trace_id = langfuse.get_current_trace_id()
            with langfuse.start_as_current_observation(name="step"):
                pass
        langfuse.create_score(name="quality", value=1.0, trace_id=trace_id)
    print("ready", flush=True)
    """
)


@pytest.mark.parametrize(
    ("mode", "budget", "limit"),
    [
        # Never answering: the exit keeps the door's budget.
        (Mode.HANG, BUDGET, BUDGET + EXIT_SLACK),
        # Healthy: the exit does not wait for Langfuse's threads to notice the shutdown
        # (on 4.x the media and prompt-refresh threads each took up to 1 s to).
        (Mode.OK, 5.0, 1.2),
    ],
)
def test_a_process_using_only_the_door_exits_within_its_budget(mode, budget, limit) -> None:
    with FakeLangfuse(mode, hang_limit=30) as backend:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGFUSE_", "OTEL_"))}
        env.update(
            TEST_BUDGET=str(budget),
            LANGFUSE_PUBLIC_KEY=PUBLIC_KEY,
            LANGFUSE_SECRET_KEY=SECRET_KEY,
            LANGFUSE_BASE_URL=backend.base_url,
        )
        exited = seconds_to_exit_after_ready(_DOOR_SCRIPT, env, budget + EXIT_SLACK + 10)
        delivered = backend.spans_delivered, backend.scores_delivered
    assert exited < limit, f"exit took {exited:.2f}s"
    if mode is Mode.OK:
        assert delivered == (6, 3)  # the exit delivered what the script never flushed


_BOTH_SCRIPT = textwrap.dedent(
    """
    import os
    import otel_nonblocking
    from opentelemetry import trace
    from otel_nonblocking.integrations.langfuse import bounded_langfuse

    otel_nonblocking.configure_tracing(timeout=5, endpoint=os.environ["TEST_OTLP"])
    tracer = trace.get_tracer("app")
    langfuse = bounded_langfuse(timeout=5)
    for index in range(3):
        with tracer.start_as_current_span("app-work"):
            pass
        with langfuse.start_as_current_observation(name="work"):
            trace_id = langfuse.get_current_trace_id()
        langfuse.create_score(name="quality", value=1.0, trace_id=trace_id)
    print("ready", flush=True)
    """
)


def test_the_package_and_langfuse_share_one_exit_budget() -> None:
    # configure_tracing() and the Langfuse door each allow 5 s; the process's one exit
    # budget (OTEL_NONBLOCKING_EXIT_TIMEOUT) covers both, against hosts that never answer.
    budget = 1.0
    with (
        FakeLangfuse(Mode.HANG, hang_limit=30) as langfuse_host,
        FakeOTLPBackend(Mode.HANG, hang_limit=30) as collector,
    ):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGFUSE_", "OTEL_"))}
        env.update(
            OTEL_NONBLOCKING_EXIT_TIMEOUT=str(int(budget * 1000)),
            TEST_OTLP=collector.endpoint,
            LANGFUSE_PUBLIC_KEY=PUBLIC_KEY,
            LANGFUSE_SECRET_KEY=SECRET_KEY,
            LANGFUSE_BASE_URL=langfuse_host.base_url,
        )
        exited = seconds_to_exit_after_ready(_BOTH_SCRIPT, env, budget + EXIT_SLACK + 20)
        assert collector.request_count >= 1
        assert langfuse_host.request_count >= 1
    assert exited < budget + EXIT_SLACK, f"exit took {exited:.2f}s"


# -- missing keys ------------------------------------------------------------------------------


def test_bounded_langfuse_without_keys_warns_once_and_runs_with_tracing_off(
    fake, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        langfuse = bounded_langfuse(timeout=BUDGET, base_url=fake.base_url)
        request_handler(langfuse)  # spans and a score: no-ops, no error
        result = langfuse.flush()

    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.name for r in warnings] == ["otel_nonblocking"], [r.getMessage() for r in warnings]
    message = warnings[0].getMessage()
    assert "LANGFUSE_PUBLIC_KEY" in message
    assert "LANGFUSE_SECRET_KEY" in message
    assert "tracing is off" in message
    assert result.ok
    assert fake.requests == []


def test_bounded_langfuse_without_keys_raises_when_asked(fake) -> None:
    with pytest.raises(ConfigurationError, match="LANGFUSE_PUBLIC_KEY"):
        bounded_langfuse(timeout=BUDGET, missing_keys="raise", base_url=fake.base_url)


def test_langfuse_span_exporter_without_keys_is_disabled_by_default(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="otel_nonblocking"):
        exporter = langfuse_span_exporter(timeout=BUDGET)
    assert isinstance(exporter, DisabledSpanExporter)
    assert "LANGFUSE_PUBLIC_KEY" in caplog.text
    with pytest.raises(ConfigurationError, match="LANGFUSE_SECRET_KEY"):
        langfuse_span_exporter(timeout=BUDGET, public_key=PUBLIC_KEY, missing_keys="raise")
