"""Others' internals behind one door: the SDK probe finds everything on the installed
release, a moved session is reported once, and the package has no import cycle."""

from __future__ import annotations

import ast
import logging
import pathlib
from importlib.metadata import version

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

import otel_nonblocking
from otel_nonblocking import _compat_sdk
from otel_nonblocking._exporter import DeadlineSpanExporter
from otel_nonblocking._session import InterruptibleSession

_PACKAGE_DIR = pathlib.Path(otel_nonblocking.__file__).parent


def _installed() -> str:
    return ", ".join(
        f"{name} {version(name)}"
        for name in ("opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http")
    )


def test_every_sdk_internal_is_found_on_the_installed_release() -> None:
    results = _compat_sdk.probe()
    missing = [r.name for r in results if r.required and r.found is None]
    assert not missing, (
        f"{_installed()} moved what otel_nonblocking reads: {missing}; "
        "teach otel_nonblocking/_compat_sdk.py the new place"
    )
    names = {r.name for r in results}
    assert {"span layout", "exporter session", "send encoded bytes", "batch processor"} <= names


def test_the_probe_says_where_the_session_is() -> None:
    where = {r.name: r.found for r in _compat_sdk.probe()}
    assert where["exporter session"] in (
        "exporter._session",  # SDK 1.33-1.38
        "exporter._client._transport._session",  # later releases
    )


def test_the_span_layout_probe_covers_the_sampled_flag_on_end_reads() -> None:
    # on_end reads span._context[3] & 1; the layout check is its probe.
    assert _compat_sdk.check_sdk_layout() is True


class _MovedSession(OTLPSpanExporter):
    """An OTLP exporter of a future release that keeps its session somewhere new."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        client = vars(self).pop("_client", None)
        vars(self).pop("_session", None)
        self._elsewhere = client


@pytest.fixture
def fresh_session_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_compat_sdk, "_session_warned", set())
    monkeypatch.setattr(
        _compat_sdk,
        "_session_warning",
        _compat_sdk.AggregatedWarning("abandoned exports cannot cut their connection"),
    )


def _session_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "cannot cut" in r.getMessage()]


@pytest.mark.usefixtures("fresh_session_warning")
def test_an_otlp_exporter_whose_session_moved_is_reported_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="otel_nonblocking")
    endpoint = "http://127.0.0.1:9/v1/traces"
    first = DeadlineSpanExporter(_MovedSession(endpoint=endpoint, session=InterruptibleSession()))
    second = DeadlineSpanExporter(_MovedSession(endpoint=endpoint, session=InterruptibleSession()))
    lines = _session_warnings(caplog)
    assert len(lines) == 1, lines
    assert "_MovedSession" in lines[0]
    assert endpoint not in lines[0]
    for exporter in (first, second):
        exporter.shutdown(timeout_millis=500)


@pytest.mark.usefixtures("fresh_session_warning")
def test_an_exporter_with_a_plain_or_found_session_is_not_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="otel_nonblocking")
    endpoint = "http://127.0.0.1:9/v1/traces"
    plain = DeadlineSpanExporter(OTLPSpanExporter(endpoint=endpoint))  # the user's choice
    ours = DeadlineSpanExporter(OTLPSpanExporter(endpoint=endpoint, session=InterruptibleSession()))
    assert _session_warnings(caplog) == []
    assert _compat_sdk.exporter_session(ours.inner, InterruptibleSession) is not None
    for exporter in (plain, ours):
        exporter.shutdown(timeout_millis=500)


def test_the_compat_module_does_not_import_the_configurator_until_asked() -> None:
    import subprocess
    import sys

    code = (
        "import sys, otel_nonblocking._compat_sdk as c;"
        "assert 'opentelemetry.sdk._configuration' not in sys.modules;"
        "assert c.BaseConfigurator.__name__ == '_BaseConfigurator';"
        "assert 'opentelemetry.sdk._configuration' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


# --- no import cycles ---------------------------------------------------------------


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(_PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _import_graph() -> dict[str, set[str]]:
    """Every import of one of the package's modules by another, wherever it is written
    (module level, inside a function, or under TYPE_CHECKING)."""
    paths = {_module_name(p): p for p in _PACKAGE_DIR.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    module = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    module = node.module or ""
                subs = [f"{module}.{a.name}" for a in node.names if f"{module}.{a.name}" in paths]
                targets = subs if len(subs) == len(node.names) else [module, *subs]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            # A submodule always has its parent packages imported first: not an edge.
            deps.update(
                t for t in targets if t in paths and t != name and not name.startswith(t + ".")
            )
        graph[name] = deps
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state:
                found = visit(dep, [*path, dep])
                if found:
                    return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def test_the_import_graph_is_read_whole() -> None:
    graph = _import_graph()
    assert "otel_nonblocking._otlp_codec" in graph["otel_nonblocking._exporter"]  # lazy import
    assert "otel_nonblocking._exporter" in graph["otel_nonblocking._otlp"]
    assert _cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]


def test_the_package_has_no_import_cycle() -> None:
    cycle = _cycle(_import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])
