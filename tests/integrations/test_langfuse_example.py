"""examples/langfuse_app.py runs as shipped against a fake Langfuse: delivered, or bounded.

Run as a subprocess with keys and host from the ``LANGFUSE_*`` variables, as the example
tells its readers to. Releases before 4.2.0 have no ``span_exporter=``: there the example
stops at once with a TypeError naming it (docs/langfuse.md gives those releases a way in).
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from otel_nonblocking.testing import FakeLangfuse, Mode
from tests.integrations.conftest import PUBLIC_KEY, SECRET_KEY

Langfuse = pytest.importorskip(
    "langfuse", reason="the Langfuse integration needs otel-nonblocking[langfuse]"
).Langfuse

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "langfuse_app.py"
TAKES_SPAN_EXPORTER = "span_exporter" in inspect.signature(Langfuse.__init__).parameters
BUDGET = 2.0  # the example's flush timeout, in seconds
SLACK = 0.5


def _run(fake: FakeLangfuse, tmp_path: Path, *questions: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGFUSE_", "OTEL_"))}
    env.update(
        LANGFUSE_PUBLIC_KEY=PUBLIC_KEY,
        LANGFUSE_SECRET_KEY=SECRET_KEY,
        LANGFUSE_BASE_URL=fake.base_url,
    )
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
    return [
        json.loads(line.removeprefix("ANSWER "))
        for line in proc.stdout.splitlines()
        if line.startswith("ANSWER ")
    ]


@pytest.mark.skipif(not TAKES_SPAN_EXPORTER, reason="span_exporter= is new in Langfuse 4.2.0")
def test_langfuse_example_delivers_each_requests_spans_before_answering(tmp_path: Path) -> None:
    with FakeLangfuse(Mode.OK) as fake:
        answers = _answers(_run(fake, tmp_path, "first?", "second?"))
        names = fake.span_names()

    assert [a["reply"] for a in answers] == ["You asked: first?", "You asked: second?"]
    assert sorted(names) == ["answer", "answer", "llm-call", "llm-call"]


@pytest.mark.skipif(not TAKES_SPAN_EXPORTER, reason="span_exporter= is new in Langfuse 4.2.0")
def test_langfuse_example_answers_within_its_flush_budget_while_langfuse_hangs(
    tmp_path: Path,
) -> None:
    with FakeLangfuse(Mode.HANG, hang_limit=30) as fake:
        answers = _answers(_run(fake, tmp_path, "one?", "two?", "three?"))
        assert fake.span_names()  # the exports did reach the hanging backend

    assert len(answers) == 3
    for answer in answers:
        assert answer["seconds"] < BUDGET + SLACK, answer


def test_langfuse_example_runs_where_span_exporter_exists_and_names_it_elsewhere(
    tmp_path: Path,
) -> None:
    with FakeLangfuse(Mode.OK) as fake:
        proc = _run(fake, tmp_path)

    if TAKES_SPAN_EXPORTER:
        assert proc.returncode == 0, proc.stderr[-3000:]
    else:
        assert proc.returncode != 0
        assert "span_exporter" in proc.stderr
