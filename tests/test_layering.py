import subprocess
import sys

from tests.conftest import REPO

PROBE = """
import sys
import adapter.connector, adapter.registry, adapter.mapping, adapter.validation, adapter.sources
import adapter.cli.connectors
loaded = sorted(name for name in sys.modules if name == "flask" or name.startswith(("flask.", "connectors")))
print(",".join(loaded))
"""


def test_the_core_imports_no_flask_and_no_specific_connector():
    output = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                            check=True, cwd=REPO).stdout.strip()
    assert output == ""


SYNC_COMMAND_PROBE = """
import sys
from adapter.cli import cli
from adapter.registry import default_registry
assert "sync" in cli.commands
default_registry().get("csv")
loaded = sorted(name for name in sys.modules if name.split(".")[0] in ("flask", "zeep", "lxml", "requests")
                or name.startswith(("adapter.api", "adapter.web", "adapter.cli.serve", "adapter.cli.reports",
                                    "connectors.soap", "connectors.rest")))
print(",".join(loaded))
"""


def test_the_sync_command_loads_neither_flask_nor_other_commands_nor_unused_connectors():
    output = subprocess.run([sys.executable, "-c", SYNC_COMMAND_PROBE], capture_output=True, text=True,
                            check=True, cwd=REPO).stdout.strip()
    assert output == ""


def test_every_command_of_the_cli_loads_under_its_own_name():
    from adapter.cli import COMMANDS, cli

    for name in COMMANDS:
        assert cli.commands[name].name == name
    assert sorted(COMMANDS) == [name for name in cli.list_commands(None) if name in COMMANDS]
