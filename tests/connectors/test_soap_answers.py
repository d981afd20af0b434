"""The answer reader gives exactly what zeep's own parse gives, or lets zeep give it.

Every comparison here puts ``AnswerReader.read(response)`` beside
``plain(zeep's process_reply(response))`` for the same HTTP response: equal
values with equal types and key order (``repr``), or the same exception with
the same message.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, given, settings, strategies as st
from lxml import etree

from adapter.demo_data import write
from connectors import soap_answers
from connectors.replay import replay_session
from connectors.soap import SAMPLE_WSDL, SAMPLES, SoapConnector
from connectors.soap_answers import _UNREADABLE, AnswerReader, plain
from connectors.soap_client import bind_service, build_client

ENVELOPES = Path(__file__).parent / "soap_envelopes"
REPO = Path(__file__).resolve().parents[2]
SP = "urn:example:stadspas:v1"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"


def reader_for(ignore_order: bool = False, wsdl: Path = SAMPLE_WSDL) -> AnswerReader:
    client = build_client(wsdl, timeout=2, operation_timeout=2, xsd_ignore_sequence_order=ignore_order)
    _service, port = bind_service(client, None, None, None)
    return AnswerReader(client, port.binding, "zoekPashouders")


@pytest.fixture(scope="module")
def readers() -> dict[bool, AnswerReader]:
    return {ignore_order: reader_for(ignore_order) for ignore_order in (False, True)}


def response(content: bytes, status: int = 200, content_type: str = "text/xml; charset=utf-8") -> requests.Response:
    answer = requests.Response()
    answer.status_code = status
    answer.headers["Content-Type"] = content_type
    answer._content = content
    answer.encoding = "utf-8"
    return answer


def outcome(read, content: bytes, status: int = 200) -> tuple[str, str]:
    """What reading gives, as text that shows types and key order, or the exception and its message."""
    try:
        return "answer", repr(read(response(content, status)))
    except Exception as exc:  # noqa: BLE001 - any exception must be the same on both paths
        return type(exc).__name__, str(exc)


def zeep_reads(reader: AnswerReader):
    return lambda answer: plain(reader._binding.process_reply(reader._client, reader._operation, answer))


def assert_same(reader: AnswerReader, content: bytes, status: int = 200) -> tuple[str, str]:
    """The walk reads as zeep reads, but for one deliberate difference: a value its type cannot read is zeep's None
    (logged, value and all) and the walk's ``Unreadable``, which rejects its record (test below)."""
    expected = outcome(zeep_reads(reader), content, status)
    kind, read = outcome(reader.read, content, status)
    assert (kind, read.replace(repr(_UNREADABLE), "None")) == expected
    return expected


@pytest.fixture(scope="module")
def generated_pages(tmp_path_factory) -> list[bytes]:
    folder = tmp_path_factory.mktemp("soap-pages")
    write("soap", folder, 300, seed=7, page_size=23)  # the last page holds one household
    return [(folder / f"page-{number}.xml").read_bytes() for number in range(1, len(list(folder.iterdir())) + 1)]


def test_the_sample_schema_is_read_by_the_walk(readers):
    assert readers[False].unmirrored_because is None
    assert readers[True].unmirrored_because is None


RECORDED = sorted([*SAMPLES.glob("*.xml"), *ENVELOPES.glob("*.xml")])


@pytest.mark.parametrize("path", RECORDED, ids=lambda path: f"{path.parent.name}/{path.name}")
@pytest.mark.parametrize("ignore_order", [False, True], ids=["in-order", "ignore-order"])
@pytest.mark.parametrize("status", [200, 500])
def test_recorded_answers_read_as_zeep_reads_them(readers, path, ignore_order, status):
    assert_same(readers[ignore_order], path.read_bytes(), status)


def test_generated_pages_read_as_zeep_reads_them_without_zeep(readers, generated_pages, monkeypatch):
    reader = readers[False]
    expected = [zeep_reads(reader)(response(page)) for page in generated_pages]
    # The pages hold what must come out the same: lists of one, absent optional
    # elements (voorvoegsel, vervangtPasnummer), replacements, diacritics.
    members = [member for page in expected for household in page["huishouden"] for member in household["lid"]]
    passes = [card for member in members for card in member["pas"]]
    assert any(len(member["pas"]) == 1 for member in members)
    assert len(expected[-1]["huishouden"]) == 1
    assert any(member["voorvoegsel"] is None for member in members)
    assert any(card["vervangtPasnummer"] for card in passes) and any(card["vervangtPasnummer"] is None for card in passes)
    assert any(not member["voornamen"].isascii() for member in members)
    assert [page["indicatorVervolgvraag"] for page in expected] == [True] * (len(expected) - 1) + [False]

    def zeep_must_not_read(*args, **kwargs):
        raise AssertionError("zeep parsed an answer the walk should have read")

    monkeypatch.setattr(type(reader._binding), "process_reply", zeep_must_not_read)
    read = [reader.read(response(page)) for page in generated_pages]
    assert read == expected
    assert repr(read) == repr(expected)  # same types (date, bool, str) and key order


def test_connector_records_and_paging_are_the_same_either_way(generated_pages, monkeypatch):
    endpoint = "https://soap.test/soap/v1"

    def answer(request):
        number = int(re.search(rb"<(?:\w+:)?pagina>(\d+)<", request.body).group(1))
        content = generated_pages[number - 1] if number <= len(generated_pages) else b""
        return 200, {"Content-Type": "text/xml; charset=utf-8"}, content

    def records(paging: dict) -> list[tuple[str, str]]:
        connector = SoapConnector(
            {"wsdl": str(SAMPLE_WSDL), "operation": "zoekPashouders", "endpoint": endpoint,
             "arguments": {"gemeentecode": "0599"}, "records_path": "huishouden", "paging": paging,
             "retries": 0},
            source_name="pages", session=replay_session(answer, endpoint))
        return [(record.key, repr(record.fields)) for record in connector.records()]

    pagings = [{"style": "continuation", "page_size": 23}, {"style": "page_number", "page_size": 23}]
    walked = [records(paging) for paging in pagings]

    def no_walk(*args, **kwargs):
        raise soap_answers.NotMirrored("zeep only, for this test")

    monkeypatch.setattr(soap_answers, "_body_reader", no_walk)
    by_zeep = [records(paging) for paging in pagings]
    assert walked == by_zeep
    assert len(walked[0]) == 300 and walked[0] == walked[1]


# -- answers that are not as the schema says --------------------------------------

def _elements(root: etree._Element) -> list[etree._Element]:
    answer = root.find(f"{{{SOAP_ENV}}}Body")[0]
    # Elements only: a processing instruction an earlier change added takes no attribute or child.
    return [element for element in answer.iter() if element is not answer and isinstance(element.tag, str)]


def _mutate(content: bytes, changes: list[tuple[str, int]]) -> bytes:
    """The page with each change applied to the element at that position (modulo the count)."""
    root = etree.fromstring(content)
    for change, position in changes:
        elements = _elements(root)
        if not elements:
            break
        element = elements[position % len(elements)]
        parent = element.getparent()
        if change == "drop":
            parent.remove(element)
        elif change == "duplicate":
            element.addnext(copy.deepcopy(element))
        elif change == "empty":
            for child in list(element):
                element.remove(child)
            element.text = None
        elif change == "whitespace":
            element.text = " \n " + (element.text or "")
        elif change == "swap" and element.getnext() is not None:
            element.getnext().addnext(element)
        elif change == "nil":
            element.set(f"{{{XSI}}}nil", "true")
        elif change == "junk":
            element.text = "2026-13-45" if len(element) == 0 else element.text
        elif change == "no-flag":
            element.text = "ja"
        elif change == "unqualified":
            element.tag = etree.QName(element).localname
        elif change == "foreign":
            element.tag = f"{{urn:example:other}}{etree.QName(element).localname}"
        elif change == "unknown":
            element.addprevious(etree.Element(f"{{{SP}}}onbekend"))
        elif change == "xsi-type":
            element.set(f"{{{XSI}}}type", "xsd:string")
        elif change == "pi":
            element.addprevious(etree.ProcessingInstruction("stadspas", "x"))
        elif change == "attribute":
            element.set("soort", "x")
        elif change == "header":
            root.insert(0, etree.Element(f"{{{SOAP_ENV}}}Header"))
    return etree.tostring(root, xml_declaration=True, encoding="utf-8")


CHANGES = st.sampled_from(["drop", "duplicate", "empty", "whitespace", "swap", "nil", "junk", "no-flag",
                           "unqualified", "foreign", "unknown", "xsi-type", "pi", "attribute", "header"])
MUTATIONS = settings(max_examples=400, deadline=None, derandomize=True, database=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])


@MUTATIONS
@given(changes=st.lists(st.tuples(CHANGES, st.integers(min_value=0, max_value=10_000)), min_size=1, max_size=4),
       page=st.sampled_from(["page-1.xml", "page-3.xml", "out-of-order.xml"]),
       ignore_order=st.booleans())
def test_changed_answers_read_as_zeep_reads_them(readers, changes, page, ignore_order):
    assert_same(readers[ignore_order], _mutate((ENVELOPES / page).read_bytes(), changes))


@pytest.mark.parametrize("change", ["drop", "duplicate", "empty", "swap", "nil", "junk", "unqualified",
                                    "unknown", "xsi-type", "pi"])
def test_each_change_on_every_element_reads_as_zeep_reads_it(readers, change):
    page = (ENVELOPES / "page-1.xml").read_bytes()
    for position in range(len(_elements(etree.fromstring(page)))):
        for reader in readers.values():
            assert_same(reader, _mutate(page, [(change, position)]))


def test_errors_are_zeeps_own(readers):
    reader = readers[False]
    assert assert_same(reader, b"")[0] == "TransportError"
    assert assert_same(reader, b"<soap:Envelope")[0] == "TransportError"
    assert assert_same(reader, (ENVELOPES / "fault.xml").read_bytes(), 500)[0] == "Fault"
    assert assert_same(reader, (ENVELOPES / "out-of-order.xml").read_bytes())[0] == "XMLParseError"
    assert assert_same(reader, b"<html><body>502</body></html>", 502)[0] == "Fault"


def test_a_schema_the_walk_does_not_mirror_is_left_to_zeep(tmp_path):
    xsd = (SAMPLE_WSDL.parent / "stadspas-v1.xsd").read_text(encoding="utf-8")
    with_attribute = xsd.replace('<xsd:element name="lid" type="sp:Lid" maxOccurs="unbounded"/>\n    </xsd:sequence>',
                                 '<xsd:element name="lid" type="sp:Lid" maxOccurs="unbounded"/>\n    </xsd:sequence>'
                                 '\n    <xsd:attribute name="soort" type="xsd:string"/>')
    assert with_attribute != xsd
    (tmp_path / "stadspas-v1.xsd").write_text(with_attribute, encoding="utf-8")
    wsdl = tmp_path / "stadspas-v1.wsdl"
    wsdl.write_text(SAMPLE_WSDL.read_text(encoding="utf-8"), encoding="utf-8")
    reader = reader_for(wsdl=wsdl)
    assert reader.unmirrored_because == "Huishouden: attributes or a SOAP array"
    page = _mutate((ENVELOPES / "page-1.xml").read_bytes(), [("attribute", 0)])
    kind, answer = assert_same(reader, page)
    assert kind == "answer" and "'soort': 'x'" in answer
    check = SoapConnector({"wsdl": str(wsdl), "operation": "zoekPashouders", "records_path": "huishouden",
                           "endpoint": "http://127.0.0.1:9/soap"}, source_name="gws").check()
    assert "zeep's own, slower parse (Huishouden: attributes or a SOAP array)" in check.steps[0].message


def test_a_value_its_type_cannot_convert_is_unreadable_not_zeeps_none_and_not_logged(readers, caplog):
    """zeep would give None and log the value; the walk hands on a marker that rejects the record (below)."""
    page = (ENVELOPES / "page-1.xml").read_bytes().replace(b"<sp:geldigVanaf>2026-08-01<", b"<sp:geldigVanaf>1-8-2026<", 1)
    assert b"1-8-2026" in page
    answer = readers[False].read(response(page))
    assert answer["huishouden"][0]["lid"][0]["pas"][0]["geldigVanaf"] is _UNREADABLE
    assert "1-8-2026" not in caplog.text


def test_entities_are_refused_as_zeep_refuses_them(readers):
    page = (ENVELOPES / "page-1.xml").read_bytes().replace(
        b"<soap:Envelope", b'<!DOCTYPE x [<!ENTITY naam "Zo&#235;">]>\n<soap:Envelope', 1).replace(
        b"<sp:voornamen>Anouk<", b"<sp:voornamen>&naam;<", 1)
    assert assert_same(readers[False], page)[0] == "EntitiesForbidden"


def variant_reader(tmp_path: Path, answer_type: str, extra_types: str = "") -> AnswerReader:
    """A reader for the sample WSDL with zoekPashoudersAntwoord's content replaced."""
    xsd = (SAMPLE_WSDL.parent / "stadspas-v1.xsd").read_text(encoding="utf-8")
    start = xsd.index('<xsd:element name="zoekPashoudersAntwoord">')
    end = xsd.index("</xsd:element>", start) + len("</xsd:element>")
    xsd = (xsd[:start] + extra_types + f'<xsd:element name="zoekPashoudersAntwoord"><xsd:complexType>'
           f"<xsd:sequence>{answer_type}</xsd:sequence></xsd:complexType></xsd:element>" + xsd[end:])
    (tmp_path / "stadspas-v1.xsd").write_text(xsd, encoding="utf-8")
    wsdl = tmp_path / "stadspas-v1.wsdl"
    wsdl.write_text(SAMPLE_WSDL.read_text(encoding="utf-8"), encoding="utf-8")
    reader = reader_for(wsdl=wsdl)
    assert reader.unmirrored_because is None
    return reader


def _rewrapped(content: bytes, wrapper: str | None, flag: bool) -> bytes:
    """page-1 with its households inside ``wrapper`` (if any), with or without the flag."""
    root = etree.fromstring(content)
    answer = root.find(f"{{{SOAP_ENV}}}Body")[0]
    children = list(answer)
    for child in children:
        answer.remove(child)
    parent = etree.SubElement(answer, f"{{{SP}}}{wrapper}") if wrapper else answer
    for child in children:
        if flag or etree.QName(child).localname != "indicatorVervolgvraag":
            parent.append(child)
    return etree.tostring(root)


HOUSEHOLDS = '<xsd:element name="huishouden" type="sp:Huishouden" minOccurs="0" maxOccurs="unbounded"/>'
FLAG = '<xsd:element name="indicatorVervolgvraag" type="xsd:boolean" minOccurs="0"/>'


@pytest.mark.parametrize(("answer_type", "extra_types", "wrapper", "flag", "zeep_gives"), [
    (HOUSEHOLDS, "", None, False, "a list of households"),
    ('<xsd:element name="resultaat" type="sp:Resultaat"/>',
     f'<xsd:complexType name="Resultaat"><xsd:sequence>{HOUSEHOLDS}</xsd:sequence></xsd:complexType>',
     "resultaat", False, "the list inside the one field of the one field"),
    ('<xsd:element name="resultaat" type="sp:Resultaat" minOccurs="0"/>',
     f'<xsd:complexType name="Resultaat"><xsd:sequence>{HOUSEHOLDS}{FLAG}</xsd:sequence></xsd:complexType>',
     "resultaat", True, "the one field, households and flag"),
], ids=["one-list", "one-field-of-one-list", "one-field-of-two"])
def test_an_answer_of_one_field_is_unwrapped_as_zeep_unwraps_it(tmp_path, answer_type, extra_types, wrapper, flag,
                                                               zeep_gives):
    reader = variant_reader(tmp_path, answer_type, extra_types)
    page = _rewrapped((ENVELOPES / "page-1.xml").read_bytes(), wrapper, flag)
    kind, answer = assert_same(reader, page)
    assert kind == "answer"
    assert answer.startswith("{'huishouden'" if flag else "[{'huishoudnummer'"), zeep_gives
    empty = _rewrapped((ENVELOPES / "empty.xml").read_bytes(), wrapper, flag)
    assert assert_same(reader, empty)[0] == "answer"
    assert assert_same(reader, _mutate(page, [("empty", 0)]))[0] == "answer"


def test_a_value_its_type_cannot_read_rejects_its_record_naming_the_field(readers):
    """zeep takes an xsd:date holding '31-07-2027' for no date at all: a pass without an end, valid for ever."""
    from adapter.mapping import load_mapping
    from adapter.records import RejectedRecord, SourceRecord

    page = (ENVELOPES / "page-1.xml").read_bytes()
    garbled = re.sub(rb"<sp:geldigTotEnMet>[^<]*</sp:geldigTotEnMet>", b"<sp:geldigTotEnMet>31-07-2027</sp:geldigTotEnMet>",
                     page, count=1)
    assert garbled != page
    answer = readers[False].read(response(garbled))
    mapping = load_mapping(REPO / "mappings" / "demo-soap.yaml")
    results = [result for number, household in enumerate(answer["huishouden"])
               for result in mapping.apply(SourceRecord(f"page 1 item {number}", household))]
    assert len(results) > 1
    rejected = [result for result in results if isinstance(result, RejectedRecord)]
    assert len(rejected) == 1 and rejected[0].reasons == (
        "valid_until: the service sent a value its XML type cannot read (such as a date that is no date); ask the "
        "service's administrator to correct the record",)
    assert "31-07-2027" not in repr(rejected[0])


def test_zeeps_own_parse_logs_no_value_its_type_cannot_read(caplog):
    """Where zeep parses an answer itself (a schema the walk does not mirror), its log line keeps no value."""
    import logging

    import connectors.soap_client  # noqa: F401 - installs the filter

    try:
        raise ValueError("Unrecognised ISO 8601 date format: '02-05-2015'")
    except ValueError:
        logging.getLogger("zeep.xsd.types.simple").exception("Error during xml -> python translation")
    assert "02-05-2015" not in caplog.text and "the value is not logged" in caplog.text
