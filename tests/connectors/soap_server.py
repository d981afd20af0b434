"""A real SOAP server on 127.0.0.1 for the connector tests.

It serves the recorded envelopes in ``soap_envelopes/`` and keeps every
request (headers and body) so tests can assert on what the client sent.
A test scripts the answers with ``server.script``: each entry is used for one
request, and once it is empty the server answers pages by their <pagina>.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

ENVELOPES = Path(__file__).parent / "soap_envelopes"
_PAGE = re.compile(rb"<(?:\w+:)?pagina>(\d+)<")


@dataclass
class Answer:
    status: str = "200 OK"
    file: str | None = None  # a file in soap_envelopes/, or None for an empty body
    content_type: str = "text/xml; charset=utf-8"
    delay_seconds: float = 0.0
    retry_after: str | None = None  # a Retry-After header, as a busy or rate-limiting service sends
    body: bytes | None = None  # the answer's bytes, instead of a file's


FAULT = Answer("500 Internal Server Error", "fault.xml")
GATEWAY_502 = Answer("502 Bad Gateway", "gateway-502.html", "text/html")
EMPTY_BODY = Answer("200 OK", None)
EMPTY_ANSWER = Answer("200 OK", "empty.xml")


@dataclass
class RecordedRequest:
    headers: dict[str, str]
    body: bytes
    received_at: float = field(default_factory=time.monotonic)


@dataclass
class SoapTestServer:
    script: list[Answer] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)
    url: str = ""

    def app(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        headers = {key[5:].replace("_", "-").title(): value
                   for key, value in environ.items() if key.startswith("HTTP_")}
        headers["Content-Type"] = environ.get("CONTENT_TYPE", "")
        self.requests.append(RecordedRequest(headers, body))
        answer = self.script.pop(0) if self.script else self._page_answer(body)
        if answer.delay_seconds:
            time.sleep(answer.delay_seconds)
        content = answer.body if answer.body is not None else (
            (ENVELOPES / answer.file).read_bytes() if answer.file else b"")
        headers = [("Content-Type", answer.content_type), ("Content-Length", str(len(content)))]
        if answer.retry_after is not None:
            headers.append(("Retry-After", answer.retry_after))
        start_response(answer.status, headers)
        return [content]

    @staticmethod
    def _page_answer(body: bytes) -> Answer:
        match = _PAGE.search(body)
        page_file = f"page-{int(match.group(1)) if match else 1}.xml"
        return Answer(file=page_file if (ENVELOPES / page_file).exists() else "empty.xml")


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


def start(server: SoapTestServer):
    httpd = make_server("127.0.0.1", 0, server.app, server_class=_ThreadingServer, handler_class=_QuietHandler)
    server.url = f"http://127.0.0.1:{httpd.server_port}/soap/v1"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    return httpd, thread
