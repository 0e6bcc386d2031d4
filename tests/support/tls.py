"""Certificates made in the test (cryptography): a CA, and leaf certificates it signs for
servers and clients, written the way Kubernetes mounts a Secret (files behind a ``..data``
symlink swapped atomically on rotation)."""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass(frozen=True)
class Leaf:
    cert: bytes
    key: bytes


class CertificateAuthority:
    def __init__(self, name: str = "hdhub test CA") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = self.certificate.public_bytes(serialization.Encoding.PEM)

    def issue(self, name: str, *, hosts: tuple[str, ...] = ("localhost", "127.0.0.1")) -> Leaf:
        """A certificate for ``name`` valid as server (for ``hosts``) and as client."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        alt_names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                alt_names.append(x509.DNSName(host))
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=2))
            .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        return Leaf(certificate.public_bytes(serialization.Encoding.PEM), _pem_key(key))


class MountedSecret:
    """A folder holding ``tls.crt``, ``tls.key`` and ``ca.crt`` as the kubelet writes a
    Secret volume: each name a symlink into ``..data``, itself a symlink to a timestamped
    folder that a rotation replaces in one rename."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._version = 0

    @property
    def cert(self) -> Path:
        return self.folder / "tls.crt"

    @property
    def key(self) -> Path:
        return self.folder / "tls.key"

    @property
    def ca(self) -> Path:
        return self.folder / "ca.crt"

    def write(self, leaf: Leaf, ca: bytes) -> None:
        self._version += 1
        version = self.folder / f"..{self._version}"
        version.mkdir()
        (version / "tls.crt").write_bytes(leaf.cert)
        (version / "tls.key").write_bytes(leaf.key)
        (version / "ca.crt").write_bytes(ca)
        swap = self.folder / "..data_tmp"
        swap.symlink_to(version.name)
        os.replace(swap, self.folder / "..data")
        for name in ("tls.crt", "tls.key", "ca.crt"):
            link = self.folder / name
            if not link.is_symlink():
                link.symlink_to(f"..data/{name}")

    def env(self, prefix: str = "HDHUB_GRPC_TLS") -> dict[str, str]:
        return {
            f"{prefix}_CERT_FILE": str(self.cert),
            f"{prefix}_KEY_FILE": str(self.key),
            f"{prefix}_CA_FILE": str(self.ca),
        }
