import pickle
from pathlib import Path

import pytest
from lxml import etree

from adapter.connector import ConnectorError, SourceFault, SourceUnavailable
from adapter.mapping import load_mapping
from adapter.records import CardholderRecord, PassStatus, RejectedRecord
from adapter.sources import map_records
from connectors.soap import SoapConnector
from connectors.soap_client import SoapClientError, build_client
from tests.connectors import soap_server
from tests.connectors.soap_server import EMPTY_ANSWER, EMPTY_BODY, FAULT, GATEWAY_502, Answer

REPO = Path(__file__).parents[2]
WSDL = REPO / "connectors" / "wsdl" / "stadspas-v1.wsdl"
XSD = REPO / "connectors" / "wsdl" / "stadspas-v1.xsd"
MAPPING = load_mapping(REPO / "mappings" / "demo-soap.yaml")
NS = {"soap": "http://schemas.xmlsoap.org/soap/envelope/",
      "wsse": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd",
      "sp": "urn:example:stadspas:v1"}


@pytest.fixture
def server():
    state = soap_server.SoapTestServer()
    httpd, thread = soap_server.start(state)
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


ONE_CALL = {"paging": {"style": "none"},
            "arguments": {"gemeentecode": "0599", "pagina": 1, "maximumAantal": 100}}


def connector(server, **options):
    values = {
        "wsdl": str(WSDL), "operation": "zoekPashouders", "endpoint": server.url,
        "arguments": {"gemeentecode": "0599"}, "records_path": "huishouden",
        "paging": {"style": "continuation", "page_size": 2, "continuation_argument": "indicatorVervolgvraag"},
        "timeout": 2, "operation_timeout": 2, "retries": 0, "backoff_seconds": 0,
    }
    values.update(options)
    return SoapConnector(values, source_name="gws")


def request_body(recorded) -> etree._Element:
    envelope = etree.fromstring(recorded.body)
    return envelope.find("soap:Body", NS)[0]


def test_reads_three_pages_following_the_continuation_flag(server):
    records = list(connector(server))
    assert [record.key for record in records] == ["page 1 item 0", "page 2 item 0", "page 3 item 0"]
    assert [record.fields["huishoudnummer"] for record in records] == ["HH-0001", "HH-0002", "HH-0003"]
    pages = [request_body(recorded).findtext("sp:pagina", namespaces=NS) for recorded in server.requests]
    assert pages == ["1", "2", "3"]
    follow_up_flags = [request_body(recorded).findtext("sp:indicatorVervolgvraag", namespaces=NS)
                       for recorded in server.requests]
    assert follow_up_flags == [None, "true", "true"]


def test_a_service_that_ignores_the_page_number_is_refused_at_its_second_page(server):
    """A service that does not page by options.paging.page_argument answers its first page, flag and all, for
    every page: the connector asked it max_pages (10,000) times, handed the same households on each time, and
    then blamed the service for never saying it is done."""
    server.script = [Answer(file="page-1.xml")] * 5
    with pytest.raises(ConnectorError) as caught:
        list(connector(server, paging={"style": "continuation", "page_size": 2, "max_pages": 5}))
    said = str(caught.value)
    assert "answered page 2 with the same records as page 1" in said and "options.paging.page_argument" in said
    assert "6064366011000001" not in said
    assert len(server.requests) == 2
    server.script = [Answer(file="page-1.xml")] * 5
    with pytest.raises(ConnectorError, match="answered page 2 with the same records as page 1"):
        list(connector(server, paging={"style": "page_number", "page_size": 1, "max_pages": 5}))


def test_a_last_full_page_repeated_past_the_end_ends_the_paging(server):
    """Services that clamp the page number answer their last page again for every page past it. When that last
    page is full, page-number paging asked on (10,000 times by default) and handed its households on each time."""
    server.script = [Answer(file="page-1.xml"), Answer(file="page-2.xml")] + [Answer(file="page-2.xml")] * 5
    records = list(connector(server, paging={"style": "page_number", "page_size": 1, "max_pages": 6}))
    assert [record.fields["huishoudnummer"] for record in records] == ["HH-0001", "HH-0002"]
    assert len(server.requests) == 3


def test_a_continuation_flag_the_answer_does_not_have_is_named_not_read_as_done(server):
    """A misspelt options.paging.more_flag_path found nothing, which read as "no more pages": the run went on with
    the first page's households alone (on a first load, nothing else was ever loaded), and nothing was said."""
    with pytest.raises(ConnectorError) as caught:
        list(connector(server, paging={"style": "continuation", "page_size": 2,
                                       "more_flag_path": "indicatorVervolgVraag"}))
    said = str(caught.value)
    assert "options.paging.more_flag_path ('indicatorVervolgVraag') finds no true/false flag in page 1" in said
    assert len(server.requests) == 1


def test_a_continuation_flag_typed_as_text_is_named_not_read_as_done(server, tmp_path):
    """A WSDL that types the flag xsd:string hands 'true' over as text, which is not True: page 1 alone."""
    (tmp_path / "stadspas-v1.xsd").write_text(XSD.read_text(encoding="utf-8").replace(
        '<xsd:element name="indicatorVervolgvraag" type="xsd:boolean" minOccurs="0"/>\n      </xsd:sequence>\n'
        '    </xsd:complexType>\n  </xsd:element>\n</xsd:schema>',
        '<xsd:element name="indicatorVervolgvraag" type="xsd:string" minOccurs="0"/>\n      </xsd:sequence>\n'
        '    </xsd:complexType>\n  </xsd:element>\n</xsd:schema>'), encoding="utf-8")
    assert 'type="xsd:string" minOccurs="0"' in (tmp_path / "stadspas-v1.xsd").read_text(encoding="utf-8")
    (tmp_path / "stadspas-v1.wsdl").write_text(WSDL.read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(ConnectorError) as caught:
        list(connector(server, wsdl=str(tmp_path / "stadspas-v1.wsdl")))
    said = str(caught.value)
    assert "finds no true/false flag in page 1 (it holds text)" in said and "xsd:boolean" in said
    assert "'true'" not in said


def test_page_number_paging_stops_at_a_short_page(server):
    records = list(connector(server, paging={"style": "page_number", "page_size": 1}))
    # Each recorded page holds one household (a full page of 1): page 4 is asked
    # for and answered empty, which ends the paging.
    assert [record.fields["huishoudnummer"] for record in records] == ["HH-0001", "HH-0002", "HH-0003"]
    assert len(server.requests) == 4


def test_every_request_body_is_valid_against_the_xsd(server):
    schema = etree.XMLSchema(etree.parse(str(XSD)))
    list(connector(server, arguments={"gemeentecode": "0599", "peildatum": "2026-07-01"}))
    assert len(server.requests) == 3
    for recorded in server.requests:
        body = request_body(recorded)
        assert schema.validate(body), schema.error_log


def test_households_map_to_one_record_per_member_pass(server):
    mapped = list(map_records(connector(server), MAPPING))
    accepted = [record for record in mapped if isinstance(record, CardholderRecord)]
    rejected = [record for record in mapped if isinstance(record, RejectedRecord)]
    assert len(accepted) == 6
    zoe_new_pass = next(record for record in accepted if record.pass_number == "6064366011000003")
    assert (zoe_new_pass.household_id, zoe_new_pass.cardholder_id, zoe_new_pass.bsn) == ("HH-0001", "P-02", "999993847")
    assert zoe_new_pass.replaces_pass_number == "6064366011000002"
    rene = next(record for record in accepted if record.cardholder_id == "P-03")
    assert rene.bsn == "000009921" and rene.valid_until is None  # xsi:nil
    assert {record.pass_status for record in accepted} == {PassStatus.ACTIVE, PassStatus.REPLACED, PassStatus.BLOCKED}
    # Noël's StUF birth date 20170600 has no day: rejected, with the field named and no value.
    assert rejected == [RejectedRecord("page 3 item 0 lid[1].pas[0]",
                                       ("birth_date: is an incomplete date (day or month unknown)",))]


def test_ws_security_username_token_reaches_the_server(server, monkeypatch):
    monkeypatch.setenv("TEST_GWS_PASSWORD", "s3cret-wachtwoord")
    list(connector(server, username="adapter", password_env="TEST_GWS_PASSWORD", **ONE_CALL))
    [recorded] = server.requests
    envelope = etree.fromstring(recorded.body)
    token = envelope.find("soap:Header/wsse:Security/wsse:UsernameToken", NS)
    assert token is not None
    assert token.findtext("wsse:Username", namespaces=NS) == "adapter"
    assert token.findtext("wsse:Password", namespaces=NS) == "s3cret-wachtwoord"


def test_a_request_missing_a_required_argument_is_named_before_sending(server):
    with pytest.raises(ConnectorError, match="Missing element pagina.*options.arguments"):
        list(connector(server, paging={"style": "none"}))
    assert server.requests == []


def test_missing_password_variable_is_named(server, monkeypatch):
    monkeypatch.delenv("TEST_GWS_PASSWORD", raising=False)
    with pytest.raises(ConnectorError, match="TEST_GWS_PASSWORD"):
        list(connector(server, username="adapter", password_env="TEST_GWS_PASSWORD"))
    assert server.requests == []


def test_a_fault_is_reported_with_its_code_but_not_its_text_and_pickles(server):
    server.script = [FAULT]
    with pytest.raises(SourceFault) as caught:
        list(connector(server, retries=2))
    message = str(caught.value)
    assert "source 'gws'" in message and "soap:Client" in message and "their log has the fault's text" in message
    # The back office wrote a name, a BSN (whole and in groups) and a pass number in its fault string: no mask
    # finds a name, so none of the text is passed on.
    for quoted in ("onbekend", "Vries", "999993653", "993", "3660"):
        assert quoted not in message
    assert len(server.requests) == 1  # a fault is an answer, not retried
    # Fault.detail is an lxml element; nothing of it may ride along in our exception.
    assert str(pickle.loads(pickle.dumps(caught.value))) == message


FAULT_ENVELOPE = (soap_server.ENVELOPES / "fault.xml").read_bytes()


@pytest.mark.parametrize("code, shown", [
    # PHP's SoapFault($code, $text) with its arguments swapped, and services that put their own text in the code.
    ("Pashouder J. de Vries (pas 6064366011000003) onbekend", "a code that is no code but text, not shown"),
    ("BSN 999993653 niet gevonden", "a code that is no code but text, not shown"),
    ("soap:Client.Bsn999993653", "soap:Client.Bsn[number removed]"),
    ("soap:Server", "soap:Server"),
    ("sp:SP-404.Onbekend_Pasnummer", "sp:SP-404.Onbekend_Pasnummer"),
])
def test_a_fault_code_with_a_cardholder_in_it_is_not_passed_on(server, code, shown):
    """A fault's code is a QName (soap:Client, sp:SP-404) and is reported to tell faults apart, but some back
    offices write their message into it: the code went into the error, the run's stored reason and the dashboard
    as it came, name, BSN and pass number included."""
    server.script = [Answer("500 Internal Server Error", body=FAULT_ENVELOPE.replace(
        b"<faultcode>soap:Client</faultcode>", f"<faultcode>{code}</faultcode>".encode()))]
    with pytest.raises(SourceFault) as caught:
        list(connector(server))
    message = str(caught.value)
    assert f"(code {shown})" in message
    for quoted in ("Vries", "999993653", "6064366011000003", "niet gevonden"):
        assert quoted not in message


def test_a_slow_server_times_out_and_is_retried(server):
    server.script = [Answer(file="page-1.xml", delay_seconds=0.8), Answer(file="page-1.xml", delay_seconds=0.8)]
    with pytest.raises(SourceUnavailable) as caught:
        list(connector(server, operation_timeout=0.3, retries=1, **ONE_CALL))
    assert "timeout" in str(caught.value) and "after 2 attempts" in str(caught.value)
    assert len(server.requests) == 2


def test_timeout_then_success(server):
    server.script = [Answer(file="page-3.xml", delay_seconds=0.8), Answer(file="page-3.xml")]
    records = list(connector(server, operation_timeout=0.3, retries=1, **ONE_CALL))
    assert [record.fields["huishoudnummer"] for record in records] == ["HH-0003"]


# zeep turns well-formed HTML into Fault("Unknown fault occured") and broken HTML into a
# TransportError; both must read as the gateway's error page.
@pytest.mark.parametrize("page", ["gateway-502.html", "gateway-502-unclosed.html"])
def test_an_html_502_from_the_gateway_is_named_as_such(server, page):
    answer = Answer("502 Bad Gateway", page, "text/html")
    server.script = [answer, answer]
    with pytest.raises(SourceUnavailable) as caught:
        list(connector(server, retries=1))
    assert "the gateway answered an HTML error page, HTTP 502" in str(caught.value)
    assert "Unknown fault" not in str(caught.value)
    assert len(server.requests) == 2


NGINX_NO_CERTIFICATE = (b"<html>\r\n<head><title>400 No required SSL certificate was sent</title></head>\r\n<body>\r\n"
                        b"<center><h1>400 Bad Request</h1></center>\r\n<center>No required SSL certificate was sent"
                        b"</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")
GATEWAY_XML_401 = (b'<?xml version="1.0"?><am:fault xmlns:am="http://wso2.org/apimanager"><am:code>900901</am:code>'
                   b"<am:message>Invalid Credentials</am:message></am:fault>")


@pytest.mark.parametrize("status, body, content_type", [
    ("400 Bad Request", NGINX_NO_CERTIFICATE, "text/html"),
    ("403 Forbidden", (soap_server.ENVELOPES / "gateway-502.html").read_bytes(), "text/html"),
    ("401 Unauthorized", GATEWAY_XML_401, "application/xml"),
], ids=["nginx-no-client-certificate", "html-403", "xml-401"])
def test_a_gateway_that_refuses_with_its_own_page_is_a_refusal_not_an_outage(server, status, body, content_type):
    """A gateway in front of the service refuses a missing client certificate or a wrong account with an error
    page of its own (nginx: 400 "No required SSL certificate was sent"). That was asked again as an outage and
    ended in "the gateway answered an HTML error page ... check that the service and its gateway are up": the
    operator looked at the service's uptime, not at the certificate."""
    server.script = [Answer(status, body=body, content_type=content_type)] * 3
    with pytest.raises(ConnectorError) as caught:
        list(connector(server, retries=2))
    said = str(caught.value)
    assert not isinstance(caught.value, SourceUnavailable)
    assert f"refused the request (HTTP {status.split()[0]}" in said and "client certificate" in said
    assert "are up" not in said
    assert len(server.requests) == 1


@pytest.mark.parametrize("body, content_type", [
    ((soap_server.ENVELOPES / "gateway-502.html").read_bytes(), "text/html"), (b"", "text/plain")],
    ids=["html-page", "empty"])
def test_a_gateways_408_timeout_is_asked_again_not_a_refusal(server, body, content_type):
    """A gateway that timed the request out answers 408: the service was slow, nothing was refused."""
    server.script = [Answer("408 Request Timeout", body=body, content_type=content_type)]
    assert [record.fields["huishoudnummer"] for record in connector(server, retries=1, **ONE_CALL)] == ["HH-0001"]
    assert len(server.requests) == 2


def test_a_502_then_the_pages(server):
    server.script = [GATEWAY_502]
    assert len(list(connector(server, retries=1))) == 3


@pytest.mark.parametrize("answer", [EMPTY_BODY, EMPTY_ANSWER], ids=["empty-body", "no-households"])
def test_an_empty_answer_means_no_records(server, answer):
    server.script = [answer]
    assert list(connector(server, retries=2)) == []
    assert len(server.requests) == 1


def test_an_empty_body_after_a_page_that_said_more_follow_is_no_end(server):
    """Page 1 says more follow (indicatorVervolgvraag true); page 2 comes back as HTTP 200 without a body, as a
    gateway answers when the service behind it dropped the request. That was taken for the end: the run went on
    with page 1's households alone, and those of every later page counted as missing, to be deactivated after
    the grace nights (or, on a first load, never loaded)."""
    server.script = [Answer(file="page-1.xml"), EMPTY_BODY, EMPTY_BODY]
    with pytest.raises(SourceUnavailable) as caught:
        list(connector(server, retries=1))
    said = str(caught.value)
    assert "page 1 said more pages follow, and page 2 came back empty" in said and "after 2 attempts" in said
    assert "run again" in said
    assert len(server.requests) == 3


def test_an_empty_body_after_more_is_asked_again(server):
    server.script = [Answer(file="page-1.xml"), EMPTY_BODY]
    records = list(connector(server, retries=1))
    assert [record.fields["huishoudnummer"] for record in records] == ["HH-0001", "HH-0002", "HH-0003"]


def test_an_empty_page_number_page_still_ends_the_paging(server):
    server.script = [Answer(file="page-1.xml"), EMPTY_BODY]
    records = list(connector(server, paging={"style": "page_number", "page_size": 1}, retries=1))
    assert [record.fields["huishoudnummer"] for record in records] == ["HH-0001"]
    assert len(server.requests) == 2


def test_out_of_order_elements_need_xsd_ignore_sequence_order(server):
    server.script = [Answer(file="out-of-order.xml")]
    with pytest.raises(ConnectorError, match="xsd_ignore_sequence_order"):
        list(connector(server, **ONE_CALL))
    server.script = [Answer(file="out-of-order.xml")]
    [record] = list(connector(server, **ONE_CALL, xsd_ignore_sequence_order=True))
    [member] = record.fields["lid"]
    assert (member["voornamen"], member["geslachtsnaam"]) == ("Sem", "Bakker")


def test_check_reports_each_step(server):
    result = connector(server).check()
    assert result.ok, result.render()
    assert [step.name for step in result.steps] == ["settings", "connection", "credentials"]
    server.script = [FAULT]
    failed = connector(server).check()
    assert [(step.name, step.ok) for step in failed.steps] == [
        ("settings", True), ("connection", True), ("credentials", False)]
    assert "soap:Client" in failed.render()


def test_check_names_a_wrong_operation_and_a_closed_port(server):
    wrong = connector(server, operation="zoekAlles").check()
    assert not wrong.ok and "zoekPashouders" in wrong.steps[0].message
    closed = connector(server, endpoint="http://127.0.0.1:9/soap").check()
    assert [(step.name, step.ok) for step in closed.steps][:2] == [("settings", True), ("connection", False)]


def test_the_client_builder_reads_local_wsdl_only(tmp_path):
    with pytest.raises(SoapClientError, match="local file"):
        build_client("https://example.org/service?wsdl", timeout=1, operation_timeout=1)
    remote_import = tmp_path / "remote.wsdl"
    remote_import.write_text(WSDL.read_text(encoding="utf-8").replace(
        'schemaLocation="stadspas-v1.xsd"', 'schemaLocation="https://example.org/stadspas-v1.xsd"'), encoding="utf-8")
    with pytest.raises(SoapClientError, match="only local files"):
        build_client(remote_import, timeout=1, operation_timeout=1)
    client = build_client(WSDL, timeout=3, operation_timeout=7)
    assert (client.transport.load_timeout, client.transport.operation_timeout) == (3, 7)


def test_client_certificate_and_ca_bundle_go_on_the_session(tmp_path):
    for name in ("client.pem", "client.key", "ca.pem"):
        (tmp_path / name).write_text("placeholder", encoding="utf-8")
    client = build_client(WSDL, timeout=1, operation_timeout=1, client_cert=tmp_path / "client.pem",
                          client_key=tmp_path / "client.key", ca_bundle=tmp_path / "ca.pem")
    session = client.transport.session
    assert session.cert == (str(tmp_path / "client.pem"), str(tmp_path / "client.key"))
    assert session.verify == str(tmp_path / "ca.pem")
    with pytest.raises(SoapClientError, match="ca_bundle"):
        build_client(WSDL, timeout=1, operation_timeout=1, ca_bundle=tmp_path / "missing.pem")


def test_answers_become_the_plain_dicts_zeep_serialize_object_gives(server):
    from zeep.helpers import serialize_object

    from connectors.soap_answers import plain
    from connectors.soap_client import bind_service

    def reference(value):
        # What the connector did before its own conversion: zeep's helper, then plain dicts.
        value = serialize_object(value, dict)
        if isinstance(value, dict):
            return {key: reference(item) for key, item in value.items()}
        if isinstance(value, list):
            return [reference(item) for item in value]
        return value

    service, _ = bind_service(build_client(WSDL, timeout=2, operation_timeout=2), None, None, server.url)
    answers = [service.zoekPashouders(gemeentecode="0599", pagina=page, maximumAantal=2) for page in (1, 2, 3)]
    converted = [plain(answer) for answer in answers]
    assert converted == [reference(answer) for answer in answers]
    assert repr(converted) == repr([reference(answer) for answer in answers])  # same types, same key order
    assert all(type(page) is dict and type(page["huishouden"][0]) is dict for page in converted)
    assert pickle.loads(pickle.dumps(converted)) == converted


@pytest.mark.parametrize("file, said", [
    ("entity.xml", "XML that cannot be read safely (a document type, an entity or broken XML, HTTP 200)"),
    ("broken.xml", "the service answered (HTTP 200) with XML that cannot be read"),
])
def test_an_answer_that_is_no_readable_xml_is_said_so_without_its_content(server, file, said):
    """Not 'the service refused the request' (its advice would send the operator to the certificate), and not the
    entity's text, which zeep's own message quotes (a name here)."""
    server.script = [Answer(file=file)]
    with pytest.raises(ConnectorError) as caught:
        list(connector(server))
    message = str(caught.value)
    assert said in message and "Anouk" not in message and "refused" not in message
    assert len(server.requests) == 1


@pytest.mark.parametrize("body, found", [
    ((soap_server.ENVELOPES / "page-1.xml").read_bytes().replace(
        b"http://schemas.xmlsoap.org/soap/envelope/", b"http://www.w3.org/2003/05/soap-envelope"),
     "a SOAP 1.2 envelope"),
    (GATEWAY_XML_401, "XML whose root element is {http://wso2.org/apimanager}fault"),
], ids=["soap-1.2-answer", "gateway-xml"])
def test_an_answer_that_is_no_envelope_of_the_wsdls_soap_version_is_said_so(server, body, found):
    """A service that answers in SOAP 1.2 while the WSDL's port (the first, by default) is SOAP 1.1, or a gateway's
    own XML with HTTP 200: zeep finds no envelope of its version, and the operator read "XML that cannot be read
    safely (a document type, an entity or broken XML) ... a SOAP answer holds neither a DTD nor entities"."""
    server.script = [Answer(body=body, content_type="application/soap+xml; charset=utf-8")]
    with pytest.raises(ConnectorError) as caught:
        list(connector(server, retries=1))
    said = str(caught.value)
    assert f"the service answered {found}, not the SOAP 1.1 envelope of the WSDL's port (HTTP 200)" in said
    assert "options.port" in said
    assert "DTD" not in said and "Anouk" not in said
    assert len(server.requests) == 1


@pytest.mark.parametrize("kind, said", [("drip", "took longer than 1 s to send its whole answer"),
                                        ("drip-length", "took longer than 1 s to send its whole answer"),
                                        ("endless", "the answer went on past 1 MB")])
def test_a_soap_answer_that_drips_or_never_ends_is_given_up_within_its_bounds(monkeypatch, kind, said):
    import time

    from connectors import http
    from tests.connectors.dripping_server import serving

    monkeypatch.setattr(http, "MAX_ANSWER_BYTES", 1024 * 1024)
    with serving(kind) as base_url:
        started = time.monotonic()
        with pytest.raises(ConnectorError, match=said):
            list(SoapConnector({"wsdl": str(WSDL), "operation": "zoekPashouders", "endpoint": base_url + "/soap",
                                "arguments": {"gemeentecode": "0599"}, "records_path": "huishouden",
                                "paging": {"style": "continuation", "page_size": 2,
                                           "continuation_argument": "indicatorVervolgvraag"},
                                "timeout": 1, "operation_timeout": 1, "retries": 0, "backoff_seconds": 0},
                               source_name="gws").records())
        assert time.monotonic() - started < 6


@pytest.mark.parametrize("status", ["429 Too Many Requests", "503 Service Unavailable"])
def test_a_busy_service_is_asked_again_after_the_wait_its_retry_after_names(server, status):
    """A service behind an API gateway answers 429 (or 503) with Retry-After when the account asks too often: a
    429 failed the night at once ("refused the request, check options.endpoint"), and the retries of a 503 were
    spent within the backoff (here none) while the service had said when to come back."""
    server.script = [Answer(status, None, "text/plain", retry_after="1")]
    records = list(connector(server, retries=2, **ONE_CALL))
    assert [record.fields["huishoudnummer"] for record in records] == ["HH-0001"]
    assert len(server.requests) == 2
    assert server.requests[1].received_at - server.requests[0].received_at >= 0.95


def test_a_service_that_keeps_rate_limiting_says_so_and_what_to_do(server):
    server.script = [Answer("429 Too Many Requests", None, "text/plain", retry_after="0")] * 2
    with pytest.raises(SourceUnavailable) as caught:
        list(connector(server, retries=1, **ONE_CALL))
    said = str(caught.value)
    assert "HTTP 429 (too many requests)" in said and "after 2 attempts" in said
    assert "rate limit" in said and "endpoint" not in said
    assert len(server.requests) == 2
