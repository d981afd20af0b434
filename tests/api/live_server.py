"""A real `stadspas-adapter serve` (gunicorn, several workers) in a subprocess, and a tiny HTTP client."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Any
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    def __init__(self, config: dict[str, Any], workdir: Path, workers: int = 4):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        config_path = workdir / "adapter.yaml"
        config_path.write_text(json.dumps(config), encoding="utf-8")
        env = {**os.environ, "ADAPTER_CONFIG": str(config_path)}
        env.pop("ADAPTER_DATABASE_URL", None)
        env.pop("ADAPTER_REDIS_URL", None)
        self.log = open(workdir / "server.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [str(_BIN / "stadspas-adapter"), "serve", "--port", str(self.port), "--workers", str(workers)],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_until_up(workers)

    def _wait_until_up(self, workers: int) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}; see {self.log.name}")
            try:
                if call("GET", self.base_url + "/v1/health").status == 200 and len(self.worker_pids()) == workers:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not answer within 30 s; see {self.log.name}")

    def worker_pids(self) -> list[int]:
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid:
                pids.append(int(stat.parent.name))
        return pids

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.log.close()


def call(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
         timeout: float = 30) -> Answer:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={
        **({"Content-Type": "application/json"} if data is not None else {}), **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Answer(response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:
        return Answer(error.code, error.headers, error.read())
