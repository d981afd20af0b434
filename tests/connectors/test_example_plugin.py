"""The example plug-in that docs/connectors.md walks through stays a working one.

It is a package of its own (examples/connector-jsonl), installed nowhere here: its module is loaded from its
folder, and its pyproject must name the entry point the registry looks for.
"""

import sys
import tomllib

import pytest

from adapter.registry import ENTRY_POINT_GROUP
from tests.conftest import REPO

EXAMPLE = REPO / "examples" / "connector-jsonl"


@pytest.fixture
def example_tests(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    for name in [name for name in sys.modules if name.startswith("stadspas_jsonl")]:
        monkeypatch.delitem(sys.modules, name)  # this folder's, not an installed copy's
    yield EXAMPLE / "tests" / "test_jsonl.py"
    for name in [name for name in sys.modules if name.startswith("stadspas_jsonl")]:
        del sys.modules[name]  # imported by the run: not left for another test to find


def test_its_pyproject_declares_the_entry_point_the_registry_reads():
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["entry-points"][ENTRY_POINT_GROUP] == {"jsonl": "stadspas_jsonl.connector:JsonLinesConnector"}


def test_its_own_tests_pass(example_tests):
    assert pytest.main(["-q", "-p", "no:cacheprovider", str(example_tests)]) == 0
