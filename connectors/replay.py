"""Serve recorded answers to a requests session without a network.

Used by the connectors' ``sample()`` (the contract test reads every
connector's bundled sample) and available to tests: mount a ReplayAdapter on
a session and a function decides the answer to each request.
"""

from __future__ import annotations

from collections.abc import Callable

import requests
from requests.adapters import BaseAdapter

Responder = Callable[[requests.PreparedRequest], tuple[int, dict[str, str], bytes]]


class ReplayAdapter(BaseAdapter):
    def __init__(self, responder: Responder):
        super().__init__()
        self._responder = responder

    def send(self, request: requests.PreparedRequest, **kwargs: object) -> requests.Response:
        status, headers, body = self._responder(request)
        response = requests.Response()
        response.status_code = status
        response.headers.update(headers)
        response._content = body
        response.url = request.url or ""
        response.request = request
        response.encoding = "utf-8"
        return response

    def close(self) -> None:
        pass


def replay_session(responder: Responder, base_url: str) -> requests.Session:
    session = requests.Session()
    session.mount(base_url, ReplayAdapter(responder))
    return session
