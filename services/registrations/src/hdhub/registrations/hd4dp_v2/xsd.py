"""The XSD of the v2 routes' XML (hdhub.common.xml's mapping), made from a DCD version: what
a hospital validates its documents against before sending them, and what the tests
validate hdhub's own answers against.

- ``<record>``: every key the version takes (repeats flattened, as the JSON record), each
  at most once, in any order (``xs:all``); a multi-select's codes as ``<i>`` elements; the
  optional ``STATUS`` (draft or submit) and author keys. Values stay strings: the rules
  (formats, code lists, required, constraints) are the DCD's and the one engine checks
  them, so the XSD cannot disagree with it; each field's annotation names its type and
  format.
- ``<submitAccepted>``, ``<payloadDefinition>`` and ``<problem>`` (RFC 9457 appendix B), the
  answers.
"""

from __future__ import annotations

from xml.etree.ElementTree import Element, SubElement, tostring

from hdhub.common.xml import NAMESPACE, PROBLEM_NAMESPACE
from hdhub.registrations.engine.dcd import DcdDefinition, FieldType
from hdhub.registrations.engine.v2form import FIELD_TYPES

XS = "http://www.w3.org/2001/XMLSchema"
META = {"STATUS": ("draft", "submit"), "TX_AUTHOR_GR": (), "TX_AUTHOR": (), "TX_COAUTHOR": ()}


def _x(parent: Element, tag: str, **attrs: str) -> Element:
    return SubElement(parent, f"xs:{tag}", attrs)


def _doc(parent: Element, text: str) -> None:
    _x(_x(parent, "annotation"), "documentation").text = text


def dcd_xsd(d: DcdDefinition) -> bytes:
    """The XSD of ``d``'s XML record and of the v2 answers."""
    schema = Element(
        "xs:schema",
        {
            "xmlns:xs": XS,
            "xmlns": NAMESPACE,
            "targetNamespace": NAMESPACE,
            "elementFormDefault": "qualified",
            "version": f"{d.dcd_code} {d.version}",
        },
    )
    _doc(schema, f"HD4DP v2 XML of {d.dcd_code} {d.version} (hdhub); see docs/hospital-it.md.")
    # A multi-select: its codes as <i>s, or as text ("a|b"), as JSON takes a list or a string.
    values = _x(schema, "complexType", name="values", mixed="true")
    _x(_x(values, "sequence"), "element", name="i", type="xs:string", minOccurs="0", maxOccurs="unbounded")

    record = _x(_x(schema, "element", name="record"), "complexType")
    fields = _x(record, "all")
    multiple = {f.name: f.type is FieldType.SELECT_MULTIPLE for f in d.fields}
    for f in d.fields:
        if not f.is_input:
            continue
        for key in f.flat_names:
            kind = "values" if multiple[f.name] else "xs:string"
            element = _x(fields, "element", name=key, type=kind, minOccurs="0", nillable="true")
            what = FIELD_TYPES[f.type] + (" (several codes)" if multiple[f.name] else "")
            _doc(element, what + (", computed: a value sent is ignored" if f.is_computed else ""))
    taken = set(d.flat_field_names())
    for key, allowed in META.items():
        if key in taken:
            continue
        element = _x(fields, "element", name=key, minOccurs="0")
        if allowed:
            restriction = _x(_x(element, "simpleType"), "restriction", base="xs:string")
            for value in allowed:
                _x(restriction, "enumeration", value=value)
        else:
            element.set("type", "xs:string")

    accepted = _x(_x(_x(schema, "element", name="submitAccepted"), "complexType"), "sequence")
    for name, optional in (("businessKey", False), ("registrationId", False), ("status", False)):
        _x(accepted, "element", name=name, type="xs:string", **({"minOccurs": "0"} if optional else {}))
    _x(accepted, "element", name="registrationCode", type="xs:string", nillable="true")

    definition = _x(_x(_x(schema, "element", name="payloadDefinition"), "complexType"), "sequence")
    for name in ("dcdId", "dcdCode", "dcdVersionId", "projectId", "languageId"):
        _x(definition, "element", name=name, type="xs:string")
    _x(definition, "element", name="businessKey", type="values")
    listed = _x(_x(_x(definition, "element", name="fields"), "complexType"), "sequence")
    field = _x(
        _x(_x(listed, "element", name="i", minOccurs="0", maxOccurs="unbounded"), "complexType"), "sequence"
    )
    for name, nillable in (
        ("key", False),
        ("fieldType", False),
        ("label", False),
        ("required", False),
        ("multiple", False),
        ("codeListId", True),
        ("format", True),
        ("readOnly", False),
    ):
        _x(field, "element", name=name, type="xs:string", **({"nillable": "true"} if nillable else {}))
    written: bytes = tostring(schema, encoding="utf-8", xml_declaration=True)
    return written


def problem_xsd() -> bytes:
    """RFC 9457 appendix B's problem, with hdhub's members (``errors``, ``trace_id``)."""
    schema = Element(
        "xs:schema",
        {
            "xmlns:xs": XS,
            "xmlns": PROBLEM_NAMESPACE,
            "targetNamespace": PROBLEM_NAMESPACE,
            "elementFormDefault": "qualified",
        },
    )
    # Members in any order, and extensions (trace_id, a route's own) beside them: each known
    # member is declared globally, so lax processing checks it wherever it appears.
    problem = _x(_x(_x(schema, "element", name="problem"), "complexType"), "sequence")
    _x(problem, "any", processContents="lax", minOccurs="0", maxOccurs="unbounded")
    for name in ("type", "title", "detail", "instance", "trace_id"):
        _x(schema, "element", name=name, type="xs:string")
    _x(schema, "element", name="status", type="xs:integer")
    errors = _x(_x(_x(schema, "element", name="errors"), "complexType"), "sequence")
    error = _x(
        _x(_x(errors, "element", name="i", minOccurs="0", maxOccurs="unbounded"), "complexType"), "all"
    )
    for name in ("field", "rule", "message", "path"):
        _x(error, "element", name=name, type="xs:string", minOccurs="0" if name == "path" else "1")
    _x(error, "element", name="row", type="xs:integer", minOccurs="0")
    written: bytes = tostring(schema, encoding="utf-8", xml_declaration=True)
    return written
