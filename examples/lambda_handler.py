"""An AWS Lambda handler that delivers its spans before each invocation returns.

Lambda freezes the process as soon as the handler returns, so spans still queued then
leave (if ever) at the next invocation, and the exit hook may never run. ``flush_after``
flushes when the handler returns, within ``min(timeout, time left - margin)``: the flush
can never be what makes the invocation time out, even with the collector down.

Deploy with the package in the bundle (or a layer) and set
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``; the handler is ``lambda_handler.handler``.
Run locally (a fake context, ``INVOCATIONS`` calls, ``TIME_LEFT_MS`` per call):

    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://127.0.0.1:4318/v1/traces \\
        python examples/lambda_handler.py
"""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any

from opentelemetry import trace

import otel_nonblocking

# Once per cold start: the export deadline is 1 s, so no export outlives an invocation.
otel_nonblocking.configure_tracing(timeout=1.0, service_name="orders-lambda")
tracer = trace.get_tracer("examples.lambda_handler")

# Flush for up to 1 s when the handler returns; .result tells what the last flush did.
flush_on_return = otel_nonblocking.flush_after(timeout=1.0)


@flush_on_return
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    with tracer.start_as_current_span("handle-order") as span:
        span.set_attribute("faas.invocation_id", context.aws_request_id)
        with tracer.start_as_current_span("validate-order"):
            valid = "order_id" in event
    return {"statusCode": 200 if valid else 400, "body": json.dumps({"valid": valid})}


class LocalContext:
    """The part of a Lambda context the handler and ``flush_after`` use."""

    def __init__(self, time_left_ms: int) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self._deadline = time.monotonic() + time_left_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def main() -> None:
    invocations = int(os.environ.get("INVOCATIONS", "3"))
    time_left_ms = int(os.environ.get("TIME_LEFT_MS", "3000"))
    for number in range(invocations):
        started = time.monotonic()
        response = handler({"order_id": number}, LocalContext(time_left_ms))
        seconds = time.monotonic() - started
        flushed = flush_on_return.result
        assert flushed is not None
        report = {
            "invocation": number,
            "status": response["statusCode"],
            "seconds": round(seconds, 3),
            "exported": flushed.exported,
            "pending": flushed.pending,
            "ok": flushed.ok,
        }
        print("INVOCATION " + json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
