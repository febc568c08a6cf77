"""A request handler traced with Langfuse whose ``flush()`` never holds the request up.

``Langfuse(span_exporter=langfuse_span_exporter(timeout=2))`` (Langfuse 4.2.0 and later)
gives every span export a real 2 s deadline; ``bound_langfuse_flush(timeout=2)`` makes
``langfuse.flush()`` return within 2 s too, with what it left behind. Keys and host come
from ``LANGFUSE_PUBLIC_KEY``, ``LANGFUSE_SECRET_KEY`` and ``LANGFUSE_BASE_URL``:

    pip install 'otel-nonblocking[langfuse]'
    python examples/langfuse_app.py "why is the sky blue?"

See docs/langfuse.md for releases without ``span_exporter=`` and the other options.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from langfuse import Langfuse

from otel_nonblocking.integrations.langfuse import bound_langfuse_flush, langfuse_span_exporter

logger = logging.getLogger("examples.langfuse_app")

langfuse = Langfuse(span_exporter=langfuse_span_exporter(timeout=2))
bound_langfuse_flush(timeout=2)


def answer(question: str) -> str:
    """One request: a span, a generation inside it, then a bounded flush."""
    with langfuse.start_as_current_observation(
        name="answer", input={"question": question}
    ) as request:
        with langfuse.start_as_current_observation(
            name="llm-call", as_type="generation", model="example-model"
        ) as generation:
            reply = f"You asked: {question}"  # stands in for the model call
            generation.update(output=reply)
        request.update(output=reply)
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
