"""Transport security of the internal edge: TLS on every gRPC server and channel.

**Between the services**, mutual TLS with certificates from files (a cert-manager Secret,
say): each process has a certificate and key, and trusts one CA for its peers.

- ``HDHUB_GRPC_TLS_CERT_FILE``, ``HDHUB_GRPC_TLS_KEY_FILE``: this process's certificate
  (PEM, chain allowed) and key; a server presents it, a client presents it too.
- ``HDHUB_GRPC_TLS_CA_FILE``: the CA that signs every service's certificate. A server
  refuses a client without a certificate it signed; a client verifies the server's
  certificate against it and the target's host name.

The files are read again when they change, so a rotated certificate is used without a
restart: the server on the next handshake (gRPC's certificate configuration fetcher), a
client by rebuilding its cached channel (:func:`hdhub.common.grpc.channel`). Connections
already open keep their certificate until they cycle (servers recycle them every few
minutes).

``HDHUB_GRPC_MESH_MTLS=true`` says that a service mesh (Istio, Linkerd) encrypts and
authenticates the traffic between pods: gRPC itself then stays plaintext in the cluster.

**The central platform** (``HDHUB_GRPC_CENTRAL``) is outside the cluster: always TLS, its
server certificate verified against ``HDHUB_CENTRAL_TLS_CA_FILE`` (gRPC's bundled public
roots when unset), presenting the installation's client certificate
``HDHUB_CENTRAL_TLS_CERT_FILE`` / ``_KEY_FILE`` where the central side asks for one. While
``HDHUB_GRPC_CENTRAL`` is unset the sim stands in, inside, like any other service.

In production a process refuses to start when its gRPC would be plaintext and no mesh is
declared (:func:`check_transport`), and anywhere when a file is missing or its key does
not match its certificate, naming the setting.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from hdhub.common.config import CENTRAL, SettingRefused, platform

if TYPE_CHECKING:
    from hdhub.common.config import PlatformSettings

__all__ = [
    "TlsFiles",
    "TransportRefused",
    "channel_credentials",
    "check_transport",
    "client_files",
    "server_credentials",
]

log = logging.getLogger("hdhub.grpc.tls")

#: What a file looks like to :meth:`TlsFiles.stamp`: inode, modification time, size.
_Stamp = tuple[int, int, int] | None


class TransportRefused(SettingRefused):
    """gRPC cannot be set up as configured; the message names the setting, never a file's content."""


@dataclass(frozen=True, slots=True)
class TlsMaterial:
    """The PEM bytes read from :class:`TlsFiles`, checked."""

    cert: bytes | None
    key: bytes | None
    ca: bytes | None


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Where a certificate, its key and the CA to trust are, and the settings naming them
    (for a refusal). ``ca`` None: gRPC's bundled public roots; ``cert`` None: no
    certificate presented."""

    cert: Path | None
    key: Path | None
    ca: Path | None
    settings: tuple[str, str, str]

    def stamp(self) -> tuple[_Stamp, ...]:
        """Changes when any of the files is replaced: a Secret's rotation swaps them."""
        return tuple(_stamp(p) for p in (self.cert, self.key, self.ca))

    def read(self) -> TlsMaterial:
        """Read and check the files: each a PEM of its kind, the key that of the certificate.
        Raises :class:`TransportRefused` naming the setting at fault."""
        cert_setting, key_setting, ca_setting = self.settings
        cert, key, ca = (
            _read(p, s) for p, s in zip((self.cert, self.key, self.ca), self.settings, strict=True)
        )
        if ca is not None:
            _certificates(ca, ca_setting)
        if cert is None or key is None:
            return TlsMaterial(None, None, ca)
        chain = _certificates(cert, cert_setting)
        try:
            private_key = serialization.load_pem_private_key(key, password=None)
        except (ValueError, TypeError):
            raise TransportRefused(f"{key_setting} is not an unencrypted PEM private key") from None
        if _public(chain[0].public_key()) != _public(private_key.public_key()):
            raise TransportRefused(f"{key_setting} is not the key of the certificate in {cert_setting}")
        return TlsMaterial(cert, key, ca)


def _stamp(path: Path | None) -> _Stamp:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def _read(path: Path | None, setting: str) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TransportRefused(f"{setting}: {path} cannot be read ({exc.strerror})") from None


def _certificates(pem: bytes, setting: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise TransportRefused(f"{setting} holds no PEM certificate") from None


def _public(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _internal_files(settings: PlatformSettings) -> TlsFiles | None:
    if settings.grpc_tls_cert_file is None:
        return None
    return TlsFiles(
        settings.grpc_tls_cert_file,
        settings.grpc_tls_key_file,
        settings.grpc_tls_ca_file,
        ("HDHUB_GRPC_TLS_CERT_FILE", "HDHUB_GRPC_TLS_KEY_FILE", "HDHUB_GRPC_TLS_CA_FILE"),
    )


def _central_files(settings: PlatformSettings) -> TlsFiles:
    return TlsFiles(
        settings.central_tls_cert_file,
        settings.central_tls_key_file,
        settings.central_tls_ca_file,
        ("HDHUB_CENTRAL_TLS_CERT_FILE", "HDHUB_CENTRAL_TLS_KEY_FILE", "HDHUB_CENTRAL_TLS_CA_FILE"),
    )


def _refuse_plaintext(settings: PlatformSettings) -> None:
    if settings.environment == "production" and not settings.grpc_mesh_mtls:
        raise TransportRefused(
            "gRPC between the services would be plaintext: set HDHUB_GRPC_TLS_CERT_FILE, "
            "HDHUB_GRPC_TLS_KEY_FILE and HDHUB_GRPC_TLS_CA_FILE (mutual TLS), or "
            "HDHUB_GRPC_MESH_MTLS=true where a service mesh provides mutual TLS"
        )


def client_files(service: str, settings: PlatformSettings | None = None) -> TlsFiles | None:
    """The files a channel to ``service`` uses; None: plaintext (refused in production
    unless a mesh provides mutual TLS)."""
    s = settings or platform()
    if service == CENTRAL and s.explicit_grpc_target(CENTRAL):
        return _central_files(s)
    files = _internal_files(s)
    if files is None:
        _refuse_plaintext(s)
    return files


def channel_credentials(files: TlsFiles) -> grpc.ChannelCredentials:
    """TLS credentials from ``files`` as they are now (read and checked)."""
    material = files.read()
    return grpc.ssl_channel_credentials(
        root_certificates=material.ca, private_key=material.key, certificate_chain=material.cert
    )


def _server_configuration(material: TlsMaterial) -> grpc.ServerCertificateConfiguration:
    assert material.cert is not None and material.key is not None
    return grpc.ssl_server_certificate_configuration([(material.key, material.cert)], material.ca)


def server_credentials(settings: PlatformSettings | None = None) -> grpc.ServerCredentials | None:
    """Mutual-TLS credentials for a server, re-read on the first handshake after the files
    change; None: plaintext (refused in production unless a mesh provides mutual TLS)."""
    s = settings or platform()
    files = _internal_files(s)
    if files is None:
        _refuse_plaintext(s)
        return None
    current = {"stamp": files.stamp()}
    initial = _server_configuration(files.read())

    def fetch() -> grpc.ServerCertificateConfiguration | None:
        stamp = files.stamp()
        if stamp == current["stamp"]:
            return None
        try:
            configuration = _server_configuration(files.read())
        except TransportRefused as exc:  # half-way through a rotation: the next handshake retries
            log.warning("gRPC server certificate not reloaded: %s", exc)
            return None
        current["stamp"] = stamp
        log.info("gRPC server certificate reloaded")
        return configuration

    # (the stubs type the fetcher without its "None: unchanged" answer)
    return grpc.dynamic_ssl_server_credentials(initial, fetch, require_client_authentication=True)  # type: ignore[arg-type]


def check_transport(settings: PlatformSettings | None = None) -> None:
    """At start: refuse plaintext gRPC in production (unless a mesh provides mutual TLS),
    and certificate files that cannot be used, in any environment. Raises
    :class:`TransportRefused` naming the setting."""
    s = settings or platform()
    internal = _internal_files(s)
    if internal is None:
        _refuse_plaintext(s)
    else:
        internal.read()
    if s.explicit_grpc_target(CENTRAL):
        _central_files(s).read()
