"""examples/langfuse_app.py runs as shipped against a fake Langfuse: delivered, or bounded.

Run as a subprocess with keys and host from the ``LANGFUSE_*`` variables, as the example
tells its readers to, on every supported release (``bounded_langfuse()`` needs no
``span_exporter=``). Without keys it must still run, with one warning and tracing off.
"""

from __future__ import annotations

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

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "langfuse_app.py"
BUDGET = 2.0  # the example's flush timeout, in seconds
SLACK = 0.5


def _run(
    fake: FakeLangfuse, tmp_path: Path, *questions: str, keys: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGFUSE_", "OTEL_"))}
    env.update(LANGFUSE_BASE_URL=fake.base_url)
    if keys:
        env.update(LANGFUSE_PUBLIC_KEY=PUBLIC_KEY, LANGFUSE_SECRET_KEY=SECRET_KEY)
    return subprocess.run(
        [sys.executable, str(EXAMPLE), *questions],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=40,
        check=False,
    )


def _answers(proc: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return [
        json.loads(line.removeprefix("ANSWER "))
        for line in proc.stdout.splitlines()
        if line.startswith("ANSWER ")
    ]


def test_langfuse_example_delivers_each_requests_spans_and_score_before_answering(
    tmp_path: Path,
) -> None:
    with FakeLangfuse(Mode.OK) as fake:
        answers = _answers(_run(fake, tmp_path, "first?", "second?"))
        names = fake.span_names()
        scores = fake.score_names(accepted=True)

    assert [a["reply"] for a in answers] == ["You asked: first?", "You asked: second?"]
    assert sorted(names) == ["answer", "answer", "llm-call", "llm-call"]
    assert scores == ["helpful", "helpful"]


def test_langfuse_example_answers_within_its_flush_budget_while_langfuse_hangs(
    tmp_path: Path,
) -> None:
    with FakeLangfuse(Mode.HANG, hang_limit=30) as fake:
        answers = _answers(_run(fake, tmp_path, "one?", "two?", "three?"))
        assert fake.span_names()  # the exports did reach the hanging backend

    assert len(answers) == 3
    for answer in answers:
        assert answer["seconds"] < BUDGET + SLACK, answer


def test_langfuse_example_without_keys_runs_with_one_warning_and_tracing_off(
    tmp_path: Path,
) -> None:
    with FakeLangfuse(Mode.OK) as fake:
        proc = _run(fake, tmp_path, "anyone?", keys=False)
        assert fake.requests == []

    assert [a["reply"] for a in _answers(proc)] == ["You asked: anyone?"]
    warning = proc.stderr.strip().splitlines()
    assert len(warning) == 1, warning
    assert "LANGFUSE_PUBLIC_KEY" in warning[0]
    assert "tracing is off" in warning[0]
