"""The one place a zeep client is built.

Every SOAP connection gets the same treatment (open-forms' habit): both zeep
timeouts (``timeout`` loads the WSDL, ``operation_timeout`` bounds each call;
zeep's default for calls is *no* timeout, which hangs a nightly sync), client
certificate and CA bundle for mTLS gateways, WS-Security UsernameToken, and a
WSDL read from a local file only: a back office's WSDL URL is often behind
the same gateway we are trying to diagnose, and a changed remote WSDL should
not silently change what we send. Tests inject a requests session.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlparse

import requests
import zeep
from zeep.transports import Transport
from zeep.wsse.username import UsernameToken

from connectors.http import configure_tls, plain_http_problem, read_bounded, retry_after_seconds


class _ConversionErrorsWithoutValues(logging.Filter):
    """zeep's own parse logs a value its XML type cannot read with the value itself in the traceback ("Unrecognised
    ISO 8601 date format: '...'"): a birth date typed xsd:date would be logged whole, and no mask recognises a
    date. The line is kept, without the value. (The connector's own walk rejects such a record instead:
    ``connectors.soap_answers``.)"""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == "Error during xml -> python translation":
            record.msg = ("a value in the service's answer cannot be read by its XML type and was taken as empty "
                          "(zeep's own parse; the value is not logged)")
            record.args, record.exc_info, record.exc_text = None, None, None
        return True


logging.getLogger("zeep.xsd.types.simple").addFilter(_ConversionErrorsWithoutValues())


class SoapClientError(Exception):
    """The client could not be built; the message says which setting to fix."""


class LocalWsdlTransport(Transport):
    """A zeep transport that loads WSDL/XSD from files only and remembers the last answer.

    The last answer is kept (status and whether it was HTML) because zeep turns a
    gateway's HTML 502 page into ``Fault("Unknown fault occured")``; only the
    HTTP response tells the two apart.
    """

    def __init__(self, *args: object, **kwargs: object):
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.last_status: int | None = None
        self.last_was_html = False
        self.last_retry_after: float | None = None  # the wait the last answer's Retry-After asked for, if any

    def load(self, url: str) -> bytes:
        if urlparse(url).scheme in ("http", "https"):
            raise SoapClientError(
                f"the WSDL refers to {url}; only local files are read. Download it next to the "
                "WSDL and change the schemaLocation/location to the local file name"
            )
        return super().load(url)

    def post(self, address: str, message: bytes, headers: dict[str, str]) -> requests.Response:
        """zeep's post, but the whole answer within ``operation_timeout`` and a size (``read_bounded``): its own
        bounds only the wait between two packets. Nor is anything logged: zeep's logs the request and the whole
        answer at DEBUG, names and BSNs included."""
        self.last_status, self.last_was_html, self.last_retry_after = None, False, None
        response = self.session.post(address, data=message, headers=headers, timeout=self.operation_timeout,
                                     stream=True)
        read_bounded(response, deadline_seconds=self.operation_timeout)
        self.last_status = response.status_code
        self.last_retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        content_type = response.headers.get("Content-Type", "").lower()
        start = response.content[:200].lstrip().lower()
        self.last_was_html = "text/html" in content_type or start.startswith((b"<!doctype html", b"<html"))
        return response


def build_client(
    wsdl: Path,
    *,
    timeout: float,
    operation_timeout: float,
    username: str | None = None,
    password: str | None = None,
    use_digest: bool = False,
    client_cert: Path | None = None,
    client_key: Path | None = None,
    ca_bundle: Path | None = None,
    xsd_ignore_sequence_order: bool = False,
    session: requests.Session | None = None,
) -> zeep.Client:
    """A zeep client for a local WSDL with timeouts, mTLS and WS-Security set."""
    wsdl_path = Path(wsdl)
    if str(wsdl).startswith(("http://", "https://")):
        raise SoapClientError("options.wsdl must be a local file path, not a URL")
    if not wsdl_path.is_file():
        raise SoapClientError(f"the WSDL file {wsdl_path} does not exist")
    for label, path in (("client_cert", client_cert), ("client_key", client_key), ("ca_bundle", ca_bundle)):
        if path is not None and not Path(path).is_file():
            raise SoapClientError(f"options.{label}: the file {path} does not exist")
    if (username is None) != (password is None):
        raise SoapClientError("WS-Security needs both a username and a password")

    session = session or requests.Session()
    configure_tls(session, client_cert, client_key, ca_bundle)
    transport = LocalWsdlTransport(timeout=timeout, operation_timeout=operation_timeout, session=session)
    settings = zeep.Settings(
        strict=True,
        # Some back offices send sequence elements out of order (Centric GWS, StUF bridges).
        xsd_ignore_sequence_order=xsd_ignore_sequence_order,
    )
    wsse = UsernameToken(username, password, use_digest=use_digest) if username else None
    try:
        return zeep.Client(str(wsdl_path.resolve()), transport=transport, settings=settings, wsse=wsse)
    except SoapClientError:
        raise
    except Exception as exc:  # lxml/zeep parse errors: name the file, not a stack trace
        raise SoapClientError(f"the WSDL {wsdl_path.name} could not be read: {exc}") from None


def bind_service(
    client: zeep.Client,
    service_name: str | None,
    port_name: str | None,
    endpoint: str | None,
):
    """The service proxy for the chosen service and port, at ``endpoint`` if given."""
    services = client.wsdl.services
    if not services:
        raise SoapClientError("the WSDL declares no service")
    if service_name is None:
        service = next(iter(services.values()))
    elif service_name in services:
        service = services[service_name]
    else:
        raise SoapClientError(
            f"options.service: '{service_name}' is not in the WSDL (it has: {', '.join(services)})"
        )
    ports = service.ports
    if port_name is None:
        port = next(iter(ports.values()))
    elif port_name in ports:
        port = ports[port_name]
    else:
        raise SoapClientError(f"options.port: '{port_name}' is not in service '{service.name}' "
                              f"(it has: {', '.join(ports)})")
    address = endpoint or port.binding_options.get("address")
    problem = plain_http_problem(address) if address else None
    if problem:  # the WSDL's own address (options.endpoint is checked with the options)
        raise SoapClientError(f"the WSDL's soap:address: {problem} (or set options.endpoint)")
    return client.create_service(port.binding.name, address), port


def operation_names(port) -> list[str]:
    return sorted(port.binding.port_type.operations)
