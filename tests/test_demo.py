"""The ``otel-nonblocking`` command: the demo ends in time and shows our flush bounded.

The demo runs in a subprocess exactly as a user would start it (``--quick --json``);
the helpers it is built on are tested directly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

import otel_nonblocking
from otel_nonblocking import _cli
from otel_nonblocking._cli import main
from otel_nonblocking._demo import DemoResult, capped_call, percentile

SLACK = 0.5  # seconds: the generous margin timing bounds allow on a shared machine
DEMO_WALL_LIMIT = 30.0  # the quick demo takes about 9 s; a stuck call would take minutes


@pytest.fixture(scope="module")
def quick_demo() -> tuple[dict[str, Any], float]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    began = time.monotonic()
    completed = subprocess.run(
        [sys.executable, "-m", "otel_nonblocking._cli", "demo", "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=50,
        env=env,
        check=False,
    )
    wall = time.monotonic() - began
    assert completed.returncode == 0, completed.stderr
    assert "[3/3]" in completed.stderr  # progress went to stderr, one line per step
    return json.loads(completed.stdout), wall


def _row(result: dict[str, Any], backend: str, pipeline: str) -> dict[str, Any]:
    (row,) = [r for r in result["rows"] if r["backend"] == backend and r["pipeline"] == pipeline]
    return row


def test_quick_demo_exits_zero_well_within_its_time_limit(quick_demo) -> None:
    result, wall = quick_demo
    assert wall < DEMO_WALL_LIMIT
    assert result["wall_seconds"] < DEMO_WALL_LIMIT
    assert {(r["backend"], r["pipeline"]) for r in result["rows"]} == {
        (backend, pipeline)
        for backend in ("healthy", "hang", "drip")
        for pipeline in ("stock", "ours")
    }


@pytest.mark.parametrize("backend", ["hang", "drip"])
def test_our_flush_and_shutdown_keep_their_budget_against_a_stuck_backend(
    quick_demo, backend
) -> None:
    result, _ = quick_demo
    budget = result["flush_budget_seconds"]
    ours = _row(result, backend, "ours")
    for call in ("flush", "shutdown"):
        assert ours[call]["finished"], call
        assert ours[call]["seconds"] <= budget + SLACK, call
    assert ours["flush"]["result"] is False  # nothing could be delivered, and it says so
    assert ours["delivered"] == 0


@pytest.mark.parametrize("backend", ["hang", "drip"])
def test_stock_pipeline_is_still_waiting_at_the_watchdog_cap(quick_demo, backend) -> None:
    # Newer SDKs block in force_flush, older ones in shutdown; either way the demo
    # shows a stock call the watchdog had to give up on, which ours never needs.
    result, _ = quick_demo
    cap = result["stock_cap_seconds"]
    stock = _row(result, backend, "stock")
    stuck = [call for call in ("flush", "shutdown") if not stock[call]["finished"]]
    assert stuck, stock
    assert all(stock[call]["seconds"] >= cap for call in stuck)


def test_both_pipelines_deliver_every_span_to_a_healthy_backend(quick_demo) -> None:
    result, _ = quick_demo
    for pipeline in ("stock", "ours"):
        row = _row(result, "healthy", pipeline)
        assert row["flush"]["finished"]
        assert row["flush"]["result"] is True
        expected = result["requests_per_run"] * 4 + result["final_burst_spans"]
        assert row["delivered"] == row["spans"] == expected
        assert 0 < row["p50_ms"] <= row["p99_ms"]


def test_help_lists_the_commands(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "demo" in out
    assert "version" in out


def test_demo_help_describes_its_options(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["demo", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for option in ("--quick", "--json", "--requests", "--cap", "--verbose"):
        assert option in out
    assert "127.0.0.1" in out


def test_version_prints_the_package_and_sdk_versions(capsys) -> None:
    assert main(["version"]) == 0
    out = capsys.readouterr().out
    assert otel_nonblocking.__version__ in out
    assert "opentelemetry-sdk" in out


def test_no_command_prints_help_and_fails(capsys) -> None:
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out


def test_demo_rejects_a_non_positive_request_count(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["demo", "--requests", "0"])
    assert exited.value.code == 2
    assert "--requests" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("cap", "problem"),
    [
        ("inf", "must be a finite number of seconds, got 'inf'"),
        ("\u0663", "must be a finite number of seconds, got '\u0663'"),  # ARABIC-INDIC 3
        ("1e5", "must be at most a day (86400 seconds), got '1e5'"),
        ("0", "must be greater than 0, got '0'"),
    ],
)
def test_demo_checks_its_cap_as_every_seconds_argument(monkeypatch, capsys, cap, problem) -> None:
    # --cap once took inf (a watchdog that never gives up; the wait then raised
    # OverflowError), a day-plus cap, and other scripts' digits ("\u0663" read as 3).
    monkeypatch.setattr(_cli, "run_demo", lambda **_: pytest.fail("the demo ran"))
    with pytest.raises(SystemExit) as exited:
        main(["demo", "--cap", cap])
    assert exited.value.code == 2
    assert f"argument --cap: value {problem}" in capsys.readouterr().err


def test_demo_ignores_otel_environment_variables(monkeypatch, capsys) -> None:
    for name, value in os.environ.items():
        if name.startswith("OTEL_"):
            monkeypatch.setenv(name, value)  # restored after the test
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    seen: dict[str, str] = {}

    def fake_run_demo(**kwargs: Any) -> DemoResult:
        seen.update({k: v for k, v in os.environ.items() if k.startswith("OTEL_")})
        return DemoResult(kwargs["requests"], kwargs["budget"], kwargs["cap"], (), 0.0, {})

    monkeypatch.setattr(_cli, "run_demo", fake_run_demo)
    # --verbose: leave this process's logging alone.
    assert main(["demo", "--quick", "--json", "--verbose"]) == 0
    assert seen == {}
    assert json.loads(capsys.readouterr().out)["flush_budget_seconds"] == 1.0


def test_capped_call_gives_up_at_the_cap_and_reports_it() -> None:
    release = threading.Event()
    began = time.monotonic()
    call = capped_call(lambda: release.wait(30), cap=0.2)
    elapsed = time.monotonic() - began
    release.set()  # let the abandoned thread end
    assert not call.finished
    assert 0.2 <= elapsed < 0.2 + SLACK
    assert call.describe(cap=0.2) == "> 0.2 s"


def test_capped_call_returns_the_value_or_the_error_type() -> None:
    assert capped_call(lambda: 7, cap=5).value == 7

    def boom() -> None:
        raise RuntimeError("no")

    failed = capped_call(boom, cap=5)
    assert failed.finished
    assert failed.error == "RuntimeError"


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([3.0], 99) == 3.0
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
