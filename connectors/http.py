"""HTTP plumbing shared by the REST and SOAP connectors: retries and probes.

Retries cover what a later attempt can fix: no connection, a timeout, a 5xx
from the server or its gateway. A 4xx or a SOAP Fault is not retried: asking
again with the same key or the same request gets the same answer.
"""

from __future__ import annotations

import email.utils
import ipaddress
import logging
import socket
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

from adapter.connector import Connector

T = TypeVar("T")
log = logging.getLogger(__name__)


class RetryableError(Exception):
    """Raised inside an attempt to ask for another one; ``reason`` is operator text. ``retry_after`` is the wait
    in seconds the server asked for (its Retry-After), if it named one."""

    def __init__(self, reason: str, retry_after: float | None = None):
        self.reason = reason
        self.retry_after = retry_after
        super().__init__(reason)


class RateLimited(RetryableError):
    """The server answered 429 Too Many Requests: the key's rate limit, not an outage."""


TOO_MANY_REQUESTS = 429
# 4xx answers that refuse nothing: a gateway that timed the request out (408), a rate limit (429, asked again
# after its wait). Every other 4xx (and a 3xx not followed) is refused again when asked again.
_ASKED_AGAIN_4XX = frozenset({408, TOO_MANY_REQUESTS})


def worth_asking_again(status: int) -> bool:
    """Whether an HTTP answer's status is a server's or a gateway's trouble that a later attempt may get past."""
    return status >= 500 or status in _ASKED_AGAIN_4XX


def is_refusal(status: int | None) -> bool:
    """A 3xx or 4xx that asking again would get again: the request or its credentials are what to fix."""
    return status is not None and 300 <= status < 500 and status not in _ASKED_AGAIN_4XX


def asked_again(status: int | None, reason: str, retry_after: float | None) -> RetryableError:
    """The failure of an attempt worth another one, after at least ``retry_after``; a 429 as ``RateLimited``,
    which the connectors word as the account's rate limit, not an outage."""
    if status == TOO_MANY_REQUESTS:
        said = reason if str(TOO_MANY_REQUESTS) in reason else f"{reason}, HTTP {TOO_MANY_REQUESTS}"
        return RateLimited(f"{said} (too many requests)", retry_after)
    return RetryableError(reason, retry_after)


# The longest wait a server's Retry-After gets: a night's sync can wait minutes for a busy API, not hours.
MAX_RETRY_AFTER_SECONDS = 300.0


def retry_after_seconds(header: str | None) -> float | None:
    """The wait a Retry-After header asks for (delta-seconds or an HTTP date), or None when there is none."""
    if not header:
        return None
    header = header.strip()
    if header.isdigit():
        return float(header)
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


# No answer we read comes near this: a page of an export is a few megabytes.
MAX_ANSWER_BYTES = 256 * 1024 * 1024
_READ_SIZE = 64 * 1024  # at most this much a read


class AnswerTooLarge(Exception):
    """The answer went on past ``MAX_ANSWER_BYTES``."""


def read_bounded(response: requests.Response, *, deadline_seconds: float, max_bytes: int | None = None) -> bytes:
    """The whole body of a response sent with ``stream=True``, read within ``deadline_seconds`` from now and
    ``max_bytes``; the response then holds it as if read at once (``response.content``).

    A request's read timeout only bounds the wait between two packets: a server that drips its answer, a byte
    at a time, held a sync for as long as it liked, and one that never ended its answer filled the memory.
    Raises RetryableError past the deadline (a later attempt may be quicker), AnswerTooLarge past the size.
    """
    if response.raw is None or response._content_consumed:  # read already (a recorded answer being replayed)
        return response.content
    limit = MAX_ANSWER_BYTES if max_bytes is None else max_bytes
    ends_at = time.monotonic() + deadline_seconds
    chunks: list[bytes] = []
    size = 0
    try:
        # read1: what one read from the connection brings. iter_content's reads wait until their 64 KiB are in,
        # so an answer of known length sent a byte at a time (each byte within the read timeout) was never held
        # to the deadline: a test server's 20-second drip took 25 s against a deadline of 2.
        while chunk := response.raw.read1(_READ_SIZE, decode_content=True):
            size += len(chunk)
            if size > limit:
                raise AnswerTooLarge(f"the answer went on past {limit // (1024 * 1024)} MB")
            if time.monotonic() > ends_at:
                raise RetryableError(f"took longer than {deadline_seconds:g} s to send its whole answer")
            chunks.append(chunk)
    except urllib3.exceptions.ReadTimeoutError:
        raise RetryableError("stopped sending its answer for longer than the read timeout") from None
    except (urllib3.exceptions.HTTPError, OSError):
        raise RetryableError("broke the answer off before its end") from None
    finally:
        response.close()
    body = b"".join(chunks)
    response._content = body  # what requests itself keeps once read
    response._content_consumed = True
    return body


def with_retries(
    attempt: Callable[[], T],
    *,
    retries: int,
    backoff_seconds: float,
    sleep: Callable[[float], None] = time.sleep,
    asking: str | None = None,
) -> T:
    """Call ``attempt`` up to 1 + retries times, doubling the pause after each failure, and pausing at least
    as long as a server's Retry-After asked (up to ``MAX_RETRY_AFTER_SECONDS``): asked again sooner, a
    rate-limiting API only refuses again.

    ``attempt`` raises RetryableError for a failure worth retrying; the last
    one is re-raised for the caller to word. Each pause is logged first, naming ``asking`` (who is asked,
    e.g. "source 'pass': the API at https://..."): the waits of one call add up to many minutes, in which the
    operator would otherwise see nothing, and the sync, hearing nothing from the reading worker for
    sync.read_stall_minutes, stopped it as a source that sends nothing.
    """
    for attempt_number in range(retries + 1):
        try:
            return attempt()
        except RetryableError as exc:
            if attempt_number == retries:
                raise
            pause = backoff_seconds * (2 ** attempt_number)
            if exc.retry_after is not None:
                pause = max(pause, min(exc.retry_after, MAX_RETRY_AFTER_SECONDS))
            log.warning("%s %s; asking again in %s s (attempt %d of %d)", asking or "the source", exc.reason,
                        format(round(pause, 1), "g"), attempt_number + 2, retries + 1)
            sleep(pause)
    raise AssertionError("unreachable")


class PlainHttpRedirect(requests.exceptions.RequestException):
    """The server redirected a request to plain http:// on another host; the message is operator text."""


def describe_transport_error(error: requests.RequestException, timeout_seconds: float | None = None) -> str:
    """Operator text for a requests failure, without the URL's query (it may hold data)."""
    if isinstance(error, PlainHttpRedirect):
        return str(error)
    if isinstance(error, requests.exceptions.ConnectTimeout):
        return "could not connect within the timeout"
    if isinstance(error, requests.exceptions.Timeout):
        limit = f" within {timeout_seconds:g} s" if timeout_seconds else ""
        return f"did not answer{limit} (timeout)"
    if isinstance(error, requests.exceptions.SSLError):
        return "the TLS handshake failed (check the client certificate and CA bundle)"
    if isinstance(error, requests.exceptions.ConnectionError):
        return "could not connect (connection refused or host unreachable)"
    return f"the request failed ({error.__class__.__name__})"


def configure_tls(
    session: requests.Session,
    client_cert: Path | None,
    client_key: Path | None,
    ca_bundle: Path | None,
) -> None:
    """mTLS as municipal gateways (Suwinet, GWS) require: our certificate, their CA. And no redirect to plain
    http:// is followed: the options are checked for it (``plain_http_problem``), but requests follows a server's
    redirect wherever it points, and a 307 repeats a SOAP POST, WS-Security password and all."""
    if _refuse_plain_http_redirect not in session.hooks["response"]:  # a test's session may be configured twice
        session.hooks["response"].append(_refuse_plain_http_redirect)
    if client_cert is not None:
        session.cert = (str(client_cert), str(client_key)) if client_key else str(client_cert)
    if ca_bundle is not None:
        session.verify = str(ca_bundle)


def plain_http_problem(url: str) -> str | None:
    """Why ``url`` must not be used, or None. Plain http:// is only for this machine itself (a proxy or tunnel
    here that speaks TLS onward, a test server): to any other host, every cardholder's BSN, name and birth date,
    and the source's key or password, would cross the network readable by anyone on the way."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "http":
        return None
    host = (parts.hostname or "").lower()
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return None
    return (f"plain http:// to {host or 'a host'} would send the cardholders' personal data and the credentials "
            "unencrypted: use https://, or the address on 127.0.0.1 of a local proxy or tunnel that speaks TLS "
            "onward")


def _refuse_plain_http_redirect(response: requests.Response, *_args: object, **_kwargs: object) -> None:
    # A response hook runs before requests follows the redirect.
    if not response.is_redirect:
        return
    target = urljoin(response.url, response.headers.get("location", ""))
    if plain_http_problem(target):
        response.close()
        raise PlainHttpRedirect(f"redirected the request to plain http:// on {urlsplit(target).hostname or 'a host'}, "
                                "which would carry the cardholders' data unencrypted: not followed. Ask the "
                                "service's administrator to redirect to https://")


def probe_tcp(url: str, timeout_seconds: float) -> str | None:
    """None when a TCP connection to the URL's host opens, else what went wrong."""
    parts = urlsplit(url)
    if not parts.hostname:
        return f"'{url}' has no host name"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout_seconds):
            return None
    except socket.timeout:
        return f"no answer from {parts.hostname}:{port} within {timeout_seconds:g} s"
    except OSError as exc:
        return f"cannot connect to {parts.hostname}:{port} ({exc.strerror or exc.__class__.__name__})"


class HttpConnector(Connector):
    """A connector that talks HTTP through ``requests``; tests and ``sample()`` inject the session."""

    def __init__(
        self,
        options: Mapping[str, Any],
        *,
        source_name: str = "(unnamed)",
        base_dir: Path | None = None,
        session: requests.Session | None = None,
    ):
        super().__init__(options, source_name=source_name, base_dir=base_dir)
        self._session = session

    @property
    def injected_session(self) -> requests.Session | None:
        """The session a test or ``sample()`` gave (a replay, no network); None in a real run, where the connector
        builds its own. A plug-in reads it here, not from the private attribute its own names may shadow."""
        return self._session
