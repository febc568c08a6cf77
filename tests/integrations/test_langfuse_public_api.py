"""The Langfuse door's public API says what is public (the checks of test_exported_members).

Here rather than there: the module needs the ``langfuse`` extra, so these run in the main
environment and on every release of the Langfuse matrix.
"""

from __future__ import annotations

from tests import test_exported_members as members

MODULE = "otel_nonblocking.integrations.langfuse"


def test_all_equals_the_public_namespace() -> None:
    members.test_all_equals_the_public_namespace(MODULE)


def test_exported_classes_and_functions_report_the_public_module() -> None:
    members.test_exported_classes_and_functions_report_the_public_module(MODULE)


def test_type_hints_of_exported_classes_still_resolve() -> None:
    members.test_type_hints_of_exported_classes_still_resolve(MODULE)


def test_langfuse_headers_still_imports_with_a_deprecation_warning() -> None:
    members.test_a_name_no_longer_exported_still_imports_with_a_deprecation_warning(
        MODULE, "langfuse_headers", "otel_nonblocking.integrations._langfuse_exporter"
    )
