"""The checks an uploaded eHealth p12 must pass, as plain functions without I/O.

An eHealth keystore holds two key entries, each a private key with its certificate: the
**authentication** key (signs) and the **encryption** key (decrypts what is sent to the
organisation). ``cryptography``'s ``load_pkcs12`` returns only the first private key of a
file, so we walk the PKCS#12 structure ourselves (DER: PFX, AuthenticatedSafe,
SafeContents, SafeBags) and let ``load_pkcs12`` decrypt one bag at a time: it checks the
password and MAC on the whole file first, then opens each key bag wrapped alone.

Which key is which: a key bag's ``friendlyName`` (the keystore alias) ``authentication``
or ``encryption`` decides; otherwise the certificate's KeyUsage does (digitalSignature or
nonRepudiation only: authentication; keyEncipherment, dataEncipherment or keyAgreement
only: encryption). When one key is recognised the other takes the remaining purpose
(eHealth names the encryption key by a number). Anything else is refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12


class Purpose(StrEnum):
    AUTHENTICATION = "authentication"
    ENCRYPTION = "encryption"


class Rule(StrEnum):
    """Why an upload is refused; the problem's ``type`` is ``/problems/p12-<rule>``."""

    TOO_LARGE = "too-large"
    NOT_P12 = "not-a-p12"
    WRONG_PASSWORD = "wrong-password"
    KEY_COUNT = "key-count"
    KEY_WITHOUT_CERTIFICATE = "key-without-certificate"
    KEY_PURPOSES = "key-purposes"
    EXPIRED = "certificate-expired"
    NOT_YET_VALID = "certificate-not-yet-valid"


class Step(StrEnum):
    """The status log of one upload, in order."""

    RECEIVED = "received"
    PASSWORD_CHECKED = "password_checked"
    KEYS_CHECKED = "keys_checked"
    VALIDITY_CHECKED = "validity_checked"
    STORED = "stored"
    PUBLISHED = "published"
    UNPUBLISHED = "unpublished"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class LogLine:
    step: Step
    at: datetime
    message: str


class P12Rejected(Exception):
    """The upload breaks ``rule``; ``log`` is the status log up to and with the refusal."""

    def __init__(self, rule: Rule, message: str, log: Sequence[LogLine]) -> None:
        super().__init__(message)
        self.rule, self.message, self.log = rule, message, list(log)


@dataclass(frozen=True, slots=True)
class KeyEntry:
    purpose: Purpose
    private_key: Any  # a cryptography private key
    certificate: x509.Certificate
    friendly_name: str | None

    def private_key_der(self) -> bytes:
        return bytes(
            self.private_key.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )

    def certificate_der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    def fingerprint(self) -> str:
        return hashlib.sha256(self.certificate_der()).hexdigest()

    def describe(self) -> str:
        c = self.certificate
        return (
            f"{self.purpose} key: {c.subject.rfc4514_string()}, serial {c.serial_number:x}, "
            f"valid {c.not_valid_before_utc:%Y-%m-%d} to {c.not_valid_after_utc:%Y-%m-%d}"
        )


@dataclass(frozen=True, slots=True)
class Keystore:
    """An inspected p12 that passed every check."""

    authentication: KeyEntry
    encryption: KeyEntry
    chain: list[x509.Certificate] = field(default_factory=list)
    log: list[LogLine] = field(default_factory=list)

    @property
    def not_after(self) -> datetime:
        return min(
            self.authentication.certificate.not_valid_after_utc,
            self.encryption.certificate.not_valid_after_utc,
        )


# --- a little DER, enough for PKCS#12 (RFC 7292) ---------------------------------------

SEQUENCE, SET, INTEGER, OCTET_STRING, OID, BMP_STRING, CONTEXT_0 = 0x30, 0x31, 0x02, 0x04, 0x06, 0x1E, 0xA0
OID_DATA = bytes.fromhex("2A864886F70D010701")
OID_ENCRYPTED_DATA = bytes.fromhex("2A864886F70D010706")
OID_KEY_BAG = bytes.fromhex("2A864886F70D010C0A0101")
OID_SHROUDED_KEY_BAG = bytes.fromhex("2A864886F70D010C0A0102")
OID_FRIENDLY_NAME = bytes.fromhex("2A864886F70D010914")


class _Malformed(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class _Tlv:
    tag: int
    content: bytes
    raw: bytes


def _read(data: bytes, pos: int = 0) -> tuple[_Tlv, int]:
    if pos + 2 > len(data):
        raise _Malformed("truncated")
    tag, first = data[pos], data[pos + 1]
    head = pos + 2
    if tag & 0x1F == 0x1F or first == 0x80:  # high tag numbers, BER indefinite lengths
        raise _Malformed("not DER")
    length = first
    if first > 0x80:
        n = first & 0x7F
        if n > 4 or head + n > len(data):
            raise _Malformed("bad length")
        length = int.from_bytes(data[head : head + n], "big")
        head += n
    end = head + length
    if end > len(data):
        raise _Malformed("truncated")
    return _Tlv(tag, data[head:end], data[pos:end]), end


def _children(content: bytes) -> list[_Tlv]:
    out, pos = [], 0
    while pos < len(content):
        tlv, pos = _read(content, pos)
        out.append(tlv)
    return out


def _expect(tlv: _Tlv, tag: int) -> _Tlv:
    if tlv.tag != tag:
        raise _Malformed(f"expected tag {tag:#x}, got {tlv.tag:#x}")
    return tlv


def _tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def _data_content_info(inner_der: bytes) -> bytes:
    return _tlv(SEQUENCE, _tlv(OID, OID_DATA) + _tlv(CONTEXT_0, _tlv(OCTET_STRING, inner_der)))


def _pfx(content_infos: Sequence[bytes]) -> bytes:
    """A PFX without MAC around ``content_infos`` (the MAC of the whole file is checked apart)."""
    auth_safe = _tlv(SEQUENCE, b"".join(content_infos))
    return _tlv(SEQUENCE, _tlv(INTEGER, b"\x03") + _data_content_info(auth_safe))


@dataclass(frozen=True, slots=True)
class _Piece:
    """A part of the file that can be opened alone: one bag of a plain SafeContents, or an
    encrypted SafeContents as a whole."""

    content_info: bytes
    may_hold_key: bool  # a key bag, or encrypted contents (which may hide one)
    friendly_name: str | None


def _friendly_name(attributes: _Tlv | None) -> str | None:
    if attributes is None:
        return None
    for attribute in _children(attributes.content):
        parts = _children(_expect(attribute, SEQUENCE).content)
        if len(parts) == 2 and parts[0].tag == OID and parts[0].content == OID_FRIENDLY_NAME:
            values = _children(_expect(parts[1], SET).content)
            if values and values[0].tag == BMP_STRING:
                return values[0].content.decode("utf-16-be", errors="replace")
    return None


def _pieces(data: bytes) -> list[_Piece]:
    """The pieces of a PKCS#12 file; raises :class:`_Malformed` when it is not one."""
    pfx, end = _read(data)
    if end != len(data):
        raise _Malformed("trailing bytes")
    top = _children(_expect(pfx, SEQUENCE).content)
    if len(top) not in (2, 3) or _expect(top[0], INTEGER).content != b"\x03":
        raise _Malformed("not a PFX version 3")
    auth_safe = _children(_expect(top[1], SEQUENCE).content)
    if len(auth_safe) != 2 or _expect(auth_safe[0], OID).content != OID_DATA:
        raise _Malformed("authSafe is not data (public-key integrity mode is not supported)")
    octets = _expect(_children(_expect(auth_safe[1], CONTEXT_0).content)[0], OCTET_STRING).content
    pieces = []
    for content_info in _children(_expect(_read(octets)[0], SEQUENCE).content):
        parts = _children(_expect(content_info, SEQUENCE).content)
        kind = _expect(parts[0], OID).content
        if kind == OID_ENCRYPTED_DATA:
            pieces.append(_Piece(content_info.raw, False, None))
        elif kind == OID_DATA:
            safe_contents = _expect(_children(_expect(parts[1], CONTEXT_0).content)[0], OCTET_STRING).content
            for bag in _children(_expect(_read(safe_contents)[0], SEQUENCE).content):
                fields = _children(_expect(bag, SEQUENCE).content)
                bag_id = _expect(fields[0], OID).content
                attributes = fields[2] if len(fields) > 2 else None
                pieces.append(
                    _Piece(
                        _data_content_info(_tlv(SEQUENCE, bag.raw)),
                        bag_id in (OID_KEY_BAG, OID_SHROUDED_KEY_BAG),
                        _friendly_name(attributes),
                    )
                )
        else:
            raise _Malformed("unknown content type")
    return pieces


# --- the checks ---------------------------------------------------------------------------


def _spki(public_key: Any) -> bytes:
    return bytes(
        public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def _purpose_of(friendly_name: str | None, certificate: x509.Certificate) -> Purpose | None:
    name = (friendly_name or "").strip().lower()
    if name in (Purpose.AUTHENTICATION, Purpose.ENCRYPTION):
        return Purpose(name)
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None
    signs = usage.digital_signature or usage.content_commitment
    enciphers = usage.key_encipherment or usage.data_encipherment or usage.key_agreement
    if signs and not enciphers:
        return Purpose.AUTHENTICATION
    if enciphers and not signs:
        return Purpose.ENCRYPTION
    return None


def inspect_p12(data: bytes, password: str, *, now: datetime, max_bytes: int) -> Keystore:
    """Check an uploaded p12 and return its two key entries, or raise :class:`P12Rejected`
    naming the first rule it breaks. The log tells the steps passed."""
    log: list[LogLine] = []

    def reject(rule: Rule, message: str) -> P12Rejected:
        log.append(LogLine(Step.REJECTED, now, message))
        return P12Rejected(rule, message, log)

    if len(data) > max_bytes:
        raise reject(Rule.TOO_LARGE, f"The file has {len(data)} bytes; a p12 may have at most {max_bytes}.")
    try:
        pieces = _pieces(data)
    except (_Malformed, IndexError, UnicodeDecodeError):
        raise reject(Rule.NOT_P12, "The file is not a PKCS#12 (p12) keystore.") from None
    log.append(LogLine(Step.RECEIVED, now, f"A PKCS#12 file of {len(data)} bytes."))

    secret = password.encode() if password else None
    try:
        whole = pkcs12.load_pkcs12(data, secret)
    except ValueError:
        raise reject(Rule.WRONG_PASSWORD, "The password does not open this p12.") from None
    log.append(
        LogLine(Step.PASSWORD_CHECKED, now, "The password opens the p12 and its integrity check passes.")
    )

    certificates: list[tuple[x509.Certificate, str | None]] = []
    for bag in ([whole.cert] if whole.cert else []) + list(whole.additional_certs):
        name = bag.friendly_name.decode(errors="replace") if bag.friendly_name else None
        certificates.append((bag.certificate, name))
    keys: list[tuple[Any, str | None]] = []
    for piece in pieces:
        if not piece.may_hold_key:
            continue  # a plain certificate (or other) bag: the whole-file load has it
        try:
            opened = pkcs12.load_pkcs12(_pfx([piece.content_info]), secret)
        except ValueError:
            raise reject(Rule.WRONG_PASSWORD, "The password does not open every entry of this p12.") from None
        if opened.key is not None:
            keys.append((opened.key, piece.friendly_name))
    if len(keys) != 2:
        raise reject(
            Rule.KEY_COUNT,
            f"The p12 holds {len(keys)} private key(s); an eHealth certificate holds exactly two: "
            "authentication and encryption.",
        )

    by_spki = {_spki(c.public_key()): (c, name) for c, name in certificates}
    entries: list[tuple[Any, x509.Certificate, str | None, Purpose | None]] = []
    for key, name in keys:
        found = by_spki.get(_spki(key.public_key()))
        if found is None:
            raise reject(
                Rule.KEY_WITHOUT_CERTIFICATE, "A private key of the p12 has no matching certificate in it."
            )
        certificate, cert_name = found
        friendly = name or cert_name
        entries.append((key, certificate, friendly, _purpose_of(friendly, certificate)))
    purposes = [e[3] for e in entries]
    if purposes.count(None) == 1:
        known = next(p for p in purposes if p is not None)
        other = Purpose.ENCRYPTION if known is Purpose.AUTHENTICATION else Purpose.AUTHENTICATION
        purposes = [p or other for p in purposes]
    if sorted(p or "" for p in purposes) != [Purpose.AUTHENTICATION, Purpose.ENCRYPTION]:
        raise reject(
            Rule.KEY_PURPOSES,
            "The two keys must be one authentication and one encryption key (told apart by the alias "
            "`authentication`/`encryption` or by the certificates' key usage).",
        )
    paired = {
        p: KeyEntry(purpose=p, private_key=k, certificate=c, friendly_name=f)  # type: ignore[arg-type]
        for (k, c, f, _), p in zip(entries, purposes, strict=True)
    }
    auth, enc = paired[Purpose.AUTHENTICATION], paired[Purpose.ENCRYPTION]
    log.append(LogLine(Step.KEYS_CHECKED, now, f"Two keys: {auth.describe()}; {enc.describe()}."))

    for entry in (auth, enc):
        c = entry.certificate
        if c.not_valid_after_utc <= now:
            raise reject(
                Rule.EXPIRED,
                f"The {entry.purpose} certificate expired on {c.not_valid_after_utc:%Y-%m-%d %H:%M} UTC.",
            )
        if c.not_valid_before_utc > now:
            raise reject(
                Rule.NOT_YET_VALID,
                f"The {entry.purpose} certificate is valid only from {c.not_valid_before_utc:%Y-%m-%d %H:%M} UTC.",
            )
    used = {_spki(auth.certificate.public_key()), _spki(enc.certificate.public_key())}
    chain = [c for c, _ in certificates if _spki(c.public_key()) not in used]
    ends = min(auth.certificate.not_valid_after_utc, enc.certificate.not_valid_after_utc)
    log.append(
        LogLine(
            Step.VALIDITY_CHECKED,
            now,
            f"Both certificates are valid now; the first expires on {ends:%Y-%m-%d}.",
        )
    )
    return Keystore(authentication=auth, encryption=enc, chain=chain, log=log)
