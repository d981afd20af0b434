"""A SOAP operation's answers as plain dicts, read from the XML guided by zeep's own schema.

zeep builds a CompoundValue per complex element and an object per step of its
parse (about 14k records/s on the sample service), and the connector then
turned those into plain dicts. Here the answer zeep would parse is walked once
with lxml, guided by zeep's schema objects for the operation's output: which
elements repeat (a list, ``[]`` when absent), which are absent (``None``), and
each leaf converted by its xsd type's own ``pythonvalue``. The dicts are the
ones ``plain(zeep's answer)`` gives, key order included (tests/connectors hold
the two side by side).

zeep stays in charge of everything else: it builds and sends the request and
parses the XML (its lxml settings: no DTDs, no entities). The walk only takes
answers it can read exactly as zeep would; anything else goes to zeep's own
processing of the same HTTP response, so every error and message is zeep's:
an HTTP error, a SOAP Fault, XML that does not fit the schema (an unknown or
out-of-order element), ``xsi:type``, a value its type cannot convert. A schema
the walk does not mirror (choice, any, attributes, simpleContent, RPC style,
output headers) leaves the whole operation to zeep.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, NamedTuple

import requests
from lxml import etree
from zeep.exceptions import XMLSyntaxError
from zeep.loader import parse_xml
from zeep.utils import get_media_type
from zeep.wsdl.messages.soap import DocumentMessage
from zeep.xsd.elements.element import Element
from zeep.xsd.elements.indicators import Sequence
from zeep.xsd.types import builtins as xsd_builtins
from zeep.xsd.types.complex import ComplexType
from zeep.xsd.types.simple import AnySimpleType
from zeep.xsd.valueobjects import CompoundValue

from adapter.transforms import Unreadable

# Values zeep hands over as they are: no need to look inside.
_LEAF_TYPES = frozenset({str, int, float, bool, type(None), date, datetime, time, Decimal, bytes})


def plain(value: Any) -> Any:
    """zeep's answer objects into plain dicts and lists, so records pickle and compare simply.

    What ``zeep.helpers.serialize_object(answer, dict)`` gives, in one pass over each
    CompoundValue's own dict. Used for the answers zeep parses itself.
    """
    if value.__class__ in _LEAF_TYPES:
        return value
    if isinstance(value, CompoundValue):
        value = value.__values__
    if isinstance(value, dict):
        return {key: item if item.__class__ in _LEAF_TYPES else plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [item if item.__class__ in _LEAF_TYPES else plain(item) for item in value]
    return value


class NotMirrored(Exception):
    """This answer (or schema) is not one the walk reads exactly as zeep: zeep reads it."""


_XSI = "http://www.w3.org/2001/XMLSchema-instance"
# zeep parses an element with xsi:type as that type; the walk leaves such answers to zeep.
_HAS_XSI_TYPE = etree.XPath(f"boolean(//@*[local-name()='type' and namespace-uri()='{_XSI}'])")
# Converted values kept per leaf type, by their text: dates and flags repeat on every
# record and isodate's parse is most of a date's cost. Bounded for unique timestamps.
_MEMO_LIMIT = 4096
# Values safe to hand to many records at once.
_IMMUTABLE = frozenset({str, int, float, bool, date, datetime, time, Decimal, bytes})


class AnswerReader:
    """Turns one operation's HTTP responses into the plain answer the connector reads."""

    def __init__(self, client, binding, operation_name: str):
        self._client = client
        self._binding = binding
        self._operation = binding.get(operation_name)
        self.envelope_namespace: str = binding.nsmap["soap-env"]  # the binding's SOAP version
        try:
            self._body = _body_reader(client, binding, self._operation)
            self.unmirrored_because: str | None = None
        except NotMirrored as reason:
            self._body = None
            self.unmirrored_because = str(reason)

    def read(self, response: requests.Response) -> Any:
        """The plain answer, or None; zeep's own exceptions for faults and misfits."""
        if self._body is None or response.status_code != 200 or not response.content:
            return self._zeep_reads(response)
        if get_media_type(response.headers.get("Content-Type", "text/xml")) == "multipart/related":
            return self._zeep_reads(response)
        client = self._client
        try:
            envelope = parse_xml(response.content, self._binding.transport, settings=client.settings)
        except XMLSyntaxError:
            return self._zeep_reads(response)  # zeep words the TransportError
        if client.wsse:
            client.wsse.verify(envelope)
        try:
            return self._body.read(envelope)
        except NotMirrored:
            return self._zeep_reads(response)

    def _zeep_reads(self, response: requests.Response) -> Any:
        return plain(self._binding.process_reply(self._client, self._operation, response))


def _body_reader(client, binding, operation) -> _BodyReader:
    settings = client.settings
    if not settings.strict:
        raise NotMirrored("zeep's non-strict mode keeps unknown elements")
    if client.plugins:
        raise NotMirrored("zeep plugins may change the answer")
    message = operation.output
    if type(message) is not DocumentMessage:
        raise NotMirrored(f"{type(message).__name__} answers")
    if message._is_body_wrapped or not isinstance(message.body, Element):
        raise NotMirrored("an answer of several parts")
    if message.header.type._element:
        raise NotMirrored("an answer with SOAP headers")
    shapes: dict[int, _Complex] = {}
    body = _complex(message.body.type, shapes, settings.xsd_ignore_sequence_order)
    return _BodyReader(binding.nsmap["soap-env"], body)


class _BodyReader:
    """zeep's DocumentMessage.deserialize for one answer element, as plain values."""

    def __init__(self, envelope_namespace: str, body: _Complex):
        self._envelope_tag = f"{{{envelope_namespace}}}Envelope"
        self._body_tag = f"{{{envelope_namespace}}}Body"
        self._fault_tag = f"{{{envelope_namespace}}}Fault"
        self._complex = body
        # zeep hands over the answer element's only field instead of the element
        # (and that field's only field, when it is an element of one field).
        self._unwrap: str | None = None
        self._unwrap_again: str | None = None
        if len(body.slots) == 1:
            only = body.slots[0]
            self._unwrap = only.name
            inner = only.shape
            if not only.multiple and isinstance(inner, _Complex) and len(inner.slots) == 1:
                self._unwrap_again = inner.slots[0].name

    def read(self, envelope: etree._Element) -> Any:
        if envelope.tag != self._envelope_tag:
            raise NotMirrored("not a SOAP envelope")
        body = envelope.find(self._body_tag)
        if body is None or len(body) == 0:
            raise NotMirrored("no answer element")
        answer = body[0]
        if not isinstance(answer.tag, str) or body.find(self._fault_tag) is not None:
            raise NotMirrored("a fault or no answer element")
        if _HAS_XSI_TYPE(body):
            raise NotMirrored("xsi:type")
        value = self._complex.read(answer, allow_none=False)
        if self._unwrap is None:
            return value
        value = value[self._unwrap]
        if self._unwrap_again is not None and isinstance(value, dict):
            return value[self._unwrap_again]
        return value


class _Slot(NamedTuple):
    """One element of a sequence: where it stands, its name in the answer, how to read it."""

    bit: int  # 1 << its position in the sequence
    name: str
    multiple: bool
    max_occurs: int | None  # for a list: None when unbounded
    shape: _Complex | None  # a complex element's shape, or None for a leaf
    convert: Callable[[str], Any] | None  # a leaf's text -> value, or None for the text itself


class _Complex:
    """A complexType of one sequence of elements, read as zeep's ComplexType.parse_xmlelement.

    Which elements were seen is a bit mask, so the checks zeep makes on the way
    (order, a required element skipped, too many occurrences) cost a few integer
    operations per element.
    """

    def __init__(self, ignore_order: bool):
        self.ignore_order = ignore_order
        self.slots: list[_Slot] = []
        self.by_tag: dict[str, _Slot] = {}
        self.required_bits = 0
        self.all_bits = 0
        self.template: dict[str, None] = {}  # every field in sequence order, as None
        self.lists: tuple[tuple[str, int], ...] = ()  # (name, bit) of the repeating ones

    def add(self, slot: _Slot, tags: set[str], required: bool) -> None:
        self.slots.append(slot)
        self.by_tag.update(dict.fromkeys(tags, slot))
        self.all_bits |= slot.bit
        if required:
            self.required_bits |= slot.bit
        self.template[slot.name] = None
        if slot.multiple:
            self.lists += ((slot.name, slot.bit),)

    def read(self, node: etree._Element, allow_none: bool = True) -> dict[str, Any] | None:
        if allow_none and len(node) == 0 and not node.attrib:
            return None  # zeep: an empty complex element is None
        result = self.template.copy()
        seen = last_bit = 0
        by_tag = self.by_tag
        for child in node:
            try:
                bit, name, multiple, max_occurs, shape, convert = by_tag[child.tag]
            except KeyError:
                raise NotMirrored("an element the schema does not have here") from None
            if bit > last_bit:
                last_bit = bit
            elif bit < last_bit and not self.ignore_order:
                raise NotMirrored("elements out of sequence order")
            if shape is None:
                value = child.text
                if convert is not None and value is not None:
                    value = convert(value)
            else:
                value = shape.read(child)
            if seen & bit:
                if not multiple or (max_occurs is not None and len(result[name]) >= max_occurs):
                    raise NotMirrored("an element more often than the schema allows")
                result[name].append(value)
            else:
                seen |= bit
                result[name] = [value] if multiple else value
        missing = self.all_bits & ~seen
        if missing:
            # zeep refuses a missing required element only when later ones follow.
            if missing & self.required_bits & (last_bit - 1 if last_bit else 0):
                raise NotMirrored("a required element is missing")
            for name, bit in self.lists:
                if missing & bit:
                    result[name] = []
        return result


def _complex(xsd_type, shapes: dict[int, _Complex], ignore_order: bool) -> _Complex:
    known = shapes.get(id(xsd_type))
    if known is not None:
        return known  # recursive types share their shape
    name = getattr(xsd_type, "name", None) or "an anonymous type"
    if type(xsd_type).parse_xmlelement is not ComplexType.parse_xmlelement:
        raise NotMirrored(f"{name}: not a plain complexType")
    if getattr(xsd_type, "_array_type", None) or xsd_type.attributes:
        raise NotMirrored(f"{name}: attributes or a SOAP array")
    nested = xsd_type.elements_nested
    if len(nested) != 1 or type(nested[0][1]) is not Sequence or nested[0][1].accepts_multiple:
        raise NotMirrored(f"{name}: not one sequence of elements")
    elements = nested[0][1].elements_nested
    if not elements:
        raise NotMirrored(f"{name}: an empty sequence (zeep gives None)")
    if len({element.qname.namespace for _, element in elements if isinstance(element, Element)}) > 1:
        # zeep stops matching an element at a child of another namespace.
        raise NotMirrored(f"{name}: elements of several namespaces")
    shape = _Complex(ignore_order)
    shapes[id(xsd_type)] = shape
    for index, (slot_name, element) in enumerate(elements):
        if slot_name is None or type(element) is not Element:
            raise NotMirrored(f"{name}: a choice, group or any in its sequence")
        if not element.accepts_multiple and not element.is_optional and element.default is not None:
            raise NotMirrored(f"{name}.{slot_name}: a default value")
        qname = element.qname
        tags = {qname.text, qname.localname}  # zeep also takes an unqualified child
        if not qname.namespace or any(tag in shape.by_tag for tag in tags):
            # zeep matches children of an unqualified element by local name only.
            raise NotMirrored(f"{name}.{slot_name}: an unqualified or repeated element name")
        if isinstance(element.type, AnySimpleType):
            reads, convert = None, _converter(element.type, f"{name}.{slot_name}")
        else:
            reads, convert = _complex(element.type, shapes, ignore_order), None
        max_occurs = element.max_occurs if element.max_occurs != "unbounded" else None
        shape.add(_Slot(1 << index, slot_name, element.accepts_multiple, max_occurs, reads, convert),
                  tags, required=not element.is_optional)
    return shape


def _converter(xsd_type, label: str) -> Callable[[str], Any] | None:
    """A leaf's text -> value as zeep's AnySimpleType.parse_xmlelement gives it, or None for the text itself."""
    kind = type(xsd_type)
    if kind.parse_xmlelement is not AnySimpleType.parse_xmlelement:
        raise NotMirrored(f"{label}: a list or union type")
    pythonvalue = xsd_type.pythonvalue
    if kind.pythonvalue is xsd_builtins.String.pythonvalue:
        return None
    if kind.pythonvalue.__module__ != xsd_builtins.__name__:
        return _checked(pythonvalue)
    return _memoized(pythonvalue)


def _checked(pythonvalue: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return pythonvalue(text)
        except (TypeError, ValueError):
            # Not zeep's way here: zeep logs the error, value and all, and gives None, which for a pass's end date
            # means valid for ever. The record is rejected instead, naming the field (adapter.transforms).
            return _UNREADABLE
    return convert


_UNREADABLE = Unreadable("the service sent a value its XML type cannot read (such as a date that is no date); "
                         "ask the service's administrator to correct the record")


def _memoized(pythonvalue: Callable[[str], Any]) -> Callable[[str], Any]:
    memo: dict[str, Any] = {}
    checked = _checked(pythonvalue)

    def convert(text: str) -> Any:
        value = memo.get(text, memo)
        if value is memo:
            value = checked(text)
            if value.__class__ in _IMMUTABLE:
                if len(memo) >= _MEMO_LIMIT:
                    memo.clear()
                memo[text] = value
        return value
    return convert
