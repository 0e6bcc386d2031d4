"""XML beside JSON, for the routes that offer it (the HD4DP v2 submit and definition).

One mapping both ways, the one RFC 9457 (appendix B) gives problem details: an object is an
element per member, an array is its items as ``<i>`` elements, ``null`` is ``xsi:nil``. So
``{"CD_COMPL": ["A", "B"], "IDC_PAT": "85.04.02-169.32"}`` is::

    <record xmlns="urn:hdhub:hd4dp-v2">
      <CD_COMPL><i>A</i><i>B</i></CD_COMPL>
      <IDC_PAT>85.04.02-169.32</IDC_PAT>
    </record>

Reading goes through defusedxml with every dangerous feature refused: no DTD (so no entity
expansion, "billion laughs"), no external entity, nothing fetched. A refusal is a problem
that names the line and column, never the parser's stack.

A route offers XML by documenting ``application/xml`` among its answers' media types
(:func:`xml_responses`); the problem handlers then answer its errors as
``application/problem+xml`` to a client that prefers XML (:func:`prefers_xml`).
"""

from __future__ import annotations

import re
from typing import Any
from xml.etree.ElementTree import Element, ParseError, SubElement, tostring

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from hdhub.common.errors import FieldProblem, Problem

XML_MEDIA_TYPE = "application/xml"
PROBLEM_XML_MEDIA_TYPE = "application/problem+xml"
#: What hdhub's v2 XML documents are in; a document without a namespace is read as well.
NAMESPACE = "urn:hdhub:hd4dp-v2"
#: RFC 9457 appendix B.
PROBLEM_NAMESPACE = "urn:ietf:rfc:7807"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
_NIL = f"{{{XSI}}}nil"
_XML_MEDIA = ("application/xml", "text/xml", PROBLEM_XML_MEDIA_TYPE)
_JSON_MEDIA = ("application/json", "application/problem+json")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
#: A record is flat: its fields, each a value or a list of values.
MAX_DEPTH = 3


def is_xml(content_type: str | None) -> bool:
    """Whether a Content-Type names XML (``application/xml``, ``text/xml``, ``...+xml``)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media in ("application/xml", "text/xml") or (
        media.startswith("application/") and media.endswith("+xml")
    )


def prefers_xml(accept: str | None) -> bool:
    """Whether an Accept header ranks XML above JSON (RFC 9110 q-values; a tie, ``*/*`` or
    no header is JSON, hdhub's default)."""
    best_xml = best_json = 0.0
    for part in (accept or "").split(","):
        media, _, params = part.strip().partition(";")
        media = media.strip().lower()
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    q = max(0.0, min(1.0, float(value)))
                except ValueError:
                    q = 0.0
        if media in _XML_MEDIA:
            best_xml = max(best_xml, q)
        elif media in _JSON_MEDIA or media in ("*/*", "application/*"):
            best_json = max(best_json, q)
    return best_xml > best_json


def wants_xml(request: Any) -> bool:
    """Whether to answer ``request`` (a Starlette request) in XML: its route offers XML, and
    its Accept ranks XML above JSON, or names neither while the body sent is XML."""
    if not offers_xml(request.scope.get("route")):
        return False
    accept = request.headers.get("accept")
    if prefers_xml(accept):
        return True
    named = {part.split(";", 1)[0].strip().lower() for part in (accept or "").split(",")}
    return not named & {*_JSON_MEDIA, *_XML_MEDIA} and is_xml(request.headers.get("content-type"))


def xml_responses(status: int, schema: str) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI answer of a route that offers XML: ``application/xml`` beside JSON,
    described by the named element of the published XSD."""
    return {
        status: {
            "content": {
                XML_MEDIA_TYPE: {
                    "schema": {"type": "string", "description": f"<{schema}> of the published XSD"}
                }
            }
        }
    }


def offers_xml(route: Any) -> bool:
    """Whether a route documents ``application/xml`` among its answers."""
    responses = getattr(route, "responses", None) or {}
    return any(XML_MEDIA_TYPE in (answer.get("content") or {}) for answer in responses.values())


# --- reading ----------------------------------------------------------------------------------


def _malformed(detail: str) -> Problem:
    return Problem(400, "malformed-xml", "The request body is not well-formed XML", detail)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_record(raw: bytes, *, root: str = "record") -> dict[str, Any]:
    """The field values of ``<record>``: each child a field, its text the value, its ``<i>``
    children a list, ``xsi:nil="true"`` null. Refuses what is not well-formed, any DTD or
    entity, a root of another name, a field given twice and anything nested deeper."""
    try:
        document = fromstring(raw, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException:
        raise Problem(
            400,
            "xml-forbidden",
            "The XML document declares a DTD or an entity",
            "DTDs, entities and external references are not accepted; send the elements only.",
        ) from None
    except ParseError as exc:
        line, column = exc.position
        raise _malformed(f"Line {line}, column {column + 1}: {_reason(exc)}.") from None
    except (LookupError, ValueError):
        # An encoding the declaration names that Python does not know ("x-nope").
        raise _malformed("Line 1, column 1: the encoding the XML declaration names is not known.") from None
    if _local(document.tag) != root or not _ours(document.tag):
        found = _local(document.tag)
        if not _ours(document.tag):
            found += f"> in another namespace than {NAMESPACE}"
        else:
            found += ">"
        raise Problem(422, "xml-root", f"The XML document must be a <{root}>", f"Found <{found}.")
    values: dict[str, Any] = {}
    problems: list[FieldProblem] = []
    for child in document:
        name = _local(child.tag)
        if not _ours(child.tag):
            problems.append(
                FieldProblem(
                    field=name,
                    rule="namespace",
                    message=f"The field is in another namespace than {NAMESPACE}",
                )
            )
            continue
        if name in values:
            problems.append(FieldProblem(field=name, rule="duplicate", message="The field is given twice"))
            continue
        value = _value(child, name, problems)
        values[name] = value
    if problems:
        raise Problem(422, "xml-shape", "The XML record has fields of the wrong shape", errors=problems)
    return values


def _ours(tag: str) -> bool:
    """Whether an element is hdhub's: in its namespace or in none."""
    return not tag.startswith("{") or tag.startswith(f"{{{NAMESPACE}}}")


def _reason(exc: ParseError) -> str:
    # expat's words without the position (given apart) and without the document's content.
    return str(exc).split(":", 1)[0].strip() or "not well-formed"


def _value(element: Element, name: str, problems: list[FieldProblem]) -> Any:
    if element.get(_NIL) in ("true", "1"):
        return None
    children = list(element)
    if not children:
        return element.text or ""
    if (element.text or "").strip():
        problems.append(FieldProblem(field=name, rule="mixed", message="Text and elements mixed"))
        return None
    items: list[str] = []
    for item in children:
        if _local(item.tag) != "i" or len(item) or not _ours(item.tag):
            problems.append(
                FieldProblem(
                    field=name,
                    rule="nested",
                    message="A field holds its value as text, or a list of values as <i> elements",
                )
            )
            return None
        if (item.tail or "").strip():
            problems.append(FieldProblem(field=name, rule="mixed", message="Text and elements mixed"))
            return None
        items.append(item.text or "")
    return items


# --- writing ----------------------------------------------------------------------------------


def dumps(root: str, data: Any, *, namespace: str = NAMESPACE) -> bytes:
    """``data`` (JSON-shaped) as the XML document ``<root>``, UTF-8 with its declaration."""
    element = Element(root, {"xmlns": namespace})
    _fill(element, data)
    written: bytes = tostring(element, encoding="utf-8", xml_declaration=True)
    return written


def _fill(element: Element, data: Any) -> None:
    if data is None:
        element.set("xmlns:xsi", XSI)
        element.set("xsi:nil", "true")
    elif isinstance(data, dict):
        for key, value in data.items():
            # Member names are our models' and the DCDs' (XLSForm names are XML names).
            _fill(SubElement(element, key if _NAME.match(str(key)) else "member", _named(key)), value)
    elif isinstance(data, list):
        for value in data:
            _fill(SubElement(element, "i"), value)
    elif isinstance(data, bool):
        element.text = "true" if data else "false"
    else:
        element.text = str(data)


def _named(key: Any) -> dict[str, str]:
    return {} if _NAME.match(str(key)) else {"name": str(key)}


def problem_xml(body: dict[str, Any]) -> bytes:
    """A problem's JSON members as RFC 9457's ``application/problem+xml``."""
    return dumps("problem", body, namespace=PROBLEM_NAMESPACE)
