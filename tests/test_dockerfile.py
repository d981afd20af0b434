"""Docker does not run on our machines: this test does what the image does, here.

It reads the Dockerfile's CMD and HEALTHCHECK, runs that command from the
installed project, and runs the health check against it.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import make_settings

DOCKERFILE = Path(__file__).resolve().parent.parent / "Dockerfile"


def _instruction(name: str) -> str:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    return re.search(rf"^{name}\s+(.*)$", text, re.M).group(1).strip()


def test_image_runs_as_non_root_and_installs_the_project():
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^USER\s+(?!root)\w+", text, re.M)
    assert "pip install --no-cache-dir ." in text
    assert text.index("USER") > text.index("pip install")


def test_cmd_and_healthcheck_work_here(tmp_path, sqlite_url):
    command = json.loads(_instruction("CMD"))
    assert command[0] == "gunicorn"
    port = _free_port()
    command = [str(Path(sys.executable).parent / "gunicorn"),
               *[f"127.0.0.1:{port}" if arg.startswith("0.0.0.0:") else arg for arg in command[1:]]]
    config = tmp_path / "adapter.yaml"
    make_settings(tmp_path, sqlite_url)  # validates the same mapping we write
    config.write_text(json.dumps({"data_dir": str(tmp_path / "var"), "database": {"url": sqlite_url}}))
    server = subprocess.Popen(command, env={**os.environ, "ADAPTER_CONFIG": str(config)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        healthcheck = _instruction("HEALTHCHECK").split("CMD", 1)[1].strip().replace(":8080/", f":{port}/")
        deadline = time.monotonic() + 20
        while True:
            result = subprocess.run(["sh", "-c", healthcheck.replace("python ", f"{sys.executable} ", 1)])
            if result.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert result.returncode == 0
    finally:
        server.terminate()
        server.wait(timeout=10)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
