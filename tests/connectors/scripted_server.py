"""An HTTP server on 127.0.0.1 whose answers a test writes as a function, for what a real source API does on the
wire (status codes, Retry-After, content types) that a mocked transport would take on trust."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

# (status, headers, body) for the request's query parameters and its number (0 for the first).
Answer = tuple[int, dict[str, str], bytes]
Script = Callable[[dict[str, str], int], Answer]


@dataclass
class Served:
    base_url: str
    # (monotonic time, query parameters) of each request, in order.
    requests: list[tuple[float, dict[str, str]]] = field(default_factory=list)


@contextlib.contextmanager
def serving(script: Script) -> Iterator[Served]:
    served = Served("")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            query = {name: values[0] for name, values in parse_qs(urlsplit(self.path).query).items()}
            with lock:
                number = len(served.requests)
                served.requests.append((time.monotonic(), query))
            status, headers, body = script(query, number)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    served.base_url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
