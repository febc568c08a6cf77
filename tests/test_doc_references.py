"""The docs name code that exists: every `file.py: name` in the README's "Where a span
goes" and in docs/how-it-works.md is a class, function or attribute of that module."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = re.compile(r"`(_?\w+)\.py: ([A-Za-z_][\w.]*)`")


def _section(text: str, title: str) -> str:
    start = text.index(title)
    end = text.find("\n## ", start + len(title))
    return text[start:] if end == -1 else text[start:end]


def _references() -> list[tuple[str, str, str]]:
    readme = _section((ROOT / "README.md").read_text(), "## Where a span goes")
    how = (ROOT / "docs" / "how-it-works.md").read_text()
    found = [("README.md", *m) for m in REFERENCE.findall(readme)]
    found += [("docs/how-it-works.md", *m) for m in REFERENCE.findall(how)]
    return found


def test_the_docs_name_enough_code_for_the_check_to_mean_something() -> None:
    files = {doc for doc, _, _ in _references()}
    assert files == {"README.md", "docs/how-it-works.md"}
    assert len(_references()) >= 20


@pytest.mark.parametrize(("doc", "module", "name"), _references())
def test_each_named_function_or_class_exists_in_its_module(doc, module, name) -> None:
    target: object = importlib.import_module(f"otel_nonblocking.{module}")
    for part in name.split("."):
        assert hasattr(target, part) or part in getattr(target, "__dataclass_fields__", {}), (
            f"{doc} names {module}.py: {name}, which does not exist"
        )
        target = getattr(target, part, None)
