"""The settings registry: precedence, bad values, the OTLP timeout unit, and the generated docs."""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import otel_nonblocking as nb
from otel_nonblocking import _config
from otel_nonblocking._config import SETTINGS, UNSET, Setting
from otel_nonblocking.testing import refused_endpoint
from tests.conftest import RecordingExporter
from tools import configuration_docs

DOCS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
PRIVATE = "s3cret-Bearer-abc123"  # stands for a private value that must never be logged

# A valid environment string, what it parses to, and a different valid argument, per type.
_VALID: dict[type, tuple[str, Any, Any]] = {
    int: ("7", 7, 9),
    float: ("3.5", 3.5, 4.25),
    bool: ("true", True, False),
    str: ("gzip", "gzip", "deflate"),
}
# Environment strings no setting of that type accepts, whatever its checks.
_MALFORMED: dict[type, tuple[str, ...]] = {
    # Other scripts' digits and underscores too: int() and float() would read them.
    int: (PRIVATE, "12abc", "1.5", "0x10", "9" * 5000, "\u0663", "\uff11\uff12", "1_000"),
    float: (PRIVATE, "fast", "nan", "inf", "-inf", "1e999", "\u0663", "\u0968.5", "1_0"),
    bool: (PRIVATE, "maybe", "2", "truthy"),
    str: (PRIVATE, "zstd", "brotli"),
}


def _ids(setting: Setting[Any]) -> str:
    return setting.env_vars[0]


def _each_env_var() -> list[Any]:
    return [pytest.param(setting, var, id=var) for setting in SETTINGS for var in setting.env_vars]


_STR_CHOICES = ("gzip", "deflate", "none", "fast", "stock", "grpc")
# Free-form string settings (paths): any string is valid, so none is malformed.
_FREE_FORM = frozenset({"spool_dir"})


def _expected_from_env(setting: Setting[Any], raw: str) -> Any:
    if setting.name in _FREE_FORM:
        return os.path.abspath(raw)  # a path, resolved once against the working directory
    if setting.type is str:
        return raw
    if setting.type is bool:
        return raw == "true"
    return setting.parse(raw) if setting.parse is not None else _VALID[setting.type][1]


def _malformed_cases() -> list[Any]:
    cases = []
    for setting in SETTINGS:
        for var in setting.env_vars:
            malformed = () if setting.name in _FREE_FORM else _MALFORMED[setting.type]
            for raw in malformed:
                cases.append(pytest.param(setting, var, raw, id=f"{var}={raw[:12]}"))
            if setting.check is not None:  # parses, but out of range
                for raw in ("0", "-31337"):
                    if setting.check(setting.parse(raw) if setting.parse else int(raw)):
                        cases.append(pytest.param(setting, var, raw, id=f"{var}={raw}"))
    return cases


_SPOOL_PATH_LINE = "otel_nonblocking: OTEL_NONBLOCKING_SPOOL_DIR is a relative path; using "


def _our_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name == "otel_nonblocking" and r.levelno >= logging.WARNING
    ]


# -- the registry and the generated page ------------------------------------------------


def test_every_setting_has_a_type_the_tests_know_how_to_break() -> None:
    assert {s.type for s in SETTINGS} <= set(_VALID) & set(_MALFORMED)


def test_every_environment_variable_belongs_to_one_setting() -> None:
    variables = [var for s in SETTINGS for var in s.env_vars]
    assert len(variables) == len(set(variables))


def test_every_setting_has_its_own_name_carrying_its_unit() -> None:
    # Two settings were both called "timeout" (the OTLP deadline in ms, the flush budget
    # in s): the docs table listed two rows of that name, and a bad timeout_millis= was
    # reported as "timeout".
    names = [s.name for s in SETTINGS]
    assert len(names) == len(set(names))
    for setting in SETTINGS:
        assert setting.name.endswith("_millis") == (setting.unit == "ms"), setting.name
    assert _config.OTLP_TIMEOUT_MILLIS.argument == "timeout_millis"
    assert _config.FLUSH_TIMEOUT.argument == "timeout"


def test_committed_configuration_page_is_generated_from_the_registry() -> None:
    committed = DOCS_PAGE.read_text(encoding="utf-8")
    assert committed == configuration_docs.configuration_page(), (
        "docs/configuration.md is stale; run: "
        "python -m tools.configuration_docs --write docs/configuration.md"
    )


def test_configuration_table_lists_every_setting_with_its_variables_and_default() -> None:
    rows = configuration_docs.configuration_table().splitlines()[2:]
    assert len(rows) == len(SETTINGS)
    for setting, row in zip(SETTINGS, rows, strict=True):
        assert row.startswith(f"| `{setting.name}` |")
        for var in setting.env_vars:
            assert f"`{var}`" in row
        assert setting.doc in row


def test_docs_check_flag_fails_on_a_stale_page_and_write_fixes_it(tmp_path: Path) -> None:
    page = tmp_path / "configuration.md"
    stale = configuration_docs.configuration_page().replace(
        SETTINGS[0].doc, "An older description."
    )
    page.write_text(stale, encoding="utf-8")
    assert configuration_docs.main(["--check", str(page)]) == 1
    assert configuration_docs.main(["--write", str(page)]) == 0
    assert configuration_docs.main(["--check", str(page)]) == 0
    assert page.read_text(encoding="utf-8") == configuration_docs.configuration_page()


def test_docs_module_prints_the_page(capsys: pytest.CaptureFixture[str]) -> None:
    assert configuration_docs.main([]) == 0
    assert capsys.readouterr().out == configuration_docs.configuration_page()


# -- precedence --------------------------------------------------------------------------


@pytest.mark.parametrize(("setting", "var"), _each_env_var())
def test_argument_beats_environment_beats_default(setting: Setting[Any], var: str) -> None:
    raw, _, explicit = _VALID[setting.type]
    if setting.type is bool and setting.default is True:
        raw, explicit = "false", True  # a value that differs from this default
    if setting.name in _FREE_FORM:
        raw, explicit = "spool-a", "spool-b"
    elif setting.type is str:  # two valid choices other than the default
        valid = [c for c in _STR_CHOICES if setting.default != c and not setting.check(c)]
        raw, explicit = valid[0], valid[-1]
    env = {var: raw}
    assert setting.resolve(UNSET, environ={}) == setting.default
    assert setting.resolve(UNSET, environ=env) == _expected_from_env(setting, raw)
    assert setting.resolve(UNSET, environ=env) != setting.default
    expected = os.path.abspath(explicit) if setting.name in _FREE_FORM else explicit
    assert setting.resolve(explicit, environ=env) == expected


@pytest.mark.parametrize("setting", [s for s in SETTINGS if len(s.env_vars) > 1], ids=_ids)
def test_first_listed_variable_wins(setting: Setting[Any]) -> None:
    first, second = setting.env_vars[:2]
    assert setting.resolve(environ={first: "3", second: "7"}) == setting.resolve(
        environ={first: "3"}
    )
    assert setting.resolve(environ={second: "7"}) == setting.resolve(environ={first: "7"})


@pytest.mark.parametrize("blank", ["", "   ", "\t"])
@pytest.mark.parametrize(("setting", "var"), _each_env_var())
def test_empty_environment_value_counts_as_unset(
    setting: Setting[Any], var: str, blank: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert setting.resolve(environ={var: blank}) == setting.default
    assert _our_warnings(caplog) == []


def test_empty_first_variable_falls_through_to_the_second() -> None:
    timeout = _config.OTLP_TIMEOUT_MILLIS
    environ = {"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "", "OTEL_EXPORTER_OTLP_TIMEOUT": "7"}
    assert timeout.resolve(environ=environ) == 7000.0


def test_resolve_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "77")
    assert _config.MAX_QUEUE_SIZE.resolve() == 77
    assert _config.MAX_QUEUE_SIZE.resolve(5) == 5


# -- bad environment values ------------------------------------------------------------------


@pytest.mark.parametrize(("setting", "var", "raw"), _malformed_cases())
def test_malformed_environment_value_warns_once_and_falls_back(
    setting: Setting[Any], var: str, raw: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="otel_nonblocking")
    environ = {var: raw}
    for _ in range(3):
        assert setting.resolve(environ=environ) == setting.default
    warnings = _our_warnings(caplog)
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert var in message
    if raw != "0":  # "0" is part of "must be greater than 0"
        assert raw not in message  # the value might be private: never echoed


def test_malformed_first_variable_falls_back_to_the_second(
    caplog: pytest.LogCaptureFixture,
) -> None:
    environ = {"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": PRIVATE, "OTEL_EXPORTER_OTLP_TIMEOUT": "7"}
    assert _config.OTLP_TIMEOUT_MILLIS.resolve(environ=environ) == 7000.0
    [warning] = _our_warnings(caplog)
    assert "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT" in warning.getMessage()


def test_a_different_bad_value_of_the_same_variable_warns_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    _config.MAX_QUEUE_SIZE.resolve(environ={"OTEL_BSP_MAX_QUEUE_SIZE": "x"})
    _config.MAX_QUEUE_SIZE.resolve(environ={"OTEL_BSP_MAX_QUEUE_SIZE": "x"})
    _config.MAX_QUEUE_SIZE.resolve(environ={"OTEL_BSP_MAX_QUEUE_SIZE": "y"})
    assert len(_our_warnings(caplog)) == 2


def test_bad_environment_values_reach_no_log_line_through_the_public_api(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for setting in SETTINGS:
        for var in setting.env_vars:
            monkeypatch.setenv(var, PRIVATE)
    processor = nb.NonBlockingSpanProcessor(RecordingExporter())
    exporter = nb.otlp_span_exporter("http://127.0.0.1:9/v1/traces")
    try:
        assert processor._max_queue_size == _config.MAX_QUEUE_SIZE.default
        assert exporter.timeout_seconds == _config.OTLP_TIMEOUT_MILLIS.default / 1000
    finally:
        processor.shutdown(timeout_millis=500)
        exporter.shutdown(timeout_millis=500)
    assert _our_warnings(caplog)
    # The one value shown on purpose: the absolute path a relative spool directory
    # resolved to, on the line that names its variable.
    shown = [r for r in caplog.records if r.getMessage().startswith(_SPOOL_PATH_LINE)]
    assert len(shown) == 1
    assert all(PRIVATE not in r.getMessage() for r in caplog.records if r not in shown)


# -- bad explicit arguments ------------------------------------------------------------------


def _bad_arguments(setting: Setting[Any]) -> list[Any]:
    wrong_type: list[Any] = ["7", None, [1]]
    if setting.type is not bool:
        wrong_type.append(True)
    if setting.type is int:
        wrong_type.append(7.0)
    if setting.type is float:
        wrong_type += [math.nan, math.inf, 10**400]  # an int no float holds
    if setting.type is str:
        return [None, [1], True, 7] + ([] if setting.name in _FREE_FORM else ["not-a-choice"])
    out_of_range = [v for v in (0, -1) if setting.check is not None and setting.check(v)]
    return wrong_type + out_of_range


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        pytest.param(s, v, id=f"{s.env_vars[0]}-{v!r}"[:40])
        for s in SETTINGS
        for v in _bad_arguments(s)
    ],
)
def test_bad_explicit_argument_raises_configuration_error_naming_it(
    setting: Setting[Any], value: Any
) -> None:
    with pytest.raises(nb.ConfigurationError, match=rf"^{setting.argument}\b"):
        setting.resolve(value, environ={})


def test_non_ascii_digits_are_not_a_number(caplog: pytest.LogCaptureFixture) -> None:
    # "٣" is ARABIC-INDIC DIGIT THREE: int() reads it as 3, which once set a batch size
    # of 3 where 20 was meant (and dropped 19 spans of 20).
    environ = {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "\u0663"}
    assert _config.MAX_EXPORT_BATCH_SIZE.resolve(environ=environ) == 512
    [warning] = _our_warnings(caplog)
    assert "OTEL_BSP_MAX_EXPORT_BATCH_SIZE" in warning.getMessage()


@pytest.mark.parametrize(
    ("timeout", "shown"),
    [(-1, "got -1"), (0, "got 0"), (10**6, "got 1000000"), (1e9, "got 1000000000.0")],
)
def test_a_timeout_in_seconds_is_reported_in_seconds(timeout: float, shown: str) -> None:
    with pytest.raises(nb.ConfigurationError) as caught:
        nb.otlp_span_exporter("http://127.0.0.1:9/v1/traces", timeout=timeout)
    message = str(caught.value)
    assert message.startswith("timeout ")
    assert message.endswith(shown)  # as given, not converted: "-1", never "-1000.0"


def test_the_seconds_resolver_quotes_the_argument_and_returns_milliseconds() -> None:
    setting = _config.OTLP_TIMEOUT_MILLIS
    assert setting.resolve_seconds(1.5, environ={}) == 1500.0
    with pytest.raises(nb.ConfigurationError, match=r"^timeout must be a finite number of seconds"):
        setting.resolve_seconds("2", environ={})  # type: ignore[arg-type]
    with pytest.raises(nb.ConfigurationError, match=r"must be greater than 0, got -0.5$"):
        setting.resolve_seconds(-0.5, environ={})
    # A whole-millisecond setting takes seconds too, rounded up: never 0 from above it.
    exit_millis = _config.EXIT_TIMEOUT_MILLIS
    assert exit_millis.resolve_seconds(1.5, environ={}) == 1500
    assert exit_millis.resolve_seconds(0.0004, environ={}) == 1
    assert type(exit_millis.resolve_seconds(2, environ={})) is int
    with pytest.raises(nb.ConfigurationError, match=r"^exit_timeout must be 0 or greater"):
        exit_millis.resolve_seconds(-1, environ={})


@pytest.mark.parametrize(
    ("value", "allow_zero", "message"),
    [
        (-1, False, "t must be greater than 0, got -1"),
        (0, False, "t must be greater than 0, got 0"),
        (-0.5, True, "t must be 0 or greater, got -0.5"),
        (86_401, False, "t must be at most a day (86400 seconds), got 86401"),
        (math.inf, False, "t must be a finite number of seconds, got inf"),
        (math.nan, True, "t must be a finite number of seconds, got nan"),
        (10**400, False, f"t must be a finite number of seconds, got {10**400}"),
        ("2", False, "t must be a finite number of seconds, got str"),
        (True, False, "t must be a finite number of seconds, got bool"),
    ],
)
def test_one_seconds_check_quotes_the_value_as_given(
    value: Any, allow_zero: bool, message: str
) -> None:
    with pytest.raises(nb.ConfigurationError) as caught:
        _config.seconds("t", value, allow_zero=allow_zero)
    assert str(caught.value) == message
    assert _config.seconds("t", 2) == 2.0
    assert _config.seconds("t", 0, allow_zero=True) == 0.0


@pytest.mark.parametrize("from_env", [False, True])
def test_a_relative_spool_dir_is_resolved_once_and_logged_with_its_absolute_path(
    from_env: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.chdir(tmp_path)
    environ = {"OTEL_NONBLOCKING_SPOOL_DIR": "spool"} if from_env else {}
    explicit = UNSET if from_env else "spool"
    first = _config.SPOOL_DIR.resolve(explicit, environ=environ)
    second = _config.SPOOL_DIR.resolve(explicit, environ=environ)
    assert first == second == str(tmp_path / "spool")
    [line] = [r.getMessage() for r in _our_warnings(caplog)]
    assert str(tmp_path / "spool") in line
    assert ("OTEL_NONBLOCKING_SPOOL_DIR" if from_env else "spool_dir") in line
    assert _config.SPOOL_DIR.resolve(str(tmp_path / "abs"), environ={}) == str(tmp_path / "abs")
    assert len(_our_warnings(caplog)) == 1  # an absolute path is not worth a line


def test_configuration_error_is_a_value_error() -> None:
    assert issubclass(nb.ConfigurationError, ValueError)


@pytest.mark.parametrize(
    ("build", "name"),
    [
        (
            lambda: nb.NonBlockingSpanProcessor(RecordingExporter(), max_queue_size=0),
            "max_queue_size",
        ),
        (
            lambda: nb.NonBlockingSpanProcessor(RecordingExporter(), max_export_batch_size="5"),
            "max_export_batch_size",
        ),
        (
            lambda: nb.NonBlockingSpanProcessor(
                RecordingExporter(), max_queue_size=10, max_export_batch_size=20
            ),
            "max_export_batch_size",
        ),
        (
            lambda: nb.NonBlockingSpanProcessor(RecordingExporter(), schedule_delay_millis=-1),
            "schedule_delay_millis",
        ),
        (
            lambda: nb.NonBlockingSpanProcessor(RecordingExporter(), shutdown_timeout_millis=-1),
            "shutdown_timeout_millis",
        ),
        (
            lambda: nb.DeadlineSpanExporter(RecordingExporter(), failure_threshold=0),
            "failure_threshold",
        ),
        (
            lambda: nb.DeadlineSpanExporter(RecordingExporter(), breaker_backoff_millis=True),
            "breaker_backoff_millis",
        ),
        (lambda: nb.otlp_span_exporter("http://127.0.0.1:9/v1/traces", timeout="2"), "timeout"),
        (lambda: nb.otlp_span_exporter("127.0.0.1:4318"), "endpoint"),
        (lambda: nb.otlp_span_exporter(12345), "endpoint"),
        (lambda: nb.otlp_span_exporter("http://127.0.0.1:9", headers="k=v"), "headers"),
        (lambda: nb.otlp_span_exporter("http://127.0.0.1:9", timeout=-1), "timeout"),
        (lambda: nb.configure_tracing(endpoint=12345), "endpoint"),
        (lambda: nb.otlp_span_exporter("http://127.0.0.1:9", compression="zip"), "compression"),
        (lambda: nb.configure_tracing(timeout="2", exporter=RecordingExporter()), "timeout"),
        (
            lambda: nb.configure_tracing(exporter=RecordingExporter(), exit_timeout_millis=-5),
            "exit_timeout_millis",
        ),
        (
            lambda: nb.configure_tracing(exporter=RecordingExporter(), exit_timeout=-5),
            "exit_timeout",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
@pytest.mark.usefixtures("clean_globals")
def test_public_api_rejects_bad_arguments_by_name(build: Any, name: str) -> None:
    with pytest.raises(nb.ConfigurationError, match=rf"\b{name}\b"):
        build()
    assert nb.installed() == []


# -- the OTLP timeout unit ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "millis"),
    [
        ("10", 10_000.0),  # seconds, as the Python SDK reads it
        ("2.5", 2_500.0),
        ("0.5", 500.0),
        (" 3 ", 3_000.0),
        ("120", 120_000.0),  # the largest value still read as seconds
        ("121", 121.0),  # above the cutoff: milliseconds, as the specification says
        ("10000", 10_000.0),
        ("1500.5", 1_500.5),
    ],
)
@pytest.mark.parametrize("var", ["OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"])
def test_otlp_timeout_is_seconds_up_to_the_cutoff_and_milliseconds_above(
    var: str, raw: str, millis: float
) -> None:
    assert _config.OTLP_TIMEOUT_MILLIS.resolve(environ={var: raw}) == millis


@pytest.mark.parametrize(
    ("traces", "generic", "millis"),
    [("1.5", "9", 1_500.0), ("1500", "9", 1_500.0), ("3", "9000", 3_000.0), (None, "9", 9_000.0)],
)
def test_traces_specific_timeout_beats_the_generic_one(
    monkeypatch: pytest.MonkeyPatch, traces: str | None, generic: str, millis: float
) -> None:
    if traces is not None:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", traces)
    else:
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", generic)
    exporter = nb.otlp_span_exporter("http://127.0.0.1:9/v1/traces")
    try:
        assert exporter.timeout_seconds == millis / 1000
    finally:
        exporter.shutdown(timeout_millis=500)


def test_timeout_argument_is_seconds_and_beats_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "9")
    exporter = nb.otlp_span_exporter("http://127.0.0.1:9/v1/traces", timeout=0.75)
    try:
        assert exporter.timeout_seconds == 0.75
    finally:
        exporter.shutdown(timeout_millis=500)


# -- nothing at import or configure time can crash or hang the host ----------------------------

_STANDARD_VARS = (
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_CERTIFICATE",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_SERVICE_NAME",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
)

_HOST_SCRIPT = """
import logging, sys, time
logging.basicConfig(format="%(name)s|%(message)s")
started = time.monotonic()
import otel_nonblocking
from opentelemetry import trace
from otel_nonblocking._distro import OtelNonblockingConfigurator, OtelNonblockingDistro

OtelNonblockingDistro().configure()
OtelNonblockingConfigurator().configure(auto_instrumentation_version="test")
handle = otel_nonblocking.configure_tracing(endpoint="http://127.0.0.1:9/v1/traces")
with trace.get_tracer("host").start_as_current_span("work"):
    pass
otel_nonblocking.flush(1)
otel_nonblocking.shutdown(1)
print("HOST-OK", round(time.monotonic() - started, 3))
"""


def _run_host(
    env: dict[str, str], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.Popen(
        [sys.executable, *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = refused_endpoint()
    return env


@pytest.mark.parametrize("garbage", [PRIVATE, "-1", "nan", "9" * 5000, "1e999", "true, false"])
def test_import_with_garbage_in_every_variable_neither_raises_nor_hangs(
    garbage: str, tmp_path: Path
) -> None:
    env = _clean_env()
    for var in [v for s in SETTINGS for v in s.env_vars]:
        env[var] = garbage
    result = _run_host(env, "-c", "import otel_nonblocking; print('IMPORTED')", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "IMPORTED" in result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("garbage", [PRIVATE, "-1", "9" * 5000])
def test_configure_with_garbage_in_every_variable_neither_raises_nor_hangs(
    garbage: str, tmp_path: Path
) -> None:
    env = _clean_env()
    for var in (*[v for s in SETTINGS for v in s.env_vars], *_STANDARD_VARS):
        env[var] = garbage
    result = _run_host(env, "-c", _HOST_SCRIPT, cwd=tmp_path)  # a relative spool dir lands there
    assert result.returncode == 0, result.stderr[-2000:]
    assert "HOST-OK" in result.stdout
    assert "Traceback" not in result.stderr
    # Our own warnings name variables, never values (the SDK's log lines are its own
    # business, so only lines from our logger are checked).
    ours = [line for line in result.stderr.splitlines() if line.startswith("otel_nonblocking|")]
    assert any("Ignoring invalid OTEL_BSP_MAX_QUEUE_SIZE" in line for line in ours)
    assert any("Ignoring invalid OTEL_EXPORTER_OTLP_TRACES_PROTOCOL" in line for line in ours)
    assert not [line for line in ours if garbage in line and _SPOOL_PATH_LINE not in line]


@pytest.mark.parametrize(
    "var", ["OTEL_EXPORTER_OTLP_COMPRESSION", "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION"]
)
def test_configure_tracing_survives_a_malformed_compression_variable(var: str) -> None:
    env = _clean_env()
    env[var] = "bogus"
    result = _run_host(env, "-c", _HOST_SCRIPT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "HOST-OK" in result.stdout


def test_secrets_in_the_endpoint_and_headers_variables_reach_no_line_of_any_logger(
    tmp_path: Path,
) -> None:
    env = _clean_env()
    base = refused_endpoint("/").rstrip("/")
    env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = f"http://user:{PRIVATE}@127.0.0.1:99999/v1/traces"
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = base  # the fallback: nothing listens there
    env["OTEL_EXPORTER_OTLP_HEADERS"] = (
        f"x-api-key={PRIVATE}-1,junk {PRIVATE}-2,x-b=a%0D%0A{PRIVATE}"
    )
    script = _HOST_SCRIPT.replace(
        "logging.basicConfig(", "logging.basicConfig(level=logging.DEBUG, "
    )
    result = _run_host(env, "-c", script, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "HOST-OK" in result.stdout
    lines = result.stderr.splitlines()
    assert not [line for line in lines if PRIVATE in line]
    assert PRIVATE not in result.stdout
    assert any("Ignoring invalid OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" in line for line in lines)
    assert any("Ignoring invalid OTEL_EXPORTER_OTLP_HEADERS" in line for line in lines)
