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
    # What the installed release may lack is named with the releases that lack it.
    assert all(r.lacking.startswith("SDK") for r in results if not r.required), results


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


def _session_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "cannot cut" in r.getMessage()]


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


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:`` (never run)."""
    nodes: list[ast.AST] = []
    pending = [tree]
    while pending:
        node = pending.pop()
        nodes.append(node)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and ast.unparse(child.test).endswith("TYPE_CHECKING"):
                pending.extend(child.orelse)
                continue
            pending.append(child)
    return nodes


def _import_graph() -> dict[str, set[str]]:
    """Every import of one of the package's modules by another that runs, wherever it is
    written (module level or inside a function; annotations-only imports excluded)."""
    paths = {_module_name(p): p for p in _PACKAGE_DIR.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
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
    typed = _runtime_nodes(
        ast.parse("if TYPE_CHECKING:\n    import a\nelse:\n    import b\ndef f():\n    import c\n")
    )
    imported = {alias.name for n in typed if isinstance(n, ast.Import) for alias in n.names}
    assert imported == {"b", "c"}


def test_the_package_has_no_import_cycle() -> None:
    cycle = _cycle(_import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


# --- nothing of others' private outside the compat modules --------------------------

_COMPAT_MODULES = {"_compat_sdk.py", "integrations/_compat_langfuse.py"}
# Hot paths read span fields inline (a call per field would cost the encoder and on_end
# their speed); check_sdk_layout() in _compat_sdk is their probe.
_HOT_PATH_READS = {
    "_encoder.py": {
        "_context", "_parent", "_name", "_kind", "_start_time", "_end_time", "_status",
        "_attributes", "_events", "_links", "_resource", "_instrumentation_scope",
        "_dict", "_dq",
    },
    "_processor.py": {"_context"},
}  # fmt: skip


def _private_name(node: ast.AST) -> tuple[str, bool] | None:
    """``(name, on_self)`` for ``x._name`` or ``getattr(x, "_name")``-like reads."""
    if isinstance(node, ast.Attribute):
        name, base = node.attr, node.value
    elif (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
        and len(node.args) >= 2
        and isinstance(node.args[1], ast.Constant)
        and isinstance(node.args[1].value, str)
    ):
        name, base = node.args[1].value, node.args[0]
    else:
        return None
    if not name.startswith("_") or name.startswith("__"):
        return None
    return name, isinstance(base, ast.Name) and base.id in ("self", "cls")


def _sources() -> dict[str, ast.Module]:
    return {
        path.relative_to(_PACKAGE_DIR).as_posix(): ast.parse(path.read_text(encoding="utf-8"))
        for path in _PACKAGE_DIR.rglob("*.py")
    }


def _own_private_names(trees: dict[str, ast.Module]) -> set[str]:
    """Private names the package itself defines: its attributes, functions, classes."""
    own: set[str] = set()
    for tree in trees.values():
        for node in ast.walk(tree):
            found = _private_name(node)
            if found is not None and found[1]:
                own.add(found[0])  # self._x / cls._x
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                own.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                own.add(node.id)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                own.add(node.target.id)
    return own


def _foreign_private_reads(trees: dict[str, ast.Module]) -> list[str]:
    own = _own_private_names(trees)
    reads = []
    for rel, tree in trees.items():
        if rel in _COMPAT_MODULES or rel.startswith("testing/"):
            continue
        allowed = own | _HOT_PATH_READS.get(rel, set())
        for node in ast.walk(tree):
            found = _private_name(node)
            if found is not None and not found[1] and found[0] not in allowed:
                reads.append(f"{rel}:{node.lineno}: {found[0]}")
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module.startswith(("opentelemetry", "langfuse")) and (
                    "._" in node.module or any(a.name.startswith("_") for a in node.names)
                ):
                    reads.append(f"{rel}:{node.lineno}: from {node.module} import ...")
            elif (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and node.value.startswith("langfuse._")
            ):
                reads.append(f"{rel}:{node.lineno}: {node.value}")
    return reads


def test_others_internals_are_read_only_in_the_compat_modules() -> None:
    reads = _foreign_private_reads(_sources())
    assert reads == [], "read through _compat_sdk / _compat_langfuse instead:\n" + "\n".join(reads)


def test_the_private_read_scan_sees_a_new_read() -> None:
    trees = _sources()
    trees["_new.py"] = ast.parse(
        "from opentelemetry.sdk._logs import x\n"
        "def f(exporter):\n"
        "    return exporter._certificate_file, getattr(exporter, '_timeout_seconds')\n"
    )
    assert _foreign_private_reads(trees) == [
        "_new.py:1: from opentelemetry.sdk._logs import ...",
        "_new.py:3: _certificate_file",
        "_new.py:3: _timeout_seconds",
    ]
