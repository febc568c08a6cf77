"""Langfuse, safe to flush on the request path: bounded flush, shutdown and exit hook.

The door is :func:`bounded_langfuse` (``langfuse = bounded_langfuse(timeout=2)``); the
parts it is made of (:func:`bound_langfuse_flush`, :func:`langfuse_span_exporter`)
stay available on their own.

Needs the Langfuse Python SDK (``pip install 'otel-nonblocking[langfuse]'``), which this
module imports when it is imported. See ``docs/langfuse.md``.
"""

from __future__ import annotations

try:
    import langfuse as _langfuse  # noqa: F401 - fail early, with a message naming the extra
except ImportError as error:
    raise ImportError(
        "otel_nonblocking.integrations.langfuse needs the Langfuse Python SDK: "
        "pip install 'otel-nonblocking[langfuse]'"
    ) from error

from ._langfuse_door import bounded_langfuse
from ._langfuse_exporter import DisabledSpanExporter, langfuse_headers, langfuse_span_exporter
from ._langfuse_flush import (
    LangfuseBinding,
    LangfuseClientStatus,
    LangfuseFlushResult,
    bound_langfuse_flush,
    current_binding,
    unbind_langfuse_flush,
)

__all__ = [
    "DisabledSpanExporter",
    "LangfuseBinding",
    "LangfuseClientStatus",
    "LangfuseFlushResult",
    "bound_langfuse_flush",
    "bounded_langfuse",
    "current_binding",
    "langfuse_headers",
    "langfuse_span_exporter",
    "unbind_langfuse_flush",
]
