"""Docker does not run on our machines: this test does what the image does, here.

It builds the real wheel (as the Dockerfile's `pip install .` does), puts only
that on the path, runs the Dockerfile's CMD with the image's environment, runs
its HEALTHCHECK against it, and opens the pages that need packaged templates.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"


def _dockerfile() -> str:
    return DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")


def _instruction(name: str) -> str:
    return re.search(rf"^{name}\s+(.*)$", _dockerfile(), re.M).group(1).strip()


def _image_environment() -> dict[str, str]:
    return dict(re.findall(r"(\w+)=(\S+)", _instruction("ENV")))


def test_image_runs_as_non_root_and_installs_the_project():
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^USER\s+(?!root)\w+", text, re.M)
    assert "pip install --no-cache-dir ." in text
    assert text.index("USER") > text.index("pip install")
    assert _image_environment()["ADAPTER_ENVIRONMENT"] == "production"


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory) -> Path:
    """The wheel `pip install .` would build, unpacked: only what the package really ships."""
    out = tmp_path_factory.mktemp("wheel")
    # A clean copy of the source, as `COPY` gives the image: a stale build/ in the checkout
    # would otherwise lend the wheel files that packaging leaves out.
    source = out / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "var", "build", "*.egg-info", "__pycache__", "artifacts", "results", ".hypothesis"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(source),
                    "-w", str(out)], check=True, capture_output=True)
    (wheel,) = out.glob("stadspas_adapter-*.whl")
    site = out / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    return site


def test_cmd_healthcheck_and_pages_work_from_the_wheel(tmp_path, sqlite_url, installed_wheel):
    config = tmp_path / "adapter.yaml"
    config.write_text(json.dumps({"data_dir": str(tmp_path / "var"), "database": {"url": sqlite_url}}))
    # The image's environment, its mode included; keys come from the test session's environment
    # as they would from a secret store.
    # The image's user has /app for a home and may not write it: here a home nobody can make a folder in.
    (tmp_path / "home").write_text("")
    env = {**os.environ, **_image_environment(), "ADAPTER_CONFIG": str(config),
           "ADAPTER_WEB_SECRET_KEY": "test-only-web-secret-key-32-bytes-long",
           "PYTHONPATH": str(installed_wheel), "HOME": str(tmp_path / "home")}
    env.pop("XDG_RUNTIME_DIR", None)
    where = subprocess.run([sys.executable, "-c", "import adapter; print(adapter.__file__)"], env=env,
                           cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(installed_wheel)), "the test must run the wheel, not the checkout"

    port = _free_port()
    command = json.loads(_instruction("CMD"))
    assert command[0] == "stadspas-adapter"
    command = [str(Path(sys.executable).parent / command[0]),
               *[{"0.0.0.0": "127.0.0.1", "8080": str(port)}.get(arg, arg) for arg in command[1:]]]
    server = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        healthcheck = _instruction("HEALTHCHECK").split("CMD", 1)[1].strip().replace(":8080/", f":{port}/")
        deadline = time.monotonic() + 30
        while True:
            result = subprocess.run(["sh", "-c", healthcheck.replace("python ", f"{sys.executable} ", 1)])
            if result.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert result.returncode == 0
        for page in ("/counter/aanmelden", "/admin/aanmelden"):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{page}", timeout=5) as answer:
                assert answer.status == 200 and b"<form" in answer.read()
        # A till that sends a malformed header with the pass number in it: gunicorn logs the header.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as till:
            till.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nPasnummer 6064366012345678\r\n\r\n")
            assert till.recv(100).startswith(b"HTTP/1.1 400")
    finally:
        server.terminate()
        log = server.communicate(timeout=30)[1].decode()
    assert "Invalid HTTP Header" in log
    # Logs in production are one JSON object per line, gunicorn's own lines too, and redacted.
    for line in log.splitlines():
        assert isinstance(json.loads(line), dict), line
        assert json.loads(line)["level"] not in ("ERROR", "CRITICAL"), line  # a clean start and stop
    assert "6064366012345678" not in log and "************5678" in log


def _image_files(root: Path) -> Path:
    """The image's /app as the Dockerfile's COPY lines fill it, under ``root``: its WORKDIR."""
    workdir = root / _instruction("WORKDIR").lstrip("/")
    for line in re.findall(r"^COPY\s+(.*)$", _dockerfile(), re.M):
        *sources, target = line.split()
        for source in sources:
            destination = workdir / target / (source if target.endswith("/") else "")
            if (REPO / source).is_dir():
                shutil.copytree(REPO / source, destination, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(REPO / source, destination)
    return workdir


def test_without_a_mounted_configuration_the_container_stops_and_says_which_file_it_needs(
        tmp_path, installed_wheel):
    # `docker run IMAGE` with keys but no configuration of the municipality's own: the image must not
    # serve (and schedule) on the example file, whose demo source and example debtor IBAN are not theirs.
    root = tmp_path / "image"
    workdir = _image_files(root)
    image_env = _image_environment()
    config_path = root / image_env["ADAPTER_CONFIG"].lstrip("/")
    env = {**os.environ, **image_env, "ADAPTER_CONFIG": str(config_path), "PYTHONPATH": str(installed_wheel)}
    command = json.loads(_instruction("CMD"))
    command = [str(Path(sys.executable).parent / command[0]),
               *[{"0.0.0.0": "127.0.0.1", "8080": str(_free_port())}.get(arg, arg) for arg in command[1:]]]
    server = subprocess.Popen(command, env=env, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _, err = server.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        server.terminate()
        server.communicate(timeout=30)
        pytest.fail("the image served on a configuration nobody mounted")
    assert server.returncode != 0
    assert f"file not found (looked in {config_path})" in err.decode()
    assert "set ADAPTER_CONFIG" in err.decode()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
