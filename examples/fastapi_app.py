"""A FastAPI app traced by ``opentelemetry-instrument`` through otel-nonblocking.

No tracing code beyond the spans the app chooses to add: run it as

    pip install 'otel-nonblocking' fastapi uvicorn opentelemetry-instrumentation-fastapi
    OTEL_SERVICE_NAME=shop \\
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://127.0.0.1:4318/v1/traces \\
        opentelemetry-instrument python examples/fastapi_app.py

``opentelemetry-instrument`` finds the package's distro and configurator, so the server
spans of FastAPI's instrumentation and the spans below all go through
``NonBlockingSpanProcessor``: a request never waits for the collector, however slow or
dead it is. On SIGTERM uvicorn shuts the app down, then ends the process with the same
signal, so exit hooks never run: the lifespan below flushes first, within 2 s.
``HOST`` and ``PORT`` pick the address (default 127.0.0.1:8000).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

import uvicorn
from fastapi import FastAPI
from opentelemetry import trace

import otel_nonblocking


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    # Deliver what is queued before the server process goes; the event loop stays free.
    await otel_nonblocking.aflush(timeout=2.0)


app = FastAPI(lifespan=lifespan)
tracer = trace.get_tracer("examples.fastapi_app")


@app.get("/healthz")
async def healthz() -> dict[str, bool]:
    return {"ok": True}


@app.get("/orders/{order_id}")
async def get_order(order_id: int) -> dict[str, float | int]:
    # A child of the server span that FastAPI's instrumentation started for this request.
    with tracer.start_as_current_span("load-order") as span:
        span.set_attribute("order.id", order_id)
        total = await price(order_id)
    return {"order": order_id, "total": total}


async def price(order_id: int) -> float:
    with tracer.start_as_current_span("price-order"):
        await asyncio.sleep(0.001)  # stands in for a call to a pricing service
        return order_id * 1.5


if __name__ == "__main__":
    uvicorn.run(
        app,
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8000")),
        log_level="warning",
    )
