"""The NIPPIN message: built from the fields a DCD binds for NIPPIN, validated against the
XSD kept beside this package (``xsd/nippin-message-<version>.xsd``).

The reasons of an invalid message name the element and the rule broken, never the value:
a wrong SSIN must not be copied into a reason the NIPPIN Manager reads or a log keeps.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from xml.etree import ElementTree as ET

import xmlschema

SCHEMA_VERSION = "1.0"
NAMESPACE = f"urn:hdhub:nippin:message:{SCHEMA_VERSION}"
XSD_DIR = Path(__file__).resolve().parent.parent / "xsd"
#: Where the body of the message goes; the header is made here.
BODY = "implant"
#: The bound field holding the act's date: reports and exports are ranged on it.
IMPLANT_DATE = "ImplantDate"
_XML_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True, slots=True)
class Header:
    message_id: str
    created_at: datetime
    registration_code: str
    dcd_code: str
    dcd_version: str


@dataclass(frozen=True, slots=True)
class Validation:
    """The outcome of validating one message: no reasons means valid."""

    reasons: tuple[str, ...]

    @property
    def valid(self) -> bool:
        return not self.reasons


def _q(name: str) -> str:
    return f"{{{NAMESPACE}}}{name}"


def build(header: Header, fields: Sequence[tuple[str, str]]) -> bytes:
    """The message's XML: the header, then one element per bound field with a value, named
    by its xml name. A field without a value is left out (the XSD then says it is missing);
    a name that is no XML name becomes ``invalidName`` so that the XSD refuses it."""
    ET.register_namespace("nip", NAMESPACE)
    root = ET.Element(_q("message"), {"schemaVersion": SCHEMA_VERSION})
    head = ET.SubElement(root, _q("header"))
    ET.SubElement(head, _q("messageId")).text = header.message_id
    ET.SubElement(head, _q("createdAt")).text = header.created_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    ET.SubElement(head, _q("registrationCode")).text = header.registration_code
    ET.SubElement(head, _q("dcd"), {"code": header.dcd_code, "version": header.dcd_version})
    body = ET.SubElement(root, _q(BODY))
    for name, value in fields:
        if value == "":
            continue
        ET.SubElement(body, _q(name if _XML_NAME.match(name) else "invalidName")).text = value
    body_xml: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + body_xml


@functools.cache
def schema(version: str = SCHEMA_VERSION) -> xmlschema.XMLSchema:
    """The XSD of a message version, parsed once."""
    path = XSD_DIR / f"nippin-message-{version}.xsd"
    if not path.is_file():
        raise ValueError(f"no XSD for NIPPIN message version {version!r}")
    return xmlschema.XMLSchema(str(path))


def _local(path: str | None) -> str:
    """``/nip:message/nip:implant/nip:PatientSSIN`` -> ``implant/PatientSSIN``."""
    parts = [p.split(":", 1)[-1].split("}", 1)[-1] for p in (path or "").split("/") if p]
    return "/".join(parts[1:] if parts and parts[0] == "message" else parts) or "message"


def _reason(error: xmlschema.XMLSchemaValidationError) -> str:
    reason = (error.reason or "invalid").strip()
    # Should a reason ever quote the offending value, a long run of digits (an SSIN, a
    # NIHDI number) is masked: reasons are shown to people and kept.
    reason = re.sub(r"\d{6,}", "#", reason)
    return f"{_local(error.path)}: {reason}"


def validate(document: bytes, version: str = SCHEMA_VERSION) -> Validation:
    """Validate a message against its XSD; each reason names the element and the rule."""
    try:
        errors = list(schema(version).iter_errors(document.decode("utf-8")))
    except (ET.ParseError, xmlschema.XMLSchemaException, UnicodeDecodeError) as exc:
        return Validation((f"message: not well-formed XML ({type(exc).__name__})",))
    return Validation(tuple(dict.fromkeys(_reason(e) for e in errors)))
