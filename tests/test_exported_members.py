"""The public API says what is public: ``__all__`` is the namespace, and its names are ours.

Like httpx's ``tests/test_exported_members.py``: every public module keeps ``__all__`` equal
to the public names it really has, and each exported class or function reports the public
module as its ``__module__`` (not the private one it is written in).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pickle
import subprocess
import sys
import types
import typing

import pytest

import otel_nonblocking

# otel_nonblocking.integrations.langfuse needs the langfuse extra: its checks run in
# tests/integrations/test_langfuse_public_api.py (main environment and Langfuse matrix).
PUBLIC_MODULES = (
    "otel_nonblocking",
    "otel_nonblocking.testing",
)


def _public_names(module: types.ModuleType) -> set[str]:
    """Module attributes that are not private, submodules excepted."""
    return {
        name
        for name, value in vars(module).items()
        if (not name.startswith("_") or name == "__version__")
        and not isinstance(value, types.ModuleType)
    }


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_equals_the_public_namespace(name: str) -> None:
    module = importlib.import_module(name)
    for member in module.__all__:
        getattr(module, member)  # a lazily loaded name is loaded now
    assert sorted(_public_names(module)) == sorted(module.__all__)


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_exported_classes_and_functions_report_the_public_module(name: str) -> None:
    module = importlib.import_module(name)
    members = [getattr(module, member) for member in module.__all__]
    reported = {
        value.__name__: value.__module__
        for value in members
        if inspect.isclass(value) or inspect.isfunction(value)
    }
    assert reported
    assert reported == dict.fromkeys(reported, name)


def test_dir_lists_the_lazy_names_before_they_are_loaded() -> None:
    listed = subprocess.run(
        [sys.executable, "-c", "import otel_nonblocking as o; print(' '.join(dir(o)))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    assert set(otel_nonblocking.__all__) <= set(listed)


def test_a_public_enum_member_pickles_by_its_public_name() -> None:
    data = pickle.dumps(otel_nonblocking.ExportOutcome.TIMEOUT)
    assert b"otel_nonblocking" in data
    assert b"_exporter" not in data  # a private module may move; the public name stays
    assert pickle.loads(data) is otel_nonblocking.ExportOutcome.TIMEOUT  # noqa: S301 - ours


def test_unset_is_an_instance_of_the_public_unset_type() -> None:
    assert isinstance(otel_nonblocking.UNSET, otel_nonblocking.UnsetType)
    assert otel_nonblocking.UnsetType() is otel_nonblocking.UNSET
    assert not otel_nonblocking.UNSET
    assert repr(otel_nonblocking.UNSET) == "UNSET"


@pytest.mark.parametrize(
    ("module_name", "name", "home"),
    [
        ("otel_nonblocking", "AttemptAbandoned", "otel_nonblocking._errors"),
        ("otel_nonblocking", "InterruptibleSession", "otel_nonblocking._session"),
        ("otel_nonblocking", "SETTINGS", "otel_nonblocking._config"),
        ("otel_nonblocking", "Setting", "otel_nonblocking._config"),
    ],
)
def test_a_name_no_longer_exported_still_imports_with_a_deprecation_warning(
    module_name: str, name: str, home: str
) -> None:
    module = importlib.import_module(module_name)
    assert name not in module.__all__
    assert name not in dir(module)
    with pytest.warns(DeprecationWarning, match=rf"{module_name}\.{name} is deprecated"):
        value = getattr(module, name)
    assert value is getattr(importlib.import_module(home), name)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        otel_nonblocking.no_such_name  # type: ignore[attr-defined]  # noqa: B018
    with pytest.raises(ImportError):
        from otel_nonblocking import no_such_name  # type: ignore[attr-defined]  # noqa: F401


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_type_hints_of_exported_classes_still_resolve(name: str) -> None:
    # pydantic and FastAPI read them: a dataclass returned by a health endpoint must work.
    module = importlib.import_module(name)
    for member in module.__all__:
        value = getattr(module, member)
        if inspect.isclass(value):
            typing.get_type_hints(value)


def test_what_type_checkers_see_is_what_the_package_loads() -> None:
    # The package imports its names lazily; type checkers read the `if TYPE_CHECKING:`
    # imports instead. Both lists must name the same modules.
    tree = ast.parse(inspect.getsource(otel_nonblocking))
    guarded = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING")
    )
    seen = {
        alias.name: node.module or ""
        for node in guarded.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert seen == otel_nonblocking._HOMES
    assert set(seen) | {"__version__"} == set(otel_nonblocking.__all__)
