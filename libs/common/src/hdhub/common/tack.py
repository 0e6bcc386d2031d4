"""MyCareNet's answer to a message, the TACK (technical acknowledgement): a result major
(``urn:nip:tack:result:major:success`` or a failure), result minors, and messages, each a
warning or an error. The same document comes back over REST (the response body) and over
FILE_SYSTEM (``<message id>.tack.xml`` in the answers folder). In libs/common because both sides speak
it: nippin reads it, and the sim's MyCareNet stand-in writes it.

    <TAck xmlns="urn:nip:tack:1.0">
      <Reference>the message id</Reference>
      <ResultMajor>urn:nip:tack:result:major:success</ResultMajor>
      <ResultMinor>urn:nip:tack:result:minor:...</ResultMinor>        (0..n)
      <ResultMessage severity="warning|error" code="...">text</ResultMessage>   (0..n)
    </TAck>
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from xml.etree import ElementTree as ET

TACK_NAMESPACE = "urn:nip:tack:1.0"
SUCCESS = "urn:nip:tack:result:major:success"
FAILURE = "urn:nip:tack:result:major:failure"
#: Larger answers are no TACK of ours: refused before parsing.
MAX_TACK_BYTES = 256 * 1024


class Outcome(StrEnum):
    SUCCESS = "success"  # accepted, nothing to say
    WARNING = "warning"  # accepted, with warnings
    ERROR = "error"  # refused


class TackError(ValueError):
    """The answer is no TACK (not XML, no result major, too large)."""


@dataclass(frozen=True, slots=True)
class TackMessage:
    severity: str
    code: str
    text: str

    def to_json(self) -> dict[str, str]:
        return {"severity": self.severity, "code": self.code, "text": self.text}


@dataclass(frozen=True, slots=True)
class Tack:
    reference: str
    major: str
    minors: tuple[str, ...]
    messages: tuple[TackMessage, ...]

    @property
    def outcome(self) -> Outcome:
        """Success with no warning, success with warnings, or error (any other major)."""
        if self.major != SUCCESS:
            return Outcome.ERROR
        if any(m.severity == "error" for m in self.messages):
            return Outcome.ERROR
        return Outcome.WARNING if self.messages else Outcome.SUCCESS

    def reason(self) -> str:
        """One line for a status transition: the major, and the first error or warning."""
        first = next((m for m in self.messages if m.severity == "error"), None) or next(
            iter(self.messages), None
        )
        tail = f" ({first.code}: {first.text})" if first is not None else ""
        return f"TACK {self.major.rsplit(':', 1)[-1]}{tail}"[:500]


_LONG_NUMBER = re.compile(r"\d{6,}")


def _masked(text: str) -> str:
    """A TACK's text as kept and shown: should it quote an SSIN or a NIHDI number, the run
    of digits is masked."""
    return _LONG_NUMBER.sub("#", text)[:300]


def _text(element: ET.Element | None) -> str:
    return (element.text or "").strip() if element is not None else ""


def parse(document: bytes) -> Tack:
    """Read a TACK; :class:`TackError` when the answer is none."""
    if len(document) > MAX_TACK_BYTES:
        raise TackError("the answer is larger than a TACK")
    try:
        root = ET.fromstring(document)
    except ET.ParseError as exc:
        raise TackError(
            f"the answer is not XML ({exc.msg if hasattr(exc, 'msg') else 'parse error'})"
        ) from None
    ns = {"t": TACK_NAMESPACE}
    if root.tag != f"{{{TACK_NAMESPACE}}}TAck":
        raise TackError(f"the answer is no TAck (root {root.tag.rsplit('}', 1)[-1]!r})")
    major = _text(root.find("t:ResultMajor", ns))
    if not major.startswith("urn:nip:tack:result:major:"):
        raise TackError("the TAck has no result major")
    return Tack(
        reference=_text(root.find("t:Reference", ns)),
        major=major,
        minors=tuple(_text(m) for m in root.findall("t:ResultMinor", ns) if _text(m)),
        messages=tuple(
            TackMessage(
                severity="error" if m.get("severity", "error") == "error" else "warning",
                code=m.get("code", ""),
                text=_masked(_text(m)),
            )
            for m in root.findall("t:ResultMessage", ns)
        ),
    )


def render(
    reference: str, major: str, messages: tuple[TackMessage, ...] = (), minors: tuple[str, ...] = ()
) -> bytes:
    """A TACK document (the MyCareNet stand-in answers with it; tests build them)."""
    ET.register_namespace("", TACK_NAMESPACE)
    root = ET.Element(f"{{{TACK_NAMESPACE}}}TAck")
    ET.SubElement(root, f"{{{TACK_NAMESPACE}}}Reference").text = reference
    ET.SubElement(root, f"{{{TACK_NAMESPACE}}}ResultMajor").text = major
    for minor in minors:
        ET.SubElement(root, f"{{{TACK_NAMESPACE}}}ResultMinor").text = minor
    for m in messages:
        ET.SubElement(
            root, f"{{{TACK_NAMESPACE}}}ResultMessage", {"severity": m.severity, "code": m.code}
        ).text = m.text
    return bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True))
