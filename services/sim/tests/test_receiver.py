"""The stand-in receiver's checks on a sealed record, against the sealing registrations
does: the wire contract (hdhub.sim.v1.SealedRecord) is written twice, once per side."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from hdhub.proto.sim.v1 import central_pb2 as pb
from hdhub.registrations.delivery import CentralKey as PublicCentralKey
from hdhub.registrations.delivery import Signer, seal
from hdhub.sim.receiver import CentralKey, Rejected, verify_and_open


def signer(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> Signer:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "NIHDI=71000436, AZ Demo Hospital (authentication)")]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return Signer(key, cert.public_bytes(serialization.Encoding.DER), "cert-1", 0.0)


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory) -> CentralKey:
    return CentralKey(Path(tmp_path_factory.mktemp("sim")) / "key.pem", 2048)


def sealed(central: CentralKey, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> pb.SealedRecord:
    header = pb.SealedRecord(
        technical_id="t-1",
        version=2,
        organisation_id="az-demo",
        project_code="HDBP0012",
        dcd_code="ANGIO_HOSP",
        dcd_version="1.0.0",
        registration_code="201.26.000001.88",
    )
    public = PublicCentralKey.from_pem(central.public_pem.encode())
    return seal(
        header=header, variables={"DT_HOSPZ": "2025-02-03", "MS_LVEF": 60}, central=public, signer=signer(key)
    )


@pytest.mark.parametrize("kind", ["ec", "rsa"])
def test_a_sealed_record_opens_with_the_central_key_and_names_its_signer(
    central: CentralKey, kind: str
) -> None:
    key = ec.generate_private_key(ec.SECP256R1()) if kind == "ec" else rsa.generate_private_key(65537, 2048)
    variables, subject = verify_and_open(sealed(central, key), central)
    assert variables == {"DT_HOSPZ": "2025-02-03", "MS_LVEF": 60}
    assert "AZ Demo Hospital" in subject


@pytest.mark.parametrize(
    ("tamper", "rule"),
    [
        (lambda r: setattr(r, "version", 3), "signature"),
        (lambda r: setattr(r, "organisation_id", "lab-demo"), "signature"),
        (lambda r: setattr(r, "ciphertext", r.ciphertext[:-1] + bytes([r.ciphertext[-1] ^ 1])), "signature"),
        (lambda r: setattr(r, "key_id", "another-key"), "key_id"),
        (lambda r: setattr(r, "signer_certificate_der", b"not a certificate"), "signer_certificate"),
    ],
)
def test_a_tampered_record_is_rejected_naming_the_check(
    central: CentralKey, tamper: object, rule: str
) -> None:
    record = sealed(central, ec.generate_private_key(ec.SECP256R1()))
    tamper(record)  # type: ignore[operator]
    with pytest.raises(Rejected) as err:
        verify_and_open(record, central)
    assert err.value.rule == rule


def test_a_record_signed_by_someone_else_is_rejected(central: CentralKey) -> None:
    record = sealed(central, ec.generate_private_key(ec.SECP256R1()))
    record.signer_certificate_der = signer(ec.generate_private_key(ec.SECP256R1())).certificate_der
    with pytest.raises(Rejected) as err:
        verify_and_open(record, central)
    assert err.value.rule == "signature"


def test_the_central_key_survives_a_restart(tmp_path: Path) -> None:
    first = CentralKey(tmp_path / "key.pem", 2048)
    assert CentralKey(tmp_path / "key.pem", 2048).key_id == first.key_id
    assert (tmp_path / "key.pem").stat().st_mode & 0o077 == 0  # private to the service
