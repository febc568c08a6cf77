"""Langfuse rows of the flush benchmark: ``Langfuse.flush()``/``shutdown()``, stock vs bound.

A loopback fake of the Langfuse API shows one fault on every endpoint (OTLP traces, scores,
ingestion, media); stock Langfuse and ``bound_langfuse_flush(timeout=2)`` take turns, per fault.
"""

from __future__ import annotations

import atexit
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict
from importlib.metadata import version
from typing import Any

from opentelemetry.sdk.trace import TracerProvider

from benchmarks._common import (
    Call,
    CountingHandler,
    capped_call,
    machine,
    markdown_table,
    quiet_logs,
)
from benchmarks.bench_flush import TARGET_SECONDS, describe, describe_row, ours_within_target
from otel_nonblocking.integrations import _compat_langfuse as sdk
from otel_nonblocking.integrations.langfuse import (
    LangfuseFlushResult,
    bound_langfuse_flush,
    current_binding,
)
from otel_nonblocking.testing import FakeLangfuse, FakeTLSStallListener, refused_endpoint

TIMEOUT = 2  # seconds: Langfuse(timeout=2) for stock, bound_langfuse_flush(timeout=2) for ours
SECRET_KEY = "sk-lf-bench"  # noqa: S105 - a made-up key for a loopback fake
OBSERVATIONS = 3  # per request: a root observation and two children, then one score
_LOGGERS = ("langfuse", "httpx", "httpcore", "backoff")


class _Target:
    """A Langfuse base URL showing one fault, and what to stop afterwards."""

    def __init__(self, fault: str, *, drip_interval: float, delay: float, stall_host: str) -> None:
        self.api: FakeLangfuse | None = None
        self.listener: FakeTLSStallListener | None = None
        if fault == "refused":
            self.base_url = refused_endpoint("/").rstrip("/")
        elif fault == "tls":
            self.listener = FakeTLSStallListener().start()
            self.base_url = self.listener.base_url
        else:
            mode = "ok" if fault == "dns" else fault
            self.api = FakeLangfuse(
                mode, drip_interval=drip_interval, delay=delay, hang_limit=120.0
            ).start()
            self.base_url = self.api.base_url
            if fault == "dns":
                self.base_url = f"http://{stall_host}:{self.api.port}"

    def delivered(self) -> tuple[int, int] | None:
        """(spans, scores) the fake answered with success, or None without a fake."""
        if self.api is None:
            return None
        return self.api.spans_delivered, self.api.scores_delivered

    def stop(self) -> None:
        if self.api is not None:
            self.api.stop()
        if self.listener is not None:
            self.listener.stop()


def _handle_request(client: Any, index: int) -> None:
    """What a request handler does: nested observations, then one score on the trace."""
    with client.start_as_current_observation(name=f"request-{index}"):
        trace_id = client.get_current_trace_id()
        for step in range(OBSERVATIONS - 1):
            with client.start_as_current_observation(name=f"request-{index}-step-{step}"):
                pass
    client.create_score(name="quality", value=1.0, trace_id=trace_id)


def _summary(result: object) -> dict[str, Any] | None:
    """What a flush/shutdown returned, as JSON (stock returns None)."""
    if isinstance(result, LangfuseFlushResult):
        return {**asdict(result), "seconds": round(result.seconds, 4)}
    return None


def _forget(client: Any, public_key: str) -> None:
    """Keep a measured client out of later runs and out of the interpreter's exit hooks."""
    rm = getattr(client, "_resources", None)
    if rm is not None:
        atexit.unregister(rm.shutdown)
        prompt_tasks = sdk.prompt_cache_tasks(rm)
        if prompt_tasks is not None:
            atexit.unregister(prompt_tasks.shutdown)
    sdk.RESOURCE_MANAGER._instances.pop(public_key, None)


def _measure(
    fault: str, pipeline: str, *, requests: int, cap: float, target_options: dict[str, Any]
) -> dict[str, Any]:
    from langfuse import Langfuse

    target = _Target(fault, **target_options)
    public_key = f"pk-lf-bench-{uuid.uuid4().hex[:12]}"  # a fresh project: no shared state
    binding = bound_langfuse_flush(timeout=TIMEOUT) if pipeline == "ours" else None
    client: Any = None
    try:
        client = Langfuse(
            public_key=public_key,
            secret_key=SECRET_KEY,
            base_url=target.base_url,
            timeout=TIMEOUT,
            # Its own provider: the stock flush flushes every processor on its provider,
            # and an abandoned stock flush holds its processor's export lock.
            tracer_provider=TracerProvider(shutdown_on_exit=False),
        )
        for index in range(requests):
            _handle_request(client, index)
        flush: Call[dict[str, Any] | None] = capped_call(
            lambda: _summary(client.flush()), cap, name="langfuse-flush"
        )
        # A stock flush still running at the cap is abandoned on its daemon thread; the
        # shutdown below runs while it is still there, as it would in the application.
        shutdown: Call[dict[str, Any] | None] = capped_call(
            lambda: _summary(client.shutdown()), cap, name="langfuse-shutdown"
        )
        delivered = target.delivered()
    finally:
        if binding is not None:
            binding.unbind(timeout=0.1)
        if client is not None:
            _forget(client, public_key)
        target.stop()
    spans, scores = delivered if delivered is not None else (None, None)
    return {
        "fault": fault,
        "pipeline": pipeline,
        "requests": requests,
        "spans": requests * OBSERVATIONS,
        "scores": requests,
        "flush": flush.as_json(),
        "shutdown": shutdown.as_json(),
        "delivered_spans": spans,
        "delivered_scores": scores,
    }


def quiet_langfuse_logs(handler: CountingHandler) -> None:
    """Route Langfuse's and httpx's logs (export failures, expected here) to ``handler``."""
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.propagate = False


def run(
    *,
    faults: Sequence[tuple[str, str]],
    cap: float,
    requests: int,
    target_options: dict[str, Any],
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Measure stock and bound Langfuse against every fault; returns the results.

    Call inside ``bench_flush.stalling_dns()`` when the faults include ``dns``.
    """
    say = progress or (lambda _text: None)
    logs = quiet_logs()
    quiet_langfuse_logs(logs)
    if current_binding() is not None:
        raise RuntimeError("unbind Langfuse first: the stock rows need the stock SDK")
    rows = []
    began = time.perf_counter()
    for number, (fault, _) in enumerate(faults, start=1):
        for pipeline in ("ours", "stock"):
            say(f"[{number}/{len(faults)}] langfuse {fault:<11} {pipeline:<5} ...")
            row = _measure(
                fault, pipeline, requests=requests, cap=cap, target_options=target_options
            )
            rows.append(row)
            say(describe_row(row, cap))
    met = ours_within_target(rows)
    return {
        "benchmark": "flush-langfuse",
        "machine": machine(),
        "langfuse": version("langfuse"),
        "requests": requests,
        "observations_per_request": OBSERVATIONS,
        "cap_seconds": cap,
        "timeout_seconds": TIMEOUT,
        "faults": dict(faults),
        "rows": rows,
        "targets": {"ours_within_2_1_s_in_every_row": met},
        "wall_seconds": round(time.perf_counter() - began, 1),
        "log_records_hidden": logs.count,
    }


def _delivered(row: dict[str, Any]) -> str:
    if row["delivered_spans"] is None:
        return "-"  # no fake to count at (refused, TLS stall): nothing arrives
    return f"{row['delivered_spans']} + {row['delivered_scores']}"


def _left(call: dict[str, Any]) -> str:
    result = call.get("result")
    if not call["finished"] or not isinstance(result, dict):
        return "-"
    if not result["timed_out"] and not result["spans_pending"] and not result["scores_pending"]:
        return "nothing pending"
    pending = f"{result['spans_pending']} spans, {result['scores_pending']} scores pending"
    return pending + (", timed out" if result["timed_out"] else "")


def to_markdown(result: dict[str, Any], command: str | None = None) -> str:
    """The Langfuse flush-deadline table as markdown."""
    cap = result["cap_seconds"]
    by_key = {(row["fault"], row["pipeline"]): row for row in result["rows"]}
    table_rows = []
    for fault, description in result["faults"].items():
        if (fault, "ours") not in by_key:
            continue
        ours, stock = by_key[fault, "ours"], by_key[fault, "stock"]
        table_rows.append(
            [
                f"{fault} ({description.replace('collector', 'Langfuse API')})",
                describe(stock["flush"], cap),
                describe(ours["flush"], cap),
                describe(stock["shutdown"], cap),
                describe(ours["shutdown"], cap),
                f"{_delivered(stock)} / {_delivered(ours)}",
                _left(ours["flush"]),
            ]
        )
    table = markdown_table(
        [
            "fault (every endpoint)",
            "stock flush()",
            "ours flush()",
            "stock shutdown()",
            "ours shutdown()",
            "delivered spans + scores, stock / ours",
            "ours: what flush() returned",
        ],
        table_rows,
    )
    info = result["machine"]
    versions = ", ".join(f"{name} {value}" for name, value in info["versions"].items())
    met = result["targets"]["ours_within_2_1_s_in_every_row"]
    lines = ["# Flush deadlines: Langfuse", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += [
        f"Machine: {info['nproc']} CPUs ({info['cpu_model']}), {info['platform']}; {versions}; "
        f"langfuse {result['langfuse']}",
        "",
        f"Per row: a fresh Langfuse client (own public key, own TracerProvider, own fake "
        f"backend), {result['requests']} requests of {result['observations_per_request']} "
        f"observations and one score each, then `flush()`, then `shutdown()`. Stock: "
        f"`Langfuse(..., timeout={result['timeout_seconds']})`; ours: the same client with "
        f"`bound_langfuse_flush(timeout={result['timeout_seconds']})` applied, unbound "
        f"after the row. Stock calls capped at {cap:g} s ('> {cap:g} s' = still running when "
        "the watchdog gave up; the stock shutdown() then runs beside that abandoned flush). "
        "One measurement per cell; stock score retries back off with random jitter, so stock "
        "times vary between runs. Delivered: distinct spans and scores the fake answered with "
        "success by the end of shutdown() ('-': no server, nothing can arrive). 'nothing "
        "pending' with nothing delivered: every attempt failed fast and was given up.",
        "",
        table,
        "",
        f"Target: ours within {TARGET_SECONDS} s in every row: **{'met' if met else 'NOT met'}**.",
        "",
    ]
    return "\n".join(lines)
