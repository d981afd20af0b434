"""JSON APIs in the style of the PASS/GPASS vendor API (Amsterdam, Dordrecht).

One ``pashouder`` document per source record, with its ``passen`` and its
household members in ``sub_pashouders``; the mapping iterates those. The list
is read with offset/limit paging until ``total`` records have been seen. The
bearer key comes from an environment variable named in the options: the
vendor issues one key per administration, and keys do not belong in files.
"""

from __future__ import annotations

import codecs
import contextlib
import email.message
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from pydantic import Field, field_validator

from adapter.connector import (
    CheckBuilder, CheckResult, ConnectorError, ConnectorOptions, SourceAuthError,
    SourceUnavailable,
)
from adapter.records import SourceRecord
from connectors.http import (
    AnswerTooLarge, HttpConnector, RateLimited, RetryableError, asked_again, configure_tls, describe_transport_error,
    plain_http_problem, probe_tcp, read_bounded, retry_after_seconds, with_retries, worth_asking_again,
)
from connectors.replay import replay_session

SAMPLES = Path(__file__).parent / "samples" / "rest"


class RestOptions(ConnectorOptions):
    base_url: str = Field(pattern=r"^https?://", description="e.g. https://pas.example.nl/rest/sales/v1")
    list_path: str = "/pashouders"
    # The NAME of the environment variable holding the bearer key, never the key.
    api_key_env: str = Field(pattern=r"^[A-Z_][A-Z0-9_]*$")
    items_key: str = "pashouders"
    total_key: str = "total"
    offset_param: str = "offset"
    limit_param: str = "limit"
    page_size: int = Field(default=100, ge=1, le=10_000)
    # A bound on the pages of one run: an API whose total grows with every page would otherwise be paged for ever.
    max_pages: int = Field(default=100_000, ge=1)
    query: dict[str, str] = {}
    connect_timeout: float = Field(default=5.0, gt=0)
    read_timeout: float = Field(default=30.0, gt=0)
    retries: int = Field(default=3, ge=0, le=10)
    backoff_seconds: float = Field(default=1.0, ge=0)
    client_cert: Path | None = None
    client_key: Path | None = None
    ca_bundle: Path | None = None

    @field_validator("base_url")
    @classmethod
    def _not_plain_http_over_the_network(cls, base_url: str) -> str:
        problem = plain_http_problem(base_url)
        if problem:
            raise ValueError(problem)
        return base_url


class RestConnector(HttpConnector):
    """Reads cardholders from a PASS/GPASS-style JSON API."""

    options_model = RestOptions
    description = "JSON API in the PASS/GPASS style (bearer key, offset/limit paging)"

    # -- reading ------------------------------------------------------------

    def records(self) -> Iterator[SourceRecord]:
        options: RestOptions = self.options
        session = self._build_session(self._api_key())
        offset, page = 0, 1
        previous_items: list[dict[str, Any]] = []
        previous_offset = 0
        total = 0
        while True:
            try:
                body = self._get_page(session, offset, options.page_size)
            except SourceAuthError as exc:
                if not offset:
                    raise
                raise SourceAuthError(  # the key was taken when the run began: it changed since
                    self.source_name, f"{exc.what_happened} after {offset} of {total} records had been read",
                    f"The key may have expired or been replaced during the run. {exc.what_to_do}, then run "
                    "again; nothing of this run was applied") from None
            items, total = self._items_and_total(body)
            self._refuse_page_out_of_step(items, previous_items, offset, previous_offset, total)
            for position, item in enumerate(items):
                yield SourceRecord(f"page {page} item {position}", item)
            previous_items, previous_offset = items, offset
            offset += len(items)
            # A full last page is followed by one look past it: a total short of the records is told then.
            if offset >= total and len(items) < options.page_size:
                return
            if not items:
                # Stopping here silently would look like cardholders vanished.
                raise ConnectorError(
                    self.source_name,
                    f"the API returned an empty page after {offset} of {total} records",
                    "Run the sync again later; ask the vendor if it persists",
                )
            if page >= options.max_pages:
                raise ConnectorError(
                    self.source_name,
                    f"the API still had records after {page} pages ({offset} read, total now {total})",
                    "Ask the vendor why its total keeps growing while it is read; if the source really is that "
                    "large, raise options.max_pages or options.page_size",
                )
            page += 1

    def _refuse_page_out_of_step(self, items: list[dict[str, Any]], previous_items: list[dict[str, Any]],
                                 offset: int, previous_offset: int, total: int) -> None:
        """A page that cannot be the next one: the one before again, or records past the total."""
        options: RestOptions = self.options
        if items and items == previous_items:
            # An API that does not know the offset parameter ignores it and answers its first page for every
            # offset: read on, the same cardholders would come again and again, and the rest never.
            raise ConnectorError(
                self.source_name,
                f"the API answered the same page for offset {offset} as for offset {previous_offset}",
                f"Check options.offset_param ('{options.offset_param}') and options.limit_param "
                f"('{options.limit_param}') against the vendor's documentation: an API ignores a parameter it "
                "does not know",
            )
        if items and offset >= total:
            # A total capped by the vendor's search index (10,000 of 40,000): stopping at it would read a part
            # of the cardholders as all of them, and a first load has no earlier run for the guard to compare.
            raise ConnectorError(
                self.source_name,
                f"the API reports a total of {total} cardholders but has more records after them; nothing of "
                "this run was applied",
                f"Ask the vendor why its '{options.total_key}' is short of its list (a search index capped at "
                "10,000?); the previous data stays in force until then",
            )

    def _api_key(self) -> str:
        name = self.options.api_key_env
        key = os.environ.get(name)
        if not key:
            raise ConnectorError(
                self.source_name,
                f"environment variable {name} (the API key) is not set",
                f"Set {name} for the adapter's service account and restart it",
            )
        return key

    def _build_session(self, api_key: str) -> requests.Session:
        options: RestOptions = self.options
        session = self._session or requests.Session()
        configure_tls(
            session,
            self.resolve_path(options.client_cert) if options.client_cert else None,
            self.resolve_path(options.client_key) if options.client_key else None,
            self.resolve_path(options.ca_bundle) if options.ca_bundle else None,
        )
        session.headers["Authorization"] = f"Bearer {api_key}"
        session.headers["Accept"] = "application/json"
        return session

    def _get_page(self, session: requests.Session, offset: int, limit: int, retries: int | None = None) -> Any:
        """One page, with ``options.retries`` (or ``retries``) more attempts after a failure worth one."""
        options: RestOptions = self.options
        retries = options.retries if retries is None else retries
        url = options.base_url.rstrip("/") + "/" + options.list_path.lstrip("/")
        params = {**options.query, options.offset_param: offset, options.limit_param: limit}

        def attempt() -> requests.Response:
            try:
                response = session.get(
                    url, params=params, timeout=(options.connect_timeout, options.read_timeout), stream=True
                )
            except requests.RequestException as exc:
                raise RetryableError(describe_transport_error(exc, options.read_timeout)) from None
            status = response.status_code
            if worth_asking_again(status):
                # A gateway's, its timeout's or a rate limit's answer: a later attempt may be let through, when the
                # server said.
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                response.close()
                raise asked_again(status, f"answered HTTP {status}", retry_after)
            # The whole answer within the read timeout, not only each packet (see read_bounded).
            read_bounded(response, deadline_seconds=options.read_timeout)
            return response

        try:
            response = with_retries(attempt, retries=retries, backoff_seconds=options.backoff_seconds,
                                    asking=f"source '{self.source_name}': the API at {options.base_url}")
        except AnswerTooLarge as exc:
            raise ConnectorError(self.source_name, f"the API at {options.base_url}: {exc}",
                                 "Lower options.page_size, or ask the vendor why the answer does not end") from None
        except RetryableError as exc:
            rate_limited = isinstance(exc, RateLimited)
            raise SourceUnavailable(
                self.source_name,
                f"the API at {options.base_url} {exc.reason} (after {retries + 1} attempts)",
                "Ask the vendor about the key's rate limit, or raise options.backoff_seconds and options.retries, "
                "then run again" if rate_limited
                else "Check that the API is up and reachable from this server, then run again",
            ) from None
        self._raise_for_client_error(response)
        content_type = response.headers.get("Content-Type")
        try:
            text = json_text(response.content, content_type)
        except UnicodeDecodeError as exc:
            if "html" in (content_type or "").lower():  # a proxy's error page: that it is no JSON is the news
                raise self._not_json(content_type) from None
            raise ConnectorError(
                self.source_name,
                f"the API's answer is not valid {_charset_label(exc.encoding)} text (its Content-Type "
                f"{'is ' + content_type if content_type else 'is missing'})",
                "Ask the vendor to send UTF-8 JSON, or to name the charset it really sends in the Content-Type header",
            ) from None
        try:
            return json.loads(text)
        except RecursionError:  # nested deeper than Python's parser goes: no export's shape
            raise ConnectorError(
                self.source_name, "the API answered JSON nested too deeply to read",
                "Check options.base_url and options.list_path with the API's administrator") from None
        except ValueError:
            raise self._not_json(content_type) from None

    def _not_json(self, content_type: str | None) -> ConnectorError:
        return ConnectorError(
            self.source_name,
            f"the API answered something that is not JSON (content type {content_type or 'unknown'})",
            "Check options.base_url and options.list_path: they may point at a web page",
        )

    def _raise_for_client_error(self, response: requests.Response) -> None:
        options: RestOptions = self.options
        status = response.status_code
        if status in (401, 403):
            raise SourceAuthError(
                self.source_name,
                f"the API refused the key from environment variable {options.api_key_env} (HTTP {status})",
                f"Check that {options.api_key_env} holds the current key for this administration",
            )
        if status == 404:
            raise ConnectorError(
                self.source_name,
                f"the API has no list at {options.list_path} (HTTP 404)",
                "Check options.base_url and options.list_path against the vendor's documentation",
            )
        if status >= 400:
            raise ConnectorError(
                self.source_name,
                f"the API refused the request (HTTP {status})",
                "Check the paging and query options; ask the vendor what the status means",
            )

    def _items_and_total(self, body: Any) -> tuple[list[dict[str, Any]], int]:
        options: RestOptions = self.options
        items = body.get(options.items_key) if isinstance(body, dict) else None
        total = body.get(options.total_key) if isinstance(body, dict) else None
        if not isinstance(items, list) or not isinstance(total, int):
            raise ConnectorError(
                self.source_name,
                f"the API answer has no list '{options.items_key}' and number '{options.total_key}'",
                "Set options.items_key and options.total_key to the names the API uses",
            )
        return items, total

    # -- checking -------------------------------------------------------------

    def check(self) -> CheckResult:
        check = CheckBuilder(self.source_name, "rest")
        if not check.options_valid(self):
            return check.result()
        options: RestOptions = self.options
        if not os.environ.get(options.api_key_env):
            check.failed_with("settings", f"environment variable {options.api_key_env} (the API key) "
                              "is not set; set it for the adapter's service account")
            return check.result()
        check.passed("settings", "options are valid and the API key variable is set")
        if self._session is None:
            problem = probe_tcp(options.base_url, options.connect_timeout)
            if problem:
                check.failed_with("connection", f"{problem}; check options.base_url and the firewall")
                return check.result()
        try:
            session = self._build_session(self._api_key())
            # One attempt, as the SOAP connector's check: an operator waits at the terminal for the answer, and
            # a rate-limited API's Retry-After could hold it for minutes an attempt.
            body = self._get_page(session, 0, 1, retries=0)
            _, total = self._items_and_total(body)
        except SourceAuthError as exc:
            check.passed("connection", f"the API at {options.base_url} answers")
            check.failed_from("credentials", exc)
            return check.result()
        except ConnectorError as exc:
            check.failed_from("connection", exc)
            return check.result()
        check.passed("connection", f"the API at {options.base_url} answers")
        check.passed("credentials", f"the key is accepted; the API reports {total} cardholders")
        return check.result()

    @classmethod
    @contextlib.contextmanager
    def sample(cls) -> Iterator[RestConnector]:
        base_url = "https://pas.example.invalid/rest/sales/v1"
        variable = "STADSPAS_SAMPLE_API_KEY"
        previous = os.environ.get(variable)
        os.environ[variable] = "sample-key"
        try:
            yield cls(
                {"base_url": base_url, "api_key_env": variable, "page_size": 2, "retries": 0},
                source_name="sample-rest",
                session=replay_session(_sample_answer, base_url),
            )
        finally:
            if previous is None:
                os.environ.pop(variable, None)
            else:
                os.environ[variable] = previous


def json_text(body: bytes, content_type: str | None) -> str:
    """The answer's text: in the charset its Content-Type names, else as JSON is sent (UTF-8, RFC 8259; a BOM
    or UTF-16 told by ``json.detect_encoding``). Strict: raises UnicodeDecodeError rather than replace a byte.

    ``requests`` reads a text/plain answer without a charset as ISO-8859-1 (every 'Zoë' became 'ZoÃ«'), keeps a
    byte order mark, which the JSON parser refuses, and replaces bytes that do not decode (a name's 'ë' in
    Windows-1252 under a UTF-8 label became U+FFFD): each stored a name other than the source's, or failed.
    """
    header = email.message.Message()
    header["Content-Type"] = content_type or ""
    charset = header.get_content_charset()
    try:
        codec = codecs.lookup(charset).name if charset else None
    except LookupError:  # a name Python does not know, e.g. MySQL's utf8mb4: JSON's own rules then
        codec = None
    if codec is not None and not codec.startswith("utf"):
        # JSON between systems is UTF-8 (RFC 8259, 8.1), and a label naming another charset is often a server's
        # default rather than what it wrote: bytes that decode as UTF-8 are read so ('ZoÃ«' under ISO-8859-1
        # otherwise). A name in that charset's own bytes almost never does, and is read as labelled.
        try:
            return body.decode("utf-8-sig")
        except UnicodeDecodeError:
            pass
    if codec is None:
        codec = json.detect_encoding(body)
    elif codec == "utf-8":
        codec = "utf-8-sig"  # a byte order mark is no part of the JSON
    return body.decode(codec)


def _charset_label(codec: str) -> str:
    return "UTF-8" if codec.startswith("utf-8") else codec


def _sample_answer(request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
    """The bundled sample: pashouders-offset-N.json answers offset N."""
    offset = parse_qs(urlsplit(request.url or "").query).get("offset", ["0"])[0]
    page_file = SAMPLES / f"pashouders-offset-{int(offset)}.json"
    if not page_file.exists():
        return 200, {"Content-Type": "application/json"}, json.dumps({"total": 0, "pashouders": []}).encode()
    return 200, {"Content-Type": "application/json"}, page_file.read_bytes()
