"""SOAP services of municipal back offices (Centric Suite4/GWS, StUF bridges).

The operation, its arguments and the paging are options; the WSDL is a local
file; every client comes from ``connectors.soap_client.build_client``. One
source record is one item of the answer at ``records_path`` (a household, in
the sample service); the mapping iterates its members and passes.

What these services do that needs care, and where it is handled:
* a gateway's HTML 502 reaches zeep as ``Fault("Unknown fault occured")``:
  told apart by the HTTP answer the transport remembers, and retried;
* an empty answer (no body, or a response without items) means "no data";
* ``Fault.detail`` is an lxml element that cannot be pickled, and a fault string
  is written for the back office's staff, with names in it: only the fault code
  goes into our exceptions.

zeep builds and sends each request; the answer is read by
``connectors.soap_answers`` (a walk guided by zeep's schema, with zeep's own
parse for faults and anything else it does not mirror exactly).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import requests
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from zeep.exceptions import DTDForbidden, EntitiesForbidden, Fault, TransportError, ValidationError, XMLParseError, \
    XMLSyntaxError

from adapter.connector import (
    CheckBuilder, CheckResult, ConnectorError, ConnectorOptions, SourceFault,
    SourceUnavailable, redact,
)
from adapter.paths import PathError, compile_field_path
from adapter.records import SourceRecord
from connectors.http import AnswerTooLarge, HttpConnector, RateLimited, RetryableError, asked_again, \
    describe_transport_error, is_refusal, plain_http_problem, probe_tcp, with_retries
from connectors.replay import replay_session
from connectors.soap_answers import AnswerReader
from connectors.soap_client import SoapClientError, bind_service, build_client, operation_names

SAMPLES = Path(__file__).parent / "samples" / "soap"
SAMPLE_WSDL = Path(__file__).parent / "wsdl" / "stadspas-v1.wsdl"
_ZEEP_UNKNOWN_FAULT = "Unknown fault occured"  # sic, zeep's spelling


class PagingOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # none: one call. page_number: ask page 1, 2, ... until a page is short or empty.
    # continuation: ask the next page while the answer's flag (StUF indicatorVervolgvraag) is true.
    style: Literal["none", "page_number", "continuation"] = "none"
    page_argument: str = "pagina"
    page_size_argument: str | None = "maximumAantal"
    page_size: int = Field(default=100, ge=1, le=10_000)
    first_page: int = Field(default=1, ge=0)
    more_flag_path: str = "indicatorVervolgvraag"
    # Set to true in every follow-up request, when the service wants that.
    continuation_argument: str | None = None
    max_pages: int = Field(default=10_000, ge=1)


class SoapOptions(ConnectorOptions):
    wsdl: Path = Field(description="Local WSDL file; never a URL")
    service: str | None = None
    port: str | None = None
    operation: str
    # Overrides the WSDL's soap:address (test, acceptance and production differ).
    endpoint: str | None = Field(default=None, pattern=r"^https?://")
    arguments: dict[str, Any] = {}
    records_path: str = Field(description="Where the list of records sits in the answer")
    paging: PagingOptions = PagingOptions()
    username: str | None = None
    # The NAME of the environment variable holding the WS-Security password.
    password_env: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]*$")
    use_digest: bool = False
    client_cert: Path | None = None
    client_key: Path | None = None
    ca_bundle: Path | None = None
    timeout: float = Field(default=10.0, gt=0, description="seconds to load the WSDL")
    operation_timeout: float = Field(default=60.0, gt=0, description="seconds per call")
    retries: int = Field(default=3, ge=0, le=10)
    backoff_seconds: float = Field(default=1.0, ge=0)
    xsd_ignore_sequence_order: bool = False

    @field_validator("endpoint")
    @classmethod
    def _not_plain_http_over_the_network(cls, endpoint: str | None) -> str | None:
        problem = plain_http_problem(endpoint) if endpoint is not None else None
        if problem:
            raise ValueError(problem)
        return endpoint

    @model_validator(mode="after")
    def _username_with_password(self) -> SoapOptions:
        if (self.username is None) != (self.password_env is None):
            raise ValueError("WS-Security needs both username and password_env")
        for label in ("records_path", "paging.more_flag_path"):
            text = self.records_path if label == "records_path" else self.paging.more_flag_path
            try:
                compile_field_path(text)
            except PathError as exc:
                raise ValueError(f"{label}: {exc}") from None
        return self


class SoapConnector(HttpConnector):
    """Reads cardholders from a WSDL-described SOAP service."""

    options_model = SoapOptions
    description = "SOAP service (zeep): local WSDL, paging, WS-Security, mTLS"

    # -- building -----------------------------------------------------------------

    def _password(self) -> str | None:
        name = self.options.password_env
        if name is None:
            return None
        password = os.environ.get(name)
        if not password:
            raise ConnectorError(
                self.source_name,
                f"environment variable {name} (the WS-Security password) is not set",
                f"Set {name} for the adapter's service account and restart it",
            )
        return password

    def _open(self):
        options: SoapOptions = self.options
        resolve = self.resolve_path
        try:
            client = build_client(
                resolve(options.wsdl),
                timeout=options.timeout,
                operation_timeout=options.operation_timeout,
                username=options.username,
                password=self._password(),
                use_digest=options.use_digest,
                client_cert=resolve(options.client_cert) if options.client_cert else None,
                client_key=resolve(options.client_key) if options.client_key else None,
                ca_bundle=resolve(options.ca_bundle) if options.ca_bundle else None,
                xsd_ignore_sequence_order=options.xsd_ignore_sequence_order,
                session=self._session,
            )
            service, port = bind_service(client, options.service, options.port, options.endpoint)
        except SoapClientError as exc:
            raise ConnectorError(self.source_name, str(exc), "Fix the SOAP options and run "
                                 "'connectors check' again") from None
        if options.operation not in operation_names(port):
            raise ConnectorError(
                self.source_name,
                f"options.operation: '{options.operation}' is not in the WSDL "
                f"(it has: {', '.join(operation_names(port))})",
                "Correct options.operation",
            )
        return client, service, AnswerReader(client, port.binding, options.operation)

    # -- reading ------------------------------------------------------------------

    def records(self) -> Iterator[SourceRecord]:
        options: SoapOptions = self.options
        paging = options.paging
        client, service, answers = self._open()
        records_at = compile_field_path(options.records_path)
        more_at = compile_field_path(paging.more_flag_path)
        page = paging.first_page
        previous_items: list[Any] = []
        for page_count in range(1, paging.max_pages + 1):
            arguments = self._arguments(page, follow_up=page_count > 1)
            # After a page that said more follow, an answer without a body is no end but a dropped request
            # (a gateway's empty 200): taken for the end, every later page's cardholders would go missing.
            promised = (f"page {page - 1} said more pages follow, and page {page} came back empty (HTTP 200 "
                        "without a body)") if paging.style == "continuation" and page_count > 1 else None
            answer = self._call(client, service, answers, arguments, empty_is_no_end=promised)
            items = _as_list(records_at((answer,))) if answer is not None else []
            if items and items == previous_items:
                if paging.style == "page_number" and page_count > 2:
                    return  # a service that clamps the page number repeats its last page past the end
                raise self._same_page_again(page)
            previous_items = items
            for position, item in enumerate(items):
                yield SourceRecord(f"page {page} item {position}", item)
            if paging.style == "none":
                return
            if paging.style == "page_number" and len(items) < paging.page_size:
                return
            if paging.style == "continuation" and not (answer is not None and self._more_follow(answer, more_at,
                                                                                                   page)):
                return
            page += 1
        raise ConnectorError(
            self.source_name,
            f"the service still had more after {paging.max_pages} pages",
            "Raise options.paging.max_pages, or check that the service ever says it is done",
        )

    def _more_follow(self, answer: Any, more_at: Any, page: int) -> bool:
        """The answer's continuation flag. One that is not there at all (a misspelt more_flag_path) or is no
        true/false (a WSDL that types it as text) would read as "done", and the run would go on with this page's
        cardholders alone: said instead. An absent optional flag is in zeep's answer, as None."""
        flag = more_at((answer,))
        if isinstance(flag, bool) or (flag is None and _declared(answer, self.options.paging.more_flag_path)):
            return flag is True
        if flag is None:
            held = "the answer has no such element"
        else:
            held = "it holds text" if isinstance(flag, str) else f"it holds a {type(flag).__name__}"
        flag_path = self.options.paging.more_flag_path
        raise ConnectorError(
            self.source_name,
            f"options.paging.more_flag_path ('{flag_path}') finds no true/false flag in page {page} ({held})",
            "Set it to the answer's element that says more pages follow (StUF: indicatorVervolgvraag), spelt as in "
            "the WSDL; if the WSDL types that element as text, change its type to xsd:boolean in the local copy; "
            "or use options.paging.style: page_number",
        )

    def _same_page_again(self, page: int) -> ConnectorError:
        # A service that does not page by options.paging.page_argument answers its first page for every page:
        # read on, the same cardholders would come max_pages times, and the rest never.
        paging = self.options.paging
        return ConnectorError(
            self.source_name,
            f"the service answered page {page} with the same records as page {page - 1}",
            f"Check options.paging.page_argument ('{paging.page_argument}') and options.paging.style "
            f"('{paging.style}') against the service's documentation: this service does not seem to page by them",
        )

    def _arguments(self, page: int, follow_up: bool, page_size: int | None = None) -> dict[str, Any]:
        options: SoapOptions = self.options
        paging = options.paging
        arguments = dict(options.arguments)
        if paging.style != "none":
            arguments[paging.page_argument] = page
            if paging.page_size_argument:
                arguments[paging.page_size_argument] = page_size or paging.page_size
            if follow_up and paging.continuation_argument:
                arguments[paging.continuation_argument] = True
        return arguments

    def _call(self, client, service, answers: AnswerReader, arguments: dict[str, Any],
              retries: int | None = None, empty_is_no_end: str | None = None) -> Any:
        """One operation call with retries; the answer as plain dicts and lists, or None. With ``empty_is_no_end``
        (why), an answer without a body is asked again as a failure, not taken for "no data"."""
        options: SoapOptions = self.options
        operation = getattr(service, options.operation)
        transport = client.transport

        def attempt() -> Any:
            try:
                # zeep sends the request and hands back the HTTP response; the reader
                # parses it (or lets zeep do so, raising zeep's own exceptions below).
                with client.settings(raw_response=True):
                    response = operation(**arguments)
                return answers.read(response)
            except Fault as fault:
                # zeep parses a gateway's well-formed HTML error page as a fault without a Fault node.
                if transport.last_was_html or (
                    fault.message == _ZEEP_UNKNOWN_FAULT and transport.last_status != 200
                ):
                    raise self._error_page(transport) from None
                # The fault's own text is left out: back offices word it for their own staff, with the
                # cardholder's name, BSN or pass number in it ("Pashouder J. de Vries (BSN 999 993 653)"), and no
                # mask finds a name. This message goes to the log, the run's stored reason and the dashboard.
                raise SourceFault(
                    self.source_name,
                    f"the service answered a SOAP Fault (code {_fault_code(fault)}); its text is not shown "
                    "because services quote cardholders in it",
                    "Check options.arguments and the account's rights; ask the service's administrator about "
                    "this fault code and the time of the run (their log has the fault's text)",
                ) from None
            except TransportError as error:
                if error.status_code == 200 and not error.content:
                    if empty_is_no_end:
                        raise RetryableError(empty_is_no_end) from None
                    return None  # an empty answer: the service has nothing for us
                if transport.last_was_html:
                    raise self._error_page(transport) from None
                if error.status_code == 200:  # an answer, not a refusal: one that is no readable XML
                    raise ConnectorError(
                        self.source_name,
                        "the service answered (HTTP 200) with XML that cannot be read (broken, or nested too "
                        "deeply)",
                        "Ask the service's administrator to look at its answer to this request; nothing of this "
                        "run was applied",
                    ) from None
                if is_refusal(error.status_code):
                    raise self._refused(f"HTTP {error.status_code}") from None
                raise asked_again(transport.last_status, f"answered HTTP {error.status_code}",
                                  transport.last_retry_after) from None
            except requests.RequestException as error:
                raise RetryableError(describe_transport_error(error, options.operation_timeout)) from None
            except ValidationError as error:
                # zeep checks the request against the WSDL before sending it.
                raise ConnectorError(
                    self.source_name,
                    f"the request does not fit the WSDL: {redact(str(error.message))}",
                    "Add or correct the value in options.arguments (or options.paging)",
                ) from None
            except XMLSyntaxError as error:
                # Well-formed XML, but its root is no envelope of the binding's SOAP version (zeep's check).
                raise self._no_envelope(error, answers.envelope_namespace, transport.last_status) from None
            except (DTDForbidden, EntitiesForbidden):
                # zeep refuses a DTD or an entity (a bomb, an external file), and its message quotes what the
                # entity held.
                raise ConnectorError(
                    self.source_name,
                    f"the service answered XML that cannot be read safely (a document type, an entity or broken "
                    f"XML, HTTP {transport.last_status})",
                    "Ask the service's administrator: a SOAP answer holds neither a DTD nor entities",
                ) from None
            except XMLParseError as error:
                raise ConnectorError(
                    self.source_name,
                    f"the answer does not fit the WSDL: {redact(str(error.message))}",
                    "If the service sends elements out of order, set options.xsd_ignore_sequence_order: "
                    "true; otherwise check that the local WSDL matches the service's version",
                ) from None

        try:
            answer = with_retries(
                attempt,
                retries=options.retries if retries is None else retries,
                backoff_seconds=options.backoff_seconds,
                asking=f"source '{self.source_name}': the SOAP service at {self._address(service)}:",
            )
        except AnswerTooLarge as exc:
            raise ConnectorError(self.source_name, f"the SOAP service at {self._address(service)}: {exc}",
                                 "Lower the page size (options.paging.page_size), or ask the service's "
                                 "administrator why the answer does not end") from None
        except RetryableError as exc:
            attempts = (options.retries if retries is None else retries) + 1
            raise SourceUnavailable(
                self.source_name,
                f"the SOAP service at {self._address(service)}: {exc.reason} (after {attempts} attempts)",
                "Ask the service's administrator about the account's rate limit, or raise options.backoff_seconds "
                "and options.retries, then run again" if isinstance(exc, RateLimited)
                else "Check that the service and its gateway are up, then run again; "
                "raise options.operation_timeout if it is merely slow",
            ) from None
        return answer

    def _error_page(self, transport) -> Exception:  # type: ignore[no-untyped-def]
        """What an error page instead of a SOAP answer means. A gateway refuses a missing client certificate or
        a wrong account with a page of its own (nginx: 400 "No required SSL certificate was sent"): a refusal,
        the same on every attempt. Other statuses are an outage worth another attempt."""
        page = "an HTML error page" if transport.last_was_html else "an error page that is no SOAP Fault"
        if is_refusal(transport.last_status):
            return self._refused(f"HTTP {transport.last_status}; its gateway answered {page}")
        return asked_again(transport.last_status, f"the gateway answered {page}, HTTP {transport.last_status}",
                           transport.last_retry_after)

    def _no_envelope(self, error: XMLSyntaxError, expected: str, status: int | None) -> ConnectorError:
        found_tag = _ROOT_FOUND.search(str(error.message))
        found = "XML that is no SOAP envelope"
        if found_tag:
            namespace, _, name = found_tag.group(1).lstrip("{").rpartition("}")
            found = (f"a {_SOAP_VERSIONS[namespace]} envelope" if name == "Envelope" and namespace in _SOAP_VERSIONS
                     else f"XML whose root element is {redact(found_tag.group(1))}")
        version = _SOAP_VERSIONS.get(expected, "SOAP")
        return ConnectorError(
            self.source_name,
            f"the service answered {found}, not the {version} envelope of the WSDL's port (HTTP {status})",
            "If the service speaks the other SOAP version, set options.port to the WSDL's port of that version "
            "(SOAP 1.1 and 1.2 ports are often offered side by side); otherwise a gateway in between answered: "
            "ask its administrator what it answers to this request",
        )

    def _refused(self, how: str) -> ConnectorError:
        return ConnectorError(self.source_name, f"the service refused the request ({how})",
                              "Check options.endpoint, the client certificate and the account")

    @staticmethod
    def _address(service) -> str:
        return re.sub(r"\?.*$", "", service._binding_options.get("address", "(unknown)"))

    # -- checking -------------------------------------------------------------------

    def check(self) -> CheckResult:
        check = CheckBuilder(self.source_name, "soap")
        if not check.options_valid(self):
            return check.result()
        try:
            client, service, answers = self._open()
        except ConnectorError as exc:
            check.failed_from("settings", exc)
            return check.result()
        slower = (f"; its answers go through zeep's own, slower parse ({answers.unmirrored_because})"
                  if answers.unmirrored_because else "")
        check.passed("settings", f"options are valid; the WSDL is read and offers '{self.options.operation}'{slower}")
        address = self._address(service)
        if self._session is None:
            problem = probe_tcp(address, min(self.options.operation_timeout, 10.0))
            if problem:
                check.failed_with("connection", f"{problem}; check options.endpoint and the firewall")
                return check.result()
        try:
            self._call(client, service, answers, self._arguments(self.options.paging.first_page, False, 1),
                       retries=0)
        except SourceFault as exc:
            check.passed("connection", f"the service at {address} answers")
            check.failed_from("credentials", exc)
            return check.result()
        except ConnectorError as exc:
            check.failed_from("connection", exc)
            return check.result()
        check.passed("connection", f"the service at {address} answers")
        check.passed("credentials", "a first page was read")
        return check.result()

    @classmethod
    @contextlib.contextmanager
    def sample(cls) -> Iterator[SoapConnector]:
        endpoint = "https://stadspas.gemeente.example/soap/v1"
        yield cls(
            {
                "wsdl": str(SAMPLE_WSDL),
                "operation": "zoekPashouders",
                "endpoint": endpoint,
                "arguments": {"gemeentecode": "0599"},
                "records_path": "huishouden",
                "paging": {"style": "continuation", "page_size": 2},
                "retries": 0,
            },
            source_name="sample-soap",
            session=replay_session(_sample_answer, endpoint),
        )


_SOAP_VERSIONS = {"http://schemas.xmlsoap.org/soap/envelope/": "SOAP 1.1",
                  "http://www.w3.org/2003/05/soap-envelope": "SOAP 1.2"}
# zeep: "... does not contain a valid {ns}Envelope root element. The root element found is {ns}tag "
_ROOT_FOUND = re.compile(r"root element found is (\S+)")
_PAGE_IN_REQUEST = re.compile(rb"<(?:\w+:)?pagina>(\d+)<")


def _sample_answer(request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
    body = request.body if isinstance(request.body, bytes) else (request.body or "").encode()
    match = _PAGE_IN_REQUEST.search(body)
    page_file = SAMPLES / f"page-{int(match.group(1)) if match else 1}.xml"
    if not page_file.exists():
        return 200, {"Content-Type": "text/xml"}, b""
    return 200, {"Content-Type": "text/xml; charset=utf-8"}, page_file.read_bytes()


# A fault code is a QName (soap:Client, env:Sender, sp:SP-404): no spaces, no punctuation but . - _
_QNAME = re.compile(r"(?:[A-Za-z_][\w.-]*:)?[A-Za-z_][\w.-]*")


def _fault_code(fault: Fault) -> str:
    """The fault's code, to tell faults apart. Some back offices write their message into the code (PHP's
    SoapFault($code, $text) with its arguments swapped), name and BSN included: text that is no QName is not
    shown, and numbers in a QName are removed as in any source text."""
    code = fault.code
    if code is None:
        return "none"
    text = str(getattr(code, "text", code)).strip()
    if not _QNAME.fullmatch(text):
        return "a code that is no code but text, not shown"
    return redact(text)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _declared(answer: Any, path: str) -> bool:
    """Whether each step of a plain dotted path is a key of the answer (zeep's answer has every element its
    schema declares, None when absent). A path with ``$``, ``^`` or an index is taken as declared."""
    if any(mark in path for mark in "$^["):
        return True
    node = answer
    for name in path.strip().split("."):
        if node is None:
            return True  # an optional element around the flag, absent
        if not isinstance(node, dict) or name not in node:
            return False
        node = node[name]
    return True
