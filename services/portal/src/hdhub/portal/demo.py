"""A demo certificate per demo organisation, so `make run` can deliver end to end.

eHealth issues each organisation a p12 with two keys (authentication and encryption);
``cryptography`` writes one key per p12, so each key is written alone and their
ContentInfos are joined into one PFX with a SHA-256 MAC (RFC 7292 appendix B key
derivation). The keys are EC P-256 and the CA is made up on the spot: the demo's
certificates are for the laptop and the tests, never for a real registry.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import PrivateFormat, pkcs12
from cryptography.x509.oid import NameOID
from sqlalchemy import select

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

if TYPE_CHECKING:
    from hdhub.portal.runtime import PortalService

log = logging.getLogger("hdhub.portal.demo")

#: The demo organisations of identity's seed: (id, title, NIHDI number).
DEMO_ORGANISATIONS = (
    ("az-demo", "AZ Demo Hospital", "71000436"),
    ("lab-demo", "Demo Clinical Laboratory", "82000137"),
)
DEMO_PASSWORD = "demo-p12-password"
_OID_SHA256 = bytes.fromhex("608648016503040201")


def _certificate(
    ca: ec.EllipticCurvePrivateKey, key: ec.EllipticCurvePrivateKey, title: str, nihdi: str, sign: bool
) -> x509.Certificate:
    now = datetime.now(UTC)
    usage = "authentication" if sign else "encryption"
    return (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COUNTRY_NAME, "BE"),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hdhub demo"),
                    x509.NameAttribute(NameOID.COMMON_NAME, f"NIHDI={nihdi}, {title} ({usage})"),
                ]
            )
        )
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hdhub demo CA (not eHealth)")]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=3 * 365))
        .add_extension(
            x509.KeyUsage(
                digital_signature=sign,
                content_commitment=False,
                key_encipherment=not sign,
                data_encipherment=not sign,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca, hashes.SHA256())
    )


def _content_infos(p12: bytes) -> list[bytes]:
    top = _children(_expect(_read(p12)[0], SEQUENCE).content)
    auth_safe = _children(top[1].content)
    octets = _expect(_children(_expect(auth_safe[1], CONTEXT_0).content)[0], OCTET_STRING).content
    return [ci.raw for ci in _children(_read(octets)[0].content)]


def _mac_key(password: str, salt: bytes, iterations: int) -> bytes:
    """RFC 7292 appendix B.2 with SHA-256, purpose 3 (MAC key), 32 bytes."""
    u, v = 32, 64
    d = bytes([3]) * v
    s = (salt * (v // len(salt) + 1))[: v * ((len(salt) + v - 1) // v)]
    pw = password.encode("utf-16-be") + b"\x00\x00"
    p = (pw * (v // len(pw) + 1))[: v * ((len(pw) + v - 1) // v)]
    a = d + s + p
    for _ in range(iterations):
        a = hashlib.sha256(a).digest()
    return a[:u]


def demo_p12(title: str, nihdi: str, password: str = DEMO_PASSWORD) -> bytes:
    """A two-key p12 (authentication, encryption) for a demo organisation."""
    ca = ec.generate_private_key(ec.SECP256R1())
    encryption = (
        PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(2048)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(password.encode())
    )
    singles = []
    for alias, sign in ((b"authentication", True), (b"encryption", False)):
        key = ec.generate_private_key(ec.SECP256R1())
        singles.append(
            pkcs12.serialize_key_and_certificates(
                alias, key, _certificate(ca, key, title, nihdi, sign), None, encryption
            )
        )
    return join_pkcs12(singles, password)


def join_pkcs12(p12s: list[bytes], password: str) -> bytes:
    """One PFX holding the bags of every p12 in ``p12s`` (all encrypted with ``password``),
    with a SHA-256 MAC: ``cryptography`` writes at most one key per p12."""
    infos = [info for p12 in p12s for info in _content_infos(p12)]
    auth_safe = _tlv(SEQUENCE, b"".join(infos))
    salt, iterations = os.urandom(8), 2048
    mac = hmac.new(_mac_key(password, salt, iterations), auth_safe, hashlib.sha256).digest()
    digest_info = _tlv(
        SEQUENCE, _tlv(SEQUENCE, _tlv(OID, _OID_SHA256) + b"\x05\x00") + _tlv(OCTET_STRING, mac)
    )
    mac_data = _tlv(
        SEQUENCE, digest_info + _tlv(OCTET_STRING, salt) + _tlv(INTEGER, iterations.to_bytes(2, "big"))
    )
    return _tlv(SEQUENCE, _tlv(INTEGER, b"\x03") + _data_content_info(auth_safe) + mac_data)


async def seed_demo_certificates(service: PortalService) -> int:
    """Publish a demo certificate for each demo organisation that has none; the count made."""
    from hdhub.portal.store import Certificate

    made = 0
    for organisation_id, title, nihdi in DEMO_ORGANISATIONS:
        async with service.db.session([organisation_id]) as session:
            published = await session.execute(
                select(Certificate.id).where(
                    Certificate.organisation_id == organisation_id, Certificate.published.is_(True)
                )
            )
            if published.first() is not None:
                continue
            await service.certificates.upload(
                session,
                organisation_id=organisation_id,
                data=demo_p12(title, nihdi),
                password=DEMO_PASSWORD,
                filename=f"{organisation_id}-demo.p12",
                actor="hdhub-demo-seed",
            )
            made += 1
    if made:
        log.info("demo certificates published", extra={"count": made})
    return made
