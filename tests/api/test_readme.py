"""The "Try the API" session in README.md, run line for line against a server like `make run`'s."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.api.live_server import LiveServer
from tests.conftest import demo_installed

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_session() -> str:
    section = README.read_text(encoding="utf-8").split("## Try the API", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "README: the 'Try the API' section has no ```sh block"
    return match.group(1)


@pytest.mark.slow
def test_readme_curl_session_works_as_printed(tmp_path):
    config, env = demo_installed(tmp_path)
    server = LiveServer(config, tmp_path, workers=2)
    try:
        session = subprocess.run(["bash", "-euo", "pipefail", "-c", readme_session()], cwd=tmp_path,
                                 env={**env, "PORT": str(server.port)}, capture_output=True, text=True, timeout=60)
    finally:
        server.stop()
    assert session.returncode == 0, session.stdout + session.stderr
    output = session.stdout + session.stderr
    assert '"available_cents"' in output and '"redemption_id"' in output and '"reversal_id"' in output
    assert re.search(r"(?i)^idempotent-replayed: true", output, re.M)
    assert '"amount_cents": 1250' in output or '"amount_cents":1250' in output
