"""Plain http:// only to this machine: to any other host a source's answers (BSNs, names, birth dates) and its key
or password would cross the network unencrypted."""

from __future__ import annotations

import pytest
import responses

from adapter.connector import ConnectorConfigError, ConnectorError
from connectors.http import plain_http_problem
from connectors.rest import RestConnector
from connectors.soap import SAMPLE_WSDL, SoapConnector


@pytest.mark.parametrize("url", ["http://pas.gemeente.example/rest", "HTTP://10.0.0.5:8080/soap", "http://[fe80::1]/",
                                 "http://127.0.0.1.nip.io/", "http:///no-host"])
def test_plain_http_to_another_host_is_refused(url):
    assert "https://" in (plain_http_problem(url) or "")


@pytest.mark.parametrize("url", ["https://pas.gemeente.example/rest", "http://127.0.0.1:8097/", "http://localhost/x",
                                 "http://127.8.9.10/", "http://[::1]:9000/soap"])
def test_https_or_this_machine_is_taken(url):
    assert plain_http_problem(url) is None


def test_the_rest_and_soap_options_refuse_it_naming_the_option():
    rest = RestConnector({"base_url": "http://pas.gemeente.example/rest/v1", "api_key_env": "PAS_KEY"},
                         source_name="pas")
    with pytest.raises(ConnectorConfigError, match=r"base_url.*plain http:// to pas\.gemeente\.example.*https://"):
        rest.options  # noqa: B018 - reading them is what checks them
    soap = SoapConnector({"wsdl": str(SAMPLE_WSDL), "operation": "zoekPashouders", "records_path": "huishouden",
                          "endpoint": "http://soap.gemeente.example/v1"}, source_name="soap")
    with pytest.raises(ConnectorConfigError, match=r"endpoint.*plain http:// to soap\.gemeente\.example"):
        soap.options  # noqa: B018


def test_a_wsdl_whose_own_address_is_plain_http_is_refused_before_any_request(tmp_path):
    (tmp_path / "stadspas-v1.xsd").write_bytes((SAMPLE_WSDL.parent / "stadspas-v1.xsd").read_bytes())  # it imports
    wsdl = tmp_path / "stadspas.wsdl"
    wsdl.write_text(SAMPLE_WSDL.read_text(encoding="utf-8").replace(
        "https://stadspas.gemeente.example/soap/v1", "http://stadspas.gemeente.example/soap/v1"), encoding="utf-8")
    soap = SoapConnector({"wsdl": str(wsdl), "operation": "zoekPashouders", "records_path": "huishouden"},
                         source_name="soap")
    with pytest.raises(ConnectorError, match=r"soap:address: plain http:// to stadspas\.gemeente\.example"):
        next(iter(soap.records()))


@responses.activate
def test_a_redirect_from_https_to_plain_http_elsewhere_is_not_followed(monkeypatch):
    """The options say https://, but the server answers 307 to http://: following it would fetch the cardholders
    (and, with a SOAP POST, send the envelope with its WS-Security password) unencrypted."""
    monkeypatch.setenv("PAS_KEY", "secret-key-1")
    responses.get("https://pas.gemeente.example/rest/v1/pashouders", status=307,
                  headers={"Location": "http://pas.gemeente.example/rest/v1/pashouders"})
    plain = responses.get("http://pas.gemeente.example/rest/v1/pashouders", json={"pashouders": [], "total": 0})
    rest = RestConnector({"base_url": "https://pas.gemeente.example/rest/v1", "api_key_env": "PAS_KEY",
                          "retries": 0}, source_name="pas")
    with pytest.raises(ConnectorError, match=r"redirected the request to plain http:// on pas\.gemeente\.example"):
        list(rest.records())
    assert plain.call_count == 0
