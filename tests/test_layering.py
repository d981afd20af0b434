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
