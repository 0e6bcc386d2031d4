"""eHealth-like p12 keystores made in the tests: two key entries (authentication and
encryption), or whatever broken variant a test needs. ``cryptography`` writes one key
per p12, so entries are written one by one and their ContentInfos joined into one PFX,
whose MAC (SHA-256, RFC 7292 appendix B key derivation) is computed here."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import KeySerializationEncryption, PrivateFormat, pkcs12
from cryptography.x509.oid import NameOID

from hdhub.portal.demo import join_pkcs12

PASSWORD = "s3cret-p12"
_CA_KEY = ec.generate_private_key(ec.SECP256R1())
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
# EC keys by default: loading an RSA key checks it at length (~0.1 s a key). Indexes 3
# and 4 are RSA 2048, as eHealth issues them.
_KEYS: list[PrivateKey] = [ec.generate_private_key(ec.SECP256R1()) for _ in range(3)] + [
    rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2)
]


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
    singles = []
    for entry in entries:
        key = _KEYS[entry.key_index]
        alias = entry.alias.encode() if entry.alias else None
        singles.append(
            pkcs12.serialize_key_and_certificates(
                alias, key, certificate(entry, key, organisation), None, _encryption(password)
            )
        )
    if with_ca:
        singles.append(
            pkcs12.serialize_key_and_certificates(None, None, None, [ca_certificate()], _encryption(password))
        )
    return join_pkcs12(singles, password)
