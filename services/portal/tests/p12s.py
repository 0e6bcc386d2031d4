"""eHealth-like p12 keystores made in the tests: two key entries (authentication and
encryption), or whatever broken variant a test needs. ``cryptography`` writes one key
per p12, so entries are written one by one and their ContentInfos joined into one PFX,
whose MAC (SHA-256, RFC 7292 appendix B key derivation) is computed here."""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import KeySerializationEncryption, PrivateFormat, pkcs12
from cryptography.x509.oid import NameOID

from hdhub.portal.domain.p12 import (
    CONTEXT_0,
    INTEGER,
    OCTET_STRING,
    OID,
    SEQUENCE,
    _children,
    _data_content_info,
    _expect,
    _read,
    _tlv,
)

PASSWORD = "s3cret-p12"
_CA_KEY = ec.generate_private_key(ec.SECP256R1())
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
# EC keys by default: loading an RSA key checks it at length (~0.1 s a key). Indexes 3
# and 4 are RSA 2048, as eHealth issues them.
_KEYS: list[PrivateKey] = [ec.generate_private_key(ec.SECP256R1()) for _ in range(3)] + [
    rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2)
]
OID_SHA256 = bytes.fromhex("608648016503040201")


@dataclass(frozen=True)
class Entry:
    alias: str | None
    usage: str  # "sign", "encrypt", "both"
    days_left: int = 365
    days_valid: int = 30  # since when it is valid (negative: not yet)
    key_index: int = 0


AUTH = Entry("authentication", "sign", key_index=0)
ENC = Entry("1234567890", "encrypt", key_index=1)


def certificate(
    entry: Entry, key: rsa.RSAPrivateKey, organisation: str = "AZ Demo Hospital"
) -> x509.Certificate:
    now = datetime.now(UTC)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "BE"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Federal Government"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"NIHDI=71000436, {organisation} ({entry.usage})"),
        ]
    )
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "eHealth test CA")])
    usage = dict.fromkeys(
        [
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        ],
        False,
    )
    if entry.usage in ("sign", "both"):
        usage["digital_signature"] = True
    if entry.usage in ("encrypt", "both"):
        usage["key_encipherment"] = usage["data_encipherment"] = True
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=entry.days_valid))
        .not_valid_after(now + timedelta(days=entry.days_left))
        .add_extension(x509.KeyUsage(**usage), critical=True)
        .sign(_CA_KEY, hashes.SHA256())
    )


def ca_certificate() -> x509.Certificate:
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "eHealth test CA")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(_CA_KEY.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(days=100))
        .not_valid_after(now + timedelta(days=1000))
        .sign(_CA_KEY, hashes.SHA256())
    )


def _encryption(password: str) -> KeySerializationEncryption:
    # Few rounds keep the tests fast; the algorithms are today's defaults.
    return (
        PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(1000)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(password.encode())
    )


def _kdf(password: str, salt: bytes, purpose: int, iterations: int, size: int) -> bytes:
    u, v = 32, 64
    d = bytes([purpose]) * v
    s = (salt * (v // len(salt) + 1))[: v * ((len(salt) + v - 1) // v)]
    pw = password.encode("utf-16-be") + b"\x00\x00"
    p = (pw * (v // len(pw) + 1))[: v * ((len(pw) + v - 1) // v)]
    i = bytearray(s + p)
    out = b""
    while len(out) < size:
        a = d + bytes(i)
        for _ in range(iterations):
            a = hashlib.sha256(a).digest()
        out += a
        b = int.from_bytes((a * (v // u + 1))[:v], "big")
        for j in range(0, len(i), v):
            block = (int.from_bytes(i[j : j + v], "big") + b + 1) % (1 << (v * 8))
            i[j : j + v] = block.to_bytes(v, "big")
    return out[:size]


def _content_infos(p12: bytes) -> list[bytes]:
    top = _children(_expect(_read(p12)[0], SEQUENCE).content)
    auth_safe = _children(top[1].content)
    octets = _expect(_children(_expect(auth_safe[1], CONTEXT_0).content)[0], OCTET_STRING).content
    return [ci.raw for ci in _children(_read(octets)[0].content)]


def keystore(
    entries: Sequence[Entry] = (AUTH, ENC),
    *,
    password: str = PASSWORD,
    with_ca: bool = True,
    organisation: str = "AZ Demo Hospital",
) -> bytes:
    """A p12 with one key entry per ``entries``, a SHA-256 MAC, and the CA certificate
    (made once per arguments: the tests only read it)."""
    return _keystore(tuple(entries), password, with_ca, organisation)


@functools.lru_cache(maxsize=64)
def _keystore(entries: tuple[Entry, ...], password: str, with_ca: bool, organisation: str) -> bytes:
    infos: list[bytes] = []
    for entry in entries:
        key = _KEYS[entry.key_index]
        alias = entry.alias.encode() if entry.alias else None
        single = pkcs12.serialize_key_and_certificates(
            alias,
            key,
            certificate(entry, key, organisation),
            None,
            _encryption(password),
        )
        infos.extend(_content_infos(single))
    if with_ca:
        infos.extend(
            _content_infos(
                pkcs12.serialize_key_and_certificates(
                    None,
                    None,
                    None,
                    [ca_certificate()],
                    _encryption(password),
                )
            )
        )
    auth_safe = _tlv(SEQUENCE, b"".join(infos))
    salt, iterations = os.urandom(8), 2048
    mac = hmac.new(_kdf(password, salt, 3, iterations, 32), auth_safe, hashlib.sha256).digest()
    digest_info = _tlv(
        SEQUENCE, _tlv(SEQUENCE, _tlv(OID, OID_SHA256) + b"\x05\x00") + _tlv(OCTET_STRING, mac)
    )
    mac_data = _tlv(
        SEQUENCE, digest_info + _tlv(OCTET_STRING, salt) + _tlv(INTEGER, iterations.to_bytes(2, "big"))
    )
    return _tlv(SEQUENCE, _tlv(INTEGER, b"\x03") + _data_content_info(auth_safe) + mac_data)
