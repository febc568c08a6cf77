"""Langfuse internals behind one door: the probe finds each on the installed release (run by
the Langfuse matrix on every supported release), or the release lacking it is named."""

from __future__ import annotations

import pytest

pytest.importorskip("langfuse", reason="the Langfuse integration needs otel-nonblocking[langfuse]")

from otel_nonblocking.integrations import _compat_langfuse as sdk
from otel_nonblocking.testing import FakeLangfuse


def test_every_langfuse_internal_is_found_on_the_installed_release(fake: FakeLangfuse) -> None:
    results = sdk.probe(fake.base_url)
    missing = [r.name for r in results if r.required and r.found is None]
    assert not missing, (
        f"Langfuse {sdk.sdk_version()} moved what otel_nonblocking reads: {missing}; "
        "teach otel_nonblocking/integrations/_compat_langfuse.py the new place"
    )
    absent = {r.name: r.lacking for r in results if r.found is None}
    assert set(absent) <= set(sdk.SINCE), absent  # only what older releases are known to lack
    assert all(lacking.startswith("Langfuse before 4.") for lacking in absent.values()), absent
    assert {r.name for r in results} >= {"score queue", "exporter slot", "client resources"}


def test_newer_internals_are_required_from_the_release_that_brought_them(
    fake: FakeLangfuse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sdk, "sdk_version", lambda: "99.0.0")
    monkeypatch.setattr(sdk, "media_shutdown_signal", lambda rm: None)
    results = {r.name: r for r in sdk.probe(fake.base_url)}
    moved = results["media manager signal_shutdown"]
    assert moved.required  # from its release on, a release that moved it fails the probe
    assert moved.found is None


def test_release_numbers_compare_as_numbers() -> None:
    assert sdk._release("4.18.0") > sdk._release("4.2.0")
    assert sdk._release("5.0.0b1") == (5, 0, 0)
    assert sdk._release("unknown") == ()
