"""An HTTP server that answers slowly or without end, on 127.0.0.1, for the connectors' bounds on an answer."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextlib.contextmanager
def serving(kind: str) -> Iterator[str]:
    """``drip``: a byte every 0.1 s for 20 s, in chunked encoding; ``drip-length``: the same under a Content-Length
    (no chunks to stop at); ``endless``: 64 KiB chunks for as long as they are read. The base URL."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json" if "/rest" in self.path else "text/xml")
            chunked = kind != "drip-length"
            self.send_header(*(("Transfer-Encoding", "chunked") if chunked else ("Content-Length", "1000000")))
            self.end_headers()
            chunk, pause, until = ((b" ", 0.1, time.monotonic() + 20) if kind.startswith("drip")
                                   else (b" " * 65536, 0.0, time.monotonic() + 60))
            try:
                while time.monotonic() < until:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
                    self.wfile.flush()
                    time.sleep(pause)
            except (BrokenPipeError, ConnectionResetError):
                return  # the client gave up: as it should

        do_GET = do_POST = _answer

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
