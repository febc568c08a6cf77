"""A LangGraph agent traced with Langfuse's LangChain callback handler, flushed within 2 s.

``bounded_langfuse(timeout=2)`` builds the Langfuse client; Langfuse's
``langfuse.langchain.CallbackHandler`` traces each graph run (the graph, each node, each
model call, nested); ``@flush_after`` flushes Langfuse when the handler returns, within
2 s or the Lambda time left, whatever the Langfuse backend does. The chat model is a
fake (``langchain_core``'s ``FakeListChatModel``), so the example needs no model API.
Keys and host come from ``LANGFUSE_PUBLIC_KEY``, ``LANGFUSE_SECRET_KEY`` and
``LANGFUSE_BASE_URL``:

    pip install 'otel-nonblocking[langfuse]' langchain-core langgraph
    python examples/langgraph_app.py "plan a trip"
"""

from __future__ import annotations

import json
import operator
import sys
import time
from typing import Annotated, Any, TypedDict

from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import AnyMessage, HumanMessage
from langfuse.langchain import CallbackHandler
from langgraph.graph import END, START, StateGraph

import otel_nonblocking
from otel_nonblocking.integrations.langfuse import bounded_langfuse

langfuse = bounded_langfuse(timeout=2)
# ls_model_name: the model name Langfuse records for each call (a real model reports its own).
model = FakeListChatModel(
    responses=["1. pack 2. go", "Have a good trip."], metadata={"ls_model_name": "fake-model"}
)


class State(TypedDict):
    messages: Annotated[list[AnyMessage], operator.add]


def plan(state: State) -> dict[str, Any]:
    return {"messages": [model.invoke(state["messages"])]}


def answer(state: State) -> dict[str, Any]:
    return {"messages": [model.invoke(state["messages"])]}


builder = StateGraph(State)
builder.add_node("plan", plan)
builder.add_node("answer", answer)
builder.add_edge(START, "plan")
builder.add_edge("plan", "answer")
builder.add_edge("answer", END)
graph = builder.compile()


@otel_nonblocking.flush_after(timeout=2.0)
def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """One invocation: run the graph with Langfuse's callback handler; flushed on return."""
    started = time.monotonic()
    state = graph.invoke(
        {"messages": [HumanMessage(event["question"])]},
        config={"callbacks": [CallbackHandler()], "run_name": "trip-agent"},
    )
    return {"reply": state["messages"][-1].content, "graph_seconds": time.monotonic() - started}


def main(questions: list[str]) -> None:
    for question in questions or ["plan a trip"]:
        started = time.monotonic()
        result = handler({"question": question})
        result["seconds"] = time.monotonic() - started  # graph and flush
        print("ANSWER " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
