"""Integrations of otel_nonblocking with other tracing SDKs, each behind its own extra.

Importing this package imports nothing else; import a submodule, e.g.
``otel_nonblocking.integrations.langfuse`` (needs ``otel-nonblocking[langfuse]``).
"""
