"""The wrk load script: distinct Idempotency-Keys across threads AND across runs of the same script.

A key repeated in a second run would be answered as an idempotent replay,
and the bench would measure replays instead of redemptions.
"""

from __future__ import annotations

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import service_missing

from bench.api_bench import run_wrk
from bench.wrk_script import write_script


class _Recorder(BaseHTTPRequestHandler):
    seen: list[tuple[str, dict]] = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append((self.headers["Idempotency-Key"], body))
        self.send_response(201)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture
def recorder():
    wrk = shutil.which("wrk")
    if wrk is None:
        service_missing("the API bench needs wrk (apt-get install wrk; .ci/run installs it)")
    _Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield wrk, f"http://127.0.0.1:{server.server_port}", _Recorder.seen
    server.shutdown()
    server.server_close()


def test_keys_are_distinct_across_threads_and_runs_and_values_rotate(tmp_path, recorder):
    wrk, base_url, seen = recorder
    passes = ["6064366000000001", "6064366000000002", "6064366000000003"]
    script = write_script(tmp_path, "redeem", "/v1/redemptions",
                          '{"pass_number":"{value}","amount_cents":1,"key":"{key}"}', passes,
                          {"Content-Type": "application/json", "Authorization": "Bearer test"})
    first = run_wrk(wrk, base_url, script, seconds=1, connections=2)
    second = run_wrk(wrk, base_url, script, seconds=1, connections=2)
    assert first["requests"] > 0 and second["requests"] > 0 and first["status_errors"] == 0
    keys = [key for key, _ in seen]
    assert len(keys) == len(set(keys)), "an Idempotency-Key was sent twice"
    assert all(body["key"] == key for key, body in seen), "{key} in the body is the request's key"
    assert {body["pass_number"] for _, body in seen} == set(passes)
