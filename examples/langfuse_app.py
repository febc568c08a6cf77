"""A request handler traced with Langfuse whose ``flush()`` never holds the request up.

``bounded_langfuse(timeout=2)`` returns a ``Langfuse`` client (every release from 4.0.6)
whose span exports, ``flush()``, ``shutdown()`` and exit hook each return within 2 s,
whatever the Langfuse backend does; ``flush()`` says what it left behind. Keys and host
come from ``LANGFUSE_PUBLIC_KEY``, ``LANGFUSE_SECRET_KEY`` and ``LANGFUSE_BASE_URL``;
without keys it warns once and runs with tracing off:

    pip install 'otel-nonblocking[langfuse]'
    python examples/langfuse_app.py "why is the sky blue?"

See docs/langfuse.md for the parts it is made of and the other options.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from otel_nonblocking.integrations.langfuse import bounded_langfuse

logger = logging.getLogger("examples.langfuse_app")

langfuse = bounded_langfuse(timeout=2)


def answer(question: str) -> str:
    """One request: a span, a generation inside it, a score, then a bounded flush."""
    with langfuse.start_as_current_observation(
        name="answer", input={"question": question}
    ) as request:
        with langfuse.start_as_current_observation(
            name="llm-call", as_type="generation", model="example-model"
        ) as generation:
            reply = f"You asked: {question}"  # stands in for the model call
            generation.update(output=reply)
        request.update(output=reply)
        trace_id = langfuse.get_current_trace_id()
    langfuse.create_score(name="helpful", value=1.0, trace_id=trace_id)  # scores are bounded too
    result = langfuse.flush()  # within 2 s, whatever the Langfuse backend does
    if not result.ok:
        logger.warning("Langfuse flush left %d items pending", result.pending)
    return reply


def main(questions: list[str]) -> None:
    for question in questions or ["why is the sky blue?"]:
        started = time.monotonic()
        reply = answer(question)
        seconds = time.monotonic() - started
        print("ANSWER " + json.dumps({"reply": reply, "seconds": round(seconds, 3)}), flush=True)
    langfuse.shutdown()  # bounded too


if __name__ == "__main__":
    main(sys.argv[1:])
