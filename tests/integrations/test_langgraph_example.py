"""examples/langgraph_app.py: Langfuse's LangChain callback handler over a LangGraph graph.

The graph has two nodes, each calling a fake chat model (no network). Run as a
subprocess, as shipped: on a healthy fake Langfuse every run's spans arrive nested
(graph -> node -> model call); against a hanging one the graph runs as fast as with a
healthy one, and each invocation, flush included, ends within the flush budget.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from otel_nonblocking.testing import FakeLangfuse, Mode
from tests.integrations.conftest import PUBLIC_KEY, SECRET_KEY

pytest.importorskip("langfuse", reason="the Langfuse integration needs otel-nonblocking[langfuse]")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "langgraph_app.py"
BUDGET = 2.0  # the example's flush_after timeout, in seconds
SLACK = 0.5
GRAPH_SECONDS = 1.0  # generous: the graph itself takes milliseconds


def test_every_supported_langfuse_release_ships_the_langchain_handler() -> None:
    # langfuse.langchain exists from 3.x on; were a supported release to lack it, this
    # says so instead of the tests below being skipped.
    assert importlib.util.find_spec("langfuse.langchain") is not None
    assert importlib.util.find_spec("langgraph") is not None, "pip install -e '.[test]'"


def _run(fake: FakeLangfuse, tmp_path: Path, *questions: str) -> list[dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGFUSE_", "OTEL_"))}
    env.update(
        LANGFUSE_PUBLIC_KEY=PUBLIC_KEY,
        LANGFUSE_SECRET_KEY=SECRET_KEY,
        LANGFUSE_BASE_URL=fake.base_url,
    )
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), *questions],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return [
        json.loads(line.removeprefix("ANSWER "))
        for line in proc.stdout.splitlines()
        if line.startswith("ANSWER ")
    ]


def test_langgraph_runs_arrive_as_nested_spans(tmp_path: Path) -> None:
    with FakeLangfuse(Mode.OK) as fake:
        answers = _run(fake, tmp_path, "plan a trip", "plan another")
        spans = [s for r in fake.requests_to(FakeLangfuse.OTLP_PATH) if r.accepted for s in r.spans]

    assert [a["reply"] for a in answers] == ["Have a good trip.", "Have a good trip."]
    by_id = {span.span_id: span for span in spans}
    roots = [s for s in spans if not s.parent_span_id]
    assert sorted(r.name for r in roots) == ["trip-agent", "trip-agent"]
    for root in roots:
        nodes = [s for s in spans if s.parent_span_id == root.span_id]
        assert sorted(n.name for n in nodes) == ["answer", "plan"]
        for node in nodes:
            (call,) = [s for s in spans if s.parent_span_id == node.span_id]
            assert call.name == "FakeListChatModel"
            assert call.trace_id == root.trace_id
    assert all(s.parent_span_id in by_id for s in spans if s.parent_span_id)
    assert len(spans) == 2 * 5  # per run: graph, 2 nodes, 2 model calls


def test_langgraph_latency_is_unaffected_and_the_flush_bounded_while_langfuse_hangs(
    tmp_path: Path,
) -> None:
    with FakeLangfuse(Mode.HANG, hang_limit=30) as fake:
        answers = _run(fake, tmp_path, "one", "two", "three")
        assert fake.requests_to(FakeLangfuse.OTLP_PATH)  # the exports reached the hang

    assert len(answers) == 3
    for answer in answers:
        assert answer["graph_seconds"] < GRAPH_SECONDS, answer
        assert answer["seconds"] < BUDGET + SLACK, answer
