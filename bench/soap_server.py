"""A local SOAP service answering zoekPashouders from generated pages (adapter.demo_data, format soap).

It answers pagina N with ``page-N.xml`` from the folder, as the sample
stadspas service would. Run in a thread of the bench process; the measured
clients are separate processes.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

_PAGE = re.compile(rb"<(?:\w+:)?pagina>(\d+)<")


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):  # type: ignore[no-untyped-def]
        pass


def _app(pages: Path):  # type: ignore[no-untyped-def]
    def answer(environ, start_response):  # type: ignore[no-untyped-def]
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        match = _PAGE.search(body)
        page = pages / f"page-{int(match.group(1)) if match else 1}.xml"
        content = page.read_bytes() if page.exists() else b""
        start_response("200 OK", [("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", str(len(content)))])
        return [content]

    return answer


@contextmanager
def soap_service(pages: Path) -> Iterator[str]:
    """The endpoint URL of a service answering from ``pages`` while the block runs."""
    httpd = make_server("127.0.0.1", 0, _app(pages), server_class=_ThreadingServer, handler_class=_QuietHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}/soap/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()
