"""The incident, as tests: request handlers and whole processes against a Langfuse that hangs.

A Lambda handler created a few observations and a score, then called ``langfuse.flush()``;
with Langfuse unreachable every request ran into the 60 s Lambda timeout. Bound, each
request must end within the flush budget, and a process must exit within its exit budget.
"""

from __future__ import annotations

import os
import textwrap
import time

import pytest

pytest.importorskip("langfuse", reason="the Langfuse integration needs otel-nonblocking[langfuse]")

from otel_nonblocking.integrations.langfuse import bound_langfuse_flush
from otel_nonblocking.testing import FakeLangfuse, Mode
from tests.integrations.conftest import (
    PUBLIC_KEY,
    SECRET_KEY,
    request_handler,
    seconds_to_exit_after_ready,
)

FLUSH_BUDGET = 0.3  # seconds, the budget each request's flush gets
SLACK = 0.5  # the generous margin timing bounds allow on a shared machine
REQUESTS = 20
EXIT_BUDGET = 0.5
EXIT_SLACK = 1.5  # interpreter teardown after the exit hooks (1.61 s seen once under load)


@pytest.mark.parametrize("processor", ["langfuse", "nonblocking"])
def test_every_request_ends_within_the_flush_budget_against_a_hanging_backend(
    processor, fake, make_client
) -> None:
    fake.mode = Mode.HANG
    bound_langfuse_flush(timeout=FLUSH_BUDGET, processor=processor)
    client = make_client()

    def handle(index: int) -> float:
        started = time.monotonic()
        request_handler(client, f"request-{index}")
        client.flush()
        return time.monotonic() - started

    durations = [handle(index) for index in range(REQUESTS)]
    worst = max(durations)
    assert worst < FLUSH_BUDGET + SLACK, (
        f"slowest of {REQUESTS} requests took {worst:.2f}s: "
        + ", ".join(f"{d:.2f}" for d in durations)
    )


_SCRIPT = textwrap.dedent(
    """
    import os, sys
    from otel_nonblocking.integrations.langfuse import bound_langfuse_flush
    from langfuse import Langfuse

    bound_langfuse_flush(
        timeout=float(os.environ["TEST_BUDGET"]), processor=os.environ["TEST_PROCESSOR"]
    )
    client = Langfuse(
        public_key=os.environ["TEST_PK"], secret_key=os.environ["TEST_SK"],
        base_url=os.environ["TEST_BASE_URL"],
    )
    for index in range(3):
        with client.start_as_current_observation(name="work"):
            trace_id = client.get_current_trace_id()
            with client.start_as_current_observation(name="step"):
                pass
        client.create_score(name="quality", value=1.0, trace_id=trace_id)
    if os.environ["TEST_END"] == "shutdown":
        client.shutdown()
    elif os.environ["TEST_END"] == "flush":
        client.flush()
    print("ready", flush=True)
    """
)


@pytest.mark.parametrize(
    ("processor", "end"),
    [
        ("langfuse", "exit"),
        ("nonblocking", "exit"),
        ("langfuse", "flush"),
        ("langfuse", "shutdown"),
    ],
)
def test_a_process_using_langfuse_exits_within_its_budget(processor, end) -> None:
    with FakeLangfuse(Mode.HANG, hang_limit=30) as hanging:
        env = {
            **os.environ,
            "TEST_BUDGET": str(EXIT_BUDGET),
            "TEST_PROCESSOR": processor,
            "TEST_END": end,
            "TEST_PK": PUBLIC_KEY,
            "TEST_SK": SECRET_KEY,
            "TEST_BASE_URL": hanging.base_url,
        }
        exited = seconds_to_exit_after_ready(_SCRIPT, env, EXIT_BUDGET + EXIT_SLACK + 5)
    assert exited < EXIT_BUDGET + EXIT_SLACK, f"{processor}/{end}: exit took {exited:.2f}s"
