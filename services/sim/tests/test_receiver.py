"""The stand-in receiver's checks on a sealed record, against the sealing of hdhub.common.sealed_record, which registrations uses to send."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from hdhub.common.central_decision import DecisionVerifier, sign
from hdhub.common.sealed_record import CentralPublicKey, Signer, seal
from hdhub.proto.sim.v1 import central_pb2 as pb
from hdhub.sim.decisions import SigningKey
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
    public = CentralPublicKey.from_pem(central.public_pem.encode())
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


def decision(**overrides: object) -> pb.Decision:
    d = pb.Decision(
        decision_id="d-1",
        technical_id="t-1",
        version=2,
        organisation_id="az-demo",
        status=pb.DECISION_STATUS_CORRECTIONS_NEEDED,
        comment="LVEF\x00looks odd",
        fields=["MS_LVEF"],
        decided_at="2026-12-03T17:00:00Z",
    )
    for name, value in overrides.items():
        setattr(d, name, value)
    return d


def test_a_decision_verifies_with_the_central_signing_key_and_not_once_changed(tmp_path: Path) -> None:
    key = SigningKey(tmp_path / "signing.pem")
    verifier = DecisionVerifier.from_pem(key.public_pem.encode())
    d = decision(signing_key_id=key.key_id)
    d.signature = sign(key.private, d, "DECISION_STATUS_CORRECTIONS_NEEDED")
    assert verifier.verify(d, "DECISION_STATUS_CORRECTIONS_NEEDED")
    assert not verifier.verify(d, "DECISION_STATUS_APPROVED")  # another status
    for change in (
        {"comment": "LVEF"},
        {"version": 3},
        {"organisation_id": "lab-demo"},
        {"decision_id": "d-2"},
    ):
        changed = pb.Decision()
        changed.CopyFrom(d)
        for name, value in change.items():
            setattr(changed, name, value)
        assert not verifier.verify(changed, "DECISION_STATUS_CORRECTIONS_NEEDED"), change
    moved = pb.Decision()
    moved.CopyFrom(d)
    moved.fields[:] = ["MS_LVEF", ""]  # the fields' count is signed: no field slips in
    assert not verifier.verify(moved, "DECISION_STATUS_CORRECTIONS_NEEDED")
    # The key is kept: a restarted sim signs with the same one.
    assert SigningKey(tmp_path / "signing.pem").key_id == key.key_id
